// appsvc against a real local cluster (management + 1 shard, separate
// processes) and the real appsvc process, all on port 0: the relying-party
// checks (one named test per attack, each asserting the specific gRPC code
// and that appsvc's state did not change), telemetry ingest limits, and the
// anomaly -> diagnostics -> warranty reservation path with the Sphere half of
// the support timeline read over gRPC with Contoso's tenant credential.
//
// Device certificates are minted here with the platform root
// (DIR/pki/root.key) the way the shards issue them, so each test controls
// exactly one claim.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/util/file.h"
#include "protos/contoso.grpc.pb.h"
#include "protos/management.grpc.pb.h"
#include "securitysvc/pki/pki.h"
#include "tests/cluster_fixture.h"

namespace sphere::testing {
namespace {

namespace cv1 = ::contoso::v1;

struct Device {
  crypto::EcPrivateKey key;
  std::string id;
  std::string tenant_id;
  std::string product_id;
  uint32_t epoch = 0;
};

// ReadUntil reads the child's output until a line containing `marker`
// (blocking reads; false at EOF).
bool ReadUntil(int fd, const std::string& marker, std::string* out) {
  char buf[4096];
  while (!absl::StrContains(*out, marker)) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) return false;
    out->append(buf, n);
  }
  return true;
}

class AppsvcE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto c = LocalCluster::Start("appsvc-e2e", 1);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = c->release();
    auto pki = pki::Load(cluster_->dir());
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = new pki::ClusterPki(*pki);

    auto contoso = cluster_->CreateTenant("Contoso");
    ASSERT_TRUE(contoso.ok()) << contoso.status();
    auto fabrikam = cluster_->CreateTenant("Fabrikam");
    ASSERT_TRUE(fabrikam.ok());
    contoso_id_ = new std::string(contoso->id());
    ASSERT_TRUE(cluster_->CreateProduct(contoso->id(), "DW100").ok());
    ASSERT_TRUE(cluster_->CreateProduct(contoso->id(), "DW200").ok());
    ASSERT_TRUE(cluster_->CreateProduct(fabrikam->id(), "DW100").ok());
    good_ = new Device(NewDevice(contoso->id(), "DW100/Production"));
    anomalous_ = new Device(NewDevice(contoso->id(), "DW100/Production"));
    to_revoke_ = new Device(NewDevice(contoso->id(), "DW100/Production"));
    other_product_ = new Device(NewDevice(contoso->id(), "DW200/Production"));
    other_tenant_ = new Device(NewDevice(fabrikam->id(), "DW100/Production"));

    // Contoso's tenant operator credential, for appsvc's Sphere queries and
    // for this test's ContosoSupport calls.
    auto op_key = crypto::EcPrivateKey::Generate();
    v1::IssueOperatorCredentialRequest ireq;
    ireq.set_tenant_id(contoso->id());
    ireq.set_operator_name("contoso-cloud");
    ireq.set_public_key(op_key.PublicKey());
    auto cred = UnaryCall<v1::OperatorCredential>(
        [&](auto* c, auto& r, auto* o) {
          return cluster_->management()->IssueOperatorCredential(c, r, o);
        },
        ireq);
    ASSERT_TRUE(cred.ok()) << cred.status();
    const std::string dir = cluster_->dir();
    ASSERT_TRUE(
        util::WriteFile(dir + "/contoso-op.pem", cred->certificate_pem()).ok());
    ASSERT_TRUE(
        util::WriteFile(dir + "/contoso-op.key", op_key.ToPem(), 0600).ok());
    support_tls_ = new rpc::TlsFiles{cred->certificate_pem(), op_key.ToPem(),
                                     pki_->root_pem};
    // Seed: the anomalous device's owner is under warranty; one heater in
    // stock at the local shop.
    const std::string seed = absl::StrCat(
        R"({"customers": [{"device_id": ")", anomalous_->id,
        R"(", "name": "Ada", "email": "ada@example.com", "shop": "shop-1",
            "warranty_until": "2099-01-01T00:00:00Z"}],
            "shops": [{"id": "shop-1", "name": "Redmond Appliance Repair",
                       "inventory": {"DW100-HTR-220": 1}}]})");
    ASSERT_TRUE(util::WriteFile(dir + "/seed.json", seed).ok());

    auto child = SpawnPiped(
        {BinaryPath("appsvc/appsvc"), "--state_dir=" + dir,
         "--management=" + cluster_->config().management,
         "--db_dir=" + dir + "/appsvc-db",
         "--port_file=" + dir + "/appsvc.port", "--web_port=-1",
         "--seed_file=" + dir + "/seed.json",
         "--sphere_cert=" + dir + "/contoso-op.pem",
         "--sphere_key=" + dir + "/contoso-op.key", "--metrics_address="});
    ASSERT_TRUE(child.ok()) << child.status();
    appsvc_pid_ = child->pid;
    appsvc_fd_ = child->out_fd;
    std::string out;
    ASSERT_TRUE(ReadUntil(appsvc_fd_, "appsvc serving", &out)) << out;
    // Keep draining appsvc's log so it never blocks on a full pipe.
    drain_ = new std::thread([fd = appsvc_fd_] {
      char buf[4096];
      while (read(fd, buf, sizeof buf) > 0) {
      }
    });
    auto port = util::ReadFile(dir + "/appsvc.port");
    ASSERT_TRUE(port.ok());
    appsvc_address_ = new std::string(absl::StrCat("127.0.0.1:", *port));
  }

  static void TearDownTestSuite() {
    if (appsvc_pid_ > 0) {
      kill(appsvc_pid_, SIGTERM);
      int status = 0;
      waitpid(appsvc_pid_, &status, 0);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
          << "appsvc did not shut down cleanly: " << status;
      if (drain_) drain_->join();  // EOF once appsvc exited
      delete drain_;
      close(appsvc_fd_);
    }
    delete appsvc_address_;
    delete support_tls_;
    for (Device* d :
         {good_, anomalous_, to_revoke_, other_product_, other_tenant_}) {
      delete d;
    }
    delete contoso_id_;
    delete pki_;
    delete cluster_;
  }

  static Device NewDevice(const std::string& tenant_id,
                          const std::string& group) {
    Device d;
    d.key = crypto::EcPrivateKey::Generate();
    d.id = crypto::HexEncode(crypto::Sha256(d.key.PublicKey()));
    d.tenant_id = tenant_id;
    EXPECT_TRUE(cluster_->ImportDevice(d.key.PublicKey()).ok());
    EXPECT_TRUE(cluster_->Claim(tenant_id, d.id).ok());
    v1::AssignDeviceRequest req;
    req.set_tenant_id(tenant_id);
    req.set_device_id(d.id);
    req.set_device_group_id(group);
    auto assigned = UnaryCall<v1::Device>(
        [&](auto* c, auto& r, auto* o) {
          return cluster_->management()->AssignDevice(c, r, o);
        },
        req);
    EXPECT_TRUE(assigned.ok()) << assigned.status();
    if (assigned.ok()) {
      d.product_id = assigned->product_id();
      d.epoch = assigned->ownership_epoch();
    }
    return d;
  }

  // DeviceTls: a platform-signed device certificate for `d` with `scope`.
  static rpc::TlsFiles DeviceTls(const Device& d,
                                 const std::string& scope = "full") {
    crypto::CertificateSpec spec;
    spec.common_name = "appsvc-e2e device";
    spec.subject_public_key = d.key.PublicKey();
    spec.not_before = absl::Now() - absl::Hours(1);
    spec.not_after = absl::Now() + absl::Hours(1);
    spec.usage = crypto::KeyUsage::kClientAuth;
    spec.claims.device_id = d.id;
    spec.claims.tenant_id = d.tenant_id;
    spec.claims.product_id = d.product_id;
    spec.claims.scope = scope;
    spec.claims.epoch = absl::StrCat(d.epoch);
    auto pem = crypto::IssueCertificate(spec, pki_->root_key, pki_->root_pem);
    EXPECT_TRUE(pem.ok()) << pem.status();
    return {pem.ok() ? *pem : "", d.key.ToPem(), pki_->root_pem};
  }

  static cv1::ReportTelemetryRequest Batch(int n, double drying_c,
                                           uint64_t* seq, uint64_t cycle,
                                           double rinse = 80) {
    cv1::ReportTelemetryRequest req;
    for (int i = 0; i < n; ++i) {
      cv1::Telemetry* s = req.add_samples();
      s->set_time_unix_ms(absl::ToUnixMillis(absl::Now()));
      s->set_water_temperature_c(55);
      s->set_drying_temperature_c(drying_c);
      s->set_rinse_agent_level_pct(rinse);
      s->set_cycle_state(i + 1 == n ? cv1::Telemetry::DONE
                                    : cv1::Telemetry::DRYING);
      s->set_cycle_id(cycle);
      s->set_sequence((*seq)++);
    }
    return req;
  }

  static grpc::Status Report(const rpc::TlsFiles& tls,
                             const cv1::ReportTelemetryRequest& req,
                             cv1::ReportTelemetryResponse* resp,
                             int64_t min_revision = 0) {
    auto stub =
        cv1::DeviceGateway::NewStub(rpc::NewChannel(*appsvc_address_, tls));
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(20)));
    if (min_revision > 0) {
      ctx.AddMetadata("sphere-min-catalog-revision",
                      absl::StrCat(min_revision));
    }
    return stub->ReportTelemetry(&ctx, req, resp);
  }

  static std::unique_ptr<cv1::ContosoSupport::Stub> Support(
      const rpc::TlsFiles& tls) {
    return cv1::ContosoSupport::NewStub(rpc::NewChannel(*appsvc_address_, tls));
  }

  // State: everything appsvc shows about the fleet (the attacks must not
  // change it).
  static std::string State() {
    auto stub = Support(*support_tls_);
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
    cv1::ListDevicesRequest req;
    cv1::ListDevicesResponse resp;
    grpc::Status st = stub->ListDevices(&ctx, req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return resp.SerializeAsString();
  }

  // ExpectRefused: ReportTelemetry as `tls` fails with `code` naming
  // `reason`, and appsvc's state did not change.
  static void ExpectRefused(const rpc::TlsFiles& tls, grpc::StatusCode code,
                            const std::string& reason,
                            int64_t min_revision = 0) {
    const std::string before = State();
    uint64_t seq = 1;
    cv1::ReportTelemetryResponse resp;
    grpc::Status st = Report(tls, Batch(3, 65, &seq, 1), &resp, min_revision);
    EXPECT_EQ(st.error_code(), code) << st.error_message();
    EXPECT_TRUE(absl::StrContains(st.error_message(), reason))
        << st.error_message();
    EXPECT_EQ(resp.accepted(), 0u);
    EXPECT_EQ(State(), before);
  }

  static LocalCluster* cluster_;
  static pki::ClusterPki* pki_;
  static std::string* contoso_id_;
  static Device* good_;
  static Device* anomalous_;
  static Device* to_revoke_;
  static Device* other_product_;
  static Device* other_tenant_;
  static rpc::TlsFiles* support_tls_;
  static std::string* appsvc_address_;
  static pid_t appsvc_pid_;
  static int appsvc_fd_;
  static std::thread* drain_;
};

