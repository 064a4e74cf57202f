// ErrorReportingService on an in-process shard (TestPlatform): both device
// authentication paths, operator and tenant queries, and the attacks.
#include "securitysvc/errors/error_service.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/rpc/rpc.h"
#include "common/util/metrics.h"
#include "gtest/gtest.h"
#include "protos/error_reporting.grpc.pb.h"
#include "securitysvc/auth/device_authenticator.h"
#include "securitysvc/errors/error_plugin.h"
#include "securitysvc/errors/error_testing.h"
#include "securitysvc/shard_server/test_platform.h"

namespace sphere::errors {
namespace {

using shard::TestPlatform;

v1::UploadErrorsRequest Batch(uint64_t first, int n) {
  return CrashUpload(first, n, 1000);
}

class ErrorServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    g_ = new Shared;
    TestPlatform::Options o;
    o.extra_plugins = [](TestPlatform&) {
      ErrorReportingPlugin::Options po;
      po.sweep_interval = absl::ZeroDuration();
      auto p = std::make_unique<ErrorReportingPlugin>(po);
      g_->plugin = p.get();
      std::vector<std::unique_ptr<shard::ShardPlugin>> v;
      v.push_back(std::move(p));
      return v;
    };
    absl::Status s = g_->platform.Start(o);
    ASSERT_TRUE(s.ok()) << s;
  }
  static void TearDownTestSuite() {
    delete g_;
    g_ = nullptr;
  }

  std::unique_ptr<mcu::Device> NewDevice(const std::string& seed) {
    auto d = g_->platform.NewDevice(seed);
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() ? *std::move(d) : nullptr;
  }
  rpc::TlsFiles DeviceCert(const mcu::Device& d) {
    return g_->platform.DeviceTls(d, "full");
  }
  std::string SessionToken(const mcu::Device& d) {
    return g_->platform.SessionToken(d, auth::Scope::kFull);
  }
  rpc::TlsFiles OperatorTls(const std::string& tenant) {
    crypto::DeviceClaims c;
    if (tenant.empty()) {
      c.scope = "platform-operator";
    } else {
      c.tenant_id = tenant;
    }
    return g_->platform.Issue(tenant.empty() ? "platform-op" : "tenant-op",
                              crypto::KeyUsage::kClientAuth, c);
  }
  std::unique_ptr<v1::ErrorReportingService::Stub> Stub(
      const rpc::TlsFiles& tls) {
    return v1::ErrorReportingService::NewStub(
        rpc::NewChannel(g_->platform.server().address(), tls));
  }
  grpc::Status Upload(const rpc::TlsFiles& tls, const std::string& token,
                      const v1::UploadErrorsRequest& req,
                      v1::UploadErrorsResponse* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
    if (!token.empty()) ctx.AddMetadata(auth::kSessionTokenMetadata, token);
    return Stub(tls)->UploadErrors(&ctx, req, resp);
  }
  grpc::Status Query(const rpc::TlsFiles& tls, const v1::QueryErrorsRequest& q,
                     v1::QueryErrorsResponse* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
    return Stub(tls)->QueryErrors(&ctx, q, resp);
  }
  // Stored: the device's reports as the core sees them (platform view).
  size_t Stored(const mcu::Device& d) {
    v1::QueryErrorsRequest q;
    q.set_tenant_id(TestPlatform::kTenant);
    q.set_device_id(d.device_id());
    q.set_page_size(1000);
    auto r = g_->plugin->error_store()->Query(q);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->reports_size() : 0;
  }

  // UploadBatch: one UploadErrorsBatch call.
  grpc::Status UploadBatch(const rpc::TlsFiles& tls,
                           const v1::UploadErrorsBatchRequest& req,
                           v1::UploadErrorsBatchResponse* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
    return Stub(tls)->UploadErrorsBatch(&ctx, req, resp);
  }
  // Item: `upload` for device `named`, proven by `token`.
  static void AddItem(v1::UploadErrorsBatchRequest* b,
                      const std::string& named, const std::string& token,
                      v1::UploadErrorsRequest upload) {
    v1::UploadErrorsItem* item = b->add_items();
    upload.set_device_id(named);
    *item->mutable_upload() = std::move(upload);
    item->set_session_token(token);
  }

  // AddOwnItem: `upload` for device `d`, proven by its own session token
  // (the common case of every batch test).
  void AddOwnItem(v1::UploadErrorsBatchRequest* b, const mcu::Device& d,
                  v1::UploadErrorsRequest upload) {
    AddItem(b, d.device_id(), SessionToken(d), std::move(upload));
  }

