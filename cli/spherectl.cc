// spherectl: the operator CLI for a Sphere cluster, modelled on azsphere.
//
//   spherectl [--cluster FILE] [--tenant NAME] [--output table|json]
//             [--timeout SECONDS] NOUN VERB [--option VALUE ...]
//
//   tenant        create --name N | list | show
//                 credential --name N [--operator NAME]   (platform operator)
//                   issues an operator credential scoped to tenant N for a
//                   fresh key, writes DIR/pki/tenants/N.pem and N.key (0600)
//                   and records them under "tenants" in the cluster file, so
//                   '--tenant N' then acts as N's own operator.
//   product       create --name N [--description D] | list | show --product P
//   device-group  create --product P --name N [--os-feed Retail|RetailEval]
//                        [--app-update-policy UpdateAll|No3rdPartyAppUpdates|
//                         NoUpdates] [--description D]
//                 list [--product P] | show --device-group G
//                 update --device-group G [--os-feed F] [--app-update-policy A]
//                        [--description D]
//                 (G is a group id or PRODUCT/GROUP, e.g. DW100/Production)
//   device        claim --device ID | list [--device-group G] | show --device
//   ID
//                 update --device ID --device-group G
//                 revoke --device ID [--reason R]
//                 transfer request --device ID --to-tenant T
//                 transfer accept --device ID
//   ca-certificate download --destination FILE [--include-root]
//   image         upload --file PKG | list
//                   a tenant operator uploads application packages (the
//                   platform re-signs them); the platform operator (no
//                   --tenant) uploads OS components, which must already carry
//                   the platform signature (see //securitysvc:os_builder).
//   os            release --feed Retail|RetailEval --version V
//                         (--image ID [--image ID ...] | --images-dir DIR)
//                   (platform operator) publishes OS images on a feed;
//                   --images-dir uploads every DIR/*.pkg first (os_builder
//                   writes DIR/images/os-V/).
//   deployment    create --device-group G --image ID [--image ID ...]
//                 list [--device-group G]
//   cluster       status
//
// --cluster names the JSON file written by local_cluster (default
// $SPHERE_CLUSTER, else ./cluster.json):
//   {
//     "management": "127.0.0.1:PORT",
//     "shards": [{"id": "shard-0", "address": "127.0.0.1:PORT"}],
//     "root_ca": "DIR/pki/root.pem",
//     "operator_cert": "DIR/pki/operator.pem",   // platform operator
//     "operator_key": "DIR/pki/operator.key",
//     "tenants": {"Contoso": {"cert": "...", "key": "..."}}
//   }
// Relative paths are resolved against the file's directory. --tenant NAME
// uses that tenant's operator credential when "tenants" has one, otherwise
// the platform operator credential acting on tenant NAME.
//
// Errors print "error: <message>" and exit with status 1. Every RPC carries
// a deadline (--timeout, default 30 s).
#include <google/protobuf/util/json_util.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <dirent.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "cli/image_upload.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "protos/management.grpc.pb.h"

namespace sphere::cli {
namespace {

using json = nlohmann::json;

// ---- Arguments
// ---------------------------------------------------------------

struct Args {
  std::vector<std::string> words;              // noun, verb, sub-verb
  std::map<std::string, std::string> options;  // --name value (last one)
  std::map<std::string, std::vector<std::string>> repeated;  // every value

  bool Has(const std::string& k) const { return options.count(k) > 0; }
  std::string Get(const std::string& k, const std::string& def = "") const {
    auto it = options.find(k);
    return it == options.end() ? def : it->second;
  }
  // All returns every value given for --k, in order (e.g. --image A
  // --image B).
  std::vector<std::string> All(const std::string& k) const {
    auto it = repeated.find(k);
    return it == repeated.end() ? std::vector<std::string>() : it->second;
  }
  absl::StatusOr<std::string> Require(const std::string& k) const {
    auto it = options.find(k);
    if (it == options.end() || it->second.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "missing --", k, " for '", absl::StrJoin(words, " "), "'"));
    }
    return it->second;
  }
};

// Flags that take no value.
bool IsSwitch(absl::string_view name) {
  return name == "include-root" || name == "help";
}

absl::StatusOr<Args> ParseArgs(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (absl::StartsWith(a, "--")) {
      std::string name = a.substr(2);
      std::string value;
      size_t eq = name.find('=');
      if (eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      } else if (IsSwitch(name)) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("option --", name, " needs a value"));
      }
      args.options[name] = value;
      args.repeated[name].push_back(value);
    } else {
      args.words.push_back(a);
    }
  }
  return args;
}

// ---- Cluster file
// --------------------------------------------------------------

struct Cluster {
  std::string path;       // the cluster file
  std::string state_dir;  // "state_dir", else the file's directory
  std::string management;
  std::vector<std::pair<std::string, std::string>> shards;  // id, address
  rpc::TlsFiles credential;  // the credential used for this run
  bool tenant_credential = false;
};

