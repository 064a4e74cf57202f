#include "common/cluster/cluster_config.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/util/file.h"

namespace sphere::cluster {

std::string ClusterConfig::ToJson() const {
  nlohmann::ordered_json j;
  j["state_dir"] = state_dir;
  j["management"] = management;
  j["shards"] = nlohmann::json::array();
  for (const auto& s : shards) {
    j["shards"].push_back({{"id", s.id}, {"address", s.address}});
  }
  j["root_ca"] = root_ca;
  j["operator_cert"] = operator_cert;
  j["operator_key"] = operator_key;
  if (!appsvc.empty()) j["appsvc"] = appsvc;
  if (!appsvc_web.empty()) j["appsvc_web"] = appsvc_web;
  if (!twins.empty()) {
    j["twins"] = nlohmann::json::object();
    for (const auto& [name, address] : twins) j["twins"][name] = address;
  }
  j["tenants"] = nlohmann::json::object();
  for (const auto& [name, ck] : tenants) {
    j["tenants"][name] = {{"cert", ck.first}, {"key", ck.second}};
  }
  j["metrics"] = nlohmann::json::object();
  for (const auto& [name, address] : metrics) j["metrics"][name] = address;
  if (!management_replicas.empty()) {
    j["management_replicas"] = management_replicas;
  }
  if (!etcd.empty()) j["etcd"] = etcd;
  j["server_name"] = server_name;
  if (!server_names.empty()) {
    j["server_names"] = nlohmann::json::object();
    for (const auto& [name, sn] : server_names) j["server_names"][name] = sn;
  }
  return j.dump(2) + "\n";
}

absl::StatusOr<ClusterConfig> ParseClusterConfig(const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("cluster.json is not a JSON object");
  }
  ClusterConfig c;
  auto str = [&](const char* k) -> std::string {
    auto it = j.find(k);
    return it != j.end() && it->is_string() ? it->get<std::string>() : "";
  };
  c.state_dir = str("state_dir");
  c.management = str("management");
  c.root_ca = str("root_ca");
  c.operator_cert = str("operator_cert");
  c.operator_key = str("operator_key");
  c.appsvc = str("appsvc");
  c.appsvc_web = str("appsvc_web");
  if (auto it = j.find("twins"); it != j.end() && it->is_object()) {
    for (const auto& [name, v] : it->items()) {
      if (v.is_string()) c.twins[name] = v.get<std::string>();
    }
  }
  if (auto it = j.find("shards"); it != j.end() && it->is_array()) {
    for (const auto& s : *it) {
      if (!s.is_object()) continue;
      c.shards.push_back({s.value("id", ""), s.value("address", "")});
    }
  }
  if (auto it = j.find("tenants"); it != j.end() && it->is_object()) {
    for (const auto& [name, v] : it->items()) {
      if (!v.is_object()) continue;
      c.tenants[name] = {v.value("cert", ""), v.value("key", "")};
    }
  }
  if (auto it = j.find("metrics"); it != j.end() && it->is_object()) {
    for (const auto& [name, v] : it->items()) {
      if (v.is_string()) c.metrics[name] = v.get<std::string>();
    }
  }
  for (auto [key, out] :
       {std::pair{"management_replicas", &c.management_replicas},
        std::pair{"etcd", &c.etcd}}) {
    if (auto it = j.find(key); it != j.end() && it->is_array()) {
      for (const auto& v : *it) {
        if (v.is_string()) out->push_back(v.get<std::string>());
      }
    }
  }
  if (std::string sn = str("server_name"); !sn.empty()) c.server_name = sn;
  if (auto it = j.find("server_names"); it != j.end() && it->is_object()) {
    for (const auto& [name, v] : it->items()) {
      if (v.is_string()) c.server_names[name] = v.get<std::string>();
    }
  }
  for (ShardEndpoint& s : c.shards) s.server_name = c.ServerName(s.id);
  for (const auto& [name, sn] : c.server_names) {
    if (sn.size() > kMaxServerNameBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("cluster.json server_names[", name.substr(0, 64),
                       "] is longer than ", kMaxServerNameBytes, " bytes"));
    }
  }
  if (c.server_name.size() > kMaxServerNameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("cluster.json server_name is longer than ",
                     kMaxServerNameBytes, " bytes"));
  }
  if (c.management.empty() || c.root_ca.empty()) {
    return absl::InvalidArgumentError(
        "cluster.json lacks \"management\" or \"root_ca\": is the cluster "
        "running? start it with './sphere up'");
  }
  return c;
}

