#include "securitysvc/local_cluster_etcd.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/cluster/pki_layout.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/util/file.h"

namespace sphere {
namespace {

absl::Status WritePrivate(const std::string& path, const std::string& data) {
  if (auto s = util::WriteFile(path, data); !s.ok()) return s;
  chmod(path.c_str(), 0600);
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadOrEmpty(const std::string& path) {
  if (access(path.c_str(), F_OK) != 0) return std::string();
  return util::ReadFile(path);
}

struct Pem {
  std::string cert;
  std::string key;
};

// EtcdPki creates (once) DIR/pki/etcd/{ca,server,client}.{pem,key}.
absl::StatusOr<Pem> Issue(const crypto::EcPrivateKey& ca_key,
                          const std::string& ca_pem, const std::string& cn,
                          crypto::KeyUsage usage) {
  crypto::EcPrivateKey key = crypto::EcPrivateKey::Generate();
  crypto::CertificateSpec spec;
  spec.common_name = cn;
  spec.subject_public_key = key.PublicKey();
  spec.not_before = absl::Now() - absl::Hours(1);
  spec.not_after = absl::Now() + absl::Hours(24 * 365);
  spec.usage = usage;
  spec.dns_sans = {"localhost"};
  spec.ip_sans = {"127.0.0.1"};
  absl::StatusOr<std::string> pem =
      crypto::IssueCertificate(spec, ca_key, ca_pem);
  if (!pem.ok()) return pem.status();
  return Pem{*pem, key.ToPem()};
}

}  // namespace

absl::StatusOr<EtcdCatalog> StartEtcdCatalog(const std::string& dir,
                                             int members) {
  const std::string tls = cluster::PkiPath(dir, "etcd");
  if (auto s = util::MakeDirs(tls, 0700); !s.ok()) return s;
  if (access((tls + "/client.key").c_str(), F_OK) != 0) {
    crypto::EcPrivateKey ca_key = crypto::EcPrivateKey::Generate();
    crypto::CertificateSpec spec;
    spec.common_name = "Sphere local etcd CA";
    spec.subject_public_key = ca_key.PublicKey();
    spec.not_before = absl::Now() - absl::Hours(1);
    spec.not_after = absl::Now() + absl::Hours(24 * 365 * 5);
    spec.usage = crypto::KeyUsage::kCa;
    absl::StatusOr<std::string> ca_pem =
        crypto::IssueCertificate(spec, ca_key, "");
    if (!ca_pem.ok()) return ca_pem.status();
    absl::StatusOr<Pem> server =
        Issue(ca_key, *ca_pem, "etcd", crypto::KeyUsage::kServerAndClientAuth);
    absl::StatusOr<Pem> client = Issue(ca_key, *ca_pem, "sphere-management",
                                       crypto::KeyUsage::kClientAuth);
    if (!server.ok()) return server.status();
    if (!client.ok()) return client.status();
    for (auto [name, data] :
         {std::pair{"ca.pem", *ca_pem}, std::pair{"server.pem", server->cert},
          std::pair{"server.key", server->key},
          std::pair{"client.pem", client->cert},
          std::pair{"client.key", client->key}}) {
      if (auto s = WritePrivate(absl::StrCat(tls, "/", name), data); !s.ok()) {
        return s;
      }
    }
  }
  management::EtcdClusterOptions o;
  o.members = members;
  o.data_dir = dir + "/etcd";
  if (auto s = util::MakeDirs(o.data_dir, 0700); !s.ok()) return s;
  for (auto [field, name] : {std::pair{&o.ca_pem, "ca.pem"},
                             std::pair{&o.server_cert_pem, "server.pem"},
                             std::pair{&o.server_key_pem, "server.key"},
                             std::pair{&o.client_cert_pem, "client.pem"},
                             std::pair{&o.client_key_pem, "client.key"}}) {
    absl::StatusOr<std::string> pem =
        util::ReadFile(absl::StrCat(tls, "/", name));
    if (!pem.ok()) return pem.status();
    *field = *std::move(pem);
  }
  // Reuse the ports of an earlier run (etcd remembers its peers' URLs).
  const std::string ports_file = o.data_dir + "/ports";
  absl::StatusOr<std::string> ports = ReadOrEmpty(ports_file);
  if (!ports.ok()) return ports.status();
  for (absl::string_view line :
       absl::StrSplit(*ports, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> pair = absl::StrSplit(line, ' ');
    int c = 0, p = 0;
    if (pair.size() == 2 && absl::SimpleAtoi(pair[0], &c) &&
        absl::SimpleAtoi(pair[1], &p)) {
      o.ports.push_back({c, p});
    }
  }
  if (static_cast<int>(o.ports.size()) != members) o.ports.clear();
  absl::StatusOr<std::unique_ptr<management::EtcdCluster>> cluster =
      management::EtcdCluster::Start(o);
  if (!cluster.ok()) return cluster.status();
  std::string out;
  for (auto [c, p] : (*cluster)->ports())
    absl::StrAppend(&out, c, " ", p, "\n");
  if (auto s = util::WriteFile(ports_file, out); !s.ok()) return s;
  EtcdCatalog catalog;
  catalog.management_flags = {
      absl::StrCat("--catalog=", (*cluster)->Url()),
      absl::StrCat("--etcd_ca=", tls, "/ca.pem"),
      absl::StrCat("--etcd_cert=", tls, "/client.pem"),
      absl::StrCat("--etcd_key=", tls, "/client.key"),
      absl::StrCat("--etcd_max_txn_ops=", o.max_txn_ops),
  };
  catalog.cluster = *std::move(cluster);
  return catalog;
}

}  // namespace sphere
