// spherectl cluster status and ca-certificate download.
#include <grpcpp/generic/generic_stub.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "common/util/file.h"

namespace sphere::cli {
namespace {

using S = v1::ManagementService::Stub;

// Health asks grpc.health.v1.Health/Check("") through a generic stub (so the
// CLI needs no health proto): "SERVING", "NOT_SERVING" or the failure.
std::string Health(const std::string& address, const std::string& server_name,
                   const rpc::TlsFiles& tls, absl::Duration timeout) {
  grpc::GenericStub stub(rpc::NewChannel(address, tls, server_name));
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(timeout));
  grpc::CompletionQueue cq;
  grpc::ByteBuffer request, response;  // empty HealthCheckRequest
  grpc::Slice empty("");
  request = grpc::ByteBuffer(&empty, 1);
  auto call =
      stub.PrepareUnaryCall(&ctx, "/grpc.health.v1.Health/Check", request, &cq);
  call->StartCall();
  grpc::Status status;
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag;
  bool ok;
  cq.Next(&tag, &ok);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  if (!status.ok()) return absl::StrCat("DOWN (", status.error_message(), ")");
  std::vector<grpc::Slice> slices;
  (void)response.Dump(&slices);
  std::string bytes;
  for (const auto& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  // HealthCheckResponse { ServingStatus status = 1; } SERVING = 1.
  if (bytes.size() == 2 && bytes[0] == 0x08 && bytes[1] == 0x01) {
    return "SERVING";
  }
  return "NOT_SERVING";
}

absl::Status Status(Context& c) {
  v1::ShardMap map;
  if (auto s = c.Call(&S::GetShardMap, v1::GetShardMapRequest(), &map);
      !s.ok()) {
    return s;
  }
  const Cluster& cluster = c.cluster();
  std::string mgmt = Health(cluster.management, cluster.management_server_name,
                            cluster.credential, c.timeout());
  // Shards known to the map, plus any only listed in the cluster file.
  std::vector<v1::Shard> shards(map.shards().begin(), map.shards().end());
  for (const cluster::ShardEndpoint& e : cluster.shards) {
    bool known = false;
    for (const auto& s : shards) known |= s.id() == e.id;
    if (!known) {
      v1::Shard s;
      s.set_id(e.id);
      s.set_address(e.address);
      shards.push_back(s);
    }
  }
  std::sort(
      shards.begin(), shards.end(),
      [](const v1::Shard& a, const v1::Shard& b) { return a.id() < b.id(); });
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"management", cluster.management, mgmt, "-"});
  // The catalog revision: pass it to 'twin attest --min_catalog_revision'
  // to attest against a catalog that includes every change made so far.
  v1::CatalogRevision catalog_revision;
  if (auto s = c.Call(&S::GetCatalogRevision, v1::GetCatalogRevisionRequest(),
                      &catalog_revision);
      !s.ok()) {
    return s;
  }
  json j = {{"management", {{"address", cluster.management}, {"health", mgmt}}},
            {"catalog_revision", catalog_revision.revision()},
            {"shard_map_revision", map.revision()},
            {"virtual_nodes", map.virtual_nodes()},
            {"shards", json::array()}};
  for (const v1::Shard& s : shards) {
    std::string health =
        Health(s.address(), cluster::ServerNameAt(cluster.shards, s.address()),
               cluster.credential, c.timeout());
    rows.push_back(
        {s.id(), s.address(), health, absl::StrCat(s.device_count())});
    j["shards"].push_back({{"id", s.id()},
                           {"address", s.address()},
                           {"health", health},
                           {"device_count", s.device_count()}});
  }
  c.printer().Print({"NAME", "ADDRESS", "HEALTH", "DEVICES"}, rows, j);
  if (!c.printer().json_output()) {
    std::cout << "catalog revision " << catalog_revision.revision() << "\n";
  }
  return absl::OkStatus();
}

}  // namespace

void AddClusterCommands(CLI::App* app, Context* ctx) {
  CLI::App* noun = Noun(app, "cluster", "the local cluster");
  Verb(noun, ctx, "status",
       "health of management and each shard, devices per shard, and the "
       "catalog revision",
       Access::kPlatform, Status);
}

void AddCaCertificateCommands(CLI::App* app, Context* ctx) {
  CLI::App* noun =
      Noun(app, "ca-certificate", "the tenant CA chain relying parties trust");
  struct Args {
    std::string destination;
    bool include_root = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* download = Verb(
      noun, ctx, "download", "write the tenant CA certificate (PEM) to a file",
      Access::kTenant, [a](Context& c) -> absl::Status {
        v1::GetCaCertificateRequest req;
        req.set_tenant_id(c.TenantField());
        v1::CaCertificate ca;
        if (auto s = c.Call(&S::GetCaCertificate, req, &ca); !s.ok()) return s;
        std::string pem = ca.tenant_ca_pem();
        if (a->include_root) pem += ca.root_ca_pem();
        if (auto s = util::WriteFile(a->destination, pem); !s.ok()) return s;
        std::cout << "wrote " << a->destination << "\n";
        return absl::OkStatus();
      });
  download->add_option("--destination", a->destination, "output file")
      ->required();
  download->add_flag("--include-root", a->include_root,
                     "append the platform root certificate");
}

}  // namespace sphere::cli
