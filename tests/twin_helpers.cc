#include "tests/twin_helpers.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/crypto/crypto.h"
#include "common/util/file.h"
#include "mcu-model/device_type.h"
#include "mcu-model/image.h"
#include "twin/attestation_client.h"
#include "twin/state_file.h"

namespace sphere::testing {

std::string PlatformSigningKey(const LocalCluster& cluster) {
  auto pem = util::ReadFile(cluster.dir() + "/pki/image-signing.pub.pem");
  EXPECT_TRUE(pem.ok()) << pem.status();
  if (!pem.ok()) return "";
  auto key = crypto::PublicKeyFromPem(*pem);
  EXPECT_TRUE(key.ok()) << key.status();
  return key.ok() ? *key : "";
}

std::vector<v1::ImagePackage> FactoryImages(const LocalCluster& cluster) {
  std::vector<v1::ImagePackage> images;
  for (const auto& comp : mcu::BootChainComponents()) {
    auto bytes = util::ReadFile(
        absl::StrCat(cluster.dir(), "/images/os-1/", comp, ".pkg"));
    v1::ImagePackage pkg;
    EXPECT_TRUE(bytes.ok() && pkg.ParseFromString(*bytes));
    images.push_back(pkg);
  }
  return images;
}

std::unique_ptr<mcu::Device> ManufactureBooted(
    const std::string& seed, const std::string& rom_key,
    const std::vector<v1::ImagePackage>& images) {
  auto dev = mcu::Device::Manufacture(mcu::DeviceType::Mt3620(), rom_key,
                                      {.seed = seed});
  EXPECT_TRUE(dev.ok()) << dev.status();
  if (!dev.ok()) return nullptr;
  EXPECT_TRUE((*dev)->InstallFactoryImages(images).ok());
  EXPECT_TRUE((*dev)->Boot().ok());
  return std::move(*dev);
}

std::unique_ptr<mcu::Device> ManufactureGenuine(const LocalCluster& cluster,
                                                const std::string& seed) {
  return ManufactureBooted(seed, PlatformSigningKey(cluster),
                           FactoryImages(cluster));
}

void RegisterAndClaim(LocalCluster* cluster, const std::string& tenant_id,
                      const mcu::Device& dev) {
  EXPECT_TRUE(cluster->ImportDevice(dev.public_key()).ok());
  auto claimed = cluster->Claim(tenant_id, dev.device_id());
  EXPECT_TRUE(claimed.ok()) << claimed.status();
}

int64_t CatalogRevision(LocalCluster* cluster) {
  auto r = cluster->ManagementRevision();
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : 0;
}

bool CatalogCatchingUp(absl::StatusCode code, absl::string_view message) {
  return code == absl::StatusCode::kUnavailable &&
         absl::StrContains(message, "catalog");
}

absl::Status WaitForShardRevision(const LocalCluster& cluster, int shard,
                                  int64_t revision, absl::Duration limit) {
  const cluster::ShardEndpoint& s = cluster.config().shards.at(shard);
  const std::string gauge =
      absl::StrCat("sphere_catalog_applied_revision{follower=\"", s.id, "\"} ");
  const absl::Time deadline = absl::Now() + limit;
  double applied = -1;
  std::string last_error;
  while (true) {
    auto text = cluster.Metrics(s.address);
    if (text.ok()) {
      for (absl::string_view line : absl::StrSplit(*text, '\n')) {
        if (absl::ConsumePrefix(&line, gauge)) {
          (void)absl::SimpleAtod(line, &applied);
        }
      }
      if (applied >= static_cast<double>(revision)) return absl::OkStatus();
    } else {
      last_error = text.status().ToString();
    }
    if (absl::Now() >= deadline) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return absl::DeadlineExceededError(absl::StrCat(
      s.id, " did not apply catalog revision ", revision, " within ",
      absl::FormatDuration(limit), " (applied ", applied, ") ", last_error));
}

grpc::Status GetChallenge(LocalCluster* cluster, int shard,
                          const std::string& device_id,
                          v1::GetChallengeResponse* resp) {
  auto stub = cluster->ShardStub(shard, cluster->GatewayTls());
  v1::GetChallengeRequest req;
  req.set_device_id(device_id);
  req.set_min_catalog_revision(CatalogRevision(cluster));
  const absl::Time deadline = absl::Now() + kCatalogCatchUp;
  while (true) {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(kCallDeadline));
    grpc::Status st = stub->GetChallenge(&ctx, req, resp);
    if (!CatalogCatchingUp(static_cast<absl::StatusCode>(st.error_code()),
                           st.error_message()) ||
        absl::Now() >= deadline) {
      return st;
    }
    absl::SleepFor(absl::Milliseconds(100));  // the shard said: retry
  }
}

int OwnerShard(LocalCluster* cluster, const std::string& device_id) {
  for (size_t i = 0; i < cluster->config().shards.size(); ++i) {
    v1::GetChallengeResponse resp;
    if (GetChallenge(cluster, i, device_id, &resp).ok()) return i;
  }
  return -1;
}

grpc::Status SendAttest(const LocalCluster& cluster, int shard,
                        const v1::AttestRequest& req,
                        v1::AttestResponse* resp) {
  auto stub = cluster.ShardStub(shard, cluster.GatewayTls());
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(kCallDeadline));
  return stub->Attest(&ctx, req, resp);
}

grpc::Status AttestWithNonce(const LocalCluster& cluster, int shard,
                             mcu::Device& dev, const std::string& nonce,
                             v1::AttestResponse* resp) {
  auto quote = dev.Quote(nonce);
  EXPECT_TRUE(quote.ok()) << quote.status();
  v1::AttestRequest req;
  req.set_device_id(dev.device_id());
  *req.mutable_quote() = *quote;
  return SendAttest(cluster, shard, req, resp);
}

absl::StatusOr<v1::AttestResponse> AttestViaClient(LocalCluster* cluster,
                                                   mcu::Device* dev) {
  twin::AttestationClient client(cluster->config().shards,
                                 cluster->GatewayTls(), kCallDeadline);
  auto revision = cluster->ManagementRevision();
  if (!revision.ok()) return revision.status();
  const absl::Time deadline = absl::Now() + kCatalogCatchUp;
  while (true) {
    auto r = client.Attest(
        dev->device_id(), [dev](absl::string_view n) { return dev->Quote(n); },
        *revision);
    if (r.ok() || !CatalogCatchingUp(r.status().code(), r.status().message()) ||
        absl::Now() >= deadline) {
      return r;
    }
    absl::SleepFor(absl::Milliseconds(100));  // the shard said: retry
  }
}

rpc::TlsFiles TwinProcessTls(const LocalCluster& cluster,
                             const std::string& name) {
  rpc::TlsFiles tls;
  auto state = twin::ReadTwinState(twin::TwinStatePath(cluster.dir(), name));
  EXPECT_TRUE(state.ok()) << state.status();
  if (!state.ok()) return tls;
  auto dev =
      mcu::Device::Restore(mcu::DeviceType::Mt3620(),
                           state->rom_image_signing_key(), state->device(), {});
  EXPECT_TRUE(dev.ok()) << dev.status();
  if (!dev.ok()) return tls;
  tls.cert_pem = state->manufacturing_chain_pem();
  tls.key_pem = (*dev)->ExportCertificateKeyForTls();
  auto root = util::ReadFile(cluster.config().root_ca);
  EXPECT_TRUE(root.ok()) << root.status();
  tls.ca_pem = root.ok() ? *root : "";
  return tls;
}

}  // namespace sphere::testing
