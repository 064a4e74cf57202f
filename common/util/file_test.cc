#include "common/util/file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <string>

namespace sphere::util {
namespace {

std::string TempDir() {
  const char* t = std::getenv("TEST_TMPDIR");
  return t != nullptr ? t : "/tmp";
}

TEST(FileTest, WriteThenReadRoundTripsBinaryAndSetsMode) {
  const std::string dir = TempDir() + "/file_test/a/b";
  ASSERT_TRUE(MakeDirs(dir, 0700).ok());
  const std::string path = dir + "/f.bin";
  const std::string bytes("x\0y\n\xff", 5);
  ASSERT_TRUE(WriteFile(path, bytes, 0600).ok());
  absl::StatusOr<std::string> back = ReadFile(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, bytes);
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // Replacing keeps one file with the new contents and no temp file behind.
  ASSERT_TRUE(WriteFile(path, "new", 0600).ok());
  EXPECT_EQ(*ReadFile(path), "new");
  EXPECT_NE(stat((path + ".tmp." + std::to_string(getpid())).c_str(), &st), 0);
}

TEST(FileTest, MakeDirsIsIdempotent) {
  const std::string dir = TempDir() + "/file_test/idem/x";
  ASSERT_TRUE(MakeDirs(dir).ok());
  EXPECT_TRUE(MakeDirs(dir).ok());
}

TEST(FileTest, Fault_ReadMissingIsNotFound) {
  absl::StatusOr<std::string> r = ReadFile(TempDir() + "/file_test/absent");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
}

TEST(FileTest, Fault_WriteIntoMissingDirectoryFailsAndCreatesNothing) {
  const std::string path = TempDir() + "/file_test/no/such/dir/f";
  absl::Status s = WriteFile(path, "x");
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_NE(s.message().find("cannot create"), std::string::npos) << s;
  EXPECT_EQ(ReadFile(path).status().code(), absl::StatusCode::kNotFound);
}

TEST(FileTest, Fault_MakeDirsThroughAFileFails) {
  const std::string file = TempDir() + "/file_test/plain";
  ASSERT_TRUE(MakeDirs(TempDir() + "/file_test").ok());
  ASSERT_TRUE(WriteFile(file, "x").ok());
  absl::Status s = MakeDirs(file + "/sub");
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
  EXPECT_EQ(*ReadFile(file), "x");
}

}  // namespace
}  // namespace sphere::util
