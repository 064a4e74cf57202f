// UpdateAgent: the device's update agent (issue 11), as an event-driven
// state machine beside a Twin, like the Twin itself: no thread, channel,
// timer or file of its own, so the twin binary, TwinControl and the load
// generator drive it the same way.
//
//   kIdle --due (after each accepted attestation, then every
//           check_interval) / CheckNow--> kAwaitingUpdates (GetUpdates)
//   kAwaitingUpdates --signed metadata verified (platform key, not expired,
//           metadata_version >= last accepted)--> for each target whose
//           version the device does not run:
//   kDownloading (DownloadImage from the last offset; an interrupted stream
//           resumes where it stopped, also across checks; never more than
//           the signed package_size; a stream that ends cleanly short of it
//           is refused) --> CheckPackage (mcu-model) -->
//           StageVerified into the inactive slot --> next target
//   all staged --> device reboots (switch slots) --> kAwaitingAttestation:
//           the Twin re-attests; on success the agent confirms the install
//           (counters rise) or, when the device rolled back (crash loop),
//           reports ROLLED_BACK --> kReporting (ReportUpdateResult per
//           target: INSTALLED / FAILED with the reason / ROLLED_BACK /
//           DEFERRED) --> kIdle
//   An app holding software_update_deferral may defer installs (mcu-model
//   Device::DeferUpdate, at most 24 h of device time): the agent reports
//   DEFERRED and checks again when the deferral ends.
//
// Refused metadata (bad signature, expired, rollback, malformed) changes
// nothing: the agent keeps its last accepted metadata_version, which the
// caller persists (twin.state) via metadata_version().
//
// Driving: call OnTimer(now) once now >= next_wakeup() and feed each answer
// to the matching On<Response>; each returns the next request to send. The
// Twin calls OnAttested (AttestationListener) on every accepted attestation.
// After a reboot the agent calls twin->RequestAttestation(now): whoever
// drives the Twin re-attests it (see twin/update_runner.h).
//
// Thread-safety: not thread-safe; drive the agent and its Twin from one
// thread.
//
// Example:
//   UpdateAgent agent(&twin, &config, state.update_metadata_version());
//   UpdateAgent::Request r = agent.CheckNow(now);  // a GetUpdatesRequest
//   ... r = agent.OnUpdates(now, answer);          // a DownloadRequest ...
#ifndef SPHERE_TWIN_UPDATE_AGENT_H_
#define SPHERE_TWIN_UPDATE_AGENT_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/backoff.h"
#include "client/update_transport.h"
#include "mcu-model/update_install.h"
#include "protos/update.pb.h"
#include "twin/twin.h"

namespace sphere::twin {

// UpdateAgentConfig is shared by every agent of a process.
struct UpdateAgentConfig {
  absl::Duration check_interval = absl::Hours(6);
  bool check_after_attestation = true;
  uint32_t max_chunk_bytes = 64 * 1024;
  // Interrupted downloads resumed within one check before giving up until
  // the next one (the partial package is kept and resumed then).
  int max_resumes_per_check = 8;
  // Downloads are fetched in ranges of at most this many bytes
  // (DownloadImageRequest.length); after each completed range the agent
  // calls its progress listener, so the driver persists the partial package
  // (twin.state) and a kill -9 costs at most one range. 0 = one stream for
  // the whole rest of the package (nothing persisted until the driver saves).
  uint64_t progress_range_bytes = 1 << 20;
  // Retry of a GetUpdates / report that failed transiently.
  client::BackoffPolicy backoff;
};

class UpdateAgent : public AttestationListener {
 public:
  enum class Phase : uint8_t {
    kIdle,
    kAwaitingUpdates,
    kDownloading,
    kAwaitingAttestation,
    kReporting,
  };
  static const char* PhaseName(Phase p);

  // DownloadRequest: a DownloadImage call and how many bytes it may keep.
  struct DownloadRequest {
    v1::DownloadImageRequest request;
    uint64_t max_bytes = 0;
  };
  using Request = std::variant<std::monostate, v1::GetUpdatesRequest,
                               DownloadRequest, v1::ReportUpdateResultRequest>;

  // `twin` and `config` must outlive the agent; the agent registers itself
  // as the twin's attestation listener (and unregisters on destruction).
  UpdateAgent(Twin* twin, const UpdateAgentConfig* config,
              uint64_t accepted_metadata_version);
  ~UpdateAgent() override;
  UpdateAgent(const UpdateAgent&) = delete;
  UpdateAgent& operator=(const UpdateAgent&) = delete;

