// spherectl device claim --file ids.txt [--device-group G].
#include "cli/device_claim.h"

#include <memory>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli/context.h"
#include "cli/output.h"
#include "common/util/file.h"

namespace sphere::cli {
namespace {

using S = v1::ManagementService::Stub;

constexpr size_t kBatch = 1000;  // the server's per-call limit
constexpr size_t kMaxIds = 10'000'000;

bool IsDeviceId(absl::string_view s) {
  if (s.size() != 64) return false;
  for (char ch : s) {
    if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) return false;
  }
  return true;
}

}  // namespace

absl::Status ClaimDevicesFromFile(Context& c, const std::string& path,
                                  const std::string& group) {
  absl::StatusOr<std::string> text = util::ReadFile(path);
  if (!text.ok()) {
    return absl::NotFoundError(absl::StrCat("cannot read device id file ",
                                            path, ": ",
                                            text.status().message()));
  }
  absl::StatusOr<std::vector<std::string>> ids = ParseDeviceIds(path, *text);
  if (!ids.ok()) return ids.status();
  v1::ClaimDevicesResponse total;
  const size_t batches = (ids->size() + kBatch - 1) / kBatch;
  for (size_t b = 0; b < batches; ++b) {
    v1::ClaimDevicesRequest req;
    req.set_tenant_id(c.TenantField());
    req.set_device_group_id(group);
    const size_t first = b * kBatch;
    for (size_t i = first; i < ids->size() && i < first + kBatch; ++i) {
      req.add_device_ids((*ids)[i]);
    }
    v1::ClaimDevicesResponse resp;
    if (auto s = c.Call(&S::ClaimDevices, req, &resp); !s.ok()) {
      return absl::Status(
          s.code(),
          absl::StrCat(s.message(), " (batch ", b + 1, " of ", batches,
                       ": ids ", first + 1, "-", first + req.device_ids_size(),
                       " of ", path, "; the ", first,
                       " ids before it are claimed: fix the file and run "
                       "again, they count as already claimed)"));
    }
    total.set_claimed(total.claimed() + resp.claimed());
    total.set_already_claimed(total.already_claimed() + resp.already_claimed());
    total.set_revision(resp.revision());
  }
  c.printer().Print({"FILE", "DEVICES", "CLAIMED", "ALREADY CLAIMED"},
                    {{path, absl::StrCat(ids->size()),
                      absl::StrCat(total.claimed()),
                      absl::StrCat(total.already_claimed())}},
                    ToJson(total));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ParseDeviceIds(
    const std::string& path, const std::string& text) {
  std::vector<std::string> out;
  absl::flat_hash_map<std::string, int> line_of;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    if (!IsDeviceId(line)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ":", line_no,
          ": expected a device id (64 lowercase hex digits, as printed by "
          "'twin manufacture'), one per line"));
    }
    auto [it, inserted] = line_of.emplace(std::string(line), line_no);
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ":", line_no, ": repeats the device id of line ", it->second));
    }
    if (out.size() == kMaxIds) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, " has more than ", kMaxIds, " device ids; split it"));
    }
    out.emplace_back(line);
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " lists no device ids"));
  }
  return out;
}

}  // namespace sphere::cli
