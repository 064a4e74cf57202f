// UpdateClient's gateway proof (Options::session_token): a call without a
// token for its device, or with an oversized one, fails before anything is
// sent (no channel is even opened: the shard address below is unroutable).
// The token on the wire is exercised end to end by //tests:loadgen_suite_test
// (update_check and update_install over gateway channels).
#include "client/update_client.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "absl/strings/match.h"

namespace sphere::client {
namespace {

UpdateClient::Options WithToken(std::string token, int* calls) {
  UpdateClient::Options o;
  o.session_token = [token, calls](const std::string&) {
    ++*calls;
    return token;
  };
  o.max_session_token_length = 64;
  return o;
}

std::vector<cluster::ShardEndpoint> Shards() {
  return {{"shard-0", "192.0.2.1:1"}};  // TEST-NET-1: never reached
}

TEST(UpdateClientTest, Attack_MissingTokenFailsUnsent) {
  int calls = 0;
  UpdateClient client(Shards(), {}, WithToken("", &calls));
  std::optional<absl::Status> got;
  v1::GetUpdatesRequest req;
  req.set_device_id(std::string(64, 'a'));
  client.GetUpdates(req, [&](absl::StatusOr<v1::GetUpdatesResponse> r) {
    got = r.status();
  });
  ASSERT_TRUE(got.has_value());  // answered at once: nothing was sent
  EXPECT_EQ(got->code(), absl::StatusCode::kFailedPrecondition) << *got;
  EXPECT_TRUE(absl::StrContains(got->message(), "attest the device first"))
      << *got;
  EXPECT_EQ(calls, 1);
}

TEST(UpdateClientTest, Attack_OversizedTokenFailsUnsent) {
  int calls = 0;
  UpdateClient client(Shards(), {}, WithToken(std::string(65, 't'), &calls));
  std::optional<DownloadResult> got;
  v1::DownloadImageRequest req;
  req.set_device_id(std::string(64, 'a'));
  client.DownloadImage(req, 1024, [&](DownloadResult r) { got = std::move(r); });
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->status.code(), absl::StatusCode::kInvalidArgument)
      << got->status;
  EXPECT_TRUE(got->chunks.empty());
  std::optional<absl::Status> reported;
  v1::ReportUpdateResultRequest rep;
  rep.set_device_id(std::string(64, 'a'));
  client.ReportUpdateResult(rep, [&](absl::Status s) { reported = s; });
  ASSERT_TRUE(reported.has_value());
  EXPECT_EQ(reported->code(), absl::StatusCode::kInvalidArgument) << *reported;
  EXPECT_EQ(calls, 2);
}

}  // namespace
}  // namespace sphere::client