  // OnTimer: starts a due check, or sends the next queued report.
  Request OnTimer(absl::Time now);
  // CheckNow starts a check at once unless one is under way (then none).
  Request CheckNow(absl::Time now);
  Request OnUpdates(absl::Time now,
                    absl::StatusOr<v1::GetUpdatesResponse> response);
  Request OnDownload(absl::Time now, client::DownloadResult result);
  Request OnReport(absl::Time now, const absl::Status& status);
  // AttestationListener: a check becomes due; an install awaiting
  // re-attestation is confirmed (or found rolled back) and reported.
  void OnAttested(absl::Time now) override;

  // ScheduleCheck moves the next check of an idle agent to `at` (e.g. when
  // the twin could not attest, so a check cannot run now).
  void ScheduleCheck(absl::Time at);

  Phase phase() const { return phase_; }
  absl::Time next_wakeup() const;
  // Last metadata_version accepted (persist it: twin.state).
  uint64_t metadata_version() const { return metadata_version_; }
  // Why the last check or install failed (OK after a clean check).
  const absl::Status& last_error() const { return last_error_; }
  // Results of the last completed check, one per target acted on.
  const std::vector<v1::ReportUpdateResultRequest>& last_results() const {
    return last_results_;
  }
  // download_progress: the partial download kept for the next check (none
  // when no download is partial or it has no byte yet). Persist it with
  // the twin (twin.state) so a restarted twin resumes at its offset; the
  // bytes are verified like any download once complete.
  std::optional<v1::UpdateDownloadProgress> download_progress() const;
  // RestoreDownload hands a persisted progress to a new agent: the next
  // check resumes that image from bytes().size() when the signed metadata
  // still lists it with the same package hash and length (otherwise the
  // bytes are dropped). InvalidArgument, changing nothing, for a malformed
  // progress (bad image id or hash, bytes past the length); FailedPrecondition
  // while a download is under way.
  absl::Status RestoreDownload(const v1::UpdateDownloadProgress& progress);

  // ProgressListener is called, on the thread driving the agent, after each
  // completed download range with the package still incomplete; persist
  // download_progress() there (the twin process writes twin.state).
  using ProgressListener = std::function<void(const UpdateAgent&)>;
  void set_progress_listener(ProgressListener listener) {
    progress_listener_ = std::move(listener);
  }
  // Download ranges completed (each one a save point) since construction.
  uint64_t ranges_completed() const { return ranges_completed_; }

  // Reports whose sending failed for good (dropped) since construction.
  uint64_t dropped_reports() const { return dropped_reports_; }

 private:
  struct Download {
    mcu::InstallTarget target;
    std::unique_ptr<mcu::PackageAssembler> assembler;
  };
  Request NextDownload(absl::Time now);
  Request DownloadAt(absl::Time now);
  Request InstallDownloaded(absl::Time now);
  Request FinishStaging(absl::Time now);
  Request NextReport(absl::Time now);
  void StartReporting(absl::Time now, absl::Duration next_check);
  void Result(const mcu::InstallTarget& t,
              v1::ReportUpdateResultRequest::Result result,
              const absl::Status& why);
  void Idle(absl::Time now, absl::Duration after);
  absl::Duration Backoff(absl::Time now);

  Twin* twin_;
  const UpdateAgentConfig* config_;
  Phase phase_ = Phase::kIdle;
  uint64_t metadata_version_;
  int64_t due_ms_ = 0;         // unix ms of the next check (0 = at once)
  int64_t next_check_ms_ = 0;  // when reporting ends: next check
  absl::Status last_error_;
  std::string tenant_id_;  // of the accepted metadata
  std::vector<mcu::InstallTarget> signed_set_;
  std::deque<mcu::InstallTarget> pending_;  // still to download
  std::vector<mcu::InstallTarget> staged_;  // awaiting reboot + attestation
  std::unique_ptr<Download> download_;      // current / resumable
  uint64_t range_end_ = 0;                  // where the range in flight ends
  ProgressListener progress_listener_;
  uint64_t ranges_completed_ = 0;
  int resumes_ = 0;
  int retries_ = 0;
  bool report_in_flight_ = false;
  std::deque<v1::ReportUpdateResultRequest> reports_;
  std::vector<v1::ReportUpdateResultRequest> last_results_;
  uint64_t dropped_reports_ = 0;
};

// ToInstallTarget converts a verified metadata target for mcu-model.
mcu::InstallTarget ToInstallTarget(const v1::UpdateTarget& t);

}  // namespace sphere::twin

#endif  // SPHERE_TWIN_UPDATE_AGENT_H_
