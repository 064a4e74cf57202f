#include "common/store/group_commit.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/util/metrics.h"

namespace sphere::store {
namespace {

metrics::HistogramMetric* WriteLatency() {
  static auto* m = metrics::Histogram(
      "sphere_group_commit_write_seconds",
      "Duration of one group-commit synced write, by writer");
  return m;
}
metrics::CounterMetric* GroupBatches() {
  static auto* m = metrics::Counter(
      "sphere_group_commit_batches_total",
      "Batches written by group commit, by writer and outcome");
  return m;
}
metrics::CounterMetric* Groups() {
  static auto* m = metrics::Counter(
      "sphere_group_commit_groups_total",
      "Synced writes (groups) made by group commit, by writer");
  return m;
}
metrics::CounterMetric* Refused() {
  static auto* m = metrics::Counter(
      "sphere_group_commit_refused_total",
      "Batches refused because the group-commit queue was full, by writer");
  return m;
}

}  // namespace

GroupCommitWriter::GroupCommitWriter(Store* store, GroupCommitOptions options)
    : store_(store), options_(std::move(options)) {
  thread_ = std::thread([this] { Run(); });
}

GroupCommitWriter::~GroupCommitWriter() { Stop(); }

absl::Status GroupCommitWriter::Submit(WriteBatch batch, Callback done) {
  if (batch.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("group commit (", options_.name, "): empty write batch"));
  }
  size_t bytes = batch.ApproximateBytes();
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      return absl::UnavailableError(absl::StrCat(
          "group commit (", options_.name, "): writer is stopping"));
    }
    if (queue_.size() >= options_.max_queued_batches ||
        (!queue_.empty() &&
         queued_bytes_ + bytes > options_.max_queued_bytes)) {
      Refused()->Increment(absl::StrCat("writer=\"", options_.name, "\""));
      return absl::ResourceExhaustedError(
          absl::StrCat("group commit (", options_.name, "): write queue full (",
                       queue_.size(), " batches, ", queued_bytes_,
                       " bytes waiting); retry later"));
    }
    queued_bytes_ += bytes;
    queue_.push_back(Pending{std::move(batch), std::move(done), bytes});
  }
  return absl::OkStatus();
}

void GroupCommitWriter::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  std::call_once(join_once_, [this] { thread_.join(); });
}

uint64_t GroupCommitWriter::groups_written() const {
  absl::MutexLock lock(&mu_);
  return groups_;
}

uint64_t GroupCommitWriter::batches_written() const {
  absl::MutexLock lock(&mu_);
  return batches_;
}

void GroupCommitWriter::Run() {
  const std::string label = absl::StrCat("writer=\"", options_.name, "\"");
  const metrics::Labels hist_labels = {{"writer", options_.name}};
  std::vector<Pending> group;
  for (;;) {
    group.clear();
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](GroupCommitWriter* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) {
            return w->stopping_ || !w->queue_.empty();
          },
          this));
      if (queue_.empty()) return;  // stopping and drained
      size_t bytes = 0;
      while (!queue_.empty() &&
             (group.empty() ||
              bytes + queue_.front().bytes <= options_.max_group_bytes)) {
        bytes += queue_.front().bytes;
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      queued_bytes_ -= bytes;
    }
    // One synced write for the whole group.
    absl::Status status;
    absl::Time start = absl::Now();
    std::vector<absl::Status> results;
    if (group.size() == 1) {
      status = store_->Write(group[0].batch);
      results.assign(1, status);
    } else {
      // The group's batches are moved (not copied) into one batch; each
      // batch's operations are [ends[i-1], ends[i]) of it.
      WriteBatch joined;
      std::vector<size_t> ends;
      ends.reserve(group.size());
      for (Pending& p : group) {
        joined.Append(std::move(p.batch));
        ends.push_back(joined.size());
      }
      status = store_->Write(joined);
      results.assign(group.size(), status);
      if (!status.ok()) {
        // Isolate the failure: each batch alone gets its own answer.
        size_t begin = 0;
        for (size_t i = 0; i < group.size(); ++i) {
          results[i] = store_->Write(joined.Slice(begin, ends[i]));
          begin = ends[i];
        }
      }
    }
    WriteLatency()->Observe(absl::ToDoubleSeconds(absl::Now() - start),
                            hist_labels);
    Groups()->Increment(label);
    {
      absl::MutexLock lock(&mu_);
      ++groups_;
      batches_ += group.size();
    }
    for (size_t i = 0; i < group.size(); ++i) {
      GroupBatches()->Increment(absl::StrCat(
          label, ",outcome=\"", results[i].ok() ? "ok" : "error", "\""));
      group[i].done(results[i]);
    }
  }
}

}  // namespace sphere::store
