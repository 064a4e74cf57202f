#include "twin/driver.h"

#include <utility>

namespace sphere::twin {

namespace {
bool Active(const Twin& twin) {
  return twin.phase() == Twin::Phase::kAwaitingChallenge ||
         twin.phase() == Twin::Phase::kAwaitingAttest;
}
}  // namespace

TwinDriver::TwinDriver(client::AttestationTransport* transport, Clock* clock,
                       Options options)
    : transport_(transport), clock_(clock), options_(options) {}

TwinDriver::~TwinDriver() {
  // Every request sent must have been answered (its callback references
  // this driver); answers queued but never applied (RunUntil gave up at its
  // deadline) are dropped with the driver.
  absl::MutexLock l(&mu_);
  mu_.Await(absl::Condition(this, &TwinDriver::AllAnsweredLocked));
}

bool TwinDriver::AllAnsweredLocked() const {
  return static_cast<size_t>(outstanding_) == answers_.size();
}

uint32_t TwinDriver::Add(Twin* twin) {
  const uint32_t index = static_cast<uint32_t>(twins_.size());
  twins_.push_back(twin);
  if (twin->phase() == Twin::Phase::kCertified) ++certified_;
  if (twin->phase() == Twin::Phase::kRefused) ++refused_;
  Schedule(index);
  return index;
}

int TwinDriver::outstanding() const {
  absl::MutexLock l(&mu_);
  return outstanding_;
}

void TwinDriver::Schedule(uint32_t index) {
  absl::Time t = twins_[index]->next_wakeup();
  if (t != absl::InfiniteFuture()) timers_.push({t, index});
}

void TwinDriver::Send(uint32_t index, Twin::Request request) {
  if (std::holds_alternative<std::monostate>(request)) return;
  {
    absl::MutexLock l(&mu_);
    ++outstanding_;
  }
  auto deliver = [this, index](auto result) {
    absl::MutexLock l(&mu_);
    answers_.push_back(Answer{index, std::move(result)});
  };
  if (auto* r = std::get_if<v1::GetChallengeRequest>(&request)) {
    transport_->GetChallenge(std::move(*r), deliver);
  } else if (auto* r = std::get_if<v1::AttestRequest>(&request)) {
    transport_->Attest(std::move(*r), deliver);
  } else if (auto* r = std::get_if<v1::UploadErrorsRequest>(&request)) {
    // A gateway speaks for many devices: the request names its device.
    r->set_device_id(twins_[index]->device().device_id());
    transport_->UploadErrors(std::move(*r), twins_[index]->session_token(),
                             deliver);
  }
}

template <typename Event>
void TwinDriver::Apply(uint32_t index, Event&& event) {
  Twin* twin = twins_[index];
  const bool was_certified = twin->phase() == Twin::Phase::kCertified;
  const bool was_refused = twin->phase() == Twin::Phase::kRefused;
  const bool was_active = Active(*twin);
  Twin::Request next = event(*twin);
  const bool is_certified = twin->phase() == Twin::Phase::kCertified;
  const bool is_refused = twin->phase() == Twin::Phase::kRefused;
  certified_ += is_certified - was_certified;
  refused_ += is_refused - was_refused;
  active_ += Active(*twin);
  active_ -= was_active;
  Send(index, std::move(next));
  Schedule(index);
}

bool TwinDriver::RunUntil(const std::function<bool()>& done,
                          absl::Time deadline) {
  std::vector<Answer> batch;
  while (true) {
    // Due timers first: they start work; answers below complete it.
    absl::Time now = clock_->Now();
    while (!timers_.empty() && timers_.top().first <= now) {
      auto [t, index] = timers_.top();
      if (twins_[index]->next_wakeup() != t) {  // stale entry
        timers_.pop();
        continue;
      }
      if (active_ >= options_.max_active) break;  // admitted later
      timers_.pop();
      Apply(index, [now](Twin& twin) { return twin.OnTimer(now); });
    }
    {
      absl::MutexLock l(&mu_);
      batch.swap(answers_);
      outstanding_ -= static_cast<int>(batch.size());
    }
    now = clock_->Now();
    for (Answer& a : batch) {
      if (auto* c = std::get_if<0>(&a.result)) {
        Apply(a.index, [now, c](Twin& twin) {
          return twin.OnChallenge(now, std::move(*c));
        });
      } else if (auto* u = std::get_if<2>(&a.result)) {
        Apply(a.index,
              [now, u](Twin& twin) { return twin.OnErrorsUploaded(now, *u); });
      } else {
        auto& r = std::get<1>(a.result);
        Apply(a.index, [this, now, &r, index = a.index](Twin& twin) {
          Twin::Request next = twin.OnAttest(now, r);
          if (r.ok() && twin.phase() == Twin::Phase::kCertified && observer_) {
            observer_(index, twin, *r);
          }
          return next;
        });
      }
    }
    // Requests made above may be held by the transport to share one batch
    // RPC per shard (gateways): send them now, once per pass.
    transport_->Flush();
    const bool progressed = !batch.empty();
    batch.clear();
    if (done()) return true;
    now = clock_->Now();
    if (now >= deadline) return false;
    if (progressed) continue;
    // Nothing to do: wait for an answer or the next timer, whichever first
    // (only answers can help while the admission window is full).
    absl::Time until = deadline;
    if (!timers_.empty() && active_ < options_.max_active) {
      until = std::min(until, timers_.top().first);
    }
    if (until <= now) continue;
    absl::MutexLock l(&mu_);
    mu_.AwaitWithTimeout(
        absl::Condition(
            +[](std::vector<Answer>* a) { return !a->empty(); }, &answers_),
        until - now);
  }
}

}  // namespace sphere::twin