std::string Resolve(const std::string& base_dir, const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  return base_dir + "/" + path;
}

absl::StatusOr<std::string> ReadNamed(const std::string& what,
                                      const std::string& path) {
  if (path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cluster file has no ", what, " path"));
  }
  absl::StatusOr<std::string> s = rpc::ReadFile(path);
  if (!s.ok()) {
    return absl::Status(s.status().code(),
                        absl::StrCat("cannot read ", what, " ", path, ": ",
                                     s.status().message()));
  }
  return s;
}

absl::StatusOr<Cluster> LoadCluster(const std::string& path,
                                    const std::string& tenant) {
  absl::StatusOr<std::string> text = rpc::ReadFile(path);
  if (!text.ok()) {
    return absl::NotFoundError(absl::StrCat(
        "cannot read cluster file ", path,
        "; start a cluster with local_cluster or pass --cluster FILE"));
  }
  json j = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cluster file ", path, " is not a JSON object"));
  }
  const std::string dir = path.find('/') == std::string::npos
                              ? "."
                              : path.substr(0, path.rfind('/'));
  auto str = [&](const json& o, const char* key) -> std::string {
    auto it = o.find(key);
    return it != o.end() && it->is_string() ? it->get<std::string>() : "";
  };
  Cluster c;
  c.path = path;
  c.state_dir = str(j, "state_dir").empty() ? dir : str(j, "state_dir");
  c.management = str(j, "management");
  if (c.management.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cluster file ", path, " has no \"management\" address"));
  }
  if (auto it = j.find("shards"); it != j.end() && it->is_array()) {
    for (const json& s : *it) {
      if (s.is_object()) c.shards.emplace_back(str(s, "id"), str(s, "address"));
    }
  }
  std::string cert_path = str(j, "operator_cert");
  std::string key_path = str(j, "operator_key");
  if (!tenant.empty()) {
    if (auto t = j.find("tenants"); t != j.end() && t->is_object()) {
      if (auto e = t->find(tenant); e != t->end() && e->is_object()) {
        cert_path = str(*e, "cert");
        key_path = str(*e, "key");
        c.tenant_credential = true;
      }
    }
  }
  auto ca = ReadNamed("root_ca", Resolve(dir, str(j, "root_ca")));
  if (!ca.ok()) return ca.status();
  auto cert = ReadNamed("operator certificate", Resolve(dir, cert_path));
  if (!cert.ok()) return cert.status();
  auto key = ReadNamed("operator key", Resolve(dir, key_path));
  if (!key.ok()) return key.status();
  c.credential = {*cert, *key, *ca};
  return c;
}

// ---- Output
// ----------------------------------------------------------------------

json ToJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, options);
  return json::parse(out, nullptr, false);
}

std::string FeedName(v1::OsFeed f) {
  switch (f) {
    case v1::RETAIL:
      return "Retail";
    case v1::RETAIL_EVAL:
      return "RetailEval";
    default:
      return "-";
  }
}

std::string PolicyName(v1::AppUpdatePolicy p) {
  switch (p) {
    case v1::UPDATE_ALL:
      return "UpdateAll";
    case v1::NO_3RD_PARTY_APP_UPDATES:
      return "No3rdPartyAppUpdates";
    case v1::NO_UPDATES:
      return "NoUpdates";
    default:
      return "-";
  }
}

class Printer {
 public:
  explicit Printer(bool as_json) : json_(as_json) {}

  // Table prints rows under headers (table mode) or the JSON `items` (json
  // mode); `single` prints one object rather than an array.
  void Print(const std::vector<std::string>& headers,
             const std::vector<std::vector<std::string>>& rows,
             const json& items) const {
    if (json_) {
      std::cout << items.dump(2) << "\n";
      return;
    }
    std::vector<size_t> width(headers.size());
    for (size_t i = 0; i < headers.size(); ++i) width[i] = headers[i].size();
    for (const auto& r : rows) {
      for (size_t i = 0; i < r.size() && i < width.size(); ++i) {
        width[i] = std::max(width[i], r[i].size());
      }
    }
    auto line = [&](const std::vector<std::string>& cells) {
      std::string out;
      for (size_t i = 0; i < cells.size(); ++i) {
        out += cells[i];
        if (i + 1 < cells.size())
          out += std::string(width[i] - cells[i].size() + 2, ' ');
      }
      std::cout << out << "\n";
    };
    line(headers);
    std::vector<std::string> rule;
    for (size_t w : width) rule.push_back(std::string(w, '-'));
    line(rule);
    for (const auto& r : rows) line(r);
  }

 private:
  bool json_;
};

std::string KindName(v1::ImageKind k) {
  std::string name = v1::ImageKind_Name(k);
  absl::string_view v = name;
  absl::ConsumePrefix(&v, "IMAGE_KIND_");
  return std::string(v);
}

// TableView<T> is how the CLI shows a T: the table's column headers and one
// row per object (json output prints the message itself).
template <typename T>
struct TableView;