LocalCluster* AppsvcE2eTest::cluster_ = nullptr;
pki::ClusterPki* AppsvcE2eTest::pki_ = nullptr;
std::string* AppsvcE2eTest::contoso_id_ = nullptr;
Device* AppsvcE2eTest::good_ = nullptr;
Device* AppsvcE2eTest::anomalous_ = nullptr;
Device* AppsvcE2eTest::to_revoke_ = nullptr;
Device* AppsvcE2eTest::other_product_ = nullptr;
Device* AppsvcE2eTest::other_tenant_ = nullptr;
rpc::TlsFiles* AppsvcE2eTest::support_tls_ = nullptr;
std::string* AppsvcE2eTest::appsvc_address_ = nullptr;
pid_t AppsvcE2eTest::appsvc_pid_ = -1;
int AppsvcE2eTest::appsvc_fd_ = -1;
std::thread* AppsvcE2eTest::drain_ = nullptr;

TEST_F(AppsvcE2eTest, ControlContosoDw100DeviceIsAcceptedIdempotently) {
  uint64_t seq = 1;
  cv1::ReportTelemetryRequest req = Batch(5, 65, &seq, 1);
  cv1::ReportTelemetryResponse resp;
  grpc::Status st = Report(DeviceTls(*good_), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.accepted(), 5u);
  // The retry of the same batch stores nothing new.
  cv1::ReportTelemetryResponse again;
  ASSERT_TRUE(Report(DeviceTls(*good_), req, &again).ok());
  EXPECT_EQ(again.accepted(), 0u);
  EXPECT_EQ(again.duplicates(), 5u);
}

