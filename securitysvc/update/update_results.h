// UpdateResults: the last update result of every device a shard owns (column
// family "update_results", key = device id, value = DeviceUpdateStatus) and
// the counts per deployment and rollout stage that the staged rollout halts
// on. A device counts once per deployment: its latest result replaces its
// earlier one in the counts (a device that failed, then installed, counts as
// installed).
//
// Counts are rebuilt from the column family at Load (after a restart) and
// kept in memory.
//
// Crashes after install (error reporting): RecordCrash marks a device whose
// latest result is INSTALLED for a deployment as crashed when an app crash
// or watchdog reset arrives within the crash window after that report; the
// mark is stored with the result (so it survives a restart) and the device
// counts once in StageCounts::crashed_after_install, whatever the number of
// crash events. The device's next result replaces the mark.
//
// Thread-safety: thread-safe. Record writes to the store (synced): call it
// off gRPC callback threads.
#ifndef SPHERE_SECURITYSVC_UPDATE_UPDATE_RESULTS_H_
#define SPHERE_SECURITYSVC_UPDATE_UPDATE_RESULTS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/store/store.h"
#include "protos/update.pb.h"

namespace sphere::update {

inline constexpr char kUpdateResultsCf[] = "update_results";
// Bounded per-device history of results (issue 13): key "<id>|NN", the ring
// slot history_count % kMaxUpdateHistory, written in the same batch as the
// latest result (whose history_count Record reads anyway), so a device
// never has more than kMaxUpdateHistory entries.
inline constexpr char kUpdateHistoryCf[] = "update_history";
inline constexpr uint32_t kMaxUpdateHistory = 32;
// Failure reasons longer than this are refused (ReportUpdateResult.detail).
inline constexpr size_t kMaxDetailBytes = 256;

// StageCounts: devices per latest result, for one deployment and stage.
struct StageCounts {
  uint64_t installed = 0;
  uint64_t failed = 0;
  uint64_t rolled_back = 0;
  uint64_t deferred = 0;
  // INSTALLED devices that crashed (or were watchdog-reset) after install.
  uint64_t crashed_after_install = 0;
  // Every device that reported anything for the deployment in this stage.
  uint64_t reported() const {
    return installed + failed + rolled_back + deferred;
  }
  uint64_t attempted() const { return installed + failed + rolled_back; }
  uint64_t failures() const {
    return failed + rolled_back + crashed_after_install;
  }
};

class UpdateResults {
 public:
  // `store` must hold kUpdateResultsCf and outlive this.
  explicit UpdateResults(store::Store* store) : store_(store) {}

  // Load rebuilds the counts from the store.
  absl::Status Load();
  // Record stores `status` as the device's latest result and appends it to
  // the device's bounded history, in one write batch (durable when OK), and
  // updates the counts.
  absl::Status Record(const v1::DeviceUpdateStatus& status);
  // RecordAll: Record for many results in ONE write batch (one synced
  // write: the service's group commit of concurrent reports), applied in
  // order (a device reported twice ends with its later result, history
  // counted twice). All or nothing: on error nothing is stored or counted.
  absl::Status RecordAll(const std::vector<v1::DeviceUpdateStatus>& statuses);
  // CrashEvent: what RecordCrash needs of one APP_CRASH / WATCHDOG_RESET.
  struct CrashEvent {
    v1::ErrorEvent::Kind kind = v1::ErrorEvent::APP_CRASH;
    std::string component;          // <= 64 bytes (error reporting's limit)
    std::string component_version;  // <= 32 bytes; "" = not said
  };
  // RecordCrash marks the device as crashed after its install when its
  // latest result is INSTALLED for a deployment, reported at most `window`
  // before `now`, not marked yet, and the event is not a crash of an older
  // version of the installed component (component_version names another
  // version). Returns whether it marked it (false: nothing changed).
  absl::StatusOr<bool> RecordCrash(absl::string_view device_id,
                                   const CrashEvent& event, absl::Time now,
                                   absl::Duration window);
  // History: the device's last kMaxUpdateHistory results, oldest first
  // (history_count cleared). One prefix scan.
  absl::StatusOr<std::vector<v1::DeviceUpdateStatus>> History(
      absl::string_view device_id) const;
  // Get: the device's latest result; NotFound when it never reported.
  absl::StatusOr<v1::DeviceUpdateStatus> Get(absl::string_view device_id) const;
  // Counts: per rollout stage (UpdateMetadata.rollout_stage) of a deployment.
  absl::flat_hash_map<uint32_t, StageCounts> Counts(
      absl::string_view deployment_id) const;
  // DeploymentTenant: the tenant whose devices reported for the deployment
  // (empty when none did).
  std::string DeploymentTenant(absl::string_view deployment_id) const;

 private:
  void CountLocked(const v1::DeviceUpdateStatus& s, int delta)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  store::Store* const store_;
  mutable absl::Mutex mu_;
  // Serialises Record's read-modify-write per shard (reports are rare).
  absl::Mutex write_mu_;
  // deployment id -> stage -> counts
  absl::flat_hash_map<std::string, absl::flat_hash_map<uint32_t, StageCounts>>
      counts_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::string> tenants_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sphere::update

#endif  // SPHERE_SECURITYSVC_UPDATE_UPDATE_RESULTS_H_
