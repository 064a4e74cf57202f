#include "securitysvc/update/rollout_controller.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/util/log.h"

namespace sphere::update {
namespace {

using State = v1::RolloutStatus::State;

double Fraction(const v1::RolloutStatus& s) {
  return s.stage_percents(s.stage_index()) / 100.0;
}

}  // namespace

RolloutController::RolloutController(const Clock* clock, Hooks hooks, Plan plan)
    : clock_(clock), hooks_(std::move(hooks)), plan_(std::move(plan)) {}

RolloutController::~RolloutController() { Stop(); }

absl::StatusOr<RolloutController::Rollout> RolloutController::Get(
    const std::string& id) const {
  absl::MutexLock l(&mu_);
  auto it = rollouts_.find(id);
  if (it == rollouts_.end()) {
    return absl::NotFoundError(
        absl::StrCat("deployment ", id, " has no staged rollout"));
  }
  return it->second;
}

absl::Status RolloutController::Commit(Rollout next) {
  v1::Deployment& d = next.deployment;
  const State st = next.status.state();
  d.set_rollout_fraction(Fraction(next.status));
  d.set_halted(st == v1::RolloutStatus::HALTED ||
               st == v1::RolloutStatus::ABORTED);
  d.set_halt_reason(d.halted() ? next.status.halt_reason() : "");
  // The whole state travels with the deployment, so a restarted management
  // carries on where it was (Restore).
  *next.status.mutable_baseline() = next.baseline;
  v1::RolloutStatus persisted = next.status;
  persisted.clear_current();
  d.set_rollout_status(persisted.SerializeAsString());
  if (auto s = hooks_.apply(d); !s.ok()) return s;
  absl::MutexLock l(&mu_);
  rollouts_[d.id()] = std::move(next);
  return absl::OkStatus();
}

absl::Status RolloutController::Start(const v1::Deployment& deployment,
                                      double failure_threshold) {
  if (plan_.stage_percents.empty() || plan_.stage_percents.back() != 100) {
    return absl::InvalidArgumentError("a rollout plan must end at 100 %");
  }
  absl::MutexLock op(&op_mu_);
  if (Get(deployment.id()).ok()) {
    return absl::AlreadyExistsError(absl::StrCat("deployment ", deployment.id(),
                                                 " is already rolling out"));
  }
  Rollout r;
  r.deployment = deployment;
  v1::RolloutStatus& s = r.status;
  s.set_deployment_id(deployment.id());
  s.set_state(v1::RolloutStatus::RUNNING);
  for (uint32_t p : plan_.stage_percents) s.add_stage_percents(p);
  s.set_stage_index(0);
  s.set_stage_started_unix_ms(absl::ToUnixMillis(clock_->Now()));
  s.set_soak_ms(absl::ToInt64Milliseconds(plan_.soak));
  s.set_failure_threshold(failure_threshold);
  return Commit(std::move(r));
}

absl::Status RolloutController::Restore(const v1::Deployment& deployment) {
  v1::RolloutStatus status;
  if (deployment.rollout_status().empty() ||
      !status.ParseFromString(deployment.rollout_status()) ||
      status.deployment_id() != deployment.id() ||
      status.stage_percents_size() == 0 ||
      status.stage_index() >=
          static_cast<uint32_t>(status.stage_percents_size())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "deployment ", deployment.id(), " carries no valid rollout state"));
  }
  absl::MutexLock op(&op_mu_);
  Rollout r;
  r.deployment = deployment;
  r.baseline = status.baseline();
  r.status = std::move(status);
  absl::MutexLock l(&mu_);
  rollouts_[deployment.id()] = std::move(r);
  return absl::OkStatus();
}

bool RolloutController::Has(const std::string& deployment_id) const {
  return Get(deployment_id).ok();
}

void RolloutController::Forget(const std::string& deployment_id) {
  absl::MutexLock l(&mu_);
  rollouts_.erase(deployment_id);
}

absl::Status RolloutController::Pause(const std::string& id) {
  absl::MutexLock op(&op_mu_);
  auto r = Get(id);
  if (!r.ok()) return r.status();
  if (r->status.state() != v1::RolloutStatus::RUNNING) {
    return absl::FailedPreconditionError(
        absl::StrCat("deployment ", id, " is ",
                     v1::RolloutStatus::State_Name(r->status.state()),
                     "; only a running rollout can be paused"));
  }
  r->status.set_state(v1::RolloutStatus::PAUSED);
  return Commit(*std::move(r));
}

absl::Status RolloutController::Resume(const std::string& id) {
  absl::MutexLock op(&op_mu_);
  auto r = Get(id);
  if (!r.ok()) return r.status();
  const State st = r->status.state();
  if (st != v1::RolloutStatus::PAUSED && st != v1::RolloutStatus::HALTED) {
    return absl::FailedPreconditionError(absl::StrCat(
        "deployment ", id, " is ", v1::RolloutStatus::State_Name(st),
        "; only a paused or halted rollout can be resumed"));
  }
  r->status.set_state(v1::RolloutStatus::RUNNING);
  r->status.clear_halt_reason();
  // The soak restarts, and the halt rule looks only at new reports.
  r->status.set_stage_started_unix_ms(absl::ToUnixMillis(clock_->Now()));
  auto base = hooks_.counts(r->deployment,
                            r->status.stage_percents(r->status.stage_index()));
  if (!base.ok()) return base.status();
  r->baseline = *base;
  return Commit(*std::move(r));
}