TEST_F(AppsvcE2eTest, MetricsShowIngestAndCatalogRevision) {
  uint64_t seq = 500;
  cv1::ReportTelemetryResponse resp;
  ASSERT_TRUE(Report(DeviceTls(*good_), Batch(2, 65, &seq, 50), &resp).ok());
  // The Metrics service common/rpc adds to every server.
  auto text = cluster_->Metrics(*appsvc_address_);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_TRUE(absl::StrContains(*text, "contoso_telemetry_samples_total"));
  EXPECT_TRUE(absl::StrContains(*text, "contoso_catalog_revision"));
  EXPECT_TRUE(absl::StrContains(*text, "contoso_catalog_devices"));
  // The gateway path's proofs and remembered tenant CAs.
  EXPECT_TRUE(absl::StrContains(*text, "contoso_gateway_proofs"));
  EXPECT_TRUE(absl::StrContains(*text, "chains_via_remembered_ca"));
}

TEST_F(AppsvcE2eTest, Attack_UpdateOnlyCertificateRefused) {
  ExpectRefused(DeviceTls(*good_, "update-only"),
                grpc::StatusCode::PERMISSION_DENIED, "update-only");
}

TEST_F(AppsvcE2eTest, Attack_OtherTenantDeviceRefused) {
  ExpectRefused(DeviceTls(*other_tenant_), grpc::StatusCode::PERMISSION_DENIED,
                "another tenant");
}