template <>
struct TableView<v1::Tenant> {
  static inline const std::vector<std::string> kHeaders = {"NAME", "ID",
                                                           "REVISION"};
  static std::vector<std::string> Row(const v1::Tenant& t) {
    return {t.name(), t.id(), absl::StrCat(t.create_revision())};
  }
};
template <>
struct TableView<v1::Product> {
  static inline const std::vector<std::string> kHeaders = {"NAME", "ID",
                                                           "DESCRIPTION"};
  static std::vector<std::string> Row(const v1::Product& p) {
    return {p.name(), p.id(), p.description()};
  }
};
template <>
struct TableView<v1::DeviceGroup> {
  static inline const std::vector<std::string> kHeaders = {
      "NAME", "ID", "OS FEED", "APP UPDATES", "PRODUCT"};
  static std::vector<std::string> Row(const v1::DeviceGroup& g) {
    return {g.name(), g.id(), FeedName(g.os_feed()),
            PolicyName(g.app_update_policy()), g.product_id()};
  }
};
template <>
struct TableView<v1::Device> {
  static inline const std::vector<std::string> kHeaders = {
      "ID", "STATE", "GROUP", "EPOCH", "PENDING TENANT"};
  static std::vector<std::string> Row(const v1::Device& d) {
    std::string state = v1::DeviceState_Name(d.state());
    return {d.id(), state,
            d.device_group_id().empty() ? "-" : d.device_group_id(),
            absl::StrCat(d.ownership_epoch()),
            d.pending_tenant_id().empty() ? "-" : d.pending_tenant_id()};
  }
};
template <>
struct TableView<v1::Image> {
  static inline const std::vector<std::string> kHeaders = {
      "ID", "COMPONENT", "VERSION", "KIND", "TENANT"};
  static std::vector<std::string> Row(const v1::Image& i) {
    return {i.id(), i.component(), absl::StrCat(i.version()),
            KindName(i.kind()),
            i.tenant_id().empty() ? "platform" : i.tenant_id()};
  }
};
template <>
struct TableView<v1::Deployment> {
  static inline const std::vector<std::string> kHeaders = {
      "ID", "DEVICE GROUP", "IMAGES", "REVISION"};
  static std::vector<std::string> Row(const v1::Deployment& d) {
    return {d.id(), d.device_group_id(), absl::StrJoin(d.image_ids(), ","),
            absl::StrCat(d.create_revision())};
  }
};

// PrintItems prints `items` with their TableView; `single` prints one object
// in json mode rather than an array of one.
template <typename T>
void PrintItems(const Printer& p, const std::vector<T>& items, bool single) {
  std::vector<std::vector<std::string>> rows;
  json arr = json::array();
  for (const T& i : items) {
    rows.push_back(TableView<T>::Row(i));
    arr.push_back(ToJson(i));
  }
  p.Print(TableView<T>::kHeaders, rows,
          single && arr.size() == 1 ? arr[0] : arr);
}

// ---- Commands
// ------------------------------------------------------------------

absl::StatusOr<v1::OsFeed> ParseFeed(const std::string& s) {
  if (absl::EqualsIgnoreCase(s, "Retail")) return v1::RETAIL;
  if (absl::EqualsIgnoreCase(s, "RetailEval")) return v1::RETAIL_EVAL;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown OS feed \"", s, "\"; use Retail or RetailEval"));
}

absl::StatusOr<v1::AppUpdatePolicy> ParsePolicy(const std::string& s) {
  if (absl::EqualsIgnoreCase(s, "UpdateAll")) return v1::UPDATE_ALL;
  if (absl::EqualsIgnoreCase(s, "No3rdPartyAppUpdates")) {
    return v1::NO_3RD_PARTY_APP_UPDATES;
  }
  if (absl::EqualsIgnoreCase(s, "NoUpdates")) return v1::NO_UPDATES;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown app update policy \"", s,
                   "\"; use UpdateAll, No3rdPartyAppUpdates or NoUpdates"));
}

class Cli {
 public:
  Cli(const Args& args, Cluster cluster, std::string tenant,
      absl::Duration timeout)
      : args_(args),
        cluster_(std::move(cluster)),
        tenant_(std::move(tenant)),
        timeout_(timeout),
        printer_(args.Get("output", "table") == "json"),
        stub_(v1::ManagementService::NewStub(
            rpc::NewChannel(cluster_.management, cluster_.credential))) {}

  absl::Status Run();

