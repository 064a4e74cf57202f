// spherectl device claim|list|show|update|revoke|transfer|import.
// (claim --file, the bulk form: device_claim.cc)
#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cli/commands.h"
#include "cli/device_claim.h"
#include "common/crypto/crypto.h"
#include "common/util/file.h"
#include "protos/attestation.grpc.pb.h"

namespace sphere::cli {
namespace {

using S = v1::ManagementService::Stub;

const std::vector<std::string> kDeviceHeaders = {
    "ID",  "STATE",         "PRODUCT", "GROUP",          "OS",
    "APP", "LAST ATTESTED", "OUTCOME", "PENDING TENANT", "LAST UPDATE"};

std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }

std::vector<std::string> DeviceRow(Names& names, const v1::Device& d) {
  return {d.id(),
          StateName(d.state()),
          names.Product(d.product_id()),
          names.Group(d.device_group_id()),
          OrDash(d.os_version()),
          OrDash(d.app_version()),
          FormatUnixMs(d.last_attested_unix_ms()),
          OrDash(d.last_attestation_outcome()),
          names.Tenant(d.pending_tenant_id()),
          OrDash(d.last_update_result())};
}

// LastUpdate formats a device's last reported update result:
// "FAILED app:dw100 3: hash mismatch" (empty when it never reported).
std::string LastUpdate(const v1::DeviceStatus& ds) {
  if (ds.last_update_result().empty()) return "";
  std::string out =
      absl::StrCat(ds.last_update_result(), " ", ds.last_update_component(),
                   " ", ds.last_update_version());
  if (!ds.last_update_detail().empty()) {
    // Device-reported text: keep it printable and short for the table.
    std::string detail;
    for (char ch : ds.last_update_detail().substr(0, 80)) {
      detail.push_back(ch >= 0x20 && ch < 0x7f ? ch : '?');
    }
    absl::StrAppend(&out, ": ", detail);
  }
  return out;
}

// AppVersions formats a device's application components from its measured
// versions: "dw100 3, dw100-rt 2" (components "app:<id>").
std::string AppVersions(
    const google::protobuf::Map<std::string, uint32_t>& versions) {
  std::vector<std::string> apps;
  for (const auto& [component, version] : versions) {
    absl::string_view id = component;
    if (absl::ConsumePrefix(&id, "app:")) {
      apps.push_back(absl::StrCat(id, " ", version));
    }
  }
  std::sort(apps.begin(), apps.end());
  return absl::StrJoin(apps, ", ");
}

// FillStatus sets the last-attestation fields of `devices` (os_version,
// app_version, last_attested_unix_ms, last_attestation_outcome) from the
// shards that own them (DeviceStatusService): per-device state lives on
// its shard, never in management's catalog. Every shard in the cluster file
// is asked, in batches of 500 ids, for the ids no shard answered yet; a
// shard that does not answer leaves its devices' fields empty ("-") and
// gets one warning on stderr. Never fails the command.
void FillStatus(Context& c, std::vector<v1::Device*> devices) {
  constexpr int kBatch = 500;  // the service's per-call limit
  absl::flat_hash_map<std::string, v1::Device*> pending;
  for (v1::Device* d : devices) pending[d->id()] = d;
  const absl::Duration deadline = std::min(c.timeout(), absl::Seconds(10));
  for (const cluster::ShardEndpoint& shard : c.cluster().shards) {
    const std::string& shard_id = shard.id;
    const std::string& address = shard.address;
    if (pending.empty()) break;
    auto stub = v1::DeviceStatusService::NewStub(
        rpc::NewChannel(address, c.cluster().credential, shard.server_name));
    std::vector<std::string> ids;
    for (const auto& [id, d] : pending) ids.push_back(id);
    std::sort(ids.begin(), ids.end());
    for (size_t i = 0; i < ids.size(); i += kBatch) {
      v1::GetDeviceStatusRequest req;
      for (size_t j = i; j < ids.size() && j < i + kBatch; ++j) {
        req.add_device_ids(ids[j]);
      }
      v1::GetDeviceStatusResponse resp;
      grpc::ClientContext ctx;
      ctx.set_deadline(rpc::Deadline(deadline));
      grpc::Status st = stub->GetDeviceStatus(&ctx, req, &resp);
      if (!st.ok()) {
        std::cerr << "warning: shard " << shard_id << " (" << address
                  << ") did not answer for device status ("
                  << rpc::TruncateForStatus(st.error_message(), 200)
                  << "); its devices show '-'\n";
        break;  // next shard; this one's devices stay '-'
      }
      for (const v1::DeviceStatus& ds : resp.devices()) {
        auto it = pending.find(ds.device_id());
        if (it == pending.end()) continue;
        v1::Device* d = it->second;
        d->set_os_version(ds.os_version());
        d->set_app_version(AppVersions(ds.component_versions()));
        d->set_last_attested_unix_ms(ds.last_attested_unix_ms());
        d->set_last_attestation_outcome(ds.last_attestation_outcome());
        d->set_last_update_result(LastUpdate(ds));
        pending.erase(it);
      }
    }
  }
}

absl::Status PrintDevice(Context& c, v1::Device d) {
  FillStatus(c, {&d});
  Names names(c);
  PrintOne(c, d, kDeviceHeaders, DeviceRow(names, d));
  return absl::OkStatus();
}

// DeviceVerb adds a verb that sends one request about --device ID and prints
// the device the server answers; `fill` sets the verb's other fields.
template <typename Req>
CLI::App* DeviceVerb(CLI::App* noun, Context* ctx, const std::string& name,
                     const std::string& help,
                     grpc::Status (S::*method)(grpc::ClientContext*, const Req&,
                                               v1::Device*),
                     std::shared_ptr<std::string> id,
                     std::function<void(Req*)> fill = nullptr) {
  CLI::App* verb = Verb(noun, ctx, name, help, Access::kTenant,
                        [=](Context& c) -> absl::Status {
                          Req req;
                          req.set_tenant_id(c.TenantField());
                          req.set_device_id(*id);
                          if (fill) fill(&req);
                          v1::Device d;
                          if (auto s = c.Call(method, req, &d); !s.ok()) {
                            return s;
                          }
                          return PrintDevice(c, std::move(d));
                        });
  verb->add_option("--device", *id, "device id (printed by 'twin manufacture')")
      ->required();
  return verb;
}

// AddClaimVerb: claim one device (--device, printed like 'device show') or
// every id in a file (--file, cli/device_claim.h).
void AddClaimVerb(CLI::App* noun, Context* ctx) {
  auto id = std::make_shared<std::string>();
  auto file = std::make_shared<std::string>();
  auto group = std::make_shared<std::string>();
  CLI::App* claim = Verb(
      noun, ctx, "claim",
      "claim manufactured devices into the tenant (once): one with --device, "
      "or every id in --file (1000 per call, each call all-or-nothing)",
      Access::kTenant, [=](Context& c) -> absl::Status {
        if (id->empty() == file->empty()) {
          return absl::InvalidArgumentError(
              "give exactly one of --device ID or --file IDS.txt");
        }
        if (!file->empty()) return ClaimDevicesFromFile(c, *file, *group);
        v1::ClaimDeviceRequest req;
        req.set_tenant_id(c.TenantField());
        req.set_device_id(*id);
        v1::Device d;
        if (auto s = c.Call(&S::ClaimDevice, req, &d); !s.ok()) return s;
        return PrintDevice(c, std::move(d));
      });
  claim->add_option("--device", *id,
                    "device id (printed by 'twin manufacture')");
  claim->add_option("--file", *file,
                    "file of device ids, one per line ('#' comments)");
  claim
      ->add_option("--device-group", *group,
                   "with --file: also assign the claimed devices to this "
                   "group (id or PRODUCT/GROUP)")
      ->needs("--file");
}

struct ListArgs {
  std::string product, group;
  PageRequest page;
};

absl::Status List(Context& c, const ListArgs& a) {
  v1::ListDevicesRequest req;
  req.set_tenant_id(c.TenantField());
  req.set_device_group_id(a.group);
  Names names(c);
  auto row = [&names](const v1::Device& d) { return DeviceRow(names, d); };
  auto key = [](const v1::Device& d) { return d.id(); };
  if (a.product.empty() && a.page.size > 0) {
    // One server page: the server pages in device id order.
    req.set_page_size(
        static_cast<uint32_t>(std::min<size_t>(a.page.size, 1000)));
    req.set_page_token(a.page.token);
    v1::ListDevicesResponse resp;
    if (auto s = c.Call(&S::ListDevices, req, &resp); !s.ok()) return s;
    std::vector<v1::Device> page(resp.devices().begin(), resp.devices().end());
    std::vector<v1::Device*> fill;
    for (v1::Device& d : page) fill.push_back(&d);
    FillStatus(c, std::move(fill));
    PrintList<v1::Device>(c, std::move(page), key, PageRequest(),
                          kDeviceHeaders, row);
    PrintNextPage(resp.next_page_token(), a.page.size);
    return absl::OkStatus();
  }
  // Everything (or a product filter, which the server does not have yet:
  // filtered here, then paged here).
  std::string product_id;
  if (!a.product.empty()) {
    v1::GetProductRequest preq;
    preq.set_tenant_id(c.TenantField());
    preq.set_product(a.product);
    v1::Product p;
    if (auto s = c.Call(&S::GetProduct, preq, &p); !s.ok()) return s;
    product_id = p.id();
  }
  req.set_page_size(1000);
  std::vector<v1::Device> all;
  do {
    v1::ListDevicesResponse resp;
    if (auto s = c.Call(&S::ListDevices, req, &resp); !s.ok()) return s;
    for (const v1::Device& d : resp.devices()) {
      if (product_id.empty() || d.product_id() == product_id) all.push_back(d);
    }
    req.set_page_token(resp.next_page_token());
  } while (!req.page_token().empty());
  // Status from the shards only for the page that will be printed.
  std::sort(
      all.begin(), all.end(),
      [](const v1::Device& x, const v1::Device& y) { return x.id() < y.id(); });
  std::string next;
  absl::flat_hash_set<std::string> shown;
  for (const v1::Device& d : PageOf<v1::Device>(all, key, a.page, &next)) {
    shown.insert(d.id());
  }
  std::vector<v1::Device*> fill;
  for (v1::Device& d : all) {
    if (shown.contains(d.id())) fill.push_back(&d);
  }
  FillStatus(c, std::move(fill));
  PrintList<v1::Device>(c, std::move(all), key, a.page, kDeviceHeaders, row);
  return absl::OkStatus();
}

// ParseKeys reads a factory key file: one device per line,
// "PUBLIC_KEY_HEX[,DEVICE_TYPE]" (the 65-byte uncompressed SEC1 key as 130
// hex digits; type defaults to mt3620). Blank lines, '#' comments and a
// header line starting with "public_key" are skipped.
absl::StatusOr<std::vector<v1::FactoryDevice>> ParseKeys(
    const std::string& path, const std::string& text) {
  constexpr size_t kMaxDevices = 10'000'000;
  std::vector<v1::FactoryDevice> out;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#' ||
        (line_no == 1 && absl::StartsWithIgnoreCase(line, "public_key"))) {
      continue;
    }
    std::vector<absl::string_view> fields = absl::StrSplit(line, ',');
    if (fields.size() > 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ":", line_no, ": expected PUBLIC_KEY_HEX[,DEVICE_TYPE]"));
    }
    absl::string_view hex = absl::StripAsciiWhitespace(fields[0]);
    absl::StatusOr<std::string> key = crypto::HexDecode(hex);
    if (hex.size() != 130 || !key.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line_no,
                       ": the public key must be 130 hex digits (65-byte "
                       "uncompressed SEC1 P-256 key)"));
    }
    if ((*key)[0] != 0x04) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ":", line_no, ": the public key must start with 04"));
    }
    v1::FactoryDevice d;
    d.set_public_key(*std::move(key));
    std::string type = fields.size() > 1
                           ? std::string(absl::StripAsciiWhitespace(fields[1]))
                           : "mt3620";
    if (auto s = CheckName("device type", type); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line_no, ": ", s.message()));
    }
    d.set_device_type(type);
    out.push_back(std::move(d));
    if (out.size() > kMaxDevices) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, " has more than ", kMaxDevices, " devices; split it"));
    }
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, " lists no devices"));
  }
  return out;
}