namespace {

// Resolve makes `path` absolute against `base_dir` (empty stays empty).
std::string Resolve(const std::string& base_dir, const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  return absl::StrCat(base_dir, "/", path);
}

}  // namespace

ClusterConfig::CredentialPaths ClusterConfig::CredentialFor(
    const std::string& tenant) const {
  if (!tenant.empty()) {
    if (auto it = tenants.find(tenant); it != tenants.end()) {
      return {it->second.first, it->second.second, true};
    }
  }
  return {operator_cert, operator_key, false};
}

std::string ClusterConfig::ServerName(const std::string& process) const {
  if (auto it = server_names.find(process); it != server_names.end()) {
    return it->second;
  }
  return server_name;
}

absl::StatusOr<Endpoint> ClusterConfig::EndpointOf(
    const std::string& process) const {
  std::string address;
  if (process == "management") {
    address = management;
  } else if (process == "appsvc") {
    address = appsvc;
  } else {
    for (const ShardEndpoint& s : shards) {
      if (s.id == process) address = s.address;
    }
  }
  if (address.empty()) {
    return absl::NotFoundError(
        absl::StrCat("the cluster file lists no address for \"",
                     process.substr(0, 64), "\""));
  }
  return Endpoint{address, ServerName(process)};
}

std::string ServerNameAt(const std::vector<ShardEndpoint>& shards,
                         const std::string& address) {
  for (const ShardEndpoint& s : shards) {
    if (s.address == address) return s.server_name;
  }
  if (shards.empty()) return "";
  for (const ShardEndpoint& s : shards) {
    if (s.server_name != shards.front().server_name) return "";
  }
  return shards.front().server_name;
}

std::string ClusterConfigPath(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("SPHERE_CLUSTER");
      env != nullptr && *env != '\0') {
    return env;
  }
  return "cluster.json";
}

absl::StatusOr<ClusterConfig> LoadClusterConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(
        "cannot read cluster file ", path,
        ": start a cluster with './sphere up' or pass --cluster FILE"));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  auto c = ParseClusterConfig(ss.str());
  if (!c.ok()) {
    return absl::Status(c.status().code(),
                        absl::StrCat(path, ": ", c.status().message()));
  }
  const std::string dir = path.find('/') == std::string::npos
                              ? "."
                              : path.substr(0, path.rfind('/'));
  if (c->state_dir.empty()) c->state_dir = dir;
  for (std::string* p : {&c->root_ca, &c->operator_cert, &c->operator_key}) {
    *p = Resolve(dir, *p);
  }
  for (auto& [name, ck] : c->tenants) {
    ck.first = Resolve(dir, ck.first);
    ck.second = Resolve(dir, ck.second);
  }
  return c;
}

namespace {

// FileLock holds an exclusive flock on `path` (created 0600) while alive.
class FileLock {
 public:
  explicit FileLock(const std::string& path)
      : fd_(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600)) {
    if (fd_ >= 0 && flock(fd_, LOCK_EX) != 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  ~FileLock() {
    if (fd_ >= 0) close(fd_);  // closing releases the lock
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  bool ok() const { return fd_ >= 0; }

 private:
  int fd_;
};

}  // namespace

absl::Status RecordTenantCredential(const std::string& path,
                                    const std::string& tenant,
                                    const std::string& cert_path,
                                    const std::string& key_path) {
  for (const std::string* field : {&tenant, &cert_path, &key_path}) {
    if (field->empty() || field->size() > kMaxTenantEntryBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tenant credential entry: tenant name and paths must be 1..",
          kMaxTenantEntryBytes, " bytes"));
    }
  }
  FileLock lock(path + ".lock");
  if (!lock.ok()) {
    return absl::InternalError(
        absl::StrCat("cannot lock ", path, ".lock: errno ", errno));
  }
  absl::StatusOr<std::string> text = util::ReadFile(path);
  if (!text.ok()) return text.status();
  // The file must be a cluster file (the one parser says so), but it is
  // edited as JSON so entries this build does not know survive.
  if (auto parsed = ParseClusterConfig(*text); !parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", parsed.status().message()));
  }
  nlohmann::ordered_json j =
      nlohmann::ordered_json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cluster file ", path, " is not a JSON object"));
  }
  if (!j.contains("tenants") || !j["tenants"].is_object()) {
    j["tenants"] = nlohmann::ordered_json::object();
  }
  j["tenants"][tenant] = {{"cert", cert_path}, {"key", key_path}};
  return util::WriteFile(path, j.dump(2) + "\n");
}

}  // namespace sphere::cluster
