#include "cli/context.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/cluster/cluster_config.h"
#include "common/util/file.h"

namespace sphere::cli {
namespace {

absl::StatusOr<std::string> ReadNamed(const std::string& what,
                                      const std::string& path) {
  if (path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cluster file has no ", what, " path"));
  }
  absl::StatusOr<std::string> s = util::ReadFile(path);
  if (!s.ok()) {
    return absl::Status(s.status().code(),
                        absl::StrCat("cannot read ", what, " ", path, ": ",
                                     s.status().message()));
  }
  return s;
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

}  // namespace

absl::StatusOr<Cluster> LoadCluster(const std::string& path,
                                    const std::string& tenant) {
  absl::StatusOr<cluster::ClusterConfig> config =
      cluster::LoadClusterConfig(path);
  if (!config.ok()) return config.status();
  Cluster c;
  c.path = path;
  c.state_dir = config->state_dir;
  absl::StatusOr<cluster::Endpoint> management =
      config->EndpointOf("management");
  if (!management.ok()) return management.status();
  c.management = management->address;
  c.management_server_name = management->server_name;
  c.shards = config->shards;
  const cluster::ClusterConfig::CredentialPaths paths =
      config->CredentialFor(tenant);
  c.tenant_credential = paths.tenant_credential;
  auto ca = ReadNamed("root_ca", config->root_ca);
  if (!ca.ok()) return ca.status();
  auto cert = ReadNamed("operator certificate", paths.cert);
  if (!cert.ok()) return cert.status();
  auto key = ReadNamed("operator key", paths.key);
  if (!key.ok()) return key.status();
  c.credential = {*cert, *key, *ca};
  return c;
}

std::string ConfigPath() {
  if (std::string p = Env("SPHERECTL_CONFIG"); !p.empty()) return p;
  if (std::string x = Env("XDG_CONFIG_HOME"); !x.empty()) {
    return x + "/sphere/spherectl.json";
  }
  return Env("HOME") + "/.config/sphere/spherectl.json";
}

std::string SelectedTenant() {
  absl::StatusOr<std::string> text = util::ReadFile(ConfigPath());
  if (!text.ok()) return "";
  json j = json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return "";
  auto it = j.find("tenant");
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

absl::Status SaveSelectedTenant(const std::string& tenant) {
  const std::string path = ConfigPath();
  json j = json::object();
  if (absl::StatusOr<std::string> text = util::ReadFile(path); text.ok()) {
    json old = json::parse(*text, nullptr, false);
    if (!old.is_discarded() && old.is_object()) j = old;
  }
  if (tenant.empty()) {
    j.erase("tenant");
  } else {
    j["tenant"] = tenant;
  }
  if (size_t slash = path.rfind('/'); slash != std::string::npos && slash > 0) {
    if (auto s = util::MakeDirs(path.substr(0, slash), 0700); !s.ok()) return s;
  }
  return util::WriteFile(path, j.dump(2) + "\n", 0600);
}

void Context::SetAction(Access access, Action action) {
  access_ = access;
  action_ = std::move(action);
}

absl::Status Context::Connect() {
  if (options_.output != "table" && options_.output != "json") {
    return absl::InvalidArgumentError(
        absl::StrCat("--output must be table or json, not \"",
                     Escape(options_.output), "\""));
  }
  if (options_.timeout_seconds <= 0) {
    return absl::InvalidArgumentError(
        "--timeout must be a positive number "
        "of seconds");
  }
  timeout_ = absl::Seconds(options_.timeout_seconds);
  printer_ = std::make_unique<Printer>(options_.output == "json");
  tenant_ = options_.tenant;
  if (tenant_.empty()) tenant_ = Env("SPHERE_TENANT");
  if (tenant_.empty() && access_ == Access::kTenant) tenant_ = SelectedTenant();
  if (auto s = CheckName("tenant", tenant_); !s.ok()) return s;
  absl::StatusOr<Cluster> c =
      LoadCluster(cluster::ClusterConfigPath(options_.cluster), tenant_);
  if (!c.ok()) return c.status();
  cluster_ = *std::move(c);
  stub_ = v1::ManagementService::NewStub(
      rpc::NewChannel(cluster_.management, cluster_.credential,
                      cluster_.management_server_name));
  return absl::OkStatus();
}

absl::Status Context::Run() {
  if (!action_) {
    return absl::InvalidArgumentError("no command given; see --help");
  }
  if (auto s = Connect(); !s.ok()) return s;
  // Two spherectl processes that lost the same race retry apart.
  retry_.jitter_seed = static_cast<uint64_t>(getpid()) * 0x9e3779b97f4a7c15ull ^
                       static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
  return action_(*this);
}

absl::Status Context::MapStatus(const grpc::Status& s) const {
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
    return absl::UnavailableError(absl::StrCat(
        "management at ", cluster_.management,
        " is unreachable: ", s.error_message(), " (is the cluster running?)"));
  }
  if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return absl::DeadlineExceededError(absl::StrCat(
        "management at ", cluster_.management, " did not answer within ",
        absl::FormatDuration(timeout_)));
  }
  return rpc::FromGrpcStatus(s);
}

CLI::App* Verb(CLI::App* noun, Context* ctx, const std::string& name,
               const std::string& help, Access access, Context::Action action) {
  CLI::App* verb = noun->add_subcommand(name, help);
  verb->callback([ctx, access, action = std::move(action)] {
    ctx->SetAction(access, action);
  });
  return verb;
}

CLI::App* Noun(CLI::App* app, const std::string& name,
               const std::string& help) {
  CLI::App* noun = app->add_subcommand(name, help);
  noun->require_subcommand(1);
  return noun;
}

}  // namespace sphere::cli
