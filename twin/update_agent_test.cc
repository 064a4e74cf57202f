// UpdateAgent against an in-memory update service and attestation service
// (no gRPC). Each attack asserts the specific error AND that the device's
// slots and anti-rollback counters, and the agent's accepted metadata
// version, did not change (python-tuf style).
#include "twin/update_agent.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/update_transport.h"
#include "common/crypto/crypto.h"
#include "common/update/metadata.h"
#include "common/util/clock.h"
#include "mcu-model/device.h"
#include "mcu-model/device_type.h"
#include "mcu-model/image.h"
#include "mcu-model/install_error.h"
#include "twin/driver.h"
#include "twin/state_file.h"
#include "twin/twin.h"
#include "twin/update_runner.h"

namespace sphere::twin {
namespace {

using Result = v1::ReportUpdateResultRequest;
constexpr char kTenant[] = "tenant-contoso";

const crypto::EcPrivateKey& PlatformKey() {
  static const auto* k = new crypto::EcPrivateKey(
      *crypto::EcPrivateKey::FromScalar(crypto::Sha256("platform-signing")));
  return *k;
}

v1::AppManifest Manifest(const std::string& id, uint32_t memory_kib = 128) {
  v1::AppManifest m;
  m.set_component_id(id);
  m.set_memory_kib(memory_kib);
  return m;
}

v1::UpdateTarget TargetFor(const v1::ImagePackage& pkg) {
  v1::UpdateTarget t;
  v1::ImageHeader h;
  EXPECT_TRUE(h.ParseFromString(pkg.header()));
  t.set_image_hash(mcu::ImageHash(pkg.header()));
  t.set_image_id(crypto::HexEncode(t.image_hash()));
  t.set_component(h.component());
  t.set_version(h.version());
  t.set_size(h.payload_size());
  const std::string bytes = pkg.SerializeAsString();
  t.set_package_size(bytes.size());
  t.set_package_sha256(crypto::Sha256(bytes));
  t.add_hardware("mt3620");
  t.set_kind(h.kind());
  t.set_tenant_id(h.tenant_id());
  return t;
}

// FakeUpdateService plays the shard's UpdateService: signed metadata over
// the packages it holds, chunked downloads from an offset, and knobs for
// the attacks. It cuts a stream at max_bytes like the gRPC client does.
class FakeUpdateService : public client::UpdateTransport {
 public:
  explicit FakeUpdateService(Clock* clock) : clock_(clock) {}

  // Publish signs metadata listing `packages` (their real targets).
  void Publish(uint64_t version, const std::vector<v1::ImagePackage>& packages,
               const crypto::EcPrivateKey& key = PlatformKey()) {
    v1::UpdateMetadata md;
    md.set_metadata_version(version);
    md.set_issued_unix_ms(absl::ToUnixMillis(clock_->Now()));
    md.set_expires_unix_ms(absl::ToUnixMillis(clock_->Now() + absl::Hours(24)));
    md.set_tenant_id(kTenant);
    md.set_device_group_id("group-1");
    for (const auto& p : packages) {
      *md.add_targets() = TargetFor(p);
      bytes_[md.targets().rbegin()->image_id()] = p.SerializeAsString();
    }
    metadata_ = md;
    Sign(key);
  }
  void Sign(const crypto::EcPrivateKey& key = PlatformKey()) {
    auto s = update::SignMetadata(metadata_, key);
    ASSERT_TRUE(s.ok()) << s.status();
    signed_ = *s;
  }
  v1::UpdateMetadata& metadata() { return metadata_; }
  v1::SignedUpdateMetadata& signed_metadata() { return signed_; }
  // Serve `bytes` for `image_id` whatever the metadata says.
  void Serve(const std::string& image_id, std::string bytes) {
    bytes_[image_id] = std::move(bytes);
  }
  std::string& Bytes(const std::string& image_id) { return bytes_[image_id]; }

