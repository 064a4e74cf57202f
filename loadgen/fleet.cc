#include "loadgen/fleet.h"

#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/cluster/pki_layout.h"
#include "common/crypto/crypto.h"
#include "common/util/file.h"
#include "mcu-model/image.h"

namespace sphere::loadgen {

absl::StatusOr<uint64_t> ReadProcessRss(pid_t pid) {
  const std::string path =
      pid == 0 ? "/proc/self/status" : absl::StrCat("/proc/", pid, "/status");
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view rest = line;
    if (absl::ConsumePrefix(&rest, "VmRSS:")) {
      absl::string_view v = absl::StripAsciiWhitespace(rest);
      absl::ConsumeSuffix(&v, " kB");
      uint64_t kb = 0;
      if (!absl::SimpleAtoi(v, &kb)) break;
      return kb * 1024;
    }
  }
  return absl::InternalError(absl::StrCat("no VmRSS in ", path));
}

absl::StatusOr<std::unique_ptr<Fleet>> Fleet::Open(FleetOptions options) {
  auto cluster = cluster::LoadClusterConfig(options.cluster_file);
  if (!cluster.ok()) return cluster.status();
  if (cluster->shards.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(options.cluster_file, " lists no shards"));
  }
  std::unique_ptr<Fleet> f(new Fleet(std::move(options)));
  f->cluster_ = std::move(*cluster);
  if (!f->options_.appsvc.empty()) f->cluster_.appsvc = f->options_.appsvc;
  auto root = util::ReadFile(f->cluster_.root_ca);
  if (!root.ok()) return root.status();
  auto read_tls = [&](const std::string& cert,
                      const std::string& key) -> absl::StatusOr<rpc::TlsFiles> {
    auto c = util::ReadFile(cert);
    if (!c.ok()) return c.status();
    auto k = util::ReadFile(key);
    if (!k.ok()) return k.status();
    return rpc::TlsFiles{*c, *k, *root};
  };
  auto op = read_tls(f->cluster_.operator_cert, f->cluster_.operator_key);
  if (!op.ok()) return op.status();
  f->operator_tls_ = *op;
  auto gw = read_tls(cluster::PkiPath(f->cluster_.state_dir, "gateway.pem"),
                     cluster::PkiPath(f->cluster_.state_dir, "gateway.key"));
  if (!gw.ok()) return gw.status();
  f->gateway_tls_ = *gw;
  auto rom_pem = util::ReadFile(
      cluster::PkiPath(f->cluster_.state_dir, "image-signing.pub.pem"));
  if (!rom_pem.ok()) return rom_pem.status();
  auto rom = crypto::PublicKeyFromPem(*rom_pem);
  if (!rom.ok()) return rom.status();
  f->rom_key_ = *rom;
  for (const auto& comp : mcu::BootChainComponents()) {
    const std::string path =
        absl::StrCat(f->cluster_.state_dir, "/images/os-1/", comp, ".pkg");
    auto bytes = util::ReadFile(path);
    if (!bytes.ok()) return bytes.status();
    v1::ImagePackage pkg;
    if (!pkg.ParseFromString(*bytes)) {
      return absl::DataLossError(
          absl::StrCat(path, " is not an image package"));
    }
    f->images_.push_back(mcu::ToStoredImage(pkg));
  }
  absl::StatusOr<cluster::Endpoint> management =
      f->cluster_.EndpointOf("management");
  if (!management.ok()) return management.status();
  f->management_ = v1::ManagementService::NewStub(rpc::NewChannel(
      management->address, f->operator_tls_, management->server_name));
  f->config_.root_ca_pem = *root;
  f->config_.verify_chain = false;
  f->config_.backoff = {absl::Milliseconds(100), 1.6, 0.2, absl::Seconds(5)};
  if (f->options_.keep_certificates) f->config_.keep_certificate = &f->issuers_;
  f->verifying_ = f->config_;
  f->verifying_.verify_chain = true;
  return f;
}

void Fleet::set_min_catalog_revision(int64_t revision) {
  config_.min_catalog_revision = revision;
  verifying_.min_catalog_revision = revision;
}

absl::StatusOr<pid_t> Fleet::ShardPid(const std::string& shard_id) const {
  const std::string path =
      absl::StrCat(cluster_.state_dir, "/run/", shard_id, ".pid");
  auto text = util::ReadFile(path);
  if (!text.ok()) return text.status();
  int pid = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &pid) || pid <= 0) {
    return absl::DataLossError(absl::StrCat(path, " holds no pid"));
  }
  return static_cast<pid_t>(pid);
}

uint64_t Fleet::ShardsRss() const {
  uint64_t total = 0;
  for (const auto& s : cluster_.shards) {
    auto pid = ShardPid(s.id);
    if (!pid.ok()) continue;
    auto rss = ReadProcessRss(*pid);
    if (rss.ok()) total += *rss;
  }
  return total;
}

}  // namespace sphere::loadgen
