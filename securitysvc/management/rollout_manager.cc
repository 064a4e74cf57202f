#include "securitysvc/management/rollout_manager.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/util/log.h"

namespace sphere::management {

RolloutManager::RolloutManager(Catalog* catalog, DeploymentCountSource* counts)
    : catalog_(catalog), counts_(counts) {}

RolloutManager::~RolloutManager() { Stop(); }

absl::StatusOr<std::unique_ptr<RolloutManager>> RolloutManager::Open(
    Catalog* catalog, const Clock* clock, DeploymentCountSource* counts,
    Options options) {
  std::unique_ptr<RolloutManager> m(new RolloutManager(catalog, counts));
  m->is_leader_ = options.is_leader;
  update::RolloutController::Hooks hooks;
  RolloutManager* self = m.get();
  hooks.apply = [catalog, self](const v1::Deployment& d) {
    absl::Status s =
        catalog->SetDeploymentRollout(Caller::PlatformOperator(), d).status();
    // The deployment was deleted: its rollout ends with it.
    if (absl::IsNotFound(s)) self->controller_->Forget(d.id());
    return s;
  };
  hooks.counts = [counts](const v1::Deployment& d, uint32_t stage) {
    return counts->Counts(d, stage);
  };
  hooks.is_leader = options.is_leader;
  m->controller_ = std::make_unique<update::RolloutController>(
      clock, std::move(hooks), std::move(options.plan));
  auto all = catalog->AllDeployments(Caller::PlatformOperator());
  if (!all.ok()) return all.status();
  for (const v1::Deployment& d : *all) {
    if (d.rollout_status().empty()) continue;
    if (auto s = m->controller_->Restore(d); !s.ok()) {
      // A damaged record must not stop management: that rollout stays
      // where the catalog has it, and says so.
      log::Warning("rollout: not restored",
                   {{"deployment", d.id()}, {"error", s.ToString()}});
    }
  }
  return m;
}

void RolloutManager::StartNew() {
  auto all = catalog_->AllDeployments(Caller::PlatformOperator());
  if (!all.ok()) {
    log::Warning("rollout: cannot list deployments",
                 {{"error", all.status().ToString()}});
    return;
  }
  for (const v1::Deployment& d : *all) {
    if (auto s = StartOne(d); !s.ok()) {
      log::Warning("rollout: start failed; will retry",
                   {{"deployment", d.id()}, {"error", s.ToString()}});
    }
  }
}

absl::Status RolloutManager::StartOne(const v1::Deployment& d) {
  if (!d.rollout_status().empty() || d.rollout_fraction() >= 1 || d.halted() ||
      controller_->Has(d.id())) {
    return absl::OkStatus();  // not staged, or already rolling out
  }
  auto group = catalog_->GetDeviceGroup(Caller::PlatformOperator(),
                                        d.tenant_id(), d.device_group_id());
  if (!group.ok()) return group.status();
  absl::Status s = controller_->Start(d, group->rollout_failure_threshold());
  if (absl::IsAlreadyExists(s)) return absl::OkStatus();  // raced: started
  if (s.ok()) log::Info("rollout started", {{"deployment", d.id()}});
  return s;
}

void RolloutManager::Tick() {
  if (is_leader_ && !is_leader_()) return;
  StartNew();
  controller_->Tick();
}

void RolloutManager::RunEvery(absl::Duration interval) {
  // Not the controller's RunEvery: discovery (StartNew) must run each tick
  // too.
  stop_thread_ = std::thread([this, interval] {
    while (!stop_.WaitForNotificationWithTimeout(interval)) Tick();
  });
}

void RolloutManager::Stop() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (stop_thread_.joinable()) stop_thread_.join();
}

absl::StatusOr<v1::Deployment> RolloutManager::Visible(
    const Caller& caller, absl::string_view tenant,
    absl::string_view deployment_id) {
  auto d = catalog_->GetDeployment(caller, tenant, deployment_id);
  if (!d.ok()) return d.status();
  // A staged deployment created since the last tick starts now, so an
  // operator never sees "no rollout" for it (leader only).
  if (!controller_->Has(d->id()) && (!is_leader_ || is_leader_())) {
    if (auto s = StartOne(*d); !s.ok()) return s;
  }
  if (!controller_->Has(d->id())) {
    return absl::NotFoundError(absl::StrFormat(
        "deployment \"%s\" has no staged rollout (it was deployed to the "
        "whole group at once)",
        d->id()));
  }
  return d;
}

absl::StatusOr<v1::RolloutStatus> RolloutManager::Status(
    const Caller& caller, absl::string_view tenant,
    absl::string_view deployment_id) {
  auto d = Visible(caller, tenant, deployment_id);
  if (!d.ok()) return d.status();
  const std::string* id = &d->id();
  auto st = controller_->Status(*id);
  if (!st.ok()) return st.status();
  auto c = counts_->Counts(*d, st->stage_percents(st->stage_index()));
  if (c.ok()) {
    *st->mutable_current() = *c;
  } else {
    // Status still answers; the counts say they are missing.
    st->clear_current();
    log::Warning("rollout: counts unavailable for status",
                 {{"deployment", *id}, {"error", c.status().ToString()}});
  }
  st->clear_baseline();
  return st;
}

absl::Status RolloutManager::Pause(const Caller& caller,
                                   absl::string_view tenant,
                                   absl::string_view deployment_id) {
  auto d = Visible(caller, tenant, deployment_id);
  if (!d.ok()) return d.status();
  return controller_->Pause(d->id());
}

absl::Status RolloutManager::Resume(const Caller& caller,
                                    absl::string_view tenant,
                                    absl::string_view deployment_id) {
  auto d = Visible(caller, tenant, deployment_id);
  if (!d.ok()) return d.status();
  return controller_->Resume(d->id());
}

absl::Status RolloutManager::Abort(const Caller& caller,
                                   absl::string_view tenant,
                                   absl::string_view deployment_id,
                                   absl::string_view reason) {
  if (reason.size() > 200) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "an abort reason is at most 200 bytes; this one is %d", reason.size()));
  }
  auto d = Visible(caller, tenant, deployment_id);
  if (!d.ok()) return d.status();
  return controller_->Abort(d->id(), std::string(reason));
}

}  // namespace sphere::management
