// TwinDriver runs many Twins on one thread: it fires their timers, sends
// the requests they return through an AttestationTransport (attestation
// and error uploads, the latter with the twin's session token) and feeds
// the answers back. It is the event loop the twin binary (one twin) and a load
// generator (a million) share, so device behaviour lives only in Twin.
//
// Answers arrive on the transport's threads; they are queued (one entry per
// outstanding request, at most one outstanding request per twin) and
// applied on the thread that calls RunUntil, so each Twin is only ever
// touched by that thread. Timers are a min-heap of (wake-up, twin index).
// No thread of its own; no sleeps: RunUntil waits on a condition until an
// answer arrives or the next timer is due.
//
// Batching: after each pass over due timers and answers the driver calls
// transport->Flush(), so a gateway transport sends the requests of that pass
// as one GetChallenges / AttestBatch RPC per shard (client/
// attestation_client.h, Options::max_batch).
//
// Admission: at most Options::max_active twins are mid-attestation (between
// GetChallenge and the Attest answer) at once; due timers beyond that wait
// in the heap. Without it a fleet waking together would queue all its
// challenges ahead of the first Attest and let the nonces (30 s TTL) expire.
//
// Time: twins see clock->Now(); waits for the next timer use the same
// clock's notion of "how long until", measured in real time.
//
// Thread-safety: Add, RunUntil and the accessors from one thread; the
// destructor waits for every outstanding answer (the transport's deadlines
// bound that wait).
//
// Example:
//   TwinDriver driver(&client, Clock::Real());
//   for (auto& t : twins) driver.Add(t.get());
//   driver.RunUntil([&] { return driver.settled() == twins.size(); },
//                   absl::Now() + absl::Seconds(60));
#ifndef SPHERE_TWIN_DRIVER_H_
#define SPHERE_TWIN_DRIVER_H_

#include <cstdint>
#include <functional>
#include <queue>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/attestation_client.h"
#include "common/util/clock.h"
#include "twin/twin.h"

namespace sphere::twin {

class TwinDriver {
 public:
  // Called on the RunUntil thread after a twin accepted an attestation (the
  // chain is verified and the twin is kCertified); for persistence or
  // printing. The twin itself keeps only the chain's expiry and token.
  using AttestObserver = std::function<void(uint32_t index, Twin& twin,
                                            const v1::AttestResponse&)>;

  struct Options {
    size_t max_active = 256;  // twins mid-attestation at once
  };

  // `transport` and `clock` must outlive the driver.
  TwinDriver(client::AttestationTransport* transport, Clock* clock,
             Options options);
  TwinDriver(client::AttestationTransport* transport, Clock* clock)
      : TwinDriver(transport, clock, Options()) {}
  ~TwinDriver();
  TwinDriver(const TwinDriver&) = delete;
  TwinDriver& operator=(const TwinDriver&) = delete;

  // Add registers `twin` (which must outlive the driver) and returns its
  // index; it is scheduled at its next_wakeup().
  uint32_t Add(Twin* twin);
  void set_attest_observer(AttestObserver observer) {
    observer_ = std::move(observer);
  }

  // RunUntil processes answers and due timers until `done()` holds (checked
  // after every batch of events) or `deadline` (clock time) passes. Returns
  // whether done() held.
  bool RunUntil(const std::function<bool()>& done, absl::Time deadline);

  // Twins currently kCertified / kRefused (kept up to date by RunUntil).
  size_t certified() const { return certified_; }
  size_t refused() const { return refused_; }
  // Twins mid-attestation now (<= Options::max_active).
  size_t active() const { return active_; }
  // Requests sent whose answer has not been applied yet.
  int outstanding() const;

 private:
  struct Answer {
    uint32_t index;
    std::variant<absl::StatusOr<v1::GetChallengeResponse>,
                 absl::StatusOr<v1::AttestResponse>,
                 absl::StatusOr<v1::UploadErrorsResponse>>
        result;
  };
  using Timer = std::pair<absl::Time, uint32_t>;

  void Send(uint32_t index, Twin::Request request);
  // Apply runs `event` on twin `index`, keeps the counters and schedules
  // the twin's next wake-up.
  template <typename Event>
  void Apply(uint32_t index, Event&& event);
  void Schedule(uint32_t index);
  bool AllAnsweredLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  client::AttestationTransport* const transport_;
  Clock* const clock_;
  const Options options_;
  AttestObserver observer_;
  std::vector<Twin*> twins_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_;
  size_t certified_ = 0;
  size_t refused_ = 0;
  size_t active_ = 0;

  mutable absl::Mutex mu_;
  std::vector<Answer> answers_ ABSL_GUARDED_BY(mu_);
  int outstanding_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace sphere::twin

#endif  // SPHERE_TWIN_DRIVER_H_