TEST_F(AppsvcE2eTest, Attack_OtherProductDeviceRefused) {
  ExpectRefused(DeviceTls(*other_product_), grpc::StatusCode::PERMISSION_DENIED,
                "another product");
}

TEST_F(AppsvcE2eTest, Attack_ForeignIssuerRefusedAtHandshake) {
  // Same claims, signed by a CA of the attacker's own: TLS refuses it.
  auto evil = crypto::EcPrivateKey::Generate();
  crypto::CertificateSpec root;
  root.common_name = "Sphere Platform Root CA";
  root.subject_public_key = evil.PublicKey();
  root.not_before = absl::Now() - absl::Hours(1);
  root.not_after = absl::Now() + absl::Hours(1);
  root.usage = crypto::KeyUsage::kCa;
  auto evil_root = crypto::IssueCertificate(root, evil, "");
  ASSERT_TRUE(evil_root.ok());
  rpc::TlsFiles good = DeviceTls(*good_);
  auto parsed = crypto::ParseCertificate(good.cert_pem);
  ASSERT_TRUE(parsed.ok());
  crypto::CertificateSpec spec;
  spec.common_name = "forged";
  spec.subject_public_key = good_->key.PublicKey();
  spec.not_before = absl::Now() - absl::Hours(1);
  spec.not_after = absl::Now() + absl::Hours(1);
  spec.usage = crypto::KeyUsage::kClientAuth;
  spec.claims = parsed->claims;
  auto forged = crypto::IssueCertificate(spec, evil, *evil_root);
  ASSERT_TRUE(forged.ok());
  ExpectRefused({*forged + *evil_root, good_->key.ToPem(), pki_->root_pem},
                grpc::StatusCode::UNAVAILABLE, "");
}

TEST_F(AppsvcE2eTest, Attack_RevokedDeviceRefusedWithinOneWatchRound) {
  rpc::TlsFiles tls = DeviceTls(*to_revoke_);
  uint64_t seq = 1;
  cv1::ReportTelemetryResponse resp;
  ASSERT_TRUE(Report(tls, Batch(2, 65, &seq, 1), &resp).ok());
  ASSERT_TRUE(cluster_->Revoke(*contoso_id_, to_revoke_->id).ok());
  auto revision = cluster_->ManagementRevision();
  ASSERT_TRUE(revision.ok());
  // The very certificate that was just accepted is refused as soon as
  // appsvc's Watch delivered the revocation's revision.
  ExpectRefused(tls, grpc::StatusCode::PERMISSION_DENIED, "revoked", *revision);
}