  void GetUpdates(v1::GetUpdatesRequest request,
                  UpdatesCallback done) override {
    ++get_updates_;
    v1::GetUpdatesResponse r;
    *r.mutable_targets() = metadata_.targets();
    *r.mutable_signed_metadata() = signed_;
    done(r);
  }
  void DownloadImage(v1::DownloadImageRequest request, uint64_t max_bytes,
                     DownloadCallback done) override {
    offsets_.push_back(request.offset());
    client::DownloadResult out;
    auto it = bytes_.find(request.image_id());
    if (it == bytes_.end()) {
      out.status = absl::NotFoundError("no such image");
      done(std::move(out));
      return;
    }
    const std::string& b = it->second;
    uint64_t kept = 0;
    const uint64_t chunk = request.max_chunk_bytes();
    // A range stops at offset + length (0: the end), like the shard.
    const uint64_t end =
        request.length() > 0 && request.length() < b.size() - request.offset()
            ? request.offset() + request.length()
            : b.size();
    lengths_.push_back(request.length());
    for (uint64_t off = request.offset(); off < end; off += chunk) {
      if (interrupt_at_ > 0 && off >= interrupt_at_) {
        interrupt_at_ = 0;
        out.status = absl::UnavailableError("connection reset");
        break;
      }
      v1::ImageChunk c;
      c.set_offset(off);
      c.set_data(b.substr(off, std::min<uint64_t>(chunk, end - off)));
      c.set_total_size(b.size());
      if (kept + c.data().size() > max_bytes) {  // client-side cut-off
        out.status = absl::OutOfRangeError("stream exceeded the signed length");
        break;
      }
      kept += c.data().size();
      out.chunks.push_back(std::move(c));
    }
    done(std::move(out));
  }
  void ReportUpdateResult(v1::ReportUpdateResultRequest request,
                          ReportCallback done) override {
    reports_.push_back(std::move(request));
    done(absl::OkStatus());
  }

  Clock* clock_;
  v1::UpdateMetadata metadata_;
  v1::SignedUpdateMetadata signed_;
  std::map<std::string, std::string> bytes_;
  std::vector<uint64_t> offsets_;
  std::vector<uint64_t> lengths_;
  std::vector<v1::ReportUpdateResultRequest> reports_;
  uint64_t interrupt_at_ = 0;  // > 0: fail one stream at this offset
  int get_updates_ = 0;
};

// FakeAttestation answers at once; chains are not checked (verify_chain =
// false), the agent only needs the attestation to be accepted.
class FakeAttestation : public client::AttestationTransport {
 public:
  explicit FakeAttestation(Clock* clock) : clock_(clock) {}
  void GetChallenge(v1::GetChallengeRequest, ChallengeCallback done) override {
    v1::GetChallengeResponse r;
    r.set_nonce(std::string(32, 'n'));
    done(r);
  }
  void Attest(v1::AttestRequest, AttestCallback done) override {
    ++attests_;
    v1::AttestResponse r;
    r.set_outcome(v1::UP_TO_DATE);
    r.set_not_after_unix_ms(
        absl::ToUnixMillis(clock_->Now() + absl::Hours(24)));
    r.set_session_token("token");
    done(r);
  }
  Clock* clock_;
  int attests_ = 0;
};

// DeviceState is what attacks must not change: the persisted device minus
// the fields that move on every Serialize, plus boot state.
std::string DeviceState(mcu::Device& d) {
  auto s = d.Serialize();
  EXPECT_TRUE(s.ok());
  v1::PersistedDeviceState st;
  EXPECT_TRUE(st.ParseFromString(*s));
  st.clear_seal_nonce();
  st.clear_sealed_secrets();
  st.clear_rng_counter();
  st.clear_next_error_sequence();
  st.clear_boot_count();
  return absl::StrCat(mcu::BootStateName(d.boot_state()), "|",
                      st.SerializeAsString());
}

class UpdateAgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    twin_config_.verify_chain = false;
    Fresh();
  }
  // Fresh: a new factory device (OS 1) and agent, attested.
  void Fresh() {
    agent_.reset();
    mcu::Device::Options o;
    o.seed = "agent-device";
    o.clock = &clock_;
    auto dev = mcu::Device::Manufacture(mcu::DeviceType::Mt3620(),
                                        PlatformKey().PublicKey(), o);
    ASSERT_TRUE(dev.ok());
    ASSERT_TRUE(
        (*dev)
            ->InstallFactoryImages(*mcu::BuildFactoryImages(PlatformKey(), 1))
            .ok());
    twin_ = std::make_unique<Twin>(std::move(*dev), &twin_config_);
    agent_ = std::make_unique<UpdateAgent>(twin_.get(), &agent_config_, 0);
    Attest();
  }
  void Attest() {
    twin_->RequestAttestation(clock_.Now());
    TwinDriver driver(&attestation_, &clock_);
    driver.Add(twin_.get());
    ASSERT_TRUE(driver.RunUntil(
        [&] { return twin_->phase() == Twin::Phase::kCertified; },
        clock_.Now() + absl::Hours(1)));
  }
  absl::Status Run() {
    return RunUpdateCheck(*twin_, *agent_, service_, attestation_, &clock_,
                          clock_.Now() + absl::Hours(1));
  }
  mcu::Device& device() { return twin_->device(); }

