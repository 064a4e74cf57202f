#include "common/store/keyring.h"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/store/store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sphere::store {
namespace {

using ::testing::HasSubstr;

std::string TestDir(absl::string_view name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string dir = absl::StrCat(tmp ? tmp : "/tmp", "/keyring_", name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

TEST(KeyringTest, MasterKeyFile) {
  std::string dir = TestDir("master");
  std::string path = dir + "/master.key";
  ASSERT_TRUE(CreateMasterKeyFile(path).ok());
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  std::string key = ReadFile(path);
  EXPECT_EQ(key.size(), 32u);
  // Never overwritten.
  EXPECT_EQ(CreateMasterKeyFile(path).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ReadFile(path), key);
  // No temporary files left behind.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir),
                          std::filesystem::directory_iterator()),
            1);
}

TEST(KeyringTest, DataKeyIsStableAndStoredOnlyWrapped) {
  std::string dir = TestDir("stable");
  std::string master = dir + "/master.key", wrapped = dir + "/data.key";
  ASSERT_TRUE(CreateMasterKeyFile(master).ok());
  auto k1 = LoadOrCreateDataKey(master, wrapped);
  ASSERT_TRUE(k1.ok()) << k1.status();
  EXPECT_EQ(k1->size(), 32u);
  auto k2 = LoadOrCreateDataKey(master, wrapped);
  ASSERT_TRUE(k2.ok()) << k2.status();
  EXPECT_EQ(*k1, *k2);

  std::string on_disk = ReadFile(wrapped);
  EXPECT_EQ(on_disk.find(*k1), std::string::npos);
  EXPECT_EQ(on_disk.find(ReadFile(master)), std::string::npos);
  struct stat st;
  ASSERT_EQ(stat(wrapped.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);

  // The data key opens an encrypted store across restarts.
  RocksOptions options;
  options.data_key = *k1;
  {
    auto s = OpenRocksStore(dir + "/db", {"devices"}, options);
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_TRUE((*s)->Put("devices", "d", "v").ok());
  }
  options.data_key = *LoadOrCreateDataKey(master, wrapped);
  auto s = OpenRocksStore(dir + "/db", {"devices"}, options);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(*(*s)->Get("devices", "d"), "v");
}

TEST(KeyringTest, TamperedWrappedKeyIsRejected) {
  std::string dir = TestDir("tamper");
  std::string master = dir + "/master.key", wrapped = dir + "/data.key";
  ASSERT_TRUE(CreateMasterKeyFile(master).ok());
  ASSERT_TRUE(LoadOrCreateDataKey(master, wrapped).ok());
  const std::string good = ReadFile(wrapped);

  // Flip one bit anywhere past the magic: nonce, ciphertext or tag.
  for (size_t i = 8; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] ^= 0x01;
    WriteFile(wrapped, bad);
    auto k = LoadOrCreateDataKey(master, wrapped);
    ASSERT_FALSE(k.ok()) << "byte " << i;
    EXPECT_EQ(k.status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_THAT(k.status().message(), HasSubstr("failed authentication"));
    EXPECT_THAT(k.status().message(), HasSubstr(wrapped));
  }
  WriteFile(wrapped, good.substr(0, good.size() - 1));
  EXPECT_EQ(LoadOrCreateDataKey(master, wrapped).status().code(),
            absl::StatusCode::kDataLoss);
  WriteFile(wrapped, "X" + good.substr(1));
  EXPECT_EQ(LoadOrCreateDataKey(master, wrapped).status().code(),
            absl::StatusCode::kDataLoss);

  // A different master key cannot unwrap it.
  WriteFile(wrapped, good);
  std::string other = dir + "/other.key";
  ASSERT_TRUE(CreateMasterKeyFile(other).ok());
  EXPECT_EQ(LoadOrCreateDataKey(other, wrapped).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(LoadOrCreateDataKey(master, wrapped).ok());
}

TEST(KeyringTest, MissingOrMalformedMasterKey) {
  std::string dir = TestDir("missing");
  EXPECT_EQ(
      LoadOrCreateDataKey(dir + "/nope.key", dir + "/data.key").status().code(),
      absl::StatusCode::kNotFound);
  WriteFile(dir + "/short.key", "too short");
  auto k = LoadOrCreateDataKey(dir + "/short.key", dir + "/data.key");
  EXPECT_EQ(k.status().code(), absl::StatusCode::kFailedPrecondition);
  // Nothing was created on failure.
  EXPECT_FALSE(std::filesystem::exists(dir + "/data.key"));
}

}  // namespace
}  // namespace sphere::store