TEST_F(AppsvcE2eTest, Attack_OversizedBatchRefusedNothingStored) {
  uint64_t seq = 1000;
  const std::string before = State();
  cv1::ReportTelemetryResponse resp;
  grpc::Status st = Report(DeviceTls(*good_), Batch(1001, 65, &seq, 7), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << st.error_message();
  EXPECT_TRUE(absl::StrContains(st.error_message(), "over the limit"));
  EXPECT_EQ(State(), before);
}

TEST_F(AppsvcE2eTest, Attack_DeviceCertificateOnSupportApi) {
  auto stub = Support(DeviceTls(*good_));
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
  cv1::RequestServiceRequest req;
  req.set_device_id(good_->id);
  req.set_description("forged by a device");
  cv1::RequestServiceResponse resp;
  const std::string before = State();
  grpc::Status st = stub->RequestService(&ctx, req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(resp.request_id().empty());
  EXPECT_EQ(State(), before);
}

TEST_F(AppsvcE2eTest, AnomalyDiagnosticsWarrantyReservationAndTimeline) {
  rpc::TlsFiles tls = DeviceTls(*anomalous_);
  uint64_t seq = 1;
  uint64_t cycle = 1;
  cv1::ReportTelemetryResponse resp;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(Report(tls, Batch(4, 65, &seq, cycle++), &resp).ok());
  }
  EXPECT_EQ(resp.commands_size(), 0);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(Report(tls, Batch(4, 96, &seq, cycle++), &resp).ok());
  }
  ASSERT_EQ(resp.commands_size(), 1);
  EXPECT_EQ(resp.commands(0).kind(), cv1::Command::RUN_DIAGNOSTICS);
  auto gateway =
      cv1::DeviceGateway::NewStub(rpc::NewChannel(*appsvc_address_, tls));
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
    cv1::PollCommandsResponse poll;
    ASSERT_TRUE(gateway->PollCommands(&ctx, {}, &poll).ok());
    ASSERT_EQ(poll.commands_size(), 1);
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
    cv1::CompleteCommandRequest done;
    done.set_command_id(resp.commands(0).command_id());
    done.mutable_diagnostics()->set_healthy(false);
    done.mutable_diagnostics()->add_findings("heater resistance high");
    done.mutable_diagnostics()->set_suspected_part("DW100-HTR-220");
    cv1::CompleteCommandResponse out;
    grpc::Status st = gateway->CompleteCommand(&ctx, done, &out);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }
  auto support = Support(*support_tls_);
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
    cv1::GetDeviceInsightsRequest req;
    req.set_device_id(anomalous_->id);
    cv1::DeviceInsights in;
    ASSERT_TRUE(support->GetDeviceInsights(&ctx, req, &in).ok());
    EXPECT_TRUE(in.under_warranty());
    ASSERT_EQ(in.reservations_size(), 1);
    EXPECT_TRUE(absl::StrContains(in.reservations(0), "reserved at Redmond"));
    ASSERT_EQ(in.notifications_size(), 1);
    EXPECT_TRUE(absl::StrContains(in.notifications(0), "ada@example.com"));
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(20)));
    cv1::GetTimelineRequest req;
    req.set_device_id(anomalous_->id);
    cv1::Timeline t;
    grpc::Status st = support->GetTimeline(&ctx, req, &t);
    ASSERT_TRUE(st.ok()) << st.error_message();
    // Sphere answered for the device (it never attested in this test).
    EXPECT_EQ(t.last_attestation(), "never attested") << t.sphere_error();
    bool anomaly = false, reservation = false;
    for (const auto& e : t.entries()) {
      anomaly |= e.kind() == "anomaly";
      reservation |= e.kind() == "reservation";
    }
    EXPECT_TRUE(anomaly);
    EXPECT_TRUE(reservation);
    // Every Sphere source answered (status, attestation history and update
    // results, error reports): nothing to name in sphere_error. The device
    // never attested or updated, so Sphere adds no history rows.
    EXPECT_EQ(t.sphere_error(), "");
    for (const auto& e : t.entries()) {
      EXPECT_FALSE(e.source() == "sphere" &&
                   (e.kind() == "attestation" || e.kind() == "update"))
          << e.summary();
    }
  }
}

}  // namespace
}  // namespace sphere::testing