  // RunAttack runs one check and asserts: refused with `reason` (as the
  // FAILED report and the agent's error), device state unchanged.
  void ExpectImageRefused(mcu::InstallError reason) {
    const std::string before = DeviceState(device());
    absl::Status s = Run();
    EXPECT_EQ(mcu::InstallErrorOf(s), reason)
        << s << " want " << mcu::InstallErrorName(reason);
    ASSERT_EQ(agent_->last_results().size(), 1u);
    EXPECT_EQ(agent_->last_results()[0].result(), Result::FAILED);
    EXPECT_EQ(service_.reports_.size(), 1u);
    EXPECT_EQ(
        service_.reports_[0].detail().rfind(mcu::InstallErrorName(reason), 0),
        0u)
        << service_.reports_[0].detail();
    EXPECT_EQ(DeviceState(device()), before);
    EXPECT_EQ(agent_->phase(), UpdateAgent::Phase::kIdle);
  }
  void ExpectMetadataRefused(update::UpdateError reason) {
    const std::string before = DeviceState(device());
    const uint64_t version = agent_->metadata_version();
    absl::Status s = Run();
    EXPECT_EQ(update::UpdateErrorOf(s), reason)
        << s << " want " << update::UpdateErrorName(reason);
    EXPECT_EQ(agent_->metadata_version(), version);
    EXPECT_TRUE(service_.offsets_.empty());  // nothing downloaded
    EXPECT_TRUE(service_.reports_.empty());
    EXPECT_EQ(DeviceState(device()), before);
  }

  FakeClock clock_;
  TwinConfig twin_config_;
  UpdateAgentConfig agent_config_;
  FakeUpdateService service_{&clock_};
  FakeAttestation attestation_{&clock_};
  std::unique_ptr<Twin> twin_;
  std::unique_ptr<UpdateAgent> agent_;
};

v1::ImagePackage Kernel(uint32_t v) {
  return *mcu::BuildOsImage(PlatformKey(), mcu::kKernel, v);
}
v1::ImagePackage AppImage(uint32_t v,
                          const v1::AppManifest& m = Manifest("dw100"),
                          const std::string& tenant = kTenant) {
  return *mcu::BuildAppImage(PlatformKey(), m, v, 8192, tenant);
}

TEST_F(UpdateAgentTest, InstallsOsAndAppRebootsReattestsAndReports) {
  service_.Publish(7, {Kernel(2), AppImage(1)});
  const int attests = attestation_.attests_;
  ASSERT_TRUE(Run().ok()) << agent_->last_error();
  EXPECT_EQ(device().InstalledVersion(mcu::kKernel), 2u);
  EXPECT_EQ(device().InstalledVersion("app:dw100"), 1u);
  EXPECT_TRUE(device().AppRunning("dw100"));
  EXPECT_FALSE(device().update_pending_confirm());
  EXPECT_EQ(device().AntiRollbackCounter(mcu::kKernel), 2u);
  EXPECT_EQ(device().AntiRollbackCounter(kTenant, "app:dw100"), 1u);
  EXPECT_EQ(attestation_.attests_, attests + 1);  // re-attested after reboot
  EXPECT_EQ(agent_->metadata_version(), 7u);
  ASSERT_EQ(service_.reports_.size(), 2u);
  for (const auto& r : service_.reports_) {
    EXPECT_EQ(r.result(), Result::INSTALLED);
    EXPECT_TRUE(r.success());
    EXPECT_EQ(r.metadata_version(), 7u);
  }
  // Next check: nothing pending, nothing downloaded.
  service_.offsets_.clear();
  ASSERT_TRUE(Run().ok());
  EXPECT_TRUE(service_.offsets_.empty());
  EXPECT_EQ(agent_->phase(), UpdateAgent::Phase::kIdle);
  EXPECT_GT(agent_->next_wakeup(), clock_.Now());
}

