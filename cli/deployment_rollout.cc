// spherectl deployment status|pause|resume|abort: staged rollouts
// (DeploymentRolloutService on management; see docs/update-service.md).
#include <CLI/CLI.hpp>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/commands.h"
#include "protos/update.grpc.pb.h"

namespace sphere::cli {
namespace {

using R = v1::DeploymentRolloutService::Stub;

const std::vector<std::string> kRolloutHeaders = {
    "STATE",    "STAGE",       "SOAK LEFT",
    "IN STAGE", "PENDING",     "INSTALLED",
    "FAILED",   "ROLLED BACK", "CRASHED AFTER INSTALL",
    "DEFERRED", "HALT REASON"};

std::string StateName(v1::RolloutStatus::State s) {
  std::string n = v1::RolloutStatus::State_Name(s);
  for (char& ch : n) ch = static_cast<char>(std::tolower(ch));
  return n;
}

std::vector<std::string> RolloutRow(const v1::RolloutStatus& s) {
  std::vector<std::string> stages;
  for (uint32_t p : s.stage_percents()) stages.push_back(absl::StrCat(p, "%"));
  const uint32_t pct =
      s.stage_percents_size() > 0 &&
              s.stage_index() < static_cast<uint32_t>(s.stage_percents_size())
          ? s.stage_percents(s.stage_index())
          : 0;
  std::string soak = "-";
  if (s.state() == v1::RolloutStatus::RUNNING) {
    const int64_t left_ms = s.stage_started_unix_ms() + s.soak_ms() -
                            absl::ToUnixMillis(absl::Now());
    soak = absl::FormatDuration(
        absl::Seconds(std::max<int64_t>(0, left_ms / 1000)));
  }
  const bool counted = s.has_current();
  auto n = [counted](uint64_t v) {
    return counted ? absl::StrCat(v) : std::string("?");
  };
  return {StateName(s.state()),
          absl::StrFormat("%u%% (%u of %d: %s)", pct, s.stage_index() + 1,
                          s.stage_percents_size(), absl::StrJoin(stages, ",")),
          soak,
          n(s.current().in_stage()),
          n(s.current().pending()),
          n(s.current().installed()),
          n(s.current().failed()),
          n(s.current().rolled_back()),
          n(s.current().crashed_after_install()),
          n(s.current().deferred()),
          s.halt_reason().empty() ? "-" : s.halt_reason()};
}

// RolloutVerb adds one of status|pause|resume|abort.
void RolloutVerb(CLI::App* noun, Context* ctx, const std::string& name,
                 const std::string& help,
                 grpc::Status (R::*method)(grpc::ClientContext*,
                                           const v1::RolloutRequest&,
                                           v1::RolloutStatus*),
                 bool with_reason) {
  struct Args {
    std::string deployment, reason;
  };
  auto a = std::make_shared<Args>();
  CLI::App* verb =
      Verb(noun, ctx, name, help, Access::kTenant,
           [a, method](Context& c) -> absl::Status {
             if (auto s = Require("--deployment", a->deployment); !s.ok())
               return s;
             v1::RolloutRequest req;
             req.set_tenant_id(c.TenantField());
             req.set_deployment_id(a->deployment);
             req.set_reason(a->reason);
             auto stub = v1::DeploymentRolloutService::NewStub(
                 rpc::NewChannel(c.cluster().management, c.cluster().credential,
                                 c.cluster().management_server_name));
             grpc::ClientContext gctx;
             gctx.set_deadline(rpc::Deadline(c.timeout()));
             v1::RolloutStatus resp;
             if (auto s = c.MapStatus((stub.get()->*method)(&gctx, req, &resp));
                 !s.ok()) {
               return s;
             }
             PrintOne(c, resp, kRolloutHeaders, RolloutRow(resp));
             return absl::OkStatus();
           });
  verb->add_option("--deployment", a->deployment, "deployment id")->required();
  if (with_reason) {
    verb->add_option("--reason", a->reason,
                     "why (recorded as the halt reason; at most 200 bytes)");
  }
}

}  // namespace

std::string RolloutSummary(const v1::Deployment& d) {
  v1::RolloutStatus s;
  if (d.rollout_status().empty() || !s.ParseFromString(d.rollout_status()) ||
      s.stage_index() >= static_cast<uint32_t>(s.stage_percents_size())) {
    // Deployed to the whole group at once (or a record spherectl cannot
    // read: the deployment's own fields still say whether it is halted).
    return d.halted() ? absl::StrCat("halted: ", d.halt_reason()) : "active";
  }
  const std::string stage =
      absl::StrFormat("%u%% (%u of %d)", s.stage_percents(s.stage_index()),
                      s.stage_index() + 1, s.stage_percents_size());
  switch (s.state()) {
    case v1::RolloutStatus::RUNNING:
      return absl::StrCat("running: stage ", stage);
    case v1::RolloutStatus::PAUSED:
      return absl::StrCat("paused at stage ", stage);
    case v1::RolloutStatus::COMPLETE:
      return "complete: 100%";
    case v1::RolloutStatus::HALTED:
    case v1::RolloutStatus::ABORTED:
      return absl::StrCat(StateName(s.state()), " at stage ", stage, ": ",
                          s.halt_reason());
    default:
      return absl::StrCat(StateName(s.state()), " at stage ", stage);
  }
}

void AddDeploymentRolloutCommands(CLI::App* noun, Context* ctx) {
  RolloutVerb(noun, ctx, "status",
              "a staged rollout: state, stage, soak left, counts of the "
              "current stage over all shards, why it halted",
              &R::GetRolloutStatus, false);
  RolloutVerb(noun, ctx, "pause",
              "stop advancing a running rollout (its stage stays served)",
              &R::PauseRollout, false);
  RolloutVerb(noun, ctx, "resume",
              "resume a paused or halted rollout (the soak restarts; only "
              "failures from now on count)",
              &R::ResumeRollout, false);
  RolloutVerb(noun, ctx, "abort",
              "stop a rollout for good (devices outside it keep what they run)",
              &R::AbortRollout, true);
}

}  // namespace sphere::cli
