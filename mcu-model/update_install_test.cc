// Device-side install checks of issue 11: every attack asserts its specific
// InstallError AND that flash slots, anti-rollback counters and boot state
// did not change; power loss at every durable install step leaves a bootable
// device; crash loops roll back; deferral is bounded by 24 h of device time.
#include "mcu-model/update_install.h"

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"
#include "common/util/clock.h"
#include "gtest/gtest.h"
#include "mcu-model/device.h"
#include "mcu-model/device_fixture.h"
#include "mcu-model/image.h"

namespace sphere::mcu {
namespace {

constexpr char kTenant[] = "tenant-contoso";

using device_testing::Manifest;
using device_testing::SigningKey;

// Target builds the signed-set entry the platform would publish for `pkg`.
InstallTarget TargetFor(const v1::ImagePackage& pkg) {
  auto v = VerifyImage(pkg, SigningKey().PublicKey());
  EXPECT_TRUE(v.ok()) << v.status();
  InstallTarget t;
  t.image_hash = v->image_hash;
  t.image_id = crypto::HexEncode(v->image_hash);
  t.component = v->header.component();
  t.version = v->header.version();
  t.size = v->header.payload_size();
  std::string bytes = pkg.SerializeAsString();
  t.package_size = bytes.size();
  t.package_sha256 = crypto::Sha256(bytes);
  t.hardware = {"mt3620"};
  t.kind = v->header.kind();
  t.tenant_id = v->header.tenant_id();
  return t;
}

// State is everything an attack must leave unchanged: the persisted device
// state without the fields that change on every Serialize (seal nonce, RNG
// counter) plus the boot state.
std::string State(Device& d) {
  auto s = d.Serialize();
  EXPECT_TRUE(s.ok());
  v1::PersistedDeviceState st;
  EXPECT_TRUE(st.ParseFromString(*s));
  st.clear_seal_nonce();
  st.clear_sealed_secrets();
  st.clear_rng_counter();
  st.clear_next_error_sequence();
  st.clear_error_ring();  // a refusal is reported; reports are not state
  st.clear_dropped_error_events();
  return absl::StrCat(BootStateName(d.boot_state()), "|",
                      st.SerializeAsString());
}

class UpdateInstallTest : public device_testing::DeviceFixture {
 protected:
  std::unique_ptr<Device> Restored(const std::string& state) {
    Device::Options o;
    o.clock = &clock_;
    auto d = Device::Restore(DeviceType::Mt3620(), SigningKey().PublicKey(),
                             state, std::move(o));
    EXPECT_TRUE(d.ok()) << d.status();
    return *std::move(d);
  }
  // Check runs CheckPackage for `pkg` under a signed set holding `set`.
  absl::Status Check(Device& d, const std::vector<InstallTarget>& set,
                     const std::string& image_id, const std::string& bytes) {
    return CheckPackage(d, set, kTenant, image_id, bytes).status();
  }
  // ExpectRefused asserts the reason and that nothing in the device changed.
  void ExpectRefused(Device& d, const std::vector<InstallTarget>& set,
                     const std::string& image_id, const std::string& bytes,
                     InstallError want) {
    const std::string before = State(d);
    absl::Status s = Check(d, set, image_id, bytes);
    EXPECT_EQ(InstallErrorOf(s), want)
        << s << " want " << InstallErrorName(want);
    EXPECT_EQ(State(d), before);
  }
};

TEST_F(UpdateInstallTest, VerifiedOsPackageInstallsToInactiveSlotAndConfirms) {
  auto d = Booted();
  v1::ImagePackage k2 = *BuildOsImage(SigningKey(), kKernel, 2);
  InstallTarget t = TargetFor(k2);
  auto v = CheckPackage(*d, {t}, kTenant, t.image_id, k2.SerializeAsString());
  ASSERT_TRUE(v.ok()) << v.status();
  ASSERT_TRUE(StageVerified(*d, *v).ok());
  EXPECT_FALSE(Installed(*d, t));  // staged, not running
  ASSERT_TRUE(d->Reboot().ok());
  EXPECT_EQ(d->active_os_slot(), 1u);
  EXPECT_TRUE(Installed(*d, t));
  EXPECT_TRUE(d->update_pending_confirm());
  EXPECT_EQ(d->AntiRollbackCounter(kKernel), 1u);
  ASSERT_TRUE(d->ConfirmUpdate().ok());
  EXPECT_EQ(d->AntiRollbackCounter(kKernel), 2u);
}

TEST_F(UpdateInstallTest, AssemblerStopsAtSignedLengthAndResumesAtOffset) {
  PackageAssembler a(10);
  ASSERT_TRUE(a.Append(0, "abcd").ok());
  // A resumed download must continue at offset(); a gap is refused.
  EXPECT_EQ(InstallErrorOf(a.Append(6, "gh")),
            InstallError::kPackageIncomplete);
  EXPECT_EQ(a.offset(), 4u);
  // Endless data: a chunk running past the signed length is not taken.
  absl::Status s = a.Append(4, "efghijk");
  EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(InstallErrorOf(s), InstallError::kPackageTooLong);
  EXPECT_EQ(a.offset(), 4u);
  ASSERT_TRUE(a.Append(4, "efghij").ok());
  EXPECT_TRUE(a.complete());
  EXPECT_EQ(InstallErrorOf(a.Append(10, "x")), InstallError::kPackageTooLong);
  EXPECT_EQ(a.bytes(), "abcdefghij");
}

TEST_F(UpdateInstallTest, Attack_UnsignedImage) {
  auto d = Booted();
  v1::ImagePackage k2 = *BuildOsImage(SigningKey(), kKernel, 2);
  k2.clear_signature();
  InstallTarget t = TargetFor(*BuildOsImage(SigningKey(), kKernel, 2));
  t.package_size = k2.ByteSizeLong();
  t.package_sha256 = crypto::Sha256(k2.SerializeAsString());
  ExpectRefused(*d, {t}, t.image_id, k2.SerializeAsString(),
                InstallError::kBadSignature);
}

TEST_F(UpdateInstallTest, Attack_ImageSignedByAnotherKey) {
  auto d = Booted();
  auto rogue = *crypto::EcPrivateKey::FromScalar(crypto::Sha256("rogue"));
  v1::ImagePackage k2 = *BuildOsImage(rogue, kKernel, 2);
  InstallTarget t = TargetFor(*BuildOsImage(SigningKey(), kKernel, 2));
  t.package_size = k2.ByteSizeLong();
  t.package_sha256 = crypto::Sha256(k2.SerializeAsString());
  ExpectRefused(*d, {t}, t.image_id, k2.SerializeAsString(),
                InstallError::kBadSignature);
}

TEST_F(UpdateInstallTest, Attack_OlderVersionRollback) {
  auto d = Booted();
  v1::ImagePackage k3 = *BuildOsImage(SigningKey(), kKernel, 3);
  auto v = CheckPackage(*d, {TargetFor(k3)}, kTenant, TargetFor(k3).image_id,
                        k3.SerializeAsString());
  ASSERT_TRUE(v.ok());
  ASSERT_TRUE(StageVerified(*d, *v).ok());
  ASSERT_TRUE(d->Reboot().ok());
  ASSERT_TRUE(d->ConfirmUpdate().ok());
  ASSERT_EQ(d->AntiRollbackCounter(kKernel), 3u);
  // Even a platform-signed, listed older kernel is refused.
  v1::ImagePackage k2 = *BuildOsImage(SigningKey(), kKernel, 2);
  InstallTarget t = TargetFor(k2);
  ExpectRefused(*d, {t}, t.image_id, k2.SerializeAsString(),
                InstallError::kRollback);
  EXPECT_EQ(d->AntiRollbackCounter(kKernel), 3u);
}

TEST_F(UpdateInstallTest, Attack_ImageOutsideSignedSetMixAndMatch) {
  auto d = Booted();
  v1::ImagePackage k2 = *BuildOsImage(SigningKey(), kKernel, 2);
  v1::ImagePackage os2 = *BuildOsImage(SigningKey(), kOsServices, 2);
  // Set lists only the kernel; the os-services image is not in it.
  ExpectRefused(*d, {TargetFor(k2)}, TargetFor(os2).image_id,
                os2.SerializeAsString(), InstallError::kNotInSignedSet);
  // The attacker serves another signed image under the listed image id.
  ExpectRefused(*d, {TargetFor(k2)}, TargetFor(k2).image_id,
                os2.SerializeAsString(), InstallError::kPackageIncomplete);
  InstallTarget forged = TargetFor(k2);
  forged.package_size = os2.ByteSizeLong();
  forged.package_sha256 = crypto::Sha256(os2.SerializeAsString());
  ExpectRefused(*d, {forged}, forged.image_id, os2.SerializeAsString(),
                InstallError::kTargetMismatch);
}

TEST_F(UpdateInstallTest, Attack_PayloadLongerThanSignedEndlessData) {
  auto d = Booted();
  v1::ImagePackage k2 = *BuildOsImage(SigningKey(), kKernel, 2);
  InstallTarget t = TargetFor(k2);
  ExpectRefused(*d, {t}, t.image_id, k2.SerializeAsString() + "MORE",
                InstallError::kPackageTooLong);
}

TEST_F(UpdateInstallTest, Attack_TamperedChunk) {
  auto d = Booted();
  v1::ImagePackage k2 = *BuildOsImage(SigningKey(), kKernel, 2);
  InstallTarget t = TargetFor(k2);
  std::string bytes = k2.SerializeAsString();
  bytes[bytes.size() / 2] ^= 0x5a;
  ExpectRefused(*d, {t}, t.image_id, bytes, InstallError::kPackageHash);
}

TEST_F(UpdateInstallTest, Attack_ImageForOtherHardware) {
  auto d = Booted();
  v1::ImagePackage k2 = *BuildOsImage(SigningKey(), kKernel, 2);
  InstallTarget t = TargetFor(k2);
  t.hardware = {"mt3621"};
  ExpectRefused(*d, {t}, t.image_id, k2.SerializeAsString(),
                InstallError::kWrongHardware);
  t.hardware.clear();  // no hardware stated: not for this device either
  ExpectRefused(*d, {t}, t.image_id, k2.SerializeAsString(),
                InstallError::kWrongHardware);
}

TEST_F(UpdateInstallTest, Attack_TooLargeForFlash) {
  auto d = Booted();
  const uint32_t app_kib = d->type().Partition(kPartAppA)->size_kib;
  v1::ImagePackage big = *BuildAppImage(SigningKey(), Manifest("big"), 1,
                                        (app_kib + 1) * 1024, kTenant);
  InstallTarget t = TargetFor(big);
  absl::Status s =
      CheckPackage(*d, {t}, kTenant, t.image_id, big.SerializeAsString())
          .status();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  ExpectRefused(*d, {t}, t.image_id, big.SerializeAsString(),
                InstallError::kTooLargeForFlash);
}

TEST_F(UpdateInstallTest, Attack_TooLargeForRam) {
  auto d = Booted();
  v1::ImagePackage hog =
      *BuildAppImage(SigningKey(), Manifest("hog", d->type().AppRamKib() + 1),
                     1, 4096, kTenant);
  InstallTarget t = TargetFor(hog);
  ExpectRefused(*d, {t}, t.image_id, hog.SerializeAsString(),
                InstallError::kTooLargeForRam);
  // Two apps that fit alone but not together in the 4 MiB budget.
  const uint32_t half = d->type().AppRamKib() / 2 + 1;
  v1::ImagePackage a =
      *BuildAppImage(SigningKey(), Manifest("a", half), 1, 4096, kTenant);
  auto va = CheckPackage(*d, {TargetFor(a)}, kTenant, TargetFor(a).image_id,
                         a.SerializeAsString());
  ASSERT_TRUE(va.ok()) << va.status();
  ASSERT_TRUE(StageVerified(*d, *va).ok());
  v1::ImagePackage b =
      *BuildAppImage(SigningKey(), Manifest("b", half), 1, 4096, kTenant);
  ExpectRefused(*d, {TargetFor(b)}, TargetFor(b).image_id,
                b.SerializeAsString(), InstallError::kTooLargeForRam);
}

TEST_F(UpdateInstallTest, Attack_AnotherTenantsApp) {
  auto d = Booted();
  v1::ImagePackage evil =
      *BuildAppImage(SigningKey(), Manifest("dw100"), 5, 4096, "tenant-evil");
  InstallTarget t = TargetFor(evil);
  ExpectRefused(*d, {t}, t.image_id, evil.SerializeAsString(),
                InstallError::kWrongTenant);
  t.tenant_id = kTenant;  // a target claiming our tenant does not help
  ExpectRefused(*d, {t}, t.image_id, evil.SerializeAsString(),
                InstallError::kWrongTenant);
}

// ---- Power loss at each durable step of an install -----------------------

struct Snapshot {
  std::string step;
  std::string state;
};

// Runs a full OS + app install (stage both, reboot, confirm) with a hook that
// serializes the device after every durable step, as power loss there would
// leave it.
std::vector<Snapshot> InstallWithSnapshots(Device& d) {
  std::vector<Snapshot> snaps;
  d.SetInstallStepHookForTest([&](absl::string_view step) {
    auto s = d.Serialize();
    ASSERT_TRUE(s.ok());
    snaps.push_back({std::string(step), *s});
  });
  for (const v1::ImagePackage& p :
       {*BuildOsImage(SigningKey(), kKernel, 2),
        *BuildAppImage(SigningKey(), Manifest("dw100"), 2, 4096, kTenant)}) {
    auto v = CheckPackage(d, {TargetFor(p)}, kTenant, TargetFor(p).image_id,
                          p.SerializeAsString());
    EXPECT_TRUE(v.ok()) << v.status();
    EXPECT_TRUE(StageVerified(d, *v).ok());
  }
  EXPECT_TRUE(d.Reboot().ok());
  EXPECT_TRUE(d.ConfirmUpdate().ok());
  d.SetInstallStepHookForTest(nullptr);
  return snaps;
}

class PowerLossTest : public UpdateInstallTest,
                      public ::testing::WithParamInterface<const char*> {};

TEST_P(PowerLossTest, Fault_PowerLossLeavesBootableDevice) {
  auto d = Booted();
  v1::ImagePackage app1 =
      *BuildAppImage(SigningKey(), Manifest("dw100"), 1, 4096, kTenant);
  ASSERT_TRUE(d->LoadApp(app1).ok());
  ASSERT_TRUE(d->ConfirmUpdate().ok());
  std::vector<Snapshot> snaps = InstallWithSnapshots(*d);
  int checked = 0;
  for (const Snapshot& snap : snaps) {
    if (snap.step != GetParam()) continue;
    ++checked;
    auto r = Restored(snap.state);
    ASSERT_TRUE(r->Boot().ok()) << "after power loss at " << snap.step;
    EXPECT_EQ(r->boot_state(), BootState::kRunning);
    // Old or new, never a mix below the counters, and the app runs.
    uint32_t k = r->InstalledVersion(kKernel);
    uint32_t a = r->InstalledVersion("app:dw100");
    EXPECT_TRUE(k == 1 || k == 2) << k;
    EXPECT_TRUE(a == 1 || a == 2) << a;
    EXPECT_GE(k, r->AntiRollbackCounter(kKernel));
    EXPECT_TRUE(r->AppRunning("dw100"));
    EXPECT_TRUE(r->Quote("nonce").ok());
    // The install then completes: restage what is not running, reboot,
    // confirm; the device ends on the new versions with raised counters.
    for (const v1::ImagePackage& p :
         {*BuildOsImage(SigningKey(), kKernel, 2),
          *BuildAppImage(SigningKey(), Manifest("dw100"), 2, 4096, kTenant)}) {
      InstallTarget t = TargetFor(p);
      if (Installed(*r, t)) continue;
      auto v =
          CheckPackage(*r, {t}, kTenant, t.image_id, p.SerializeAsString());
      ASSERT_TRUE(v.ok()) << v.status();
      ASSERT_TRUE(StageVerified(*r, *v).ok());
    }
    ASSERT_TRUE(r->Reboot().ok());
    ASSERT_TRUE(r->ConfirmUpdate().ok());
    EXPECT_EQ(r->InstalledVersion(kKernel), 2u);
    EXPECT_EQ(r->InstalledVersion("app:dw100"), 2u);
    EXPECT_EQ(r->AntiRollbackCounter(kKernel), 2u);
    EXPECT_EQ(r->AntiRollbackCounter(kTenant, "app:dw100"), 2u);
  }
  EXPECT_GT(checked, 0) << "install never reached step " << GetParam();
}

INSTANTIATE_TEST_SUITE_P(EveryInstallStep, PowerLossTest,
                         ::testing::Values("slot-written", "staged", "switched",
                                           "boot-attempt", "booted",
                                           "confirmed"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string n = info.param;
                           for (char& c : n) {
                             if (c == '-') c = '_';
                           }
                           return n;
                         });

// Every durable step an install goes through is one of EveryInstallStep's
// parameters: a step added to the install without a power-loss case fails
// here, so "power loss at each install step" stays complete.
TEST_F(UpdateInstallTest, EveryDurableInstallStepHasAPowerLossCase) {
  const std::set<std::string> covered = {"slot-written", "staged", "switched",
                                         "boot-attempt", "booted", "confirmed"};
  auto d = Booted();
  ASSERT_TRUE(d->LoadApp(*BuildAppImage(SigningKey(), Manifest("dw100"), 1,
                                        4096, kTenant))
                  .ok());
  ASSERT_TRUE(d->ConfirmUpdate().ok());
  std::set<std::string> seen;
  for (const Snapshot& s : InstallWithSnapshots(*d)) seen.insert(s.step);
  EXPECT_EQ(seen, covered);
}

// An unconfirmed app update survives power loss as unconfirmed: after the
// restore it still rolls back on a crash loop, and its counter is not raised.
TEST_F(UpdateInstallTest, Fault_PowerLossKeepsAppUpdateUnconfirmed) {
  auto d = Booted();
  ASSERT_TRUE(d->LoadApp(*BuildAppImage(SigningKey(), Manifest("dw100"), 1,
                                        4096, kTenant))
                  .ok());
  ASSERT_TRUE(d->ConfirmUpdate().ok());
  v1::ImagePackage p =
      *BuildAppImage(SigningKey(), Manifest("dw100"), 2, 4096, kTenant);
  auto v = CheckPackage(*d, {TargetFor(p)}, kTenant, TargetFor(p).image_id,
                        p.SerializeAsString());
  ASSERT_TRUE(v.ok());
  ASSERT_TRUE(StageVerified(*d, *v).ok());
  ASSERT_TRUE(d->Reboot().ok());
  auto r = Restored(*d->Serialize());
  ASSERT_TRUE(r->Boot().ok());
  EXPECT_EQ(r->InstalledVersion("app:dw100"), 2u);
  EXPECT_TRUE(r->update_pending_confirm());
  EXPECT_EQ(r->AntiRollbackCounter(kTenant, "app:dw100"), 1u);
  for (int i = 0; i < r->type().app_crash_loop_threshold; ++i) {
    ASSERT_TRUE(r->ReportAppExit("dw100", 1, 0).ok());
  }
  EXPECT_EQ(r->InstalledVersion("app:dw100"), 1u);
  EXPECT_EQ(r->AntiRollbackCounter(kTenant, "app:dw100"), 1u);
}

TEST_F(UpdateInstallTest, CrashLoopRollsBackOsAndKeepsCounters) {
  auto d = Booted();
  v1::ImagePackage os2 = *BuildOsImage(SigningKey(), kOsServices, 2);
  InstallTarget t = TargetFor(os2);
  auto v = CheckPackage(*d, {t}, kTenant, t.image_id, os2.SerializeAsString());
  ASSERT_TRUE(v.ok());
  ASSERT_TRUE(StageVerified(*d, *v).ok());
  ASSERT_TRUE(d->Reboot().ok());
  ASSERT_TRUE(Installed(*d, t));
  for (int i = 0; i < d->type().max_boot_attempts; ++i) {
    ASSERT_TRUE(d->OsCrash("panic").ok());
  }
  EXPECT_FALSE(Installed(*d, t));
  EXPECT_FALSE(d->update_pending_confirm());
  EXPECT_EQ(d->active_os_slot(), 0u);
  EXPECT_EQ(d->AntiRollbackCounter(kOsServices), 1u);
  EXPECT_EQ(d->boot_state(), BootState::kRunning);
}

// ---- Deferral ---------------------------------------------------------------

TEST_F(UpdateInstallTest, DeferralIsBoundedBy24HoursOfDeviceTime) {
  auto d = Booted();
  v1::AppManifest m = Manifest("dw100");
  m.set_software_update_deferral(true);
  ASSERT_TRUE(
      d->LoadApp(*BuildAppImage(SigningKey(), m, 1, 4096, kTenant)).ok());
  EXPECT_FALSE(d->UpdateDeferred());
  ASSERT_TRUE(d->DeferUpdate("dw100", absl::Hours(10)).ok());
  EXPECT_TRUE(d->UpdateDeferred());
  clock_.Advance(absl::Hours(9));
  // Asking for more never extends past 24 h after the first deferral.
  ASSERT_TRUE(d->DeferUpdate("dw100", absl::Hours(100)).ok());
  EXPECT_EQ(d->UpdateDeferredUntil(),
            clock_.Now() - absl::Hours(9) + Device::kMaxUpdateDeferral);
  // The window survives a restart (persisted with the device).
  auto r = Restored(*d->Serialize());
  ASSERT_TRUE(r->Boot().ok());
  EXPECT_TRUE(r->UpdateDeferred());
  clock_.Advance(absl::Hours(15));
  EXPECT_FALSE(r->UpdateDeferred());
  absl::Status s = r->DeferUpdate("dw100", absl::Hours(1));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_FALSE(r->UpdateDeferred());
  r->EndUpdateDeferral();  // the update installed: a new window may start
  EXPECT_TRUE(r->DeferUpdate("dw100", absl::Hours(1)).ok());
}

TEST_F(UpdateInstallTest, Attack_DeferralWithoutManifestCapability) {
  auto d = Booted();
  ASSERT_TRUE(d->LoadApp(*BuildAppImage(SigningKey(), Manifest("dw100"), 1,
                                        4096, kTenant))
                  .ok());
  const std::string before = State(*d);
  absl::Status s = d->DeferUpdate("dw100", absl::Hours(1));
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_FALSE(d->UpdateDeferred());
  EXPECT_EQ(State(*d), before);
}

}  // namespace
}  // namespace sphere::mcu