TEST_F(UpdateAgentTest, ChecksAfterAttestationAndOnSchedule) {
  service_.Publish(1, {});
  ASSERT_TRUE(Run().ok());
  EXPECT_EQ(agent_->next_wakeup(), clock_.Now() + agent_config_.check_interval);
  EXPECT_TRUE(
      std::holds_alternative<std::monostate>(agent_->OnTimer(clock_.Now())));
  Attest();  // a renewal: a check becomes due at once
  EXPECT_EQ(agent_->next_wakeup(), clock_.Now());
  EXPECT_TRUE(std::holds_alternative<v1::GetUpdatesRequest>(
      agent_->OnTimer(clock_.Now())));
}

TEST_F(UpdateAgentTest, Fault_InterruptedDownloadResumesAtLastOffset) {
  service_.Publish(2, {Kernel(2)});
  agent_config_.max_chunk_bytes = 4096;
  service_.interrupt_at_ = 3 * 4096;
  ASSERT_TRUE(Run().ok()) << agent_->last_error();
  ASSERT_GE(service_.offsets_.size(), 2u);
  EXPECT_EQ(service_.offsets_[0], 0u);
  EXPECT_EQ(service_.offsets_[1], 3u * 4096);  // resumed, not restarted
  EXPECT_EQ(device().InstalledVersion(mcu::kKernel), 2u);
}

TEST_F(UpdateAgentTest, ChecksOnTheScheduleWithoutAttestation) {
  service_.Publish(1, {});
  ASSERT_TRUE(Run().ok());
  const absl::Time due = agent_->next_wakeup();
  EXPECT_EQ(due, clock_.Now() + agent_config_.check_interval);
  // Nothing before the schedule says so, on the injected clock.
  clock_.Advance(agent_config_.check_interval - absl::Seconds(1));
  EXPECT_TRUE(
      std::holds_alternative<std::monostate>(agent_->OnTimer(clock_.Now())));
  // At the scheduled time a check starts with no attestation in between.
  clock_.Advance(absl::Seconds(1));
  const int calls = service_.get_updates_;
  UpdateAgent::Request r = agent_->OnTimer(clock_.Now());
  ASSERT_TRUE(std::holds_alternative<v1::GetUpdatesRequest>(r));
  // The check the schedule started finds and installs a new release.
  service_.Publish(2, {Kernel(2)});
  v1::GetUpdatesResponse answer;
  service_.GetUpdates(
      std::get<v1::GetUpdatesRequest>(r),
      [&](absl::StatusOr<v1::GetUpdatesResponse> a) { answer = *a; });
  EXPECT_EQ(service_.get_updates_, calls + 1);
  r = agent_->OnUpdates(clock_.Now(), answer);
  EXPECT_TRUE(std::holds_alternative<UpdateAgent::DownloadRequest>(r));
}

TEST_F(UpdateAgentTest, Fault_DownloadResumesAtItsOffsetAfterATwinRestart) {
  service_.Publish(2, {Kernel(2)});
  agent_config_.max_chunk_bytes = 4096;
  agent_config_.max_resumes_per_check = 0;  // give up at the first cut
  service_.interrupt_at_ = 3 * 4096;
  EXPECT_FALSE(Run().ok());
  EXPECT_EQ(device().InstalledVersion(mcu::kKernel), 1u);
  auto progress = agent_->download_progress();
  ASSERT_TRUE(progress.has_value());
  EXPECT_EQ(progress->bytes().size(), 3u * 4096);
  // What the twin writes to twin.state, and reads back after a restart.
  const std::string persisted = progress->SerializeAsString();
  agent_.reset();
  agent_ = std::make_unique<UpdateAgent>(twin_.get(), &agent_config_, 0);
  v1::UpdateDownloadProgress restored;
  ASSERT_TRUE(restored.ParseFromString(persisted));
  ASSERT_TRUE(agent_->RestoreDownload(restored).ok());
  service_.offsets_.clear();
  ASSERT_TRUE(Run().ok()) << agent_->last_error();
  ASSERT_FALSE(service_.offsets_.empty());
  EXPECT_EQ(service_.offsets_[0], 3u * 4096);  // resumed, not restarted
  EXPECT_EQ(device().InstalledVersion(mcu::kKernel), 2u);
  EXPECT_FALSE(agent_->download_progress().has_value());
}

