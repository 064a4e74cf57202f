#include "twin/update_runner.h"

#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "twin/driver.h"

namespace sphere::twin {
namespace {

// Await calls `start(deliver)` and waits for the one answer it delivers.
template <typename T, typename Start>
T Await(Start start) {
  struct Slot {
    absl::Notification done;
    std::optional<T> value;
  };
  auto slot = std::make_shared<Slot>();
  start([slot](T v) {
    slot->value.emplace(std::move(v));
    slot->done.Notify();
  });
  slot->done.WaitForNotification();
  return std::move(*slot->value);
}

}  // namespace

absl::Status RunUpdateCheck(Twin& twin, UpdateAgent& agent,
                            client::UpdateTransport& updates,
                            client::AttestationTransport& attestation,
                            Clock* clock, absl::Time deadline,
                            TwinDriver::AttestObserver observer) {
  UpdateAgent::Request r = agent.CheckNow(clock->Now());
  if (std::holds_alternative<std::monostate>(r) &&
      agent.phase() == UpdateAgent::Phase::kIdle) {
    return agent.last_error();
  }
  while (true) {
    const absl::Time now = clock->Now();
    if (now >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("update check did not finish in time (agent ",
                       UpdateAgent::PhaseName(agent.phase()),
                       ", last error: ", agent.last_error().message(), ")"));
    }
    if (auto* g = std::get_if<v1::GetUpdatesRequest>(&r)) {
      auto answer = Await<absl::StatusOr<v1::GetUpdatesResponse>>(
          [&](auto deliver) { updates.GetUpdates(std::move(*g), deliver); });
      r = agent.OnUpdates(clock->Now(), std::move(answer));
      continue;
    }
    if (auto* d = std::get_if<UpdateAgent::DownloadRequest>(&r)) {
      auto answer = Await<client::DownloadResult>([&](auto deliver) {
        updates.DownloadImage(std::move(d->request), d->max_bytes, deliver);
      });
      r = agent.OnDownload(clock->Now(), std::move(answer));
      continue;
    }
    if (auto* p = std::get_if<v1::ReportUpdateResultRequest>(&r)) {
      auto answer = Await<absl::Status>(
          [&](auto deliver) { updates.ReportUpdateResult(*p, deliver); });
      r = agent.OnReport(clock->Now(), answer);
      continue;
    }
    switch (agent.phase()) {
      case UpdateAgent::Phase::kIdle:
        return agent.last_error();
      case UpdateAgent::Phase::kAwaitingAttestation: {
        // Re-attest after the install reboot; the twin tells the agent.
        TwinDriver driver(&attestation, clock);
        if (observer) driver.set_attest_observer(observer);
        driver.Add(&twin);
        driver.RunUntil(
            [&] {
              return agent.phase() !=
                         UpdateAgent::Phase::kAwaitingAttestation ||
                     twin.phase() == Twin::Phase::kRefused;
            },
            deadline);
        if (agent.phase() == UpdateAgent::Phase::kAwaitingAttestation) {
          return absl::Status(
              twin.last_error().ok() ? absl::StatusCode::kDeadlineExceeded
                                     : twin.last_error().code(),
              absl::StrCat("re-attestation after the install failed: ",
                           twin.last_error().message()));
        }
        r = agent.OnTimer(clock->Now());
        continue;
      }
      case UpdateAgent::Phase::kReporting: {
        // A report is waiting for its retry time: wait for it (bounded).
        const absl::Time wake = std::min(agent.next_wakeup(), deadline);
        if (wake > now) {
          absl::Notification never;  // a bounded timed wait, not a poll
          never.WaitForNotificationWithTimeout(wake - now);
        }
        r = agent.OnTimer(clock->Now());
        continue;
      }
      default:
        return absl::InternalError(absl::StrCat(
            "update agent stuck in ", UpdateAgent::PhaseName(agent.phase())));
    }
  }
}

}  // namespace sphere::twin
