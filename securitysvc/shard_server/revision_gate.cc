#include "securitysvc/shard_server/revision_gate.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/util/metrics.h"

namespace sphere::shard {
namespace {

metrics::CounterMetric* GateCounter() {
  static auto* c = metrics::Counter(
      "sphere_revision_gate_total",
      "Calls held for a catalog revision, by outcome (reached, refused_lead, "
      "refused_full, timed_out, stopped)");
  return c;
}

absl::Status Behind(int64_t current, int64_t requested, absl::string_view why) {
  return absl::UnavailableError(absl::StrCat("catalog at revision ", current,
                                             ", requested ", requested, why,
                                             "; retry"));
}

}  // namespace

RevisionGate::RevisionGate(CurrentRevision current, WaitForRevision wait,
                           Options options)
    : current_(std::move(current)),
      wait_(std::move(wait)),
      options_(options),
      thread_([this] { Run(); }) {}

RevisionGate::~RevisionGate() { Stop(); }

void RevisionGate::WhenReached(int64_t revision, absl::Time deadline,
                               absl::string_view key, Done done) {
  const int64_t current = current_();
  if (revision <= current) {
    done(absl::OkStatus());
    return;
  }
  if (revision - current > options_.max_lead) {
    GateCounter()->Increment("outcome=\"refused_lead\"");
    done(Behind(current, revision,
                absl::StrCat(" (more than ", options_.max_lead,
                             " revisions ahead of this shard)")));
    return;
  }
  const absl::Time now = absl::Now();
  deadline = std::min(deadline, now + options_.max_wait);
  absl::Status refused;
  {
    absl::MutexLock l(&mu_);
    if (stopping_) {
      refused = absl::UnavailableError("shard is shutting down; retry");
    } else if (deadline <= now) {
      refused = Behind(current, revision, " and the call's deadline passed");
    } else if (parked_.size() >= options_.max_parked) {
      refused = Behind(current, revision,
                       absl::StrCat(" and ", options_.max_parked,
                                    " calls already wait for the catalog"));
    } else if (per_key_[key] >= options_.max_per_key) {
      refused = Behind(current, revision,
                       absl::StrCat(" and this caller already has ",
                                    options_.max_per_key, " calls waiting"));
    } else {
      ++per_key_[key];
      parked_.push_back(
          {revision, deadline, std::string(key), std::move(done)});
      ++generation_;
      return;
    }
    auto it = per_key_.find(key);
    if (it != per_key_.end() && it->second == 0) per_key_.erase(it);
  }
  GateCounter()->Increment("outcome=\"refused_full\"");
  done(refused);
}

void RevisionGate::Notify() {
  absl::MutexLock l(&mu_);
  ++generation_;
}

size_t RevisionGate::parked() const {
  absl::MutexLock l(&mu_);
  return parked_.size();
}

void RevisionGate::Stop() {
  std::vector<Parked> left;
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  {
    absl::MutexLock l(&mu_);
    left.swap(parked_);
    per_key_.clear();
  }
  for (auto& p : left) {
    GateCounter()->Increment("outcome=\"stopped\"");
    p.done(absl::UnavailableError("shard is shutting down; retry"));
  }
}

void RevisionGate::Run() {
  while (true) {
    int64_t target = 0;
    absl::Time wake;
    uint64_t seen = 0;
    {
      absl::MutexLock l(&mu_);
      auto work = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return stopping_ || !parked_.empty();
      };
      mu_.Await(absl::Condition(&work));
      if (stopping_) return;
      target = parked_.front().revision;
      wake = parked_.front().deadline;
      for (const Parked& p : parked_) {
        target = std::min(target, p.revision);
        wake = std::min(wake, p.deadline);
      }
      seen = generation_;
    }
    const absl::Duration budget =
        std::clamp(wake - absl::Now(), absl::ZeroDuration(), options_.tick);
    if (wait_) {
      wait_(target, budget);
    } else {
      absl::MutexLock l(&mu_);
      auto changed = [this, seen]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return stopping_ || generation_ != seen;
      };
      mu_.AwaitWithTimeout(absl::Condition(&changed), budget);
    }
    const int64_t current = current_();
    const absl::Time now = absl::Now();
    std::vector<std::pair<Done, absl::Status>> answers;
    {
      absl::MutexLock l(&mu_);
      auto keep = parked_.begin();
      for (auto it = parked_.begin(); it != parked_.end(); ++it) {
        absl::Status answer;
        if (it->revision <= current) {
          answer = absl::OkStatus();
          GateCounter()->Increment("outcome=\"reached\"");
        } else if (it->deadline <= now) {
          answer = Behind(current, it->revision, ", not reached in time");
          GateCounter()->Increment("outcome=\"timed_out\"");
        } else {
          if (keep != it) *keep = std::move(*it);
          ++keep;
          continue;
        }
        auto k = per_key_.find(it->key);
        if (k != per_key_.end() && --k->second == 0) per_key_.erase(k);
        answers.emplace_back(std::move(it->done), std::move(answer));
      }
      parked_.erase(keep, parked_.end());
    }
    for (auto& [done, status] : answers) done(std::move(status));
  }
}

}  // namespace sphere::shard
