// TwinControlService over real gRPC on loopback (port 0): requests run on
// the twin's thread through the bounded WorkQueue; a full queue is refused
// at once without running anything.
#include "twin/control_service.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"

namespace sphere::twin {
namespace {

class FakeHost : public TwinHost {
 public:
  v1::TwinStatus Status() override {
    v1::TwinStatus s;
    s.set_device_id("dev");
    s.set_boot_state(booted_ ? "running" : "off");
    auto* c = s.add_components();
    c->set_component("kernel");
    c->set_version(kernel_);
    return s;
  }
  absl::Status Attest() override {
    ++attests_;
    return absl::OkStatus();
  }
  absl::Status Reboot() override {
    booted_ = true;
    return absl::OkStatus();
  }
  absl::Status CheckForUpdates() override {
    ++kernel_;
    return update_error_;
  }
  int attests_ = 0;
  uint32_t kernel_ = 1;
  bool booted_ = false;
  absl::Status update_error_;
};

class ControlServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto key = crypto::EcPrivateKey::Generate();
    crypto::CertificateSpec spec;
    spec.common_name = "twin-control";
    spec.subject_public_key = key.PublicKey();
    spec.not_before = absl::Now() - absl::Minutes(1);
    spec.not_after = absl::Now() + absl::Hours(1);
    spec.usage = crypto::KeyUsage::kServerAuth;
    spec.dns_sans = {"localhost"};
    spec.ip_sans = {"127.0.0.1"};
    cert_ = *crypto::IssueCertificate(spec, key, "");
    rpc::ServerOptions o;
    o.tls.cert_pem = cert_;
    o.tls.key_pem = key.ToPem();
    o.require_client_cert = false;
    o.metrics_address = "";
    runner_ = std::make_unique<rpc::ServerRunner>(o);
    runner_->AddService(&service_);
    ASSERT_TRUE(runner_->Start().ok());
    rpc::TlsFiles tls;
    tls.ca_pem = cert_;
    stub_ = v1::TwinControl::NewStub(
        rpc::NewChannel(absl::StrCat("127.0.0.1:", runner_->port()), tls));
  }
  void TearDown() override {
    queue_.Close();
    queue_.RunFor(absl::ZeroDuration());
    runner_->Shutdown(absl::Seconds(1));
  }
  // Serve runs the twin's thread until `calls` requests were handled.
  std::thread Serve(int calls) {
    return std::thread([this, calls] {
      int done = 0;
      while (done < calls) done += queue_.RunFor(absl::Seconds(30));
    });
  }

  FakeHost host_;
  WorkQueue queue_{2};
  TwinControlService service_{&host_, &queue_};
  std::string cert_;
  std::unique_ptr<rpc::ServerRunner> runner_;
  std::unique_ptr<v1::TwinControl::Stub> stub_;
};

TEST_F(ControlServiceTest, RequestsRunOnTheTwinThread) {
  std::thread twin = Serve(3);
  v1::TwinStatus st;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
    ASSERT_TRUE(stub_->Reboot(&ctx, {}, &st).ok());
    EXPECT_EQ(st.boot_state(), "running");
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
    ASSERT_TRUE(stub_->CheckForUpdates(&ctx, {}, &st).ok());
    EXPECT_EQ(st.components(0).version(), 2u);
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
    ASSERT_TRUE(stub_->Attest(&ctx, {}, &st).ok());
    EXPECT_EQ(st.device_id(), "dev");
  }
  twin.join();
  EXPECT_EQ(host_.attests_, 1);
}

TEST_F(ControlServiceTest, HostErrorIsReturnedWithStatus) {
  host_.update_error_ = absl::FailedPreconditionError("metadata expired");
  std::thread twin = Serve(1);
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
  v1::TwinStatus st;
  grpc::Status s = stub_->CheckForUpdates(&ctx, {}, &st);
  twin.join();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(s.error_message(), "metadata expired");
}

TEST_F(ControlServiceTest, Fault_FullQueueIsRefusedAtOnce) {
  // Fill the queue (capacity 2) without a twin thread running it.
  ASSERT_TRUE(queue_.TryPost([] {}));
  ASSERT_TRUE(queue_.TryPost([] {}));
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
  v1::TwinStatus st;
  grpc::Status s = stub_->CheckForUpdates(&ctx, {}, &st);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(host_.kernel_, 1u);  // nothing ran
  EXPECT_EQ(queue_.size(), 2u);
}

}  // namespace
}  // namespace sphere::twin
