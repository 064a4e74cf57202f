#include "securitysvc/update/update_results.h"

#include <algorithm>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sphere::update {

absl::Status UpdateResults::Load() {
  absl::Status parse_error;
  absl::MutexLock l(&mu_);
  counts_.clear();
  auto s =
      store_->Scan(kUpdateResultsCf, "",
                   [&](absl::string_view key, absl::string_view value) {
                     v1::DeviceUpdateStatus st;
                     if (!st.ParseFromArray(value.data(), value.size())) {
                       parse_error = absl::DataLossError(absl::StrCat(
                           "update result of device ", key, " does not parse"));
                       return false;
                     }
                     CountLocked(st, +1);
                     return true;
                   });
  if (!s.ok()) return s;
  return parse_error;
}

void UpdateResults::CountLocked(const v1::DeviceUpdateStatus& s, int delta) {
  if (s.deployment_id().empty()) return;
  if (!s.tenant_id().empty()) tenants_[s.deployment_id()] = s.tenant_id();
  StageCounts& c = counts_[s.deployment_id()][s.rollout_stage()];
  switch (s.result()) {
    case v1::ReportUpdateResultRequest::INSTALLED:
      c.installed += delta;
      if (s.crashed_after_install_unix_ms() > 0) {
        c.crashed_after_install += delta;
      }
      break;
    case v1::ReportUpdateResultRequest::FAILED:
      c.failed += delta;
      break;
    case v1::ReportUpdateResultRequest::ROLLED_BACK:
      c.rolled_back += delta;
      break;
    case v1::ReportUpdateResultRequest::DEFERRED:
      c.deferred += delta;
      break;
    default:
      break;
  }
}

absl::Status UpdateResults::Record(const v1::DeviceUpdateStatus& status) {
  return RecordAll({status});
}

absl::Status UpdateResults::RecordAll(
    const std::vector<v1::DeviceUpdateStatus>& statuses) {
  if (statuses.empty()) return absl::OkStatus();
  absl::MutexLock w(&write_mu_);
  // Each result's previous one: the store's, or an earlier one of this
  // group (not written yet).
  absl::flat_hash_map<std::string, v1::DeviceUpdateStatus> in_group;
  std::vector<std::optional<v1::DeviceUpdateStatus>> prevs;
  prevs.reserve(statuses.size());
  store::WriteBatch batch;
  for (const v1::DeviceUpdateStatus& status : statuses) {
    std::optional<v1::DeviceUpdateStatus> prev;
    if (auto it = in_group.find(status.device_id()); it != in_group.end()) {
      prev = it->second;
    } else {
      auto stored = Get(status.device_id());
      if (!stored.ok() && !absl::IsNotFound(stored.status())) {
        return stored.status();
      }
      if (stored.ok()) prev = *std::move(stored);
    }
    const uint32_t count = prev.has_value() ? prev->history_count() : 0;
    v1::DeviceUpdateStatus latest = status;
    latest.set_history_count(count + 1);
    v1::DeviceUpdateStatus entry = status;
    entry.clear_history_count();
    batch.Put(kUpdateResultsCf, status.device_id(),
              latest.SerializeAsString());
    batch.Put(kUpdateHistoryCf,
              absl::StrFormat("%s|%02d", status.device_id(),
                              count % kMaxUpdateHistory),
              entry.SerializeAsString());
    in_group[status.device_id()] = std::move(latest);
    prevs.push_back(std::move(prev));
  }
  if (auto s = store_->Write(batch); !s.ok()) return s;
  absl::MutexLock l(&mu_);
  for (size_t i = 0; i < statuses.size(); ++i) {
    if (prevs[i].has_value()) CountLocked(*prevs[i], -1);
    CountLocked(statuses[i], +1);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::DeviceUpdateStatus>> UpdateResults::History(
    absl::string_view device_id) const {
  std::vector<v1::DeviceUpdateStatus> out;
  absl::Status parse_error;
  auto s =
      store_->Scan(kUpdateHistoryCf, absl::StrCat(device_id, "|"),
                   [&](absl::string_view key, absl::string_view value) {
                     v1::DeviceUpdateStatus st;
                     if (!st.ParseFromArray(value.data(), value.size())) {
                       parse_error = absl::DataLossError(absl::StrCat(
                           "update history entry ", key, " does not parse"));
                       return false;
                     }
                     out.push_back(std::move(st));
                     return true;
                   });
  if (!s.ok()) return s;
  if (!parse_error.ok()) return parse_error;
  std::stable_sort(
      out.begin(), out.end(),
      [](const v1::DeviceUpdateStatus& a, const v1::DeviceUpdateStatus& b) {
        return a.reported_unix_ms() < b.reported_unix_ms();
      });
  return out;
}

absl::StatusOr<bool> UpdateResults::RecordCrash(absl::string_view device_id,
                                                const CrashEvent& event,
                                                absl::Time now,
                                                absl::Duration window) {
  absl::MutexLock w(&write_mu_);
  auto prev = Get(device_id);
  if (absl::IsNotFound(prev.status())) return false;  // never updated
  if (!prev.ok()) return prev.status();
  const v1::DeviceUpdateStatus& p = *prev;
  if (p.result() != v1::ReportUpdateResultRequest::INSTALLED ||
      p.deployment_id().empty() || p.crashed_after_install_unix_ms() > 0) {
    return false;
  }
  const absl::Time installed = absl::FromUnixMillis(p.reported_unix_ms());
  if (now < installed || now - installed > window) return false;
  // A crash of the component this install replaced, at its old version, is
  // not the new version's fault.
  const std::string installed_component =
      absl::StartsWith(p.component(), "app:") ? p.component().substr(4)
                                              : p.component();
  if (!event.component_version.empty() &&
      (event.component == p.component() ||
       event.component == installed_component) &&
      event.component_version != absl::StrCat(p.version())) {
    return false;
  }
  v1::DeviceUpdateStatus next = p;
  next.set_crashed_after_install_unix_ms(
      std::max<int64_t>(1, absl::ToUnixMillis(now)));
  next.set_crash_kind(event.kind);
  next.set_crash_component(event.component.substr(0, 64));
  if (auto s = store_->Put(kUpdateResultsCf, next.device_id(),
                           next.SerializeAsString());
      !s.ok()) {
    return s;
  }
  absl::MutexLock l(&mu_);
  CountLocked(p, -1);
  CountLocked(next, +1);
  return true;
}

absl::StatusOr<v1::DeviceUpdateStatus> UpdateResults::Get(
    absl::string_view device_id) const {
  auto v = store_->Get(kUpdateResultsCf, device_id);
  if (!v.ok()) return v.status();
  v1::DeviceUpdateStatus st;
  if (!st.ParseFromString(*v)) {
    return absl::DataLossError(
        absl::StrCat("update result of device ", device_id, " does not parse"));
  }
  return st;
}

absl::flat_hash_map<uint32_t, StageCounts> UpdateResults::Counts(
    absl::string_view deployment_id) const {
  absl::MutexLock l(&mu_);
  auto it = counts_.find(deployment_id);
  if (it == counts_.end()) return {};
  return it->second;
}

std::string UpdateResults::DeploymentTenant(
    absl::string_view deployment_id) const {
  absl::MutexLock l(&mu_);
  auto it = tenants_.find(deployment_id);
  return it == tenants_.end() ? "" : it->second;
}

}  // namespace sphere::update
