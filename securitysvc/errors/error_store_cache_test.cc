// The error store's device cache at its bound (ErrorStoreOptions::
// max_cached_devices; a shard sets it from --error_cached_devices, default
// 32,768, docs/shard-flags.md). Beyond the bound idle devices are forgotten;
// their next upload must re-read the high-water mark from the store, so a
// retried batch is answered as duplicates and nothing is stored twice.
#include <memory>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/str_format.h"
#include "common/store/group_commit.h"
#include "common/store/memory_store.h"
#include "common/util/clock.h"
#include "gtest/gtest.h"
#include "securitysvc/errors/error_store.h"
#include "securitysvc/errors/error_testing.h"

namespace sphere::errors {
namespace {

constexpr char kTenant[] = "tenant-contoso";

v1::UploadErrorsRequest Crashes(uint64_t first, int n) {
  return CrashUpload(first, n, 1767225600000 + first);
}

TEST(ErrorStoreCacheTest, ForgottenDevicesAreReReadAndNothingIsStoredTwice) {
  auto m = store::MemoryStore::Create(ColumnFamilies());
  ASSERT_TRUE(m.ok());
  std::unique_ptr<store::Store> store = std::move(*m);
  store::GroupCommitWriter writer(store.get());
  FakeClock clock;
  ErrorStoreOptions o;
  o.max_cached_devices = 4;  // 40 devices: most are forgotten in between
  auto errors = std::make_unique<ErrorStore>(store.get(), &writer, &clock, o);
  auto upload = [&](const std::string& device,
                    const v1::UploadErrorsRequest& req) {
    return IngestAndWait(errors.get(), device, kTenant, req);
  };
  constexpr int kDevices = 40;
  auto id = [](int i) { return absl::StrFormat("%064x", i + 1); };
  for (int i = 0; i < kDevices; ++i) {
    auto r = upload(id(i), Crashes(1, 3));
    ASSERT_TRUE(r.ok()) << i << ": " << r.status();
    EXPECT_EQ(r->stored(), 3u) << i;
  }
  // Every device again, in the same order (the first ones were forgotten
  // long ago): the retried batch is all duplicates, a new one is stored.
  for (int i = 0; i < kDevices; ++i) {
    auto again = upload(id(i), Crashes(1, 3));
    ASSERT_TRUE(again.ok()) << i << ": " << again.status();
    EXPECT_EQ(again->stored(), 0u) << i;
    EXPECT_EQ(again->duplicates(), 3u) << i;
    auto more = upload(id(i), Crashes(3, 3));  // 3 is stored, 4 and 5 new
    ASSERT_TRUE(more.ok()) << i << ": " << more.status();
    EXPECT_EQ(more->stored(), 2u) << i;
    EXPECT_EQ(more->duplicates(), 1u) << i;
  }
  // Exactly five reports per device, each sequence once.
  std::set<std::pair<std::string, uint64_t>> seen;
  size_t reports = 0;
  v1::QueryErrorsRequest q;
  q.set_tenant_id(kTenant);
  q.set_page_size(1000);
  for (;;) {
    auto r = errors->Query(q);
    ASSERT_TRUE(r.ok()) << r.status();
    for (const auto& rep : r->reports()) {
      ++reports;
      seen.insert({rep.device_id(), rep.event().sequence()});
    }
    if (r->next_page_token().empty()) break;
    q.set_page_token(r->next_page_token());
  }
  EXPECT_EQ(reports, static_cast<size_t>(kDevices) * 5);
  EXPECT_EQ(seen.size(), static_cast<size_t>(kDevices) * 5);
  writer.Stop();
  errors.reset();
}

}  // namespace
}  // namespace sphere::errors