 private:
  // Call runs one unary RPC with a deadline and maps the status.
  template <typename Req, typename Resp, typename Method>
  absl::Status Call(Method method, const Req& req, Resp* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(timeout_));
    grpc::Status s = (stub_.get()->*method)(&ctx, req, resp);
    if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
      return absl::UnavailableError(absl::StrCat(
          "management at ", cluster_.management, " is unreachable: ",
          s.error_message(), " (is the cluster running?)"));
    }
    if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      return absl::DeadlineExceededError(absl::StrCat(
          "management at ", cluster_.management, " did not answer within ",
          absl::FormatDuration(timeout_)));
    }
    return rpc::FromGrpcStatus(s);
  }

  // TenantField is what goes in requests' tenant_id: empty for a tenant
  // credential (the server scopes it), else the --tenant name.
  std::string TenantField() const {
    return cluster_.tenant_credential ? "" : tenant_;
  }

  absl::Status Tenant(const std::string& verb);
  absl::Status TenantCredential();
  absl::Status Product(const std::string& verb);
  absl::Status DeviceGroup(const std::string& verb);
  absl::Status Device(const std::string& verb);
  absl::Status CaCertificate(const std::string& verb);
  absl::Status Image(const std::string& verb);
  absl::Status Os(const std::string& verb);
  absl::Status Deployment(const std::string& verb);
  absl::Status ClusterStatus();

  // UploadPackage reads one image package file and uploads it.
  absl::StatusOr<v1::Image> UploadPackage(const std::string& path);

  // PrintOne prints one object (a json object in json mode).
  template <typename T>
  void PrintOne(const T& item) {
    PrintItems(printer_, std::vector<T>{item}, /*single=*/true);
  }
  // PrintAll prints a list (a json array in json mode, even of one).
  template <typename Items>
  void PrintAll(const Items& items) {
    using T = std::decay_t<decltype(*items.begin())>;
    PrintItems(printer_, std::vector<T>(items.begin(), items.end()),
               /*single=*/false);
  }

  // CallAndPrint runs one RPC that answers a single object and prints it.
  template <typename Stub, typename Req, typename Resp>
  absl::Status CallAndPrint(
      grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
      const Req& req) {
    Resp resp;
    if (auto s = Call(method, req, &resp); !s.ok()) return s;
    PrintOne(resp);
    return absl::OkStatus();
  }
  // CallAndPrintAll runs one list RPC and prints the list `items` selects
  // from its response (e.g. &v1::ListTenantsResponse::tenants).
  template <typename Stub, typename Req, typename Resp, typename Items>
  absl::Status CallAndPrintAll(
      grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
      const Req& req, const Items& (Resp::*items)() const) {
    Resp resp;
    if (auto s = Call(method, req, &resp); !s.ok()) return s;
    PrintAll((resp.*items)());
    return absl::OkStatus();
  }

  // ForDevice is a request of type Req about device `id` in TenantField().
  template <typename Req>
  Req ForDevice(const std::string& id) const {
    Req req;
    req.set_tenant_id(TenantField());
    req.set_device_id(id);
    return req;
  }

  // SetGroupSettings fills the optional settings 'device-group create' and
  // 'device-group update' share: --description, --os-feed and
  // --app-update-policy.
  template <typename Req>
  absl::Status SetGroupSettings(Req* req) const {
    req->set_description(args_.Get("description"));
    if (args_.Has("os-feed")) {
      auto f = ParseFeed(args_.Get("os-feed"));
      if (!f.ok()) return f.status();
      req->set_os_feed(*f);
    }
    if (args_.Has("app-update-policy")) {
      auto p = ParsePolicy(args_.Get("app-update-policy"));
      if (!p.ok()) return p.status();
      req->set_app_update_policy(*p);
    }
    return absl::OkStatus();
  }

  const Args& args_;
  Cluster cluster_;
  std::string tenant_;
  absl::Duration timeout_;
  Printer printer_;
  std::unique_ptr<v1::ManagementService::Stub> stub_;
};

absl::Status Cli::Tenant(const std::string& verb) {
  using S = v1::ManagementService::Stub;
  if (verb == "create") {
    auto name = args_.Require("name");
    if (!name.ok()) return name.status();
    v1::CreateTenantRequest req;
    req.set_name(*name);
    return CallAndPrint(&S::CreateTenant, req);
  }
  if (verb == "list") {
    return CallAndPrintAll(&S::ListTenants, v1::ListTenantsRequest(),
                           &v1::ListTenantsResponse::tenants);
  }
  if (verb == "show") {
    v1::GetTenantRequest req;
    req.set_tenant_id(args_.Get("name", tenant_));
    return CallAndPrint(&S::GetTenant, req);
  }
  if (verb == "credential") return TenantCredential();
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown verb 'tenant ", verb, "'; use create, list, show or credential"));
}


// RecordTenantCredential adds tenants[name] = {cert, key} to the cluster
// file, keeping every other key, and replaces the file atomically.
absl::Status RecordTenantCredential(const std::string& cluster_path,
                                    const std::string& name,
                                    const std::string& cert_path,
                                    const std::string& key_path) {
  absl::StatusOr<std::string> text = rpc::ReadFile(cluster_path);
  if (!text.ok()) return text.status();
  json j = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cluster file ", cluster_path, " is not a JSON object"));
  }
  if (!j.contains("tenants") || !j["tenants"].is_object()) {
    j["tenants"] = json::object();
  }
  j["tenants"][name] = {{"cert", cert_path}, {"key", key_path}};
  return rpc::WriteFile(cluster_path, j.dump(2) + "\n");
}

