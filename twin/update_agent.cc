#include "twin/update_agent.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/update/metadata.h"
#include "mcu-model/install_error.h"

namespace sphere::twin {

namespace {
// ReportUpdateResultRequest.detail limit (update.proto).
constexpr size_t kMaxDetailBytes = 256;
}  // namespace

const char* UpdateAgent::PhaseName(Phase p) {
  switch (p) {
    case Phase::kIdle:
      return "idle";
    case Phase::kAwaitingUpdates:
      return "awaiting-updates";
    case Phase::kDownloading:
      return "downloading";
    case Phase::kAwaitingAttestation:
      return "awaiting-attestation";
    case Phase::kReporting:
      return "reporting";
  }
  return "unknown";
}

mcu::InstallTarget ToInstallTarget(const v1::UpdateTarget& t) {
  mcu::InstallTarget out;
  out.image_id = t.image_id();
  out.component = t.component();
  out.version = t.version();
  out.image_hash = t.image_hash();
  out.size = t.size();
  out.package_size = t.package_size();
  out.package_sha256 = t.package_sha256();
  out.hardware.assign(t.hardware().begin(), t.hardware().end());
  out.kind = t.kind();
  out.tenant_id = t.tenant_id();
  return out;
}

UpdateAgent::UpdateAgent(Twin* twin, const UpdateAgentConfig* config,
                         uint64_t accepted_metadata_version)
    : twin_(twin),
      config_(config),
      metadata_version_(accepted_metadata_version) {
  twin_->set_attestation_listener(this);
}

UpdateAgent::~UpdateAgent() { twin_->set_attestation_listener(nullptr); }

absl::Time UpdateAgent::next_wakeup() const {
  if (phase_ == Phase::kIdle ||
      (phase_ == Phase::kReporting && !report_in_flight_)) {
    return absl::FromUnixMillis(due_ms_);
  }
  return absl::InfiniteFuture();
}

UpdateAgent::Request UpdateAgent::OnTimer(absl::Time now) {
  if (now < next_wakeup()) return {};
  if (phase_ == Phase::kReporting) return NextReport(now);
  if (phase_ == Phase::kIdle) return CheckNow(now);
  return {};
}

void UpdateAgent::ScheduleCheck(absl::Time at) {
  if (phase_ == Phase::kIdle) due_ms_ = absl::ToUnixMillis(at);
}

UpdateAgent::Request UpdateAgent::CheckNow(absl::Time now) {
  if (phase_ != Phase::kIdle) return {};
  if (!twin_->certified()) {
    last_error_ = absl::FailedPreconditionError(
        "update check: the device has not attested yet (no certificate for "
        "the update service)");
    Idle(now, config_->check_interval);
    return {};
  }
  phase_ = Phase::kAwaitingUpdates;
  v1::GetUpdatesRequest req;
  req.set_device_id(twin_->device().device_id());
  req.set_known_metadata_version(metadata_version_);
  return req;
}

UpdateAgent::Request UpdateAgent::OnUpdates(
    absl::Time now, absl::StatusOr<v1::GetUpdatesResponse> response) {
  if (phase_ != Phase::kAwaitingUpdates) return {};
  if (!response.ok()) {
    last_error_ = response.status();
    Idle(now, client::IsRetryable(last_error_.code())
                  ? Backoff(now)
                  : config_->check_interval);
    return {};
  }
  mcu::Device& device = twin_->device();
  absl::StatusOr<v1::UpdateMetadata> md = update::VerifyMetadata(
      response->signed_metadata(), device.image_signing_public_key(), now,
      metadata_version_);
  if (!md.ok()) {
    // Nothing trusted changes: metadata version, slots, counters stay.
    last_error_ = md.status();
    Idle(now, config_->check_interval);
    return {};
  }
  metadata_version_ = md->metadata_version();
  tenant_id_ = md->tenant_id();
  signed_set_.clear();
  pending_.clear();
  last_results_.clear();
  last_error_ = absl::OkStatus();
  retries_ = 0;
  for (const v1::UpdateTarget& t : md->targets()) {
    signed_set_.push_back(ToInstallTarget(t));
    if (device.InstalledVersion(t.component()) < t.version()) {
      pending_.push_back(signed_set_.back());
    }
  }
  if (pending_.empty()) {
    Idle(now, config_->check_interval);
    return {};
  }
  if (device.UpdateDeferred()) {
    const absl::Time until = device.UpdateDeferredUntil();
    for (const mcu::InstallTarget& t : pending_) {
      Result(t, v1::ReportUpdateResultRequest::DEFERRED,
             absl::UnavailableError(
                 absl::StrCat("deferred by an application until ",
                              absl::FormatTime(until, absl::UTCTimeZone()))));
    }
    pending_.clear();
    StartReporting(now, until - now);
    return NextReport(now);
  }
  return NextDownload(now);
}

UpdateAgent::Request UpdateAgent::NextDownload(absl::Time now) {
  if (pending_.empty()) return FinishStaging(now);
  const mcu::InstallTarget& t = pending_.front();
  if (download_ == nullptr || download_->target.image_id != t.image_id ||
      download_->target.package_sha256 != t.package_sha256 ||
      download_->target.package_size != t.package_size) {
    download_ = std::make_unique<Download>();
    download_->target = t;
    download_->assembler =
        std::make_unique<mcu::PackageAssembler>(t.package_size);
  } else {
    download_->target = t;  // a restored download knows only id, hash, size
  }
  resumes_ = 0;
  return DownloadAt(now);
}

std::optional<v1::UpdateDownloadProgress> UpdateAgent::download_progress()
    const {
  if (download_ == nullptr || download_->assembler->offset() == 0 ||
      download_->assembler->complete()) {
    return std::nullopt;
  }
  v1::UpdateDownloadProgress p;
  p.set_image_id(download_->target.image_id);
  p.set_package_sha256(download_->target.package_sha256);
  p.set_package_size(download_->target.package_size);
  p.set_bytes(download_->assembler->bytes());
  return p;
}

absl::Status UpdateAgent::RestoreDownload(const v1::UpdateDownloadProgress& p) {
  if (phase_ == Phase::kDownloading) {
    return absl::FailedPreconditionError(
        "a download is under way; restore progress before the first check");
  }
  const bool hex_id =
      p.image_id().size() == 64 &&
      std::all_of(p.image_id().begin(), p.image_id().end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
      });
  if (!hex_id || p.package_sha256().size() != 32 || p.package_size() == 0 ||
      p.bytes().empty() || p.bytes().size() >= p.package_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "download progress is malformed (image id, 32-byte package hash, "
        "0 < bytes < package size; got ",
        p.bytes().size(), " of ", p.package_size(),
        " bytes); starting downloads from the beginning"));
  }
  auto d = std::make_unique<Download>();
  d->target.image_id = p.image_id();
  d->target.package_sha256 = p.package_sha256();
  d->target.package_size = p.package_size();
  d->assembler = std::make_unique<mcu::PackageAssembler>(p.package_size());
  if (auto s = d->assembler->Append(0, p.bytes()); !s.ok()) return s;
  download_ = std::move(d);
  return absl::OkStatus();
}