  struct Shared {
    TestPlatform platform;
    ErrorReportingPlugin* plugin = nullptr;
  };
  static Shared* g_;
};
ErrorServiceTest::Shared* ErrorServiceTest::g_ = nullptr;

TEST_F(ErrorServiceTest, UploadWithDeviceCertificate) {
  auto d = NewDevice("errors-device-cert");
  v1::UploadErrorsResponse resp;
  grpc::Status st = Upload(DeviceCert(*d), "", Batch(1, 5), &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.stored(), 5u);
  EXPECT_EQ(Stored(*d), 5u);
  // Both operator views see them.
  for (const std::string& who :
       {std::string(), std::string(TestPlatform::kTenant)}) {
    v1::QueryErrorsRequest q;
    q.set_tenant_id(TestPlatform::kTenant);
    q.set_device_id(d->device_id());
    v1::QueryErrorsResponse r;
    st = Query(OperatorTls(who), q, &r);
    ASSERT_TRUE(st.ok()) << st.error_message();
    ASSERT_EQ(r.reports_size(), 5);
    EXPECT_EQ(r.reports(0).device_id(), d->device_id());
    EXPECT_EQ(r.reports(0).tenant_id(), TestPlatform::kTenant);
  }
}

TEST_F(ErrorServiceTest, UploadThroughGatewayWithSessionTokenStoredOnce) {
  auto d = NewDevice("errors-gateway");
  v1::UploadErrorsRequest req = Batch(1, 10);
  req.set_device_id(d->device_id());  // a gateway names the device
  v1::UploadErrorsResponse resp;
  grpc::Status st =
      Upload(g_->platform.gateway_tls(), SessionToken(*d), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.stored(), 10u);
  // The retry after a lost answer: acknowledged, not stored twice.
  st = Upload(g_->platform.gateway_tls(), SessionToken(*d), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.stored(), 0u);
  EXPECT_EQ(resp.duplicates(), 10u);
  EXPECT_EQ(Stored(*d), 10u);
}

TEST_F(ErrorServiceTest, Attack_DeviceCannotUploadForAnotherDevice) {
  auto d = NewDevice("errors-attacker");
  auto victim = NewDevice("errors-victim");
  v1::UploadErrorsRequest req = Batch(1, 3);
  req.set_device_id(victim->device_id());
  v1::UploadErrorsResponse resp;
  grpc::Status st = Upload(DeviceCert(*d), "", req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << st.error_message();
  EXPECT_EQ(Stored(*victim), 0u);
  EXPECT_EQ(Stored(*d), 0u);
  // A gateway without the device's session token.
  st = Upload(g_->platform.gateway_tls(), "", req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED)
      << st.error_message();
  // A gateway with another device's token.
  st = Upload(g_->platform.gateway_tls(), SessionToken(*d), req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << st.error_message();
  EXPECT_EQ(Stored(*victim), 0u);
}

TEST_F(ErrorServiceTest, Attack_OversizedAndMalformedBatchesRefused) {
  auto d = NewDevice("errors-oversized");
  v1::UploadErrorsResponse resp;
  grpc::Status st = Upload(DeviceCert(*d), "", Batch(1, 1001), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("at most 1000 events per batch"),
            std::string::npos)
      << st.error_message();
  v1::UploadErrorsRequest bad = Batch(1, 2);
  bad.mutable_events(1)->set_detail(std::string(4096, 'x'));
  st = Upload(DeviceCert(*d), "", bad, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("event 1: detail is 4096 bytes"),
            std::string::npos)
      << st.error_message();
  EXPECT_EQ(Stored(*d), 0u);
}

TEST_F(ErrorServiceTest, Attack_TenantCannotQueryAnotherTenantsErrors) {
  auto d = NewDevice("errors-cross-tenant");
  v1::UploadErrorsResponse resp;
  ASSERT_TRUE(Upload(DeviceCert(*d), "", Batch(1, 4), &resp).ok());
  const rpc::TlsFiles fabrikam = OperatorTls("tenant-fabrikam");
  v1::QueryErrorsRequest q;
  q.set_tenant_id(TestPlatform::kTenant);
  v1::QueryErrorsResponse r;
  grpc::Status st = Query(fabrikam, q, &r);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(st.error_message().find("may not read the error reports of tenant"),
            std::string::npos)
      << st.error_message();
  EXPECT_EQ(r.reports_size(), 0);
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
    v1::ListIssuesRequest li;
    li.set_tenant_id(TestPlatform::kTenant);
    v1::ListIssuesResponse lr;
    st = Stub(fabrikam)->ListIssues(&ctx, li, &lr);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_EQ(lr.issues_size(), 0);
  }
  // Its own tenant: allowed, and empty (nothing of Contoso's leaks).
  q.set_tenant_id("tenant-fabrikam");
  st = Query(fabrikam, q, &r);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(r.reports_size(), 0);
  // A device credential is not an operator credential.
  q.set_tenant_id(TestPlatform::kTenant);
  st = Query(DeviceCert(*d), q, &r);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // Contoso's own credential (its relying party) reads them.
  st = Query(OperatorTls(TestPlatform::kTenant), q, &r);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_GE(r.reports_size(), 4);
  EXPECT_EQ(Stored(*d), 4u);
}

TEST_F(ErrorServiceTest, IssuesOverGrpc) {
  auto d = NewDevice("errors-issues");
  v1::UploadErrorsRequest req = Batch(1, 3);
  for (auto& e : *req.mutable_events()) e.set_component("issue-app");
  v1::UploadErrorsResponse resp;
  ASSERT_TRUE(Upload(DeviceCert(*d), "", req, &resp).ok());
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
  v1::ListIssuesRequest li;
  li.set_tenant_id(TestPlatform::kTenant);
  v1::ListIssuesResponse lr;
  grpc::Status st =
      Stub(OperatorTls(TestPlatform::kTenant))->ListIssues(&ctx, li, &lr);
  ASSERT_TRUE(st.ok()) << st.error_message();
  const v1::Issue* found = nullptr;
  for (const auto& i : lr.issues()) {
    if (i.component() == "issue-app") found = &i;
  }
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->event_count(), 3u);
  EXPECT_EQ(found->device_count(), 1u);
  grpc::ClientContext ctx2;
  ctx2.set_deadline(rpc::Deadline(absl::Seconds(30)));
  v1::GetIssueRequest gi;
  gi.set_tenant_id(TestPlatform::kTenant);
  gi.set_issue_id(found->issue_id());
  v1::GetIssueResponse gr;
  st = Stub(OperatorTls(""))->GetIssue(&ctx2, gi, &gr);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(gr.issue().event_count(), 3u);
  ASSERT_EQ(gr.releases_size(), 1);
  EXPECT_EQ(gr.releases(0).version(), "1.0");
}