absl::Status RolloutController::Abort(const std::string& id,
                                      const std::string& reason) {
  absl::MutexLock op(&op_mu_);
  auto r = Get(id);
  if (!r.ok()) return r.status();
  if (r->status.state() == v1::RolloutStatus::ABORTED ||
      r->status.state() == v1::RolloutStatus::COMPLETE) {
    return absl::FailedPreconditionError(
        absl::StrCat("deployment ", id, " is already ",
                     v1::RolloutStatus::State_Name(r->status.state())));
  }
  r->status.set_state(v1::RolloutStatus::ABORTED);
  r->status.set_halt_reason(
      absl::StrCat("aborted by operator", reason.empty() ? "" : ": ", reason));
  return Commit(*std::move(r));
}

absl::StatusOr<v1::RolloutStatus> RolloutController::Status(
    const std::string& id) const {
  auto r = Get(id);
  if (!r.ok()) return r.status();
  return r->status;
}

void RolloutController::Tick() {
  if (hooks_.is_leader && !hooks_.is_leader()) return;
  absl::MutexLock op(&op_mu_);
  std::vector<Rollout> running;
  {
    absl::MutexLock l(&mu_);
    for (const auto& [id, r] : rollouts_) {
      if (r.status.state() == v1::RolloutStatus::RUNNING) running.push_back(r);
    }
  }
  const absl::Time now = clock_->Now();
  for (Rollout& r : running) {
    v1::RolloutStatus& s = r.status;
    const std::string& id = s.deployment_id();
    const uint32_t pct = s.stage_percents(s.stage_index());
    auto counts = hooks_.counts(r.deployment, pct);
    if (!counts.ok()) {
      log::Warning("rollout: counts unavailable; not evaluating",
                   {{"deployment", id}, {"error", counts.status().ToString()}});
      continue;
    }
    const absl::Time started = absl::FromUnixMillis(s.stage_started_unix_ms());
    // Counts since the stage (re)started: subtract the baseline taken on
    // resume (zero otherwise).
    *s.mutable_current() = *counts;
    const v1::StageResultCounts& base = r.baseline;
    auto since = [](uint64_t now_v, uint64_t base_v) {
      return now_v - std::min(now_v, base_v);
    };
    const uint64_t failed = since(counts->failed(), base.failed());
    const uint64_t rolled_back =
        since(counts->rolled_back(), base.rolled_back());
    const uint64_t crashed =
        since(counts->crashed_after_install(), base.crashed_after_install());
    const uint64_t attempted_all =
        counts->installed() + counts->failed() + counts->rolled_back();
    const uint64_t attempted_base =
        base.installed() + base.failed() + base.rolled_back();
    const uint64_t attempted = since(attempted_all, attempted_base);
    const uint64_t extra =
        hooks_.extra_failures ? hooks_.extra_failures(id, started) : 0;
    s.set_extra_failures(crashed + extra);
    const uint64_t failures = failed + rolled_back + crashed + extra;
    const double threshold = s.failure_threshold();
    if (threshold > 0 && attempted >= plan_.min_attempts && attempted > 0) {
      const double rate = static_cast<double>(failures) / attempted;
      if (rate > threshold) {
        std::vector<std::string> parts;
        if (failed > 0)
          absl::StrAppend(&parts.emplace_back(), failed, " failed to install");
        if (rolled_back > 0)
          absl::StrAppend(&parts.emplace_back(), rolled_back, " rolled back");
        if (crashed > 0) {
          absl::StrAppend(&parts.emplace_back(), crashed,
                          " crashed or were watchdog-reset after install");
        }
        if (extra > 0)
          absl::StrAppend(&parts.emplace_back(), extra,
                          " crashes after install");
        s.set_state(v1::RolloutStatus::HALTED);
        s.set_halt_reason(absl::StrFormat(
            "stage %u %%: %u of %u devices failed (%s; "
            "%.1f %%), over the group's threshold of %.1f %%",
            pct, failures, attempted, absl::StrJoin(parts, ", "), rate * 100,
            threshold * 100));
        log::Warning("rollout halted",
                     {{"deployment", id}, {"reason", s.halt_reason()}});
        if (auto st = Commit(r); !st.ok()) {
          log::Warning("rollout: publishing the halt failed; will retry",
                       {{"deployment", id}, {"error", st.ToString()}});
        }
        continue;
      }
    }
    if (now < started + plan_.soak) continue;
    if (s.stage_index() + 1 >= static_cast<uint32_t>(s.stage_percents_size())) {
      s.set_state(v1::RolloutStatus::COMPLETE);
    } else {
      s.set_stage_index(s.stage_index() + 1);
      s.set_stage_started_unix_ms(absl::ToUnixMillis(now));
      s.clear_current();
      r.baseline.Clear();
    }
    if (auto st = Commit(r); !st.ok()) {
      log::Warning("rollout: publishing the next stage failed; will retry",
                   {{"deployment", id}, {"error", st.ToString()}});
    }
  }
}

void RolloutController::RunEvery(absl::Duration interval) {
  thread_ = std::thread([this, interval] {
    while (!stop_.WaitForNotificationWithTimeout(interval)) Tick();
  });
}

void RolloutController::Stop() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

}  // namespace sphere::update