UpdateAgent::Request UpdateAgent::DownloadAt(absl::Time now) {
  if (download_->assembler->complete()) return InstallDownloaded(now);
  phase_ = Phase::kDownloading;
  DownloadRequest r;
  r.request.set_device_id(twin_->device().device_id());
  r.request.set_image_id(download_->target.image_id);
  r.request.set_offset(download_->assembler->offset());
  r.request.set_max_chunk_bytes(config_->max_chunk_bytes);
  const uint64_t offset = download_->assembler->offset();
  r.max_bytes = download_->target.package_size - offset;
  if (config_->progress_range_bytes > 0 &&
      config_->progress_range_bytes < r.max_bytes) {
    r.max_bytes = config_->progress_range_bytes;
    r.request.set_length(r.max_bytes);
  }
  range_end_ = offset + r.max_bytes;
  return r;
}

UpdateAgent::Request UpdateAgent::OnDownload(absl::Time now,
                                             client::DownloadResult result) {
  if (phase_ != Phase::kDownloading || download_ == nullptr) return {};
  absl::Status refused;
  for (const v1::ImageChunk& c : result.chunks) {
    absl::Status s = download_->assembler->Append(c.offset(), c.data());
    if (s.ok()) continue;
    if (mcu::InstallErrorOf(s) == mcu::InstallError::kPackageTooLong) {
      refused = s;
    } else if (result.status.ok()) {
      result.status = s;  // a gap or overlap: resume from our offset
    }
    break;
  }
  if (refused.ok() && result.status.code() == absl::StatusCode::kOutOfRange) {
    // The transport cut the stream off: more bytes than the signed length.
    refused = mcu::MakeInstallError(
        absl::StatusCode::kOutOfRange, mcu::InstallError::kPackageTooLong,
        absl::StrCat("update refused (", download_->target.component,
                     "): server sent more than the signed package length ",
                     download_->target.package_size, ": ",
                     result.status.message()));
  }
  if (refused.ok() && result.status.ok() && !download_->assembler->complete() &&
      download_->assembler->offset() == range_end_) {
    // A range arrived whole: a save point, then the next range.
    ++ranges_completed_;
    if (progress_listener_) progress_listener_(*this);
    return DownloadAt(now);
  }
  if (refused.ok() && result.status.ok() && !download_->assembler->complete()) {
    // The server ended the stream cleanly short of the signed length: its
    // package is not the one the metadata signed.
    refused = mcu::MakeInstallError(
        absl::StatusCode::kDataLoss, mcu::InstallError::kPackageIncomplete,
        absl::StrCat("update refused (", download_->target.component,
                     "): the server's package ends at byte ",
                     download_->assembler->offset(), ", signed length ",
                     download_->target.package_size));
  }
  if (!refused.ok()) {
    last_error_ = refused;
    Result(download_->target, v1::ReportUpdateResultRequest::FAILED, refused);
    download_.reset();
    pending_.pop_front();
    return NextDownload(now);
  }
  if (download_->assembler->complete()) return InstallDownloaded(now);
  // Interrupted: resume from the last offset.
  if (++resumes_ <= config_->max_resumes_per_check) return DownloadAt(now);
  // Give up for this check; the partial package is resumed at the next one.
  last_error_ = result.status;
  pending_.clear();
  if (!staged_.empty()) return FinishStaging(now);
  StartReporting(now, Backoff(now));
  return NextReport(now);
}