// ---------------------------------------------------------- UploadErrorsBatch

TEST_F(ErrorServiceTest, BatchAnswersEachItemInOrderAndRetryCountsDuplicates) {
  auto a = NewDevice("errors-batch-a");
  auto b = NewDevice("errors-batch-b");
  auto c = NewDevice("errors-batch-c");
  v1::UploadErrorsBatchRequest req;
  AddOwnItem(&req, *a, Batch(1, 3));
  AddOwnItem(&req, *b, Batch(1, 5));
  AddOwnItem(&req, *c, Batch(7, 1));
  v1::UploadErrorsBatchResponse resp;
  grpc::Status st = UploadBatch(g_->platform.gateway_tls(), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(resp.results_size(), 3);
  const uint32_t want[] = {3, 5, 1};
  const mcu::Device* devices[] = {a.get(), b.get(), c.get()};
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(resp.results(i).device_id(), devices[i]->device_id());
    EXPECT_EQ(resp.results(i).code(), 0) << resp.results(i).message();
    EXPECT_EQ(resp.results(i).response().stored(), want[i]);
    EXPECT_EQ(resp.results(i).response().duplicates(), 0u);
  }
  // The gateway's retry after a lost answer: every item acknowledged as
  // duplicates, nothing stored twice.
  resp.Clear();
  st = UploadBatch(g_->platform.gateway_tls(), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(resp.results_size(), 3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(resp.results(i).code(), 0) << resp.results(i).message();
    EXPECT_EQ(resp.results(i).response().stored(), 0u);
    EXPECT_EQ(resp.results(i).response().duplicates(), want[i]);
  }
  EXPECT_EQ(Stored(*a), 3u);
  EXPECT_EQ(Stored(*b), 5u);
  EXPECT_EQ(Stored(*c), 1u);
  // The single call sees the batch's events as stored (one idempotency).
  v1::UploadErrorsRequest single = Batch(1, 3);
  single.set_device_id(a->device_id());
  v1::UploadErrorsResponse one;
  st = Upload(g_->platform.gateway_tls(), SessionToken(*a), single, &one);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(one.duplicates(), 3u);
  EXPECT_EQ(Stored(*a), 3u);
}

TEST_F(ErrorServiceTest, Attack_BatchItemWithAnotherDevicesTokenRefusesOnlyIt) {
  // The items counter, added once per call by code (not per item), still
  // counts every item under its own code.
  metrics::CounterMetric* items =
      metrics::Counter("sphere_upload_errors_batch_items_total",
                       "UploadErrorsBatch items by their own code");
  auto count = [&](const char* code) {
    return items->Value(absl::StrCat("code=\"", code, "\""));
  };
  const uint64_t ok0 = count("OK"), denied0 = count("PERMISSION_DENIED"),
                 unauth0 = count("UNAUTHENTICATED"),
                 invalid0 = count("INVALID_ARGUMENT");
  auto good = NewDevice("errors-batch-good");
  auto victim = NewDevice("errors-batch-victim");
  auto bad = NewDevice("errors-batch-bad-events");
  v1::UploadErrorsBatchRequest req;
  AddOwnItem(&req, *good, Batch(1, 2));
  // The victim named with the good device's token.
  AddItem(&req, victim->device_id(), SessionToken(*good), Batch(50, 2));
  // The victim with no token at all, and with a forged one.
  AddItem(&req, victim->device_id(), "", Batch(60, 2));
  AddItem(&req, victim->device_id(), "v2.forged.token", Batch(70, 2));
  // A malformed device id is never echoed.
  AddItem(&req, "not-a-device<script>", SessionToken(*good), Batch(80, 2));
  // An item over the single call's limits.
  v1::UploadErrorsRequest oversized = Batch(1, 2);
  oversized.mutable_events(1)->set_detail(std::string(4096, 'x'));
  AddOwnItem(&req, *bad, oversized);
  // An oversized token.
  AddItem(&req, bad->device_id(), std::string(2000, 't'), Batch(1, 2));
  v1::UploadErrorsBatchResponse resp;
  grpc::Status st = UploadBatch(g_->platform.gateway_tls(), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(resp.results_size(), 7);
  EXPECT_EQ(resp.results(0).code(), 0) << resp.results(0).message();
  EXPECT_EQ(resp.results(0).response().stored(), 2u);
  EXPECT_EQ(resp.results(1).code(), grpc::StatusCode::PERMISSION_DENIED)
      << resp.results(1).message();
  EXPECT_NE(resp.results(1).message().find("may not act for device"),
            std::string::npos)
      << resp.results(1).message();
  EXPECT_EQ(resp.results(2).code(), grpc::StatusCode::UNAUTHENTICATED)
      << resp.results(2).message();
  EXPECT_NE(resp.results(2).message().find("no session token"),
            std::string::npos);
  EXPECT_EQ(resp.results(3).code(), grpc::StatusCode::UNAUTHENTICATED)
      << resp.results(3).message();
  EXPECT_EQ(resp.results(4).code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(resp.results(4).device_id(), "");
  EXPECT_EQ(resp.results(4).message().find("<script>"), std::string::npos);
  EXPECT_EQ(resp.results(5).code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(resp.results(5).message().find("event 1: detail is 4096 bytes"),
            std::string::npos)
      << resp.results(5).message();
  EXPECT_EQ(resp.results(6).code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(resp.results(6).message().find("session_token is 2000 bytes"),
            std::string::npos)
      << resp.results(6).message();
  // Nothing changed for the refused items; the good one is stored once.
  EXPECT_EQ(Stored(*victim), 0u);
  EXPECT_EQ(Stored(*bad), 0u);
  EXPECT_EQ(Stored(*good), 2u);
  // The call's counts are in before its answer is sent.
  EXPECT_EQ(count("OK") - ok0, 1u);
  EXPECT_EQ(count("PERMISSION_DENIED") - denied0, 1u);
  EXPECT_EQ(count("UNAUTHENTICATED") - unauth0, 2u);
  EXPECT_EQ(count("INVALID_ARGUMENT") - invalid0, 3u);
}

TEST_F(ErrorServiceTest, Attack_RevokedDeviceItemRefusedOthersStored) {
  auto revoked = NewDevice("errors-batch-revoked");
  auto other = NewDevice("errors-batch-other");
  const std::string token = SessionToken(*revoked);  // issued before
  v1::WatchEvent ev;
  ev.set_revision(g_->platform.catalog().revision() + 1);
  ev.set_revoked_device_id(revoked->device_id());
  ASSERT_TRUE(g_->platform.catalog().Apply(ev).ok());
  v1::UploadErrorsBatchRequest req;
  AddItem(&req, revoked->device_id(), token, Batch(1, 4));
  AddOwnItem(&req, *other, Batch(1, 4));
  v1::UploadErrorsBatchResponse resp;
  grpc::Status st = UploadBatch(g_->platform.gateway_tls(), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(resp.results_size(), 2);
  EXPECT_EQ(resp.results(0).code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(resp.results(0).message().find("revoked"), std::string::npos)
      << resp.results(0).message();
  EXPECT_EQ(resp.results(1).code(), 0) << resp.results(1).message();
  EXPECT_EQ(Stored(*revoked), 0u);
  EXPECT_EQ(Stored(*other), 4u);
}

TEST_F(ErrorServiceTest, Attack_OversizedBatchCallIsRefusedWholeNothingStored) {
  auto d = NewDevice("errors-batch-oversized");
  const std::string token = SessionToken(*d);
  // Too many items (each valid on its own).
  v1::UploadErrorsBatchRequest many;
  for (int i = 0; i <= kMaxUploadBatchItems; ++i) {
    AddItem(&many, d->device_id(), token, Batch(1 + i, 1));
  }
  v1::UploadErrorsBatchResponse resp;
  grpc::Status st = UploadBatch(g_->platform.gateway_tls(), many, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("257 items; at most 256"),
            std::string::npos)
      << st.error_message();
  EXPECT_EQ(resp.results_size(), 0);
  // Too many events in all (17 items of the single call's 1000).
  v1::UploadErrorsBatchRequest heavy;
  for (int i = 0; i < 17; ++i) {
    AddItem(&heavy, d->device_id(), token, Batch(1 + 1000 * i, 1000));
  }
  st = UploadBatch(g_->platform.gateway_tls(), heavy, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("17000 events in all; at most 16000"),
            std::string::npos)
      << st.error_message();
  // Too many bytes (8,000 events at the detail limit: ~4.5 MB, under the
  // server's 8 MiB message limit, so this call's own check answers).
  v1::UploadErrorsBatchRequest big;
  for (int i = 0; i < 8; ++i) {
    v1::UploadErrorsRequest u = Batch(1 + 1000 * i, 1000);
    for (auto& e : *u.mutable_events()) {
      e.set_detail(std::string(kMaxDetailBytes, 'd'));
    }
    AddItem(&big, d->device_id(), token, std::move(u));
  }
  st = UploadBatch(g_->platform.gateway_tls(), big, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("bytes; at most 4194304"),
            std::string::npos)
      << st.error_message();
  // An empty call.
  st = UploadBatch(g_->platform.gateway_tls(), v1::UploadErrorsBatchRequest(),
                   &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Stored(*d), 0u);
}

TEST_F(ErrorServiceTest, Attack_DeviceCertificateCannotCallTheBatch) {
  auto d = NewDevice("errors-batch-device-cert");
  auto victim = NewDevice("errors-batch-device-cert-victim");
  v1::UploadErrorsBatchRequest req;
  AddOwnItem(&req, *victim, Batch(1, 2));
  v1::UploadErrorsBatchResponse resp;
  // A device (even holding a leaked token) acts only for itself.
  grpc::Status st = UploadBatch(DeviceCert(*d), req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(st.error_message().find("for gateways"), std::string::npos)
      << st.error_message();
  // An operator is no gateway either.
  st = UploadBatch(OperatorTls(""), req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(resp.results_size(), 0);
  EXPECT_EQ(Stored(*victim), 0u);
  EXPECT_EQ(Stored(*d), 0u);
}

TEST_F(ErrorServiceTest, BatchWithOverlappingItemsOfOneDeviceStoresEachOnce) {
  auto d = NewDevice("errors-batch-same-device");
  const std::string token = SessionToken(*d);
  v1::UploadErrorsBatchRequest req;
  AddItem(&req, d->device_id(), token, Batch(1, 5));
  AddItem(&req, d->device_id(), token, Batch(3, 5));  // overlaps 3..5
  v1::UploadErrorsBatchResponse resp;
  grpc::Status st = UploadBatch(g_->platform.gateway_tls(), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(resp.results_size(), 2);
  EXPECT_EQ(resp.results(0).code(), 0) << resp.results(0).message();
  // The second is refused while the first is in flight (ABORTED, retry)
  // or, if the first was already durable, stores only 6..7: either way no
  // event is stored twice.
  if (resp.results(1).code() == 0) {
    EXPECT_EQ(resp.results(1).response().duplicates(), 3u);
    EXPECT_EQ(Stored(*d), 7u);
  } else {
    EXPECT_EQ(resp.results(1).code(), grpc::StatusCode::ABORTED)
        << resp.results(1).message();
    EXPECT_EQ(Stored(*d), 5u);
  }
}

}  // namespace
}  // namespace sphere::errors