absl::Status Cli::TenantCredential() {
  using S = v1::ManagementService::Stub;
  auto name = args_.Require("name");
  if (!name.ok()) return name.status();
  if (cluster_.tenant_credential) {
    return absl::PermissionDeniedError(absl::StrCat(
        "issuing operator credentials needs the platform-operator "
        "credential; drop --tenant ", tenant_));
  }
  // Canonical name (the user may type "contoso" for "Contoso").
  v1::GetTenantRequest get;
  get.set_tenant_id(*name);
  v1::Tenant t;
  if (auto s = Call(&S::GetTenant, get, &t); !s.ok()) return s;

  crypto::EcPrivateKey key = crypto::EcPrivateKey::Generate();
  v1::IssueOperatorCredentialRequest req;
  req.set_tenant_id(t.id());
  req.set_operator_name(args_.Get("operator", absl::StrCat(t.name(), "-admin")));
  req.set_public_key(key.PublicKey());
  v1::OperatorCredential cred;
  if (auto s = Call(&S::IssueOperatorCredential, req, &cred); !s.ok()) {
    return s;
  }
  const std::string dir = cluster_.state_dir + "/pki/tenants";
  if (auto s = rpc::MakeDirs(dir, 0700); !s.ok()) return s;
  const std::string cert_path = absl::StrCat(dir, "/", t.name(), ".pem");
  const std::string key_path = absl::StrCat(dir, "/", t.name(), ".key");
  if (auto s = rpc::WriteFile(key_path, key.ToPem(), 0600); !s.ok()) return s;
  if (auto s = rpc::WriteFile(cert_path, cred.certificate_pem()); !s.ok()) {
    return s;
  }
  if (auto s = RecordTenantCredential(cluster_.path, t.name(), cert_path,
                                      key_path);
      !s.ok()) {
    return s;
  }
  printer_.Print({"TENANT", "OPERATOR", "CERTIFICATE", "KEY"},
                 {{t.name(), req.operator_name(), cert_path, key_path}},
                 {{"tenant", t.name()},
                  {"tenant_id", t.id()},
                  {"operator", req.operator_name()},
                  {"cert", cert_path},
                  {"key", key_path}});
  return absl::OkStatus();
}

absl::Status Cli::Product(const std::string& verb) {
  using S = v1::ManagementService::Stub;
  if (verb == "create") {
    auto name = args_.Require("name");
    if (!name.ok()) return name.status();
    v1::CreateProductRequest req;
    req.set_tenant_id(TenantField());
    req.set_name(*name);
    req.set_description(args_.Get("description"));
    return CallAndPrint(&S::CreateProduct, req);
  }
  if (verb == "list") {
    v1::ListProductsRequest req;
    req.set_tenant_id(TenantField());
    return CallAndPrintAll(&S::ListProducts, req,
                           &v1::ListProductsResponse::products);
  }
  if (verb == "show") {
    auto product = args_.Require("product");
    if (!product.ok()) return product.status();
    v1::GetProductRequest req;
    req.set_tenant_id(TenantField());
    req.set_product(*product);
    return CallAndPrint(&S::GetProduct, req);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown verb 'product ", verb, "'; use create, list or show"));
}

absl::Status Cli::DeviceGroup(const std::string& verb) {
  using S = v1::ManagementService::Stub;
  if (verb == "create") {
    auto product = args_.Require("product");
    if (!product.ok()) return product.status();
    auto name = args_.Require("name");
    if (!name.ok()) return name.status();
    v1::CreateDeviceGroupRequest req;
    req.set_tenant_id(TenantField());
    req.set_product(*product);
    req.set_name(*name);
    if (auto s = SetGroupSettings(&req); !s.ok()) return s;
    return CallAndPrint(&S::CreateDeviceGroup, req);
  }
  if (verb == "list") {
    v1::ListDeviceGroupsRequest req;
    req.set_tenant_id(TenantField());
    req.set_product(args_.Get("product"));
    return CallAndPrintAll(&S::ListDeviceGroups, req,
                           &v1::ListDeviceGroupsResponse::groups);
  }
  if (verb != "show" && verb != "update") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown verb 'device-group ", verb,
                     "'; use create, list, show or update"));
  }
  auto group = args_.Require("device-group");
  if (!group.ok()) return group.status();
  if (verb == "show") {
    v1::GetDeviceGroupRequest req;
    req.set_tenant_id(TenantField());
    req.set_device_group_id(*group);
    return CallAndPrint(&S::GetDeviceGroup, req);
  }
  v1::UpdateDeviceGroupRequest req;
  req.set_tenant_id(TenantField());
  req.set_device_group_id(*group);
  if (auto s = SetGroupSettings(&req); !s.ok()) return s;
  return CallAndPrint(&S::UpdateDeviceGroup, req);
}