UpdateAgent::Request UpdateAgent::InstallDownloaded(absl::Time now) {
  mcu::Device& device = twin_->device();
  std::unique_ptr<Download> d = std::move(download_);
  pending_.pop_front();
  absl::StatusOr<mcu::VerifiedPackage> v =
      mcu::CheckPackage(device, signed_set_, tenant_id_, d->target.image_id,
                        d->assembler->bytes());
  absl::Status s = v.ok() ? mcu::StageVerified(device, *v) : v.status();
  if (!s.ok()) {
    last_error_ = s;
    Result(d->target, v1::ReportUpdateResultRequest::FAILED, s);
  } else {
    staged_.push_back(d->target);
  }
  return NextDownload(now);
}

UpdateAgent::Request UpdateAgent::FinishStaging(absl::Time now) {
  if (staged_.empty()) {
    StartReporting(now, config_->check_interval);
    return NextReport(now);
  }
  // Switch slots: reboot into the staged images, then re-attest.
  absl::Status boot = twin_->device().Reboot();
  if (!boot.ok()) last_error_ = boot;
  phase_ = Phase::kAwaitingAttestation;
  twin_->RequestAttestation(now);
  return {};
}

void UpdateAgent::OnAttested(absl::Time now) {
  if (phase_ == Phase::kIdle) {
    if (config_->check_after_attestation) due_ms_ = absl::ToUnixMillis(now);
    return;
  }
  if (phase_ != Phase::kAwaitingAttestation) return;
  mcu::Device& device = twin_->device();
  if (device.update_pending_confirm()) {
    absl::Status s = device.ConfirmUpdate();
    if (!s.ok()) last_error_ = s;
  }
  for (const mcu::InstallTarget& t : staged_) {
    if (mcu::Installed(device, t)) {
      Result(t, v1::ReportUpdateResultRequest::INSTALLED, absl::OkStatus());
    } else {
      absl::Status why = mcu::MakeInstallError(
          absl::StatusCode::kAborted, mcu::InstallError::kCrashLoop,
          absl::StrCat(t.component, " v", t.version,
                       " crash-looped and was rolled back to v",
                       device.InstalledVersion(t.component)));
      last_error_ = why;
      Result(t, v1::ReportUpdateResultRequest::ROLLED_BACK, why);
    }
  }
  staged_.clear();
  device.EndUpdateDeferral();
  StartReporting(now, config_->check_interval);
}

