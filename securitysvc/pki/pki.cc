#include "securitysvc/pki/pki.h"

#include <sys/stat.h>

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/cluster/pki_layout.h"
#include "common/util/file.h"
#include "common/util/log.h"
#include "securitysvc/auth/scope.h"

namespace sphere::pki {
namespace {

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

// DecodeKey accepts 32 raw bytes or 64 hex digits (surrounding whitespace
// ignored), the forms a key file or an environment variable can hold.
absl::StatusOr<std::string> DecodeKey(const std::string& text,
                                      absl::string_view origin) {
  if (text.size() == 32) return text;
  absl::string_view trimmed = absl::StripAsciiWhitespace(text);
  bool hex = trimmed.size() == 64;
  for (char c : trimmed) hex = hex && absl::ascii_isxdigit(c);
  if (hex) return absl::HexStringToBytes(trimmed);
  return absl::FailedPreconditionError(
      absl::StrCat("the master key from ", origin,
                   " must be 32 raw bytes or 64 hex digits; it has ",
                   text.size(), " bytes of another form"));
}

absl::StatusOr<crypto::EcPrivateKey> LoadOrCreateKey(const std::string& path) {
  if (Exists(path)) {
    if (auto s = CheckPrivateFile(path); !s.ok()) return s;
    auto pem = util::ReadFile(path);
    if (!pem.ok()) return pem.status();
    return crypto::EcPrivateKey::FromPem(*pem);
  }
  auto key = crypto::EcPrivateKey::Generate();
  if (auto s = util::WriteFile(path, key.ToPem(), 0600); !s.ok()) return s;
  return key;
}

// LoadOrIssueCert writes `path` with a certificate from `spec` unless present.
absl::StatusOr<std::string> LoadOrIssueCert(const std::string& path,
                                            const crypto::CertificateSpec& spec,
                                            const crypto::EcPrivateKey& issuer,
                                            absl::string_view issuer_pem) {
  if (Exists(path)) return util::ReadFile(path);
  auto pem = crypto::IssueCertificate(spec, issuer, issuer_pem);
  if (!pem.ok()) return pem.status();
  if (auto s = util::WriteFile(path, *pem); !s.ok()) return s;
  return pem;
}

crypto::CertificateSpec Spec(absl::string_view cn, const std::string& pub,
                             crypto::KeyUsage usage, absl::Duration life) {
  crypto::CertificateSpec s;
  s.common_name = std::string(cn);
  s.organization = "Sphere Platform";
  s.subject_public_key = pub;
  s.not_before = absl::Now() - absl::Hours(1);
  s.not_after = absl::Now() + life;
  s.usage = usage;
  return s;
}

absl::StatusOr<ClusterPki> LoadOrCreate(const std::string& state_dir,
                                        const MasterKeySource& master_source,
                                        bool create) {
  ClusterPki pki;
  pki.dir = cluster::PkiDir(state_dir);
  if (!create && !Exists(pki.Path("root.pem"))) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no cluster PKI in ", pki.dir,
        ": start the cluster with 'bazel run //:local_cluster -- --state-dir ",
        state_dir, "'"));
  }
  if (auto s = util::MakeDirs(pki.dir); !s.ok()) return s;
  chmod(pki.dir.c_str(), 0700);
  const absl::Duration kTenYears = absl::Hours(24 * 3650);

  auto root_key = LoadOrCreateKey(pki.Path("root.key"));
  if (!root_key.ok()) return root_key.status();
  pki.root_key = *root_key;
  auto root_spec = Spec("Sphere Platform Root CA", root_key->PublicKey(),
                        crypto::KeyUsage::kCa, kTenYears);
  auto root = LoadOrIssueCert(pki.Path("root.pem"), root_spec, *root_key, "");
  if (!root.ok()) return root.status();
  pki.root_pem = *root;

  auto mfg_key = LoadOrCreateKey(pki.Path("manufacturing.key"));
  if (!mfg_key.ok()) return mfg_key.status();
  pki.manufacturing_key = *mfg_key;
  auto mfg_spec = Spec("Sphere Manufacturing CA", mfg_key->PublicKey(),
                       crypto::KeyUsage::kCa, kTenYears);
  mfg_spec.path_len = 0;
  auto mfg = LoadOrIssueCert(pki.Path("manufacturing.pem"), mfg_spec, *root_key,
                             pki.root_pem);
  if (!mfg.ok()) return mfg.status();
  pki.manufacturing_pem = *mfg;

  auto img = LoadOrCreateKey(pki.Path("image-signing.key"));
  if (!img.ok()) return img.status();
  pki.image_signing_key = *img;
  if (!Exists(pki.Path("image-signing.pub.pem"))) {
    if (auto s = util::WriteFile(pki.Path("image-signing.pub.pem"),
                                 crypto::PublicKeyToPem(img->PublicKey()));
        !s.ok()) {
      return s;
    }
  }

  auto master =
      LoadMasterKey(master_source, state_dir, create, &pki.master_key_origin);
  if (master.ok()) {
    pki.master_key = *std::move(master);
  } else if (master_source.required || !absl::IsNotFound(master.status())) {
    return master.status();
  }

  // Service certificate: every server of the local cluster presents it.
  auto server_key = LoadOrCreateKey(pki.Path("server.key"));
  if (!server_key.ok()) return server_key.status();
  auto server_spec = Spec("sphere-services", server_key->PublicKey(),
                          crypto::KeyUsage::kServerAuth, kTenYears);
  server_spec.dns_sans = {"localhost"};
  server_spec.ip_sans = {"127.0.0.1"};
  // No claims: the service certificate authenticates servers only. Shards
  // reach management with shard.pem; a holder of the server key must not be
  // able to act as a shard.
  if (auto c = LoadOrIssueCert(pki.Path("server.pem"), server_spec, *root_key,
                               pki.root_pem);
      !c.ok()) {
    return c.status();
  }
  crypto::DeviceClaims op;
  op.scope = std::string(auth::ScopeName(auth::Scope::kPlatformOperator));
  if (!Exists(pki.Path("operator.pem"))) {
    if (auto s =
            IssueClientCredential(pki, "operator", "platform-operator", op);
        !s.ok()) {
      return s;
    }
  }
  crypto::DeviceClaims shard;
  shard.scope = std::string(auth::ScopeName(auth::Scope::kShard));
  if (!Exists(pki.Path("shard.pem"))) {
    if (auto s = IssueClientCredential(pki, "shard", "sphere-shard", shard);
        !s.ok()) {
      return s;
    }
  }
  crypto::DeviceClaims gateway;
  gateway.scope = std::string(auth::ScopeName(auth::Scope::kGateway));
  if (!Exists(pki.Path("gateway.pem"))) {
    if (auto s =
            IssueClientCredential(pki, "gateway", "sphere-gateway", gateway);
        !s.ok()) {
      return s;
    }
  }
  return pki;
}

}  // namespace

