#include "securitysvc/shard_flags.h"

#include <cstdint>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"

// int64 so a negative value reaches the check (and is refused by name)
// instead of wrapping around.
ABSL_FLAG(int64_t, status_read_threads,
          sphere::ShardSizes().status_reads.threads,
          "Threads reading the store for GetDeviceStatus/GetDeviceHistory "
          "(1-64)");
ABSL_FLAG(int64_t, status_read_queue,
          static_cast<int64_t>(sphere::ShardSizes().status_reads.max_queue),
          "Status/history reads waiting for a thread, all readers (1-65536); "
          "more are refused with RESOURCE_EXHAUSTED");
ABSL_FLAG(int64_t, status_read_per_reader,
          static_cast<int64_t>(sphere::ShardSizes().status_reads.max_per_key),
          "Of those, at most this many from one reader: a tenant or the "
          "platform (1-status_read_queue)");
ABSL_FLAG(int64_t, session_token_slots,
          static_cast<int64_t>(sphere::ShardSizes().session_token_slots),
          "Verified gateway session tokens remembered (1-1048576; each slot "
          "holds one token of at most 1 KiB)");

namespace sphere {
namespace {

// Raw: the four values as int64, so a negative or huge flag value is
// checked (and named) before it is narrowed.
struct Raw {
  int64_t threads, queue, per_reader, slots;
};

absl::Status OutOfRange(absl::string_view flag, int64_t value, int64_t low,
                        int64_t high, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, "=", value, ": ", what, " must be between ",
                   low, " and ", high, " (docs/shard-flags.md)"));
}

absl::Status Check(const Raw& r) {
  if (r.threads < 1 || r.threads > kMaxStatusReadThreads) {
    return OutOfRange("status_read_threads", r.threads, 1,
                      kMaxStatusReadThreads, "status read threads");
  }
  if (r.queue < 1 || r.queue > static_cast<int64_t>(kMaxStatusReadQueue)) {
    return OutOfRange("status_read_queue", r.queue, 1, kMaxStatusReadQueue,
                      "queued status reads");
  }
  if (r.per_reader < 1 || r.per_reader > r.queue) {
    return OutOfRange("status_read_per_reader", r.per_reader, 1, r.queue,
                      "queued status reads of one reader (at most "
                      "--status_read_queue)");
  }
  if (r.slots < 1 || r.slots > static_cast<int64_t>(kMaxSessionTokenSlots)) {
    return OutOfRange("session_token_slots", r.slots, 1,
                      static_cast<int64_t>(kMaxSessionTokenSlots),
                      "remembered session tokens");
  }
  return absl::OkStatus();
}

int64_t Wide(size_t v) {
  return v > static_cast<size_t>(INT64_MAX) ? INT64_MAX
                                            : static_cast<int64_t>(v);
}

}  // namespace

absl::Status ValidateShardSizes(const ShardSizes& s) {
  return Check({s.status_reads.threads, Wide(s.status_reads.max_queue),
                Wide(s.status_reads.max_per_key),
                Wide(s.session_token_slots)});
}

absl::StatusOr<ShardSizes> ShardSizesFromFlags() {
  const Raw r{absl::GetFlag(FLAGS_status_read_threads),
              absl::GetFlag(FLAGS_status_read_queue),
              absl::GetFlag(FLAGS_status_read_per_reader),
              absl::GetFlag(FLAGS_session_token_slots)};
  if (absl::Status st = Check(r); !st.ok()) return st;
  ShardSizes s;
  s.status_reads.threads = static_cast<int>(r.threads);
  s.status_reads.max_queue = static_cast<size_t>(r.queue);
  s.status_reads.max_per_key = static_cast<size_t>(r.per_reader);
  s.session_token_slots = static_cast<size_t>(r.slots);
  return s;
}

}  // namespace sphere
