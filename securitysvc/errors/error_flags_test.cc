#include "securitysvc/errors/error_flags.h"

#include <cstdint>
#include <limits>
#include <string>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "gtest/gtest.h"

ABSL_DECLARE_FLAG(double, error_device_event_burst);
ABSL_DECLARE_FLAG(int, error_device_max_in_flight);

namespace sphere::errors {
namespace {

// The largest batch ValidateBatch accepts: every field at its limit.
v1::UploadErrorsRequest LargestValidBatch() {
  v1::UploadErrorsRequest r;
  r.set_device_id(std::string(64, 'f'));
  r.set_dropped_events(std::numeric_limits<uint64_t>::max());
  for (int i = 0; i < kMaxEventsPerBatch; ++i) {
    v1::ErrorEvent* e = r.add_events();
    e->set_sequence(std::numeric_limits<uint64_t>::max() - i);
    e->set_kind(v1::ErrorEvent::UPDATE_ROLLED_BACK);
    e->set_component(std::string(kMaxComponentBytes, 'c'));
    e->set_component_version(std::string(kMaxVersionBytes, 'v'));
    e->set_exit_code(std::numeric_limits<int32_t>::min());
    e->set_signal(std::numeric_limits<int32_t>::min());
    e->set_detail(std::string(kMaxDetailBytes, 'd'));
    e->set_count(kMaxEventCount);
    e->set_time_unix_ms(std::numeric_limits<int64_t>::max() - 1);
    e->set_end_time_unix_ms(std::numeric_limits<int64_t>::max());
  }
  return r;
}

TEST(ErrorFlagsTest, LargestValidBatchFitsTheByteBurstBound) {
  const v1::UploadErrorsRequest r = LargestValidBatch();
  ASSERT_TRUE(ValidateBatch(r).ok()) << ValidateBatch(r);
  EXPECT_LE(r.ByteSizeLong(), kMaxBatchBytes);
  // ... and the shard's default 1 MiB request limit carries it.
  EXPECT_LE(r.ByteSizeLong(), size_t{1} << 20);
}

TEST(ErrorFlagsTest, DefaultsAreValidAndHoldOneFullBatch) {
  const ErrorStoreOptions d;
  EXPECT_TRUE(ValidateQuota(d).ok()) << ValidateQuota(d);
  EXPECT_GE(d.device_event_burst, kMaxEventsPerBatch);
  EXPECT_GE(d.device_byte_burst, static_cast<double>(kMaxBatchBytes));
  absl::StatusOr<ErrorStoreOptions> f = ErrorStoreOptionsFromFlags();
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->device_events_per_second, d.device_events_per_second);
  EXPECT_EQ(f->device_bytes_per_second, d.device_bytes_per_second);
  EXPECT_EQ(f->max_in_flight_per_device, d.max_in_flight_per_device);
}

TEST(ErrorFlagsTest, BurstBelowOneBatchIsRefusedNamingTheFlag) {
  ErrorStoreOptions o;
  o.device_event_burst = kMaxEventsPerBatch - 1;
  absl::Status s = ValidateQuota(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("--error_device_event_burst"), std::string::npos)
      << s;
  o = ErrorStoreOptions();
  o.device_byte_burst = kMaxBatchBytes - 1;
  s = ValidateQuota(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("--error_device_byte_burst"), std::string::npos)
      << s;
  // A disabled bucket needs no burst.
  o = ErrorStoreOptions();
  o.device_events_per_second = 0;
  o.device_event_burst = 0;
  EXPECT_TRUE(ValidateQuota(o).ok());
}

TEST(ErrorFlagsTest, FlagsOverrideAndAreValidated) {
  absl::SetFlag(&FLAGS_error_device_max_in_flight, 4);
  absl::StatusOr<ErrorStoreOptions> f = ErrorStoreOptionsFromFlags();
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->max_in_flight_per_device, 4);
  absl::SetFlag(&FLAGS_error_device_max_in_flight, 0);
  f = ErrorStoreOptionsFromFlags();
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(f.status().message().find("--error_device_max_in_flight"),
            std::string::npos);
  absl::SetFlag(&FLAGS_error_device_max_in_flight, 2);
  absl::SetFlag(&FLAGS_error_device_event_burst, 10);
  f = ErrorStoreOptionsFromFlags();
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  absl::SetFlag(&FLAGS_error_device_event_burst, 10000);
}

}  // namespace
}  // namespace sphere::errors
