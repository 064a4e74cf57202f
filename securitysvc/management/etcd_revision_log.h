// EtcdRevisionLog implements RevisionLog (revision_log.h) on etcd's v3 gRPC
// API (KV Range/Txn/Compact and Watch; third_party/etcd holds the subset of
// etcd's protos used), so several management replicas share one catalog with
// etcd's consensus instead of our own.
//
// Mapping: (cf, key) is the etcd key "<prefix><cf>/<key>"; a RevisionLog
// revision is etcd's store revision; Compare is etcd's Compare on MOD (0: the
// key is absent); a Snapshot is a Range at a fixed revision (it fails with
// OutOfRange once etcd compacted past it); Watch is one etcd watch over the
// prefix, resumed from the last delivered revision + 1 after a member fails.
//
// Failures: reads are retried across the members within options.rpc_timeout
// (they are idempotent); a Txn is sent once: if the connection fails after it
// was sent its outcome is unknown and Txn answers Unavailable (the caller sees
// the outcome later through Watch). Requests larger than etcd's limits
// (options.max_txn_ops, options.max_request_bytes: etcd's --max-txn-ops and
// --max-request-bytes, default 128 and 1.5 MiB) are refused with
// InvalidArgument before anything is sent.
//
// Thread-safety: all methods may be called concurrently.
//
// Example:
//   EtcdOptions o;
//   o.endpoints = {"127.0.0.1:2379", "127.0.0.1:22379"};
//   o.ca_pem = ...; o.cert_pem = ...; o.key_pem = ...;  // mTLS
//   auto log = *EtcdRevisionLog::Connect(o);
//   auto catalog = *Catalog::Open(log.get(), clock, catalog_options);
#ifndef SPHERE_SECURITYSVC_MANAGEMENT_ETCD_REVISION_LOG_H_
#define SPHERE_SECURITYSVC_MANAGEMENT_ETCD_REVISION_LOG_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "securitysvc/management/revision_log.h"

namespace sphere::management {

struct EtcdOptions {
  std::vector<std::string> endpoints;  // host:port of the etcd members
  std::string prefix = "/sphere/catalog/";
  // mTLS to etcd (all three PEMs); all empty means plaintext (tests only).
  std::string ca_pem;
  std::string cert_pem;
  std::string key_pem;
  std::string server_name;  // TLS name to verify; default: the first host
  absl::Duration rpc_timeout = absl::Seconds(5);
  size_t max_txn_ops = 128;                // etcd --max-txn-ops
  size_t max_request_bytes = 1536 * 1024;  // etcd --max-request-bytes
  int64_t range_page = 512;                // keys per Range page
};

// ParseEtcdUrl parses "etcd://host:port[,host:port...]" into endpoints.
absl::StatusOr<std::vector<std::string>> ParseEtcdUrl(absl::string_view url);

// EtcdChannel opens one channel over all endpoints (pick_first: a failed
// member's callers move to the next one).
absl::StatusOr<std::shared_ptr<grpc::Channel>> EtcdChannel(
    const EtcdOptions& options);

class EtcdRevisionLog final : public RevisionLog {
 public:
  static absl::StatusOr<std::unique_ptr<EtcdRevisionLog>> Connect(
      EtcdOptions options);
  ~EtcdRevisionLog() override;

  absl::StatusOr<std::string> Get(absl::string_view cf,
                                  absl::string_view key) override;
  absl::Status Scan(absl::string_view cf, absl::string_view prefix,
                    const std::function<bool(absl::string_view key,
                                             absl::string_view value)>& fn,
                    absl::string_view start = "") override;
  absl::StatusOr<KeyInfo> Stat(absl::string_view cf,
                               absl::string_view key) override;
  absl::StatusOr<TxnResult> Txn(const std::vector<Compare>& compares,
                                const store::WriteBatch& ops) override;
  absl::StatusOr<std::unique_ptr<Snapshot>> NewSnapshot() override;
  absl::StatusOr<std::unique_ptr<Watcher>> Watch(
      int64_t start_revision, WatchCallbacks callbacks) override;
  absl::Status Compact(int64_t revision) override;
  absl::StatusOr<int64_t> Revision() override;
  size_t MaxTxnOps() const override { return options_.max_txn_ops; }
  bool shared() const override { return true; }

  // Reader at a fixed revision (0: latest); used by Snapshot.
  absl::StatusOr<std::string> GetAt(absl::string_view cf, absl::string_view key,
                                    int64_t revision);
  absl::Status ScanAt(
      absl::string_view cf, absl::string_view prefix,
      const std::function<bool(absl::string_view, absl::string_view)>& fn,
      absl::string_view start, int64_t revision);

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

 private:
  class Impl;
  class EtcdWatcher;
  EtcdRevisionLog(EtcdOptions options, std::shared_ptr<grpc::Channel> channel);

  const EtcdOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<Impl> impl_;
};

// EtcdStatus converts an etcd gRPC error into a Status naming the operation
// (a compacted revision becomes OutOfRange).
absl::Status EtcdStatus(const grpc::Status& status, absl::string_view what);

}  // namespace sphere::management

#endif  // SPHERE_SECURITYSVC_MANAGEMENT_ETCD_REVISION_LOG_H_
