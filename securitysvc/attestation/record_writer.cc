#include "securitysvc/attestation/record_writer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/util/metrics.h"

namespace sphere::attestation {
namespace {

metrics::CounterMetric* StoreWrites() {
  static auto* c = metrics::Counter(
      "sphere_record_group_writes_total",
      "Store writes (WAL syncs) made by the shard's group-commit writer");
  return c;
}

metrics::CounterMetric* Batches() {
  static auto* c = metrics::Counter(
      "sphere_record_group_batches_total",
      "Record batches committed by the group-commit writer, by outcome");
  return c;
}

}  // namespace

size_t BatchBytes(const store::WriteBatch& batch) {
  size_t n = 0;
  for (const auto& op : batch.ops()) {
    n += op.cf.size() + op.key.size() + op.value.size();
  }
  return n;
}

GroupCommitWriter::GroupCommitWriter(store::Store* store, Options options)
    : store_(store), options_(options) {
  thread_ = std::thread([this] { Run(); });
}

GroupCommitWriter::~GroupCommitWriter() { Stop(); }

void GroupCommitWriter::Write(store::WriteBatch batch, Done done) {
  const size_t bytes = BatchBytes(batch);
  absl::Status refused;
  {
    absl::MutexLock l(&mu_);
    if (stopping_) {
      refused = absl::UnavailableError(
          "the shard is shutting down: record not written; retry");
    } else if (queue_.size() >= options_.max_pending_batches ||
               queued_bytes_ + bytes > options_.max_pending_bytes) {
      refused = absl::UnavailableError(absl::StrCat(
          "record writer busy (", queue_.size(), " batches, ", queued_bytes_,
          " bytes waiting for the disk); retry"));
    } else {
      queued_bytes_ += bytes;
      queue_.push_back({std::move(batch), std::move(done), bytes});
      return;
    }
  }
  Batches()->Increment("outcome=\"refused\"");
  done(refused);
}

void GroupCommitWriter::Stop() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

uint64_t GroupCommitWriter::store_writes() const {
  absl::MutexLock l(&mu_);
  return store_writes_;
}

uint64_t GroupCommitWriter::batches_written() const {
  absl::MutexLock l(&mu_);
  return batches_written_;
}

void GroupCommitWriter::Run() {
  auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() || stopping_;
  };
  while (true) {
    std::deque<Pending> group;
    {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) return;  // stopping, drained
      size_t bytes = 0;
      while (!queue_.empty() && group.size() < options_.max_group_batches &&
             (group.empty() ||
              bytes + queue_.front().bytes <= options_.max_group_bytes)) {
        bytes += queue_.front().bytes;
        queued_bytes_ -= queue_.front().bytes;
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    Commit(group);
  }
}

void GroupCommitWriter::Commit(std::deque<Pending>& group) {
  std::vector<absl::Status> results(group.size());
  uint64_t writes = 0;
  absl::Status merged_status;
  if (group.size() == 1) {
    merged_status = store_->Write(group.front().batch);
    ++writes;
    results[0] = merged_status;
  } else {
    store::WriteBatch merged;
    for (const Pending& p : group) {
      for (const auto& op : p.batch.ops()) {
        if (op.is_delete) {
          merged.Delete(op.cf, op.key);
        } else {
          merged.Put(op.cf, op.key, op.value);
        }
      }
    }
    merged_status = store_->Write(merged);
    ++writes;
    if (merged_status.ok()) {
      for (auto& r : results) r = absl::OkStatus();
    } else {
      // Nothing of the group was applied (a write is atomic): write each
      // batch alone so a batch the store refuses fails only itself.
      for (size_t i = 0; i < group.size(); ++i) {
        results[i] = store_->Write(group[i].batch);
        ++writes;
      }
    }
  }
  uint64_t ok = 0;
  for (const auto& r : results) ok += r.ok() ? 1 : 0;
  {
    absl::MutexLock l(&mu_);
    store_writes_ += writes;
    batches_written_ += ok;
  }
  StoreWrites()->Increment("", writes);
  if (ok > 0) Batches()->Increment("outcome=\"ok\"", ok);
  if (ok < group.size()) {
    Batches()->Increment("outcome=\"failed\"", group.size() - ok);
  }
  for (size_t i = 0; i < group.size(); ++i) {
    group[i].done(std::move(results[i]));
  }
}

}  // namespace sphere::attestation