absl::Status Cli::Device(const std::string& verb) {
  using S = v1::ManagementService::Stub;
  if (verb == "list") {
    v1::ListDevicesRequest req;
    req.set_tenant_id(TenantField());
    req.set_device_group_id(args_.Get("device-group"));
    req.set_page_size(1000);
    std::vector<v1::Device> all;
    do {
      v1::ListDevicesResponse resp;
      if (auto s = Call(&S::ListDevices, req, &resp); !s.ok()) return s;
      all.insert(all.end(), resp.devices().begin(), resp.devices().end());
      req.set_page_token(resp.next_page_token());
    } while (!req.page_token().empty());
    PrintAll(all);
    return absl::OkStatus();
  }
  if (verb == "transfer") {
    const std::string sub = args_.words.size() > 2 ? args_.words[2] : "";
    auto id = args_.Require("device");
    if (!id.ok()) return id.status();
    if (sub == "request") {
      auto to = args_.Require("to-tenant");
      if (!to.ok()) return to.status();
      auto req = ForDevice<v1::RequestDeviceTransferRequest>(*id);
      req.set_to_tenant_id(*to);
      return CallAndPrint(&S::RequestDeviceTransfer, req);
    }
    if (sub == "accept") {
      auto req = ForDevice<v1::AcceptDeviceTransferRequest>(*id);
      return CallAndPrint(&S::AcceptDeviceTransfer, req);
    }
    return absl::InvalidArgumentError(
        "use 'device transfer request --device ID --to-tenant T' or "
        "'device transfer accept --device ID'");
  }
  auto id = args_.Require("device");
  if (!id.ok()) return id.status();
  if (verb == "claim") {
    auto req = ForDevice<v1::ClaimDeviceRequest>(*id);
    return CallAndPrint(&S::ClaimDevice, req);
  }
  if (verb == "show") {
    auto req = ForDevice<v1::GetDeviceRequest>(*id);
    return CallAndPrint(&S::GetDevice, req);
  }
  if (verb == "update") {
    auto group = args_.Require("device-group");
    if (!group.ok()) return group.status();
    auto req = ForDevice<v1::AssignDeviceRequest>(*id);
    req.set_device_group_id(*group);
    return CallAndPrint(&S::AssignDevice, req);
  }
  if (verb == "revoke") {
    auto req = ForDevice<v1::RevokeDeviceRequest>(*id);
    req.set_reason(args_.Get("reason"));
    return CallAndPrint(&S::RevokeDevice, req);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown verb 'device ", verb,
                   "'; use claim, list, show, update, revoke or transfer"));
}

absl::Status Cli::CaCertificate(const std::string& verb) {
  if (verb != "download") {
    return absl::InvalidArgumentError(
        "use 'ca-certificate download --destination FILE'");
  }
  auto dest = args_.Require("destination");
  if (!dest.ok()) return dest.status();
  v1::GetCaCertificateRequest req;
  req.set_tenant_id(TenantField());
  v1::CaCertificate ca;
  if (auto s = Call(&v1::ManagementService::Stub::GetCaCertificate, req, &ca);
      !s.ok()) {
    return s;
  }
  std::string pem = ca.tenant_ca_pem();
  if (args_.Has("include-root")) pem += ca.root_ca_pem();
  if (auto s = rpc::WriteFile(*dest, pem); !s.ok()) return s;
  std::cout << "wrote " << *dest << "\n";
  return absl::OkStatus();
}

absl::StatusOr<v1::Image> Cli::UploadPackage(const std::string& path) {
  absl::StatusOr<std::string> bytes = rpc::ReadFile(path);
  if (!bytes.ok()) {
    return absl::NotFoundError(absl::StrCat("cannot read image package ", path,
                                            ": ", bytes.status().message()));
  }
  // Streamed in chunks (UploadImageStream; see cli/image_upload.h).
  absl::StatusOr<v1::Image> image =
      UploadImagePackage(stub_.get(), TenantField(), *bytes, timeout_);
  if (!image.ok()) {
    return absl::Status(
        image.status().code(),
        absl::StrCat("upload of ", path, ": ", image.status().message()));
  }
  return image;
}

absl::Status Cli::Image(const std::string& verb) {
  if (verb == "upload") {
    auto file = args_.Require("file");
    if (!file.ok()) return file.status();
    auto image = UploadPackage(*file);
    if (!image.ok()) return image.status();
    PrintOne(*image);
    return absl::OkStatus();
  }
  if (verb == "list") {
    v1::ListImagesRequest req;
    req.set_tenant_id(TenantField());
    return CallAndPrintAll(&v1::ManagementService::Stub::ListImages, req,
                           &v1::ListImagesResponse::images);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown verb 'image ", verb, "'; use upload or list"));
}


// PackagesIn lists DIR/*.pkg in name order.
absl::StatusOr<std::vector<std::string>> PackagesIn(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("cannot open images directory ", dir,
                     " (build one with os_builder --state-dir DIR --version "
                     "V: it writes DIR/images/os-V)"));
  }
  std::vector<std::string> out;
  while (struct dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (absl::EndsWith(name, ".pkg")) out.push_back(dir + "/" + name);
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  if (out.empty()) {
    return absl::NotFoundError(
        absl::StrCat("images directory ", dir, " holds no .pkg files"));
  }
  return out;
}