TEST_F(UpdateAgentTest, Attack_TamperedDownloadProgressIsRefused) {
  service_.Publish(2, {Kernel(2)});
  agent_config_.max_chunk_bytes = 4096;
  agent_config_.max_resumes_per_check = 0;
  service_.interrupt_at_ = 2 * 4096;
  EXPECT_FALSE(Run().ok());
  auto progress = agent_->download_progress();
  ASSERT_TRUE(progress.has_value());
  const std::string before = DeviceState(device());
  // Someone edits the stored bytes: the complete package no longer hashes
  // to the signed value, so nothing installs.
  std::string* b = progress->mutable_bytes();
  (*b)[b->size() / 2] ^= 0x5a;
  agent_.reset();  // a restart: the old agent goes first
  agent_ = std::make_unique<UpdateAgent>(twin_.get(), &agent_config_, 0);
  ASSERT_TRUE(agent_->RestoreDownload(*progress).ok());
  service_.reports_.clear();
  absl::Status s = Run();
  EXPECT_FALSE(s.ok());
  ASSERT_EQ(agent_->last_results().size(), 1u);
  EXPECT_EQ(agent_->last_results()[0].result(), Result::FAILED);
  EXPECT_EQ(DeviceState(device()), before);
  EXPECT_EQ(device().InstalledVersion(mcu::kKernel), 1u);

  // Malformed progress is refused whole and changes nothing.
  UpdateAgent fresh(twin_.get(), &agent_config_, 0);
  v1::UpdateDownloadProgress bad = *progress;
  bad.set_bytes(std::string(bad.package_size() + 1, 'x'));
  EXPECT_EQ(fresh.RestoreDownload(bad).code(),
            absl::StatusCode::kInvalidArgument);
  bad = *progress;
  bad.set_image_id("../../etc");
  EXPECT_EQ(fresh.RestoreDownload(bad).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(fresh.download_progress().has_value());
}

// Power loss at every save point of a ranged download: the twin writes
// download_progress() at each range the listener reports, and a restart
// from any of those writes resumes exactly there and installs a verified
// image (never from 0, never past what was saved).
TEST_F(UpdateAgentTest, Fault_PowerLossAtEveryDownloadSavePointResumesThere) {
  const v1::ImagePackage kernel = Kernel(2);
  service_.Publish(2, {kernel});
  agent_config_.max_chunk_bytes = 64 * 1024;
  agent_config_.progress_range_bytes = 512 * 1024;
  std::vector<std::string> saved;  // what twin.state held at each save
  agent_->set_progress_listener([&](const UpdateAgent& a) {
    auto p = a.download_progress();
    ASSERT_TRUE(p.has_value());
    saved.push_back(p->SerializeAsString());
  });
  ASSERT_TRUE(Run().ok()) << agent_->last_error();
  const uint64_t size = kernel.ByteSizeLong();
  const uint64_t range = agent_config_.progress_range_bytes;
  ASSERT_EQ(saved.size(), (size - 1) / range);  // one per range but the last
  EXPECT_EQ(agent_->ranges_completed(), saved.size());
  // Every range but the last asks for `range` bytes (the last: the rest).
  ASSERT_EQ(service_.lengths_.size(), saved.size() + 1);
  for (size_t i = 0; i < saved.size(); ++i) {
    EXPECT_EQ(service_.lengths_[i], range);
  }
  EXPECT_EQ(service_.lengths_.back(), 0u);
  for (size_t k = 0; k < saved.size(); ++k) {
    SCOPED_TRACE(absl::StrCat("power loss after save point ", k));
    v1::UpdateDownloadProgress p;
    ASSERT_TRUE(p.ParseFromString(saved[k]));
    ASSERT_EQ(p.bytes().size(), (k + 1) * range);
    Fresh();  // the device as it boots again: OS 1, a new agent
    ASSERT_EQ(device().InstalledVersion(mcu::kKernel), 1u);
    ASSERT_TRUE(agent_->RestoreDownload(p).ok());
    service_.offsets_.clear();
    service_.reports_.clear();
    ASSERT_TRUE(Run().ok()) << agent_->last_error();
    ASSERT_FALSE(service_.offsets_.empty());
    EXPECT_EQ(service_.offsets_[0], (k + 1) * range);  // resumed there
    EXPECT_EQ(device().InstalledVersion(mcu::kKernel), 2u);
    ASSERT_EQ(service_.reports_.size(), 1u);
    EXPECT_EQ(service_.reports_[0].result(), Result::INSTALLED);
    EXPECT_FALSE(agent_->download_progress().has_value());
  }
}

// A server that ends a range early (short of offset + length) is refused
// like one that ends the package early: nothing installs, nothing changes.
TEST_F(UpdateAgentTest, Attack_RangeEndingShortIsRefused) {
  service_.Publish(2, {Kernel(2)});
  agent_config_.max_chunk_bytes = 4096;
  agent_config_.progress_range_bytes = 64 * 1024;
  const std::string id = service_.metadata().targets(0).image_id();
  service_.Bytes(id).resize(64 * 1024 - 100);  // serves a short package
  ExpectImageRefused(mcu::InstallError::kPackageIncomplete);
}

TEST_F(UpdateAgentTest, Attack_UnsignedMetadata) {
  service_.Publish(3, {Kernel(2)});
  service_.signed_metadata().clear_signature();
  ExpectMetadataRefused(update::UpdateError::kBadSignature);
}

TEST_F(UpdateAgentTest, Attack_MetadataSignedByAnotherKey) {
  auto rogue = *crypto::EcPrivateKey::FromScalar(crypto::Sha256("rogue"));
  service_.Publish(3, {Kernel(2)}, rogue);
  ExpectMetadataRefused(update::UpdateError::kBadSignature);
}

TEST_F(UpdateAgentTest, Attack_ExpiredMetadataFreeze) {
  service_.Publish(3, {Kernel(2)});
  clock_.Advance(absl::Hours(25));  // the attacker replays old metadata
  Attest();
  ExpectMetadataRefused(update::UpdateError::kExpired);
}

TEST_F(UpdateAgentTest, Attack_OlderMetadataVersion) {
  service_.Publish(5, {});
  ASSERT_TRUE(Run().ok());
  ASSERT_EQ(agent_->metadata_version(), 5u);
  service_.Publish(4, {Kernel(2)});  // validly signed, but older
  ExpectMetadataRefused(update::UpdateError::kRollback);
  EXPECT_EQ(agent_->metadata_version(), 5u);
}

// The accepted version survives a restart the way the twin process keeps
// it (TwinStateFile.update_metadata_version, written and read back): older
// metadata is refused by the restarted agent too.
TEST_F(UpdateAgentTest, Attack_OlderMetadataVersionAfterARestart) {
  service_.Publish(5, {});
  ASSERT_TRUE(Run().ok());
  ASSERT_EQ(agent_->metadata_version(), 5u);
  const std::string path =
      absl::StrCat(::testing::TempDir(), "/restart-rollback/twin.state");
  TwinStateFile saved;
  saved.set_format(1);
  saved.set_update_metadata_version(agent_->metadata_version());
  ASSERT_TRUE(WriteTwinState(path, saved).ok());
  auto read = ReadTwinState(path);
  ASSERT_TRUE(read.ok()) << read.status();
  agent_.reset();  // a restart: the old agent goes first
  agent_ = std::make_unique<UpdateAgent>(twin_.get(), &agent_config_,
                                         read->update_metadata_version());
  service_.Publish(4, {Kernel(2)});  // validly signed, but older
  ExpectMetadataRefused(update::UpdateError::kRollback);
  EXPECT_EQ(agent_->metadata_version(), 5u);
  EXPECT_EQ(device().InstalledVersion(mcu::kKernel), 1u);
}

TEST_F(UpdateAgentTest, Attack_UnsignedImage) {
  v1::ImagePackage k = Kernel(2);
  k.clear_signature();
  service_.Publish(3, {k});
  ExpectImageRefused(mcu::InstallError::kBadSignature);
}

TEST_F(UpdateAgentTest, Attack_ImageSignedByAnotherKey) {
  auto rogue = *crypto::EcPrivateKey::FromScalar(crypto::Sha256("rogue"));
  service_.Publish(3, {*mcu::BuildOsImage(rogue, mcu::kKernel, 2)});
  ExpectImageRefused(mcu::InstallError::kBadSignature);
}

TEST_F(UpdateAgentTest, Attack_OlderVersionRollback) {
  service_.Publish(3, {Kernel(3)});
  ASSERT_TRUE(Run().ok());
  ASSERT_EQ(device().AntiRollbackCounter(mcu::kKernel), 3u);
  // Signed metadata that offers an older kernel installs nothing.
  service_.Publish(4, {Kernel(2)});
  service_.offsets_.clear();
  service_.reports_.clear();
  const std::string before = DeviceState(device());
  ASSERT_TRUE(Run().ok());
  EXPECT_TRUE(service_.offsets_.empty());
  EXPECT_EQ(DeviceState(device()), before);
  EXPECT_EQ(device().InstalledVersion(mcu::kKernel), 3u);
  EXPECT_EQ(device().AntiRollbackCounter(mcu::kKernel), 3u);
}

TEST_F(UpdateAgentTest, Attack_ImageOutsideSignedSetMixAndMatch) {
  // The server answers the listed kernel's id with another platform-signed
  // image (a valid package, but not the one the metadata names).
  service_.Publish(3, {Kernel(2)});
  const std::string id = service_.metadata().targets(0).image_id();
  service_.Serve(id, Kernel(3).SerializeAsString());
  const std::string before = DeviceState(device());
  absl::Status s = Run();
  mcu::InstallError e = mcu::InstallErrorOf(s);
  // Which check fires first depends on the DER signature lengths.
  EXPECT_TRUE(e == mcu::InstallError::kPackageHash ||
              e == mcu::InstallError::kPackageTooLong ||
              e == mcu::InstallError::kPackageIncomplete)
      << s;
  ASSERT_EQ(service_.reports_.size(), 1u);
  EXPECT_EQ(service_.reports_[0].result(), Result::FAILED);
  EXPECT_EQ(DeviceState(device()), before);
  EXPECT_EQ(device().InstalledVersion(mcu::kKernel), 1u);
}

TEST_F(UpdateAgentTest, Attack_PayloadLongerThanSignedEndlessData) {
  service_.Publish(3, {Kernel(2)});
  const std::string id = service_.metadata().targets(0).image_id();
  service_.Bytes(id) += std::string(1 << 20, 'A');  // and on and on
  ExpectImageRefused(mcu::InstallError::kPackageTooLong);
}

TEST_F(UpdateAgentTest, Attack_TamperedChunk) {
  service_.Publish(3, {Kernel(2)});
  std::string& b = service_.Bytes(service_.metadata().targets(0).image_id());
  b[b.size() / 3] ^= 0x01;
  ExpectImageRefused(mcu::InstallError::kPackageHash);
}

TEST_F(UpdateAgentTest, Attack_ImageForOtherHardware) {
  service_.Publish(3, {Kernel(2)});
  service_.metadata().mutable_targets(0)->clear_hardware();
  service_.metadata().mutable_targets(0)->add_hardware("mt3621");
  service_.Sign();
  ExpectImageRefused(mcu::InstallError::kWrongHardware);
}

TEST_F(UpdateAgentTest, Attack_TooLargeForRam) {
  service_.Publish(
      3, {AppImage(1, Manifest("dw100", device().type().AppRamKib() + 64))});
  ExpectImageRefused(mcu::InstallError::kTooLargeForRam);
}

TEST_F(UpdateAgentTest, Attack_TooLargeForFlash) {
  const uint32_t kib = device().type().Partition(mcu::kPartAppA)->size_kib;
  service_.Publish(3, {*mcu::BuildAppImage(PlatformKey(), Manifest("dw100"), 1,
                                           (kib + 1) * 1024, kTenant)});
  ExpectImageRefused(mcu::InstallError::kTooLargeForFlash);
}

TEST_F(UpdateAgentTest, Attack_AnotherTenantsApp) {
  service_.Publish(3, {AppImage(9, Manifest("dw100"), "tenant-evil")});
  ExpectImageRefused(mcu::InstallError::kWrongTenant);
}

TEST_F(UpdateAgentTest, CrashLoopRollsBackAndReportsRolledBack) {
  service_.Publish(3, {*mcu::BuildOsImage(PlatformKey(), mcu::kOsServices, 2)});
  // Drive the agent by hand to crash the new OS before re-attestation.
  UpdateAgent::Request r = agent_->CheckNow(clock_.Now());
  ASSERT_TRUE(std::holds_alternative<v1::GetUpdatesRequest>(r));
  service_.GetUpdates({},
                      [&](auto a) { r = agent_->OnUpdates(clock_.Now(), a); });
  ASSERT_TRUE(std::holds_alternative<UpdateAgent::DownloadRequest>(r));
  while (std::holds_alternative<UpdateAgent::DownloadRequest>(r)) {  // ranges
    auto d = std::get<UpdateAgent::DownloadRequest>(r);
    service_.DownloadImage(d.request, d.max_bytes,
                           [&](client::DownloadResult a) {
                             r = agent_->OnDownload(clock_.Now(), std::move(a));
                           });
  }
  ASSERT_EQ(agent_->phase(), UpdateAgent::Phase::kAwaitingAttestation);
  ASSERT_EQ(device().InstalledVersion(mcu::kOsServices), 2u);
  for (int i = 0; i < device().type().max_boot_attempts; ++i) {
    ASSERT_TRUE(device().OsCrash("panic in new os-services").ok());
  }
  ASSERT_EQ(device().InstalledVersion(mcu::kOsServices), 1u);
  Attest();  // the rolled-back device attests; the agent learns the outcome
  ASSERT_EQ(agent_->phase(), UpdateAgent::Phase::kReporting);
  r = agent_->OnTimer(clock_.Now());
  ASSERT_TRUE(std::holds_alternative<v1::ReportUpdateResultRequest>(r));
  const auto& rep = std::get<v1::ReportUpdateResultRequest>(r);
  EXPECT_EQ(rep.result(), Result::ROLLED_BACK);
  EXPECT_FALSE(rep.success());
  EXPECT_EQ(rep.version(), 2u);
  EXPECT_EQ(mcu::InstallErrorOf(agent_->last_error()),
            mcu::InstallError::kCrashLoop);
  EXPECT_EQ(device().AntiRollbackCounter(mcu::kOsServices), 1u);
  EXPECT_FALSE(device().update_pending_confirm());
  EXPECT_TRUE(std::holds_alternative<std::monostate>(
      agent_->OnReport(clock_.Now(), absl::OkStatus())));
  EXPECT_EQ(agent_->phase(), UpdateAgent::Phase::kIdle);
}

TEST_F(UpdateAgentTest, AppDefersUpdateAtMost24HoursThenItInstalls) {
  v1::AppManifest m = Manifest("dw100");
  m.set_software_update_deferral(true);
  service_.Publish(2, {AppImage(1, m)});
  ASSERT_TRUE(Run().ok());
  ASSERT_TRUE(device().AppRunning("dw100"));
  service_.reports_.clear();

  service_.Publish(3, {AppImage(2, m), Kernel(2)});
  ASSERT_TRUE(device().DeferUpdate("dw100", absl::Hours(20)).ok());
  const std::string before = DeviceState(device());
  ASSERT_TRUE(Run().ok());
  ASSERT_EQ(service_.reports_.size(), 2u);
  for (const auto& r : service_.reports_) {
    EXPECT_EQ(r.result(), Result::DEFERRED);
  }
  EXPECT_EQ(DeviceState(device()), before);
  EXPECT_EQ(agent_->next_wakeup(), clock_.Now() + absl::Hours(20));

  clock_.Advance(absl::Hours(20));
  // The app asks again: granted only up to 24 h after the first deferral.
  ASSERT_TRUE(device().DeferUpdate("dw100", absl::Hours(20)).ok());
  EXPECT_EQ(device().UpdateDeferredUntil(), clock_.Now() + absl::Hours(4));
  clock_.Advance(absl::Hours(4));
  EXPECT_FALSE(device().DeferUpdate("dw100", absl::Hours(1)).ok());
  Attest();
  service_.Publish(4, {AppImage(2, m), Kernel(2)});
  service_.reports_.clear();
  ASSERT_TRUE(Run().ok()) << agent_->last_error();
  EXPECT_EQ(device().InstalledVersion("app:dw100"), 2u);
  EXPECT_EQ(device().InstalledVersion(mcu::kKernel), 2u);
  EXPECT_FALSE(device().UpdateDeferred());
}

TEST_F(UpdateAgentTest, NotAttestedYetChecksNothing) {
  mcu::Device::Options o;
  o.seed = "fresh";
  o.clock = &clock_;
  auto dev = mcu::Device::Manufacture(mcu::DeviceType::Mt3620(),
                                      PlatformKey().PublicKey(), o);
  Twin fresh(std::move(*dev), &twin_config_);
  UpdateAgent agent(&fresh, &agent_config_, 0);
  EXPECT_TRUE(
      std::holds_alternative<std::monostate>(agent.CheckNow(clock_.Now())));
  EXPECT_EQ(agent.last_error().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(agent.next_wakeup(), clock_.Now() + agent_config_.check_interval);
  agent.ScheduleCheck(clock_.Now() + absl::Minutes(1));
  EXPECT_EQ(agent.next_wakeup(), clock_.Now() + absl::Minutes(1));
}

}  // namespace
}  // namespace sphere::twin
