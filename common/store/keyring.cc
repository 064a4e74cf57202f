#include "common/store/keyring.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/crypto/crypto.h"

namespace sphere::store {
namespace {

// Wrapped key file: magic || 12-byte nonce || GCM(data key) || 16-byte tag.
constexpr absl::string_view kWrappedMagic = "SPHWKEY1";
constexpr size_t kNonceSize = 12;
constexpr size_t kKeySize = 32;
constexpr size_t kWrappedSize =
    kWrappedMagic.size() + kNonceSize + kKeySize + 16;
constexpr absl::string_view kAad = "sphere-store-data-key-v1";

absl::Status Errno(absl::string_view what, const std::string& path) {
  int e = errno;
  std::string msg = absl::StrCat(what, " ", path, ": ", std::strerror(e));
  if (e == ENOENT) return absl::NotFoundError(msg);
  if (e == EEXIST) return absl::AlreadyExistsError(msg);
  if (e == EACCES || e == EPERM) return absl::PermissionDeniedError(msg);
  return absl::InternalError(msg);
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("keyring: cannot open", path);
  absl::Cleanup closer = [fd] { close(fd); };
  std::string out;
  char buf[256];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("keyring: cannot read", path);
    }
    if (n == 0) break;
    out.append(buf, n);
    if (out.size() > 4096) {
      return absl::FailedPreconditionError(
          absl::StrCat("keyring: ", path, " is too large for a key file"));
    }
  }
  return out;
}

absl::Status WriteAll(int fd, absl::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("keyring: cannot write", path);
    }
    data.remove_prefix(n);
  }
  if (fsync(fd) != 0) return Errno("keyring: cannot fsync", path);
  return absl::OkStatus();
}

void SyncParentDir(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

// WriteNewFile durably creates `path` (mode 0600) holding `data`; fails with
// AlreadyExists rather than replacing an existing file.
absl::Status WriteNewFile(const std::string& path, absl::string_view data) {
  // Write a temporary file, then link(2) it into place: the final name
  // appears complete or not at all, and never clobbers a concurrent writer.
  std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Errno("keyring: cannot create", tmp);
  absl::Cleanup remove_tmp = [&tmp] { unlink(tmp.c_str()); };
  absl::Status s = WriteAll(fd, data, tmp);
  close(fd);
  if (!s.ok()) return s;
  if (link(tmp.c_str(), path.c_str()) != 0) {
    return Errno("keyring: cannot create", path);
  }
  SyncParentDir(path);
  return absl::OkStatus();
}

absl::StatusOr<std::string> LoadMasterKey(const std::string& path) {
  absl::StatusOr<std::string> key = ReadSmallFile(path);
  if (!key.ok()) return key.status();
  if (key->size() != kKeySize) {
    return absl::FailedPreconditionError(
        absl::StrCat("keyring: master key file ", path, " holds ", key->size(),
                     " bytes, want ", kKeySize));
  }
  return key;
}

}  // namespace

absl::Status CreateMasterKeyFile(const std::string& path) {
  return WriteNewFile(path, crypto::RandomBytes(kKeySize));
}

absl::StatusOr<std::string> LoadOrCreateDataKey(
    const std::string& master_key_path, const std::string& wrapped_key_path) {
  absl::StatusOr<std::string> master = LoadMasterKey(master_key_path);
  if (!master.ok()) return master.status();
  return LoadOrCreateDataKeyUnder(*master, master_key_path, wrapped_key_path);
}

absl::StatusOr<std::string> LoadOrCreateDataKeyUnder(
    const std::string& master_key, absl::string_view master_key_origin,
    const std::string& wrapped_key_path) {
  if (master_key.size() != kKeySize) {
    return absl::FailedPreconditionError(
        absl::StrCat("keyring: master key from ", master_key_origin, " has ",
                     master_key.size(), " bytes, want ", kKeySize));
  }
  const std::string* master = &master_key;
  absl::StatusOr<std::string> wrapped = ReadSmallFile(wrapped_key_path);
  if (!wrapped.ok() && absl::IsNotFound(wrapped.status())) {
    std::string nonce = crypto::RandomBytes(kNonceSize);
    std::string data_key = crypto::RandomBytes(kKeySize);
    absl::StatusOr<std::string> sealed =
        crypto::AesGcmSeal(*master, nonce, data_key, kAad);
    if (!sealed.ok()) return sealed.status();
    absl::Status s = WriteNewFile(wrapped_key_path,
                                  absl::StrCat(kWrappedMagic, nonce, *sealed));
    if (s.ok()) return data_key;
    if (!absl::IsAlreadyExists(s)) return s;
    // Lost a creation race: use the key the winner wrote.
    wrapped = ReadSmallFile(wrapped_key_path);
  }
  if (!wrapped.ok()) return wrapped.status();

  if (wrapped->size() != kWrappedSize ||
      absl::string_view(*wrapped).substr(0, kWrappedMagic.size()) !=
          kWrappedMagic) {
    return absl::DataLossError(absl::StrCat("keyring: wrapped data key file ",
                                            wrapped_key_path, " is malformed (",
                                            wrapped->size(), " bytes)"));
  }
  absl::string_view rest(*wrapped);
  rest.remove_prefix(kWrappedMagic.size());
  absl::StatusOr<std::string> key = crypto::AesGcmOpen(
      *master, rest.substr(0, kNonceSize), rest.substr(kNonceSize), kAad);
  if (!key.ok()) {
    return absl::UnauthenticatedError(absl::StrCat(
        "keyring: wrapped data key file ", wrapped_key_path,
        " failed authentication under master key ", master_key_origin,
        " (tampered, or wrapped under a different master key): ",
        key.status().message()));
  }
  if (key->size() != kKeySize) {
    return absl::DataLossError(
        absl::StrCat("keyring: unwrapped data key from ", wrapped_key_path,
                     " has ", key->size(), " bytes, want ", kKeySize));
  }
  return key;
}

}  // namespace sphere::store