absl::Status Cli::Os(const std::string& verb) {
  using S = v1::ManagementService::Stub;
  if (verb != "release") {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown verb 'os ", verb,
        "'; use 'os release --feed F --version V --image ID ...'"));
  }
  auto feed_name = args_.Require("feed");
  if (!feed_name.ok()) return feed_name.status();
  auto feed = ParseFeed(*feed_name);
  if (!feed.ok()) return feed.status();
  auto version = args_.Require("version");
  if (!version.ok()) return version.status();
  std::vector<std::string> ids = args_.All("image");
  const std::string images_dir = args_.Get("images-dir");
  if (ids.empty() == images_dir.empty()) {
    return absl::InvalidArgumentError(
        "'os release' needs either --image ID (repeatable) or --images-dir "
        "DIR, not both");
  }
  std::map<std::string, v1::Image> images;  // by id, for the output
  if (!images_dir.empty()) {
    auto files = PackagesIn(images_dir);
    if (!files.ok()) return files.status();
    for (const std::string& f : *files) {
      auto image = UploadPackage(f);
      if (!image.ok()) return image.status();
      ids.push_back(image->id());
      images[image->id()] = *image;
    }
  }
  v1::ReleaseOsRequest req;
  req.set_feed(*feed);
  req.set_version(*version);
  for (const std::string& id : ids) req.add_image_ids(id);
  v1::OsRelease release;
  if (auto s = Call(&S::ReleaseOs, req, &release); !s.ok()) return s;
  if (images.size() < ids.size()) {
    // Released by id: look the components up for the output (best effort).
    v1::ListImagesResponse all;
    if (Call(&S::ListImages, v1::ListImagesRequest(), &all).ok()) {
      for (const v1::Image& i : all.images()) images[i.id()] = i;
    }
  }
  std::vector<std::string> components;
  json j = ToJson(release);
  j["images"] = json::array();
  for (const std::string& id : release.image_ids()) {
    auto it = images.find(id);
    if (it == images.end()) {
      components.push_back(id.substr(0, 12));
      continue;
    }
    components.push_back(
        absl::StrCat(it->second.component(), " ", it->second.version()));
    j["images"].push_back(ToJson(it->second));
  }
  printer_.Print({"FEED", "VERSION", "REVISION", "COMPONENTS"},
                 {{FeedName(release.feed()), release.version(),
                   absl::StrCat(release.create_revision()),
                   absl::StrJoin(components, ", ")}},
                 j);
  return absl::OkStatus();
}

absl::Status Cli::Deployment(const std::string& verb) {
  using S = v1::ManagementService::Stub;
  if (verb == "create") {
    auto group = args_.Require("device-group");
    if (!group.ok()) return group.status();
    const std::vector<std::string> ids = args_.All("image");
    if (ids.empty()) {
      return absl::InvalidArgumentError(
          "missing --image for 'deployment create' (repeat it for several "
          "images; upload them with 'spherectl image upload')");
    }
    v1::CreateDeploymentRequest req;
    req.set_tenant_id(TenantField());
    req.set_device_group_id(*group);
    for (const std::string& id : ids) req.add_image_ids(id);
    return CallAndPrint(&S::CreateDeployment, req);
  }
  if (verb == "list") {
    v1::ListDeploymentsRequest req;
    req.set_tenant_id(TenantField());
    req.set_device_group_id(args_.Get("device-group"));
    return CallAndPrintAll(&S::ListDeployments, req,
                           &v1::ListDeploymentsResponse::deployments);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown verb 'deployment ", verb, "'; use create or list"));
}


// Health asks a shard's grpc.health.v1.Health/Check("") through a generic
// stub (so the CLI needs no health proto): "SERVING", "NOT_SERVING" or the
// failure.
std::string Health(const std::string& address, const rpc::TlsFiles& tls,
                   absl::Duration timeout) {
  grpc::GenericStub stub(rpc::NewChannel(address, tls));
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

absl::Status Cli::ClusterStatus() {
  v1::ShardMap map;
  if (auto s = Call(&v1::ManagementService::Stub::GetShardMap,
                    v1::GetShardMapRequest(), &map);
      !s.ok()) {
    return s;
  }
  std::string mgmt = Health(cluster_.management, cluster_.credential, timeout_);
  // Shards known to the map, plus any only listed in the cluster file.
  std::vector<v1::Shard> shards(map.shards().begin(), map.shards().end());
  for (const auto& [id, address] : cluster_.shards) {
    bool known = false;
    for (const auto& s : shards) known |= s.id() == id;
    if (!known) {
      v1::Shard s;
      s.set_id(id);
      s.set_address(address);
      shards.push_back(s);
    }
  }
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"management", cluster_.management, mgmt, "-"});
  // The catalog revision: pass it to 'twin attest --min_catalog_revision'
  // to attest against a catalog that includes every change made so far.
  v1::CatalogRevision catalog_revision;
  if (auto s = Call(&v1::ManagementService::Stub::GetCatalogRevision,
                    v1::GetCatalogRevisionRequest(), &catalog_revision);
      !s.ok()) {
    return s;
  }
  json j = {
      {"management", {{"address", cluster_.management}, {"health", mgmt}}},
      {"catalog_revision", catalog_revision.revision()},
      {"shard_map_revision", map.revision()},
      {"virtual_nodes", map.virtual_nodes()},
      {"shards", json::array()}};
  for (const v1::Shard& s : shards) {
    std::string health = Health(s.address(), cluster_.credential, timeout_);
    rows.push_back(
        {s.id(), s.address(), health, absl::StrCat(s.device_count())});
    j["shards"].push_back({{"id", s.id()},
                           {"address", s.address()},
                           {"health", health},
                           {"device_count", s.device_count()}});
  }
  printer_.Print({"NAME", "ADDRESS", "HEALTH", "DEVICES"}, rows, j);
  return absl::OkStatus();
}