void UpdateAgent::StartReporting(absl::Time now, absl::Duration next_check) {
  next_check_ms_ = absl::ToUnixMillis(now + next_check);
  phase_ = Phase::kReporting;
  due_ms_ = absl::ToUnixMillis(now);
}

UpdateAgent::Request UpdateAgent::NextReport(absl::Time now) {
  if (phase_ != Phase::kReporting || report_in_flight_) return {};
  if (reports_.empty()) {
    phase_ = Phase::kIdle;
    due_ms_ = std::max(next_check_ms_, absl::ToUnixMillis(now));
    return {};
  }
  report_in_flight_ = true;
  return reports_.front();
}

UpdateAgent::Request UpdateAgent::OnReport(absl::Time now,
                                           const absl::Status& status) {
  if (phase_ != Phase::kReporting || !report_in_flight_) return {};
  report_in_flight_ = false;
  if (!status.ok() && client::IsRetryable(status.code())) {
    due_ms_ = absl::ToUnixMillis(now + Backoff(now));
    return {};
  }
  if (!status.ok()) ++dropped_reports_;
  retries_ = 0;
  reports_.pop_front();
  return NextReport(now);
}

void UpdateAgent::Result(const mcu::InstallTarget& t,
                         v1::ReportUpdateResultRequest::Result result,
                         const absl::Status& why) {
  v1::ReportUpdateResultRequest r;
  r.set_device_id(twin_->device().device_id());
  r.set_image_id(t.image_id);
  r.set_success(result == v1::ReportUpdateResultRequest::INSTALLED);
  std::string detail(why.message());
  if (mcu::InstallErrorOf(why) != mcu::InstallError::kNone) {
    detail = absl::StrCat(mcu::InstallErrorName(mcu::InstallErrorOf(why)), ": ",
                          detail);
  }
  if (detail.size() > kMaxDetailBytes) detail.resize(kMaxDetailBytes);
  r.set_detail(std::move(detail));
  r.set_result(result);
  r.set_metadata_version(metadata_version_);
  r.set_version(t.version);
  last_results_.push_back(r);
  reports_.push_back(std::move(r));
}

void UpdateAgent::Idle(absl::Time now, absl::Duration after) {
  phase_ = Phase::kIdle;
  due_ms_ = absl::ToUnixMillis(now + after);
}

absl::Duration UpdateAgent::Backoff(absl::Time now) {
  const std::string key = twin_->device().public_key();
  uint64_t seed = 0;
  if (key.size() > sizeof(seed))
    std::memcpy(&seed, key.data() + 9, sizeof(seed));
  seed ^= static_cast<uint64_t>(absl::ToUnixNanos(now));
  absl::Duration d = client::BackoffDelay(config_->backoff, retries_,
                                          client::JitterFraction(seed));
  if (retries_ < 64) ++retries_;
  return d;
}

}  // namespace sphere::twin