std::string ClusterPki::Path(absl::string_view name) const {
  // `dir` is cluster::PkiDir(state_dir) (set by Bootstrap/Load).
  return absl::StrCat(dir, "/", name);
}

absl::StatusOr<rpc::TlsFiles> ClusterPki::TlsFor(absl::string_view name) const {
  rpc::TlsFiles t;
  if (auto s = CheckPrivateFile(Path(absl::StrCat(name, ".key"))); !s.ok()) {
    return s;
  }
  auto cert = util::ReadFile(Path(absl::StrCat(name, ".pem")));
  if (!cert.ok()) return cert.status();
  auto key = util::ReadFile(Path(absl::StrCat(name, ".key")));
  if (!key.ok()) return key.status();
  t.cert_pem = *cert;
  t.key_pem = *key;
  t.ca_pem = root_pem;
  return t;
}

std::string ClusterPki::SessionTokenKey() const {
  return crypto::HmacSha256(master_key, "sphere-session-token-key-v1");
}

absl::Status IssueClientCredential(const ClusterPki& pki,
                                   absl::string_view name,
                                   absl::string_view common_name,
                                   const crypto::DeviceClaims& claims) {
  auto key = crypto::EcPrivateKey::Generate();
  auto spec = Spec(common_name, key.PublicKey(), crypto::KeyUsage::kClientAuth,
                   absl::Hours(24 * 365));
  spec.claims = claims;
  auto pem = crypto::IssueCertificate(spec, pki.root_key, pki.root_pem);
  if (!pem.ok()) return pem.status();
  if (auto s = util::WriteFile(pki.Path(absl::StrCat(name, ".key")),
                               key.ToPem(), 0600);
      !s.ok()) {
    return s;
  }
  return util::WriteFile(pki.Path(absl::StrCat(name, ".pem")), *pem);
}

absl::StatusOr<ClusterPki> Bootstrap(const std::string& state_dir,
                                     const MasterKeySource& master_key) {
  return LoadOrCreate(state_dir, master_key, /*create=*/true);
}

absl::StatusOr<ClusterPki> Load(const std::string& state_dir,
                                const MasterKeySource& master_key) {
  return LoadOrCreate(state_dir, master_key, /*create=*/false);
}

absl::Status CheckPrivateFile(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(
        absl::StrCat("cannot read ", path, ": ", strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is not a regular file; a key must be one"));
  }
  if ((st.st_mode & 0027) != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "refusing key file %s: mode %04o lets other users %s it; run "
        "'chmod 600 %s' (and check who could have copied it)",
        path, st.st_mode & 07777, (st.st_mode & 0004) ? "read" : "write",
        path));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> LoadMasterKey(const MasterKeySource& source,
                                          const std::string& state_dir,
                                          bool create, std::string* origin) {
  if (!source.file.empty() && !source.env.empty()) {
    return absl::InvalidArgumentError(
        "give either --master-key-file or --master-key-env, not both");
  }
  std::string path;
  if (!source.env.empty()) {
    const std::string what = absl::StrCat("environment variable ", source.env);
    if (origin) *origin = what;
    const char* value = getenv(source.env.c_str());
    if (value == nullptr || *value == '\0') {
      return absl::FailedPreconditionError(absl::StrCat(
          what,
          " (--master-key-env) is not set; set it to the cluster's "
          "master key as 64 hex digits"));
    }
    return DecodeKey(value, what);
  }
  if (!source.file.empty()) {
    path = source.file;
  } else if (const char* creds = getenv("CREDENTIALS_DIRECTORY");
             creds != nullptr && *creds != '\0' &&
             Exists(absl::StrCat(creds, "/master.key"))) {
    path = absl::StrCat(creds, "/master.key");
  } else {
    path = cluster::PkiPath(state_dir, "master.key");
  }
  if (origin) *origin = absl::StrCat("file ", path);
  if (!Exists(path)) {
    if (!create) {
      return absl::NotFoundError(absl::StrCat(
          "no master key at ", path,
          ": point --master-key-file or --master-key-env at the key the "
          "cluster was bootstrapped with"));
    }
    std::string key = crypto::RandomBytes(32);
    if (auto s = util::WriteFile(path, key, 0600); !s.ok()) return s;
    log::Info("created master key", {{"path", path}});
    return key;
  }
  if (auto s = CheckPrivateFile(path); !s.ok()) return s;
  auto text = util::ReadFile(path);
  if (!text.ok()) return text.status();
  return DecodeKey(*text, absl::StrCat("file ", path));
}

}  // namespace sphere::pki