absl::Status Import(Context& c, const std::string& path) {
  absl::StatusOr<std::string> text = util::ReadFile(path);
  if (!text.ok()) {
    return absl::NotFoundError(absl::StrCat("cannot read key file ", path, ": ",
                                            text.status().message()));
  }
  auto devices = ParseKeys(path, *text);
  if (!devices.ok()) return devices.status();
  constexpr size_t kBatch = 1000;  // devices per stream message
  grpc::ClientContext ctx;
  // Large imports take time: one deadline for the whole stream, scaled.
  ctx.set_deadline(rpc::Deadline(
      c.timeout() +
      absl::Seconds(static_cast<int64_t>(devices->size() / 10000))));
  v1::ImportDevicesResponse resp;
  auto writer = c.stub()->ImportDevices(&ctx, &resp);
  for (size_t i = 0; i < devices->size(); i += kBatch) {
    v1::ImportDevicesRequest req;
    for (size_t j = i; j < devices->size() && j < i + kBatch; ++j) {
      *req.add_devices() = (*devices)[j];
    }
    if (!writer->Write(req)) break;  // the server ended the call: see Finish
  }
  writer->WritesDone();
  if (auto s = c.MapStatus(writer->Finish()); !s.ok()) return s;
  c.printer().Print(
      {"FILE", "DEVICES", "IMPORTED", "ALREADY KNOWN"},
      {{path, absl::StrCat(devices->size()), absl::StrCat(resp.imported()),
        absl::StrCat(resp.already_known())}},
      ToJson(resp));
  return absl::OkStatus();
}

}  // namespace