absl::Status Cli::Run() {
  const std::string noun = args_.words[0];
  const std::string verb = args_.words.size() > 1 ? args_.words[1] : "";
  if (noun == "tenant") return Tenant(verb);
  if (noun == "product") return Product(verb);
  if (noun == "device-group") return DeviceGroup(verb);
  if (noun == "device") return Device(verb);
  if (noun == "ca-certificate") return CaCertificate(verb);
  if (noun == "image") return Image(verb);
  if (noun == "os") return Os(verb);
  if (noun == "deployment") return Deployment(verb);
  if (noun == "cluster" && verb == "status") return ClusterStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown command '", absl::StrJoin(args_.words, " "),
      "'; use tenant, product, device-group, device, ca-certificate, image, "
      "os, deployment or cluster status"));
}

constexpr char kUsage[] =
    "usage: spherectl [--cluster FILE] [--tenant NAME] [--output table|json]\n"
    "                 [--timeout SECONDS] NOUN VERB [options]\n"
    "  tenant create --name N | list | show\n"
    "         | credential --name N [--operator NAME]\n"
    "  product create --name N [--description D] | list | show --product P\n"
    "  device-group create --product P --name N [--os-feed F]\n"
    "               [--app-update-policy A] | list [--product P]\n"
    "               | show --device-group G | update --device-group G ...\n"
    "  device claim|show|revoke --device ID | list [--device-group G]\n"
    "         | update --device ID --device-group G\n"
    "         | transfer request --device ID --to-tenant T\n"
    "         | transfer accept --device ID\n"
    "  ca-certificate download --destination FILE [--include-root]\n"
    "  image upload --file PKG | list\n"
    "  os release --feed Retail|RetailEval --version V\n"
    "             (--image ID [--image ID ...] | --images-dir DIR)\n"
    "  deployment create --device-group G --image ID [--image ID ...]\n"
    "             | list [--device-group G]\n"
    "  cluster status\n";

int Main(int argc, char** argv) {
  absl::StatusOr<Args> args = ParseArgs(argc, argv);
  auto fail = [](const absl::Status& s) {
    std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
    return 1;
  };
  if (!args.ok()) return fail(args.status());
  if (args->words.empty() || args->Has("help")) {
    std::fputs(kUsage, args->words.empty() ? stderr : stdout);
    return args->words.empty() ? 1 : 0;
  }
  const std::string output = args->Get("output", "table");
  if (output != "table" && output != "json") {
    return fail(absl::InvalidArgumentError(
        absl::StrCat("--output must be table or json, not \"", output, "\"")));
  }
  int timeout_s = 30;
  if (args->Has("timeout") &&
      (!absl::SimpleAtoi(args->Get("timeout"), &timeout_s) || timeout_s <= 0)) {
    return fail(absl::InvalidArgumentError("--timeout must be whole seconds"));
  }
  std::string cluster_path = args->Get("cluster");
  if (cluster_path.empty()) {
    const char* env = std::getenv("SPHERE_CLUSTER");
    cluster_path = env != nullptr ? env : "cluster.json";
  }
  const std::string tenant = args->Get("tenant");
  absl::StatusOr<Cluster> cluster = LoadCluster(cluster_path, tenant);
  if (!cluster.ok()) return fail(cluster.status());
  Cli cli(*args, *std::move(cluster), tenant, absl::Seconds(timeout_s));
  absl::Status s = cli.Run();
  if (!s.ok()) return fail(s);
  return 0;
}

}  // namespace
}  // namespace sphere::cli

int main(int argc, char** argv) { return sphere::cli::Main(argc, argv); }
