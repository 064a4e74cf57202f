// ErrorReportingPlugin: error reporting as a shard plug-in. It brings the
// error column families (ErrorStore), a GroupCommitWriter over the shard's
// store ("errors"), the ErrorReportingService, and a retention sweeper
// thread that deletes reports older than 14 days (ErrorStore::SweepExpired)
// every `sweep_interval`.
//
// Example (shard_main.cc):
//   plugins.push_back(std::make_unique<errors::ErrorReportingPlugin>());
#ifndef SPHERE_SECURITYSVC_ERRORS_ERROR_PLUGIN_H_
#define SPHERE_SECURITYSVC_ERRORS_ERROR_PLUGIN_H_

#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/store/group_commit.h"
#include "securitysvc/errors/error_service.h"
#include "securitysvc/errors/error_store.h"
#include "securitysvc/shard_server/shard_plugin.h"

namespace sphere::errors {

class ErrorReportingPlugin final : public shard::ShardPlugin {
 public:
  struct Options {
    store::GroupCommitOptions group_commit = DefaultGroupCommit();
    // Group-commit writers (threads) over the shard's store; a device always
    // uses the same one. More than one lets RocksDB insert several groups'
    // keys into the memtable at once (for machines where the one commit
    // thread saturates a core); on the 2-core machine measured, 2 gave no
    // gain and twice the synced writes (docs/benchmarks.md, "Error
    // ingest", stop 19), so the default is 1. Each writer has
    // group_commit's queue bounds.
    int writers = 1;
    // How often the retention sweep runs (0 = never; tests sweep by hand).
    absl::Duration sweep_interval = absl::Hours(1);
    // Called for every durable upload (see AcceptedHook); optional.
    AcceptedHook on_accepted;
    // Per-device upload quota and memory bounds of the ingest path.
    ErrorStoreOptions store;
  };
  static store::GroupCommitOptions DefaultGroupCommit() {
    store::GroupCommitOptions o;
    o.name = "errors";
    return o;
  }
  ErrorReportingPlugin() : ErrorReportingPlugin(Options()) {}
  explicit ErrorReportingPlugin(Options options) : options_(options) {}
  ~ErrorReportingPlugin() override { Stop(); }

  std::string name() const override { return "error_reporting"; }
  std::vector<std::string> ColumnFamilies() const override {
    return errors::ColumnFamilies();
  }
  absl::Status Init(shard::ShardContext& context) override;
  std::vector<grpc::Service*> Services() override { return {service_.get()}; }
  void Stop() override;

  ErrorStore* error_store() { return errors_.get(); }

 private:
  void SweepLoop();

  Options options_;
  std::vector<std::unique_ptr<store::GroupCommitWriter>> writers_;
  std::unique_ptr<ErrorStore> errors_;
  std::unique_ptr<ErrorReportingServiceImpl> service_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread sweeper_;
};

}  // namespace sphere::errors

#endif  // SPHERE_SECURITYSVC_ERRORS_ERROR_PLUGIN_H_