void AddDeviceCommands(CLI::App* app, Context* ctx) {
  CLI::App* noun = Noun(app, "device", "devices of a tenant");

  AddClaimVerb(noun, ctx);
  DeviceVerb<v1::GetDeviceRequest>(noun, ctx, "show", "show one device",
                                   &S::GetDevice,
                                   std::make_shared<std::string>());
  auto group = std::make_shared<std::string>();
  CLI::App* update = DeviceVerb<v1::AssignDeviceRequest>(
      noun, ctx, "update",
      "move a claimed device into a device group (sets its product)",
      &S::AssignDevice, std::make_shared<std::string>(),
      [group](v1::AssignDeviceRequest* r) { r->set_device_group_id(*group); });
  update->add_option("--device-group", *group, "group id or PRODUCT/GROUP")
      ->required();
  auto reason = std::make_shared<std::string>();
  CLI::App* revoke = DeviceVerb<v1::RevokeDeviceRequest>(
      noun, ctx, "revoke", "revoke a device: it can no longer attest",
      &S::RevokeDevice, std::make_shared<std::string>(),
      [reason](v1::RevokeDeviceRequest* r) { r->set_reason(*reason); });
  revoke->add_option("--reason", *reason, "why (recorded)");

  CLI::App* transfer =
      Noun(noun, "transfer", "move a device to another tenant");
  auto to = std::make_shared<std::string>();
  CLI::App* request = DeviceVerb<v1::RequestDeviceTransferRequest>(
      transfer, ctx, "request", "offer the device to another tenant",
      &S::RequestDeviceTransfer, std::make_shared<std::string>(),
      [to](v1::RequestDeviceTransferRequest* r) { r->set_to_tenant_id(*to); });
  request->add_option("--to-tenant", *to, "receiving tenant id or name")
      ->required();
  DeviceVerb<v1::AcceptDeviceTransferRequest>(
      transfer, ctx, "accept", "accept a device offered to your tenant",
      &S::AcceptDeviceTransfer, std::make_shared<std::string>());

  auto la = std::make_shared<ListArgs>();
  CLI::App* list =
      Verb(noun, ctx, "list",
           "list the tenant's devices, by id, with what each "
           "last attested",
           Access::kTenant, [la](Context& c) { return List(c, *la); });
  list->add_option("--product", la->product, "only this product's devices");
  list->add_option("--device-group", la->group,
                   "only this group's devices (id or PRODUCT/GROUP)");
  AddPaging(list, &la->page);

  auto file = std::make_shared<std::string>();
  CLI::App* import =
      Verb(noun, ctx, "import",
           "record factory device keys (platform operator): one "
           "PUBLIC_KEY_HEX[,DEVICE_TYPE] per line",
           Access::kPlatform, [file](Context& c) { return Import(c, *file); });
  import->add_option("--file", *file, "CSV file of device public keys")
      ->required();
}

}  // namespace sphere::cli
