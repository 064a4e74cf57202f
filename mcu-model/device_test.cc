#include "mcu-model/device.h"

#include <type_traits>

#include "absl/strings/match.h"
#include "common/crypto/crypto.h"
#include "gtest/gtest.h"
#include "mcu-model/device_fixture.h"
#include "mcu-model/image.h"
#include "mcu-model/quote.h"

namespace sphere::mcu {
namespace {

using ::absl::StatusCode;

using device_testing::App;
using device_testing::Factory;
using device_testing::Manifest;
using device_testing::SigningKey;

// TenantApp is an app image as the image pipeline re-signs it for `tenant`.
v1::ImagePackage TenantApp(const std::string& tenant, const std::string& id,
                           uint32_t version) {
  return *BuildAppImage(SigningKey(), Manifest(id), version, 64 * 1024, tenant);
}

bool HasEvent(const std::vector<v1::ErrorEvent>& events,
              v1::ErrorEvent::Kind kind) {
  for (const auto& e : events) {
    if (e.kind() == kind) return true;
  }
  return false;
}

class DeviceTest : public device_testing::DeviceFixture {
 protected:
  v1::StoredImage Tampered(absl::string_view component) {
    for (const auto& p : Factory()) {
      v1::StoredImage s = ToStoredImage(p);
      if (absl::StrContains(p.header(), component) &&
          VerifyImage(p, SigningKey().PublicKey())->header.component() ==
              component) {
        (*s.mutable_payload_sha256())[0] ^= 1;  // modified payload bytes
        return s;
      }
    }
    ADD_FAILURE() << "no " << component;
    return {};
  }
};

// ------------------------------------------------------------ basics

TEST_F(DeviceTest, SeededManufactureIsDeterministic) {
  auto a = Make("seed-x");
  auto b = Make("seed-x");
  auto c = Make("seed-y");
  EXPECT_EQ(a->device_id(), b->device_id());
  EXPECT_NE(a->device_id(), c->device_id());
  EXPECT_EQ(a->device_id(), crypto::HexEncode(crypto::Sha256(a->public_key())));
  EXPECT_EQ(a->public_key().size(), 65u);
  auto real =
      Device::Manufacture(DeviceType::Mt3620(), SigningKey().PublicKey(), {});
  ASSERT_TRUE(real.ok());
  EXPECT_NE((*real)->device_id(), a->device_id());
}

TEST_F(DeviceTest, SecureBootMeasuresChainAndQuoteVerifies) {
  auto d = Booted();
  EXPECT_EQ(d->boot_state(), BootState::kRunning);
  auto q = d->Quote("nonce-1");
  ASSERT_TRUE(q.ok()) << q.status();
  auto body = ParseAndVerifyQuote(*q, d->public_key());
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_TRUE(CheckQuoteConsistency(*body).ok());
  EXPECT_EQ(body->nonce(), "nonce-1");
  EXPECT_EQ(body->device_id(), d->device_id());
  ASSERT_EQ(body->event_log_size(), 5);
  const uint32_t regs[] = {0, 0, 1, 1, 2};
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(body->event_log(i).component(), BootChainComponents()[i]);
    EXPECT_EQ(body->event_log(i).register_index(), regs[i]);
    EXPECT_EQ(body->event_log(i).image_hash(),
              ImageHash(Factory()[i].header()));
  }
  EXPECT_EQ(body->registers_size(), kNumRegisters);
  EXPECT_EQ(body->counters_size(), 5);
  EXPECT_EQ(body->boot_count(), 1u);
  EXPECT_EQ(body->certificate_public_key(), d->CertificatePublicKey());
}

TEST_F(DeviceTest, CertificateKeyIsDerivedSignsAndExportsForTlsOnly) {
  auto d = Booted();
  auto sig = d->SignWithCertificateKey("csr-bytes");
  ASSERT_TRUE(sig.ok());
  EXPECT_TRUE(
      crypto::EcdsaVerify(d->CertificatePublicKey(), "csr-bytes", *sig).ok());
  auto k = crypto::EcPrivateKey::FromPem(d->ExportCertificateKeyForTls());
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->PublicKey(), d->CertificatePublicKey());
  EXPECT_NE(k->PublicKey(), d->public_key());  // never the device key
}

TEST_F(DeviceTest, SerializeRestoreKeepsIdentityAndCounters) {
  auto d = Booted();
  auto blob = d->Serialize();
  ASSERT_TRUE(blob.ok());
  Device::Options o;
  o.clock = &clock_;
  auto r = Device::Restore(DeviceType::Mt3620(), SigningKey().PublicKey(),
                           *blob, std::move(o));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->device_id(), d->device_id());
  EXPECT_EQ((*r)->CertificatePublicKey(), d->CertificatePublicKey());
  EXPECT_EQ((*r)->AntiRollbackCounter("kernel"), 1u);
  ASSERT_TRUE((*r)->Boot().ok());
  EXPECT_EQ((*r)->boot_count(), 2u);
  auto q = (*r)->Quote("n");
  ASSERT_TRUE(q.ok());
  EXPECT_TRUE(ParseAndVerifyQuote(*q, d->public_key()).ok());
}

TEST_F(DeviceTest, SerializeRestoreOfRealRngDeviceKeepsIdentity) {
  // The default (unseeded) mode must persist too: the twin process restarts.
  Device::Options o;
  o.clock = &clock_;
  auto d = Device::Manufacture(DeviceType::Mt3620(), SigningKey().PublicKey(),
                               std::move(o));
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_TRUE((*d)->InstallFactoryImages(Factory()).ok());
  auto blob = (*d)->Serialize();
  ASSERT_TRUE(blob.ok());
  Device::Options o2;
  o2.clock = &clock_;
  auto r = Device::Restore(DeviceType::Mt3620(), SigningKey().PublicKey(),
                           *blob, std::move(o2));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->device_id(), (*d)->device_id());
  ASSERT_TRUE((*r)->Boot().ok());
  auto q = (*r)->Quote("n");
  ASSERT_TRUE(q.ok());
  EXPECT_TRUE(ParseAndVerifyQuote(*q, (*d)->public_key()).ok());
}

// ------------------------------------------- 1. hardware root of trust

TEST_F(DeviceTest, HardwareRootOfTrust_ClonedStateWithOtherKeyFails) {
  auto a = Booted("device-a");
  auto b = Booted("device-b");
  // A clone that copies A's identity but holds another key: its quotes do not
  // verify under A's registered public key.
  auto qb = b->Quote("nonce");
  ASSERT_TRUE(qb.ok());
  EXPECT_EQ(ParseAndVerifyQuote(*qb, a->public_key()).status().code(),
            StatusCode::kUnauthenticated);
  // Splicing B's sealed key into A's persisted state fails to unseal.
  v1::PersistedDeviceState sa, sb;
  ASSERT_TRUE(sa.ParseFromString(*a->Serialize()));
  ASSERT_TRUE(sb.ParseFromString(*b->Serialize()));
  sa.set_seal_nonce(sb.seal_nonce());
  sa.set_sealed_secrets(sb.sealed_secrets());
  auto r = Device::Restore(DeviceType::Mt3620(), SigningKey().PublicKey(),
                           sa.SerializeAsString(), {});
  EXPECT_EQ(r.status().code(), StatusCode::kUnauthenticated);
  // A's own state is unchanged and still attests.
  auto qa = a->Quote("nonce");
  ASSERT_TRUE(qa.ok());
  EXPECT_TRUE(ParseAndVerifyQuote(*qa, a->public_key()).ok());
}

TEST_F(DeviceTest, HardwareRootOfTrust_StateDoesNotOpenOnAnotherDieType) {
  auto a = Booted();
  auto other = std::make_shared<DeviceType>(*DeviceType::Mt3620());
  other->fuse_key = crypto::Sha256("another fuse key");
  auto r =
      Device::Restore(other, SigningKey().PublicKey(), *a->Serialize(), {});
  EXPECT_EQ(r.status().code(), StatusCode::kUnauthenticated);
}

TEST_F(DeviceTest, HardwareRootOfTrust_EditedCountersInStateRejected) {
  auto a = Booted();
  v1::PersistedDeviceState st;
  ASSERT_TRUE(st.ParseFromString(*a->Serialize()));
  st.mutable_counters(0)->set_value(0);  // try to lower anti-rollback
  auto r = Device::Restore(DeviceType::Mt3620(), SigningKey().PublicKey(),
                           st.SerializeAsString(), {});
  EXPECT_EQ(r.status().code(), StatusCode::kUnauthenticated);
}

TEST_F(DeviceTest, HardwareRootOfTrust_TamperIsReportedInSignedQuotes) {
  auto d = Booted();
  d->DrainErrorEvents();
  auto clean = d->Quote("n");
  ASSERT_TRUE(clean.ok()) << clean.status();
  v1::QuoteBody clean_body;
  ASSERT_TRUE(clean_body.ParseFromString(clean->body()));
  EXPECT_EQ(clean_body.tamper_events(), 0u);
  d->TriggerTamper("voltage glitch");
  // The quote is still signed by the device key, and it carries the tamper:
  // the evidence the Security Service revokes the device on.
  auto q = d->Quote("n");
  ASSERT_TRUE(q.ok()) << q.status();
  auto body = ParseAndVerifyQuote(*q, d->public_key());
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_EQ(body->tamper_events(), 1u);
  EXPECT_TRUE(d->tampered());
  EXPECT_TRUE(HasEvent(d->DrainErrorEvents(), v1::ErrorEvent::TAMPER));
  EXPECT_EQ(d->SignWithCertificateKey("x").status().code(),
            StatusCode::kFailedPrecondition);
}

TEST_F(DeviceTest, HardwareRootOfTrust_StuckRngRaisesTamper) {
  int calls = 0;
  Device::Options o;
  o.seed = "stuck";
  o.clock = &clock_;
  // Healthy for key generation, then stuck at a constant.
  o.entropy_for_test = [&calls](size_t n) {
    return ++calls <= 1 ? crypto::Sha256("ok") : std::string(n, '\x5a');
  };
  auto d = Device::Manufacture(DeviceType::Mt3620(), SigningKey().PublicKey(),
                               std::move(o));
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_TRUE((*d)->InstallFactoryImages(Factory()).ok());
  EXPECT_TRUE((*d)->Boot().ok());  // boots, but the self-test fired
  EXPECT_TRUE((*d)->tampered());
  EXPECT_TRUE(HasEvent((*d)->DrainErrorEvents(), v1::ErrorEvent::TAMPER));
  // The quote reports it (signed), so the service refuses and revokes.
  auto q = (*d)->Quote("n");
  ASSERT_TRUE(q.ok()) << q.status();
  auto body = ParseAndVerifyQuote(*q, (*d)->public_key());
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_GE(body->tamper_events(), 1u);
  EXPECT_EQ((*d)->SignWithCertificateKey("x").status().code(),
            StatusCode::kFailedPrecondition);
}

// ------------------------------------------------ 2. defence in depth

TEST_F(DeviceTest,
       DefenceInDepth_TamperedKernelCaughtEvenIfBootloaderReplaced) {
  auto d = Booted();
  const std::string reg1 = d->Register(1);
  d->DrainErrorEvents();
  d->CompromiseStageForTest(kBootloader);  // bootloader no longer verifies
  ASSERT_TRUE(d->ReplaceFlashImageForTest(kKernel, Tampered(kKernel)).ok());
  absl::Status s = d->Boot();
  EXPECT_EQ(s.code(), StatusCode::kUnauthenticated) << s;
  EXPECT_TRUE(absl::StrContains(s.message(),
                                "kernel rejected by "
                                "security-monitor"))
      << s;
  EXPECT_EQ(d->boot_state(), BootState::kRecovery);
  EXPECT_EQ(d->AntiRollbackCounter(kKernel), 1u);
  EXPECT_NE(d->Register(1), reg1);  // the kernel was never measured
  EXPECT_TRUE(HasEvent(d->DrainErrorEvents(), v1::ErrorEvent::BOOT_FAILED));
  // Recovery: only the update service is reachable, no quotes, no apps.
  EXPECT_EQ(d->OsConnect("contoso.com").code(), StatusCode::kPermissionDenied);
  EXPECT_TRUE(d->OsConnect(d->type().update_service_host).ok());
  EXPECT_EQ(d->Quote("n").status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(d->LoadApp(App(Manifest("x"))).code(),
            StatusCode::kFailedPrecondition);
  // The update service repairs it.
  ASSERT_TRUE(d->StageUpdate(*BuildOsImage(SigningKey(), kKernel, 1)).ok());
  EXPECT_TRUE(d->Reboot().ok());
  EXPECT_EQ(d->boot_state(), BootState::kRunning);
}

TEST_F(DeviceTest, DefenceInDepth_EveryStageVerifiesTheNext) {
  const char* verifier[] = {"rom", "pluton-runtime", "security-monitor",
                            "bootloader", "kernel"};
  for (int i = 0; i < 5; ++i) {
    auto d = Make("stage");
    const std::string& comp = BootChainComponents()[i];
    ASSERT_TRUE(d->ReplaceFlashImageForTest(comp, Tampered(comp)).ok());
    absl::Status s = d->Boot();
    EXPECT_EQ(s.code(), StatusCode::kUnauthenticated) << comp;
    EXPECT_TRUE(absl::StrContains(
        s.message(), absl::StrCat(comp, " rejected by ", verifier[i])))
        << s;
    EXPECT_EQ(d->boot_state(), BootState::kRecovery);
  }
}

TEST_F(DeviceTest, DefenceInDepth_OldSignedImageInFlashRefusedAtBoot) {
  auto d = Booted();
  ASSERT_TRUE(d->StageUpdate(*BuildOsImage(SigningKey(), kKernel, 2)).ok());
  ASSERT_TRUE(d->Reboot().ok());
  ASSERT_TRUE(d->ConfirmUpdate().ok());
  ASSERT_EQ(d->AntiRollbackCounter(kKernel), 2u);
  // Attacker writes the genuine, signed v1 kernel straight to flash.
  ASSERT_TRUE(
      d->ReplaceFlashImageForTest(kKernel, ToStoredImage(Factory()[3])).ok());
  absl::Status s = d->Boot();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "anti-rollback"));
  EXPECT_EQ(d->AntiRollbackCounter(kKernel), 2u);
}

// ------------------------------------------ 3. small trusted computing base

TEST_F(DeviceTest, SmallTcb_OnlySecurityMonitorReachesPluton) {
  // Only the Security Monitor can mint the token every Pluton call needs.
  static_assert(!std::is_default_constructible_v<SecureWorldToken>);
  auto d = Booted();
  v1::AppManifest m = Manifest("app");
  ASSERT_TRUE(d->LoadApp(App(m)).ok());
  const std::string reg3 = d->Register(3);
  const uint64_t boots = d->boot_count();
  d->DrainErrorEvents();
  auto user = d->SecureMonitorCall(NormalWorldCaller::kUser, "quote", "n");
  EXPECT_EQ(user.status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(d->CallApi("app", AppApi::kQuote).code(),
            StatusCode::kPermissionDenied);
  EXPECT_TRUE(
      HasEvent(d->DrainErrorEvents(), v1::ErrorEvent::MANIFEST_VIOLATION));
  EXPECT_EQ(d->Register(3), reg3);
  EXPECT_EQ(d->boot_count(), boots);
  auto sup = d->SecureMonitorCall(NormalWorldCaller::kSupervisor, "quote", "n");
  ASSERT_TRUE(sup.ok());
  v1::Quote q;
  ASSERT_TRUE(q.ParseFromString(*sup));
  EXPECT_TRUE(ParseAndVerifyQuote(q, d->public_key()).ok());
}

// ----------------------------------------------- 4. dynamic compartments

TEST_F(DeviceTest, DynamicCompartments_FirewallBlocksOtherCoreAndUndeclared) {
  auto d = Booted();
  v1::AppManifest hl = Manifest("hl");
  hl.add_peripherals("GPIO0");
  v1::AppManifest rt = Manifest("rt");
  rt.set_realtime(true);
  rt.set_memory_kib(64);
  rt.add_peripherals("UART1");
  ASSERT_TRUE(d->LoadApp(App(hl)).ok());
  ASSERT_TRUE(d->LoadApp(App(rt)).ok());
  d->DrainErrorEvents();
  EXPECT_TRUE(d->AccessPeripheral("hl", "GPIO0").ok());
  EXPECT_TRUE(d->AccessPeripheral("rt", "UART1").ok());
  EXPECT_EQ(d->AccessPeripheral("hl", "GPIO0", Core::kM4_0).code(),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(d->AccessPeripheral("hl", "UART1").code(),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(d->AccessPeripheral("rt", "GPIO0").code(),
            StatusCode::kPermissionDenied);
  auto ev = d->DrainErrorEvents();
  EXPECT_EQ(ev.size(), 3u);
  for (const auto& e : ev)
    EXPECT_EQ(e.kind(), v1::ErrorEvent::FIREWALL_VIOLATION);
  EXPECT_TRUE(d->AccessPeripheral("hl", "GPIO0").ok());  // mapping unchanged
}

TEST_F(DeviceTest, DynamicCompartments_PeripheralClaimedTwiceIsManifestError) {
  auto d = Booted();
  v1::AppManifest a = Manifest("a");
  a.add_peripherals("I2C0");
  v1::AppManifest b = Manifest("b");
  b.add_peripherals("I2C0");
  ASSERT_TRUE(d->LoadApp(App(a)).ok());
  d->DrainErrorEvents();
  absl::Status s = d->LoadApp(App(b));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "manifest error")) << s;
  EXPECT_FALSE(d->AppRunning("b"));
  EXPECT_TRUE(d->AccessPeripheral("a", "I2C0").ok());
  EXPECT_TRUE(
      HasEvent(d->DrainErrorEvents(), v1::ErrorEvent::MANIFEST_VIOLATION));
  v1::AppManifest dup = Manifest("dup");
  dup.add_peripherals("SPI0");
  dup.add_peripherals("SPI0");
  EXPECT_EQ(d->LoadApp(App(dup)).code(), StatusCode::kInvalidArgument);
}

TEST_F(DeviceTest, DynamicCompartments_RamBudgetExceededFails) {
  auto d = Booted();
  EXPECT_EQ(d->FreeAppRamKib(), 512u);
  v1::AppManifest big = Manifest("big");
  big.set_memory_kib(400);
  ASSERT_TRUE(d->LoadApp(App(big)).ok());
  v1::AppManifest more = Manifest("more");
  more.set_memory_kib(200);
  d->DrainErrorEvents();
  absl::Status s = d->LoadApp(App(more));
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE(absl::StrContains(s.message(), "RAM budget exceeded")) << s;
  EXPECT_FALSE(d->AppRunning("more"));
  EXPECT_EQ(d->FreeAppRamKib(), 112u);
  EXPECT_TRUE(HasEvent(d->DrainErrorEvents(), v1::ErrorEvent::RESOURCE_LIMIT));
}

TEST_F(DeviceTest, DynamicCompartments_ImageThatDoesNotFitFlashIsRefused) {
  auto d = Booted();
  absl::Status s = d->LoadApp(App(Manifest("huge"), 1, 3 * 1024 * 1024));
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_FALSE(d->AppRunning("huge"));
  EXPECT_EQ(d->InstalledVersion("app:huge"), 0u);
  // An OS image larger than its slot is refused by the update agent too.
  v1::ImageHeader h;
  h.set_component("kernel");
  h.set_version(5);
  h.set_kind(v1::IMAGE_KIND_KERNEL);
  auto pkg = SignImage(h, std::string(5 * 1024 * 1024, 'k'), SigningKey());
  EXPECT_EQ(d->StageUpdate(*pkg).code(), StatusCode::kResourceExhausted);
  EXPECT_FALSE(d->update_pending_confirm());
  ASSERT_TRUE(d->Reboot().ok());
  EXPECT_EQ(d->InstalledVersion(kKernel), 1u);
}

TEST_F(DeviceTest, DynamicCompartments_NetworkFirewallAndNoNetworkOnRtCores) {
  auto d = Booted();
  v1::AppManifest hl = Manifest("hl");
  hl.add_allowed_connections("api.contoso.com");
  hl.add_allowed_connections("*.azure-devices.net");
  v1::AppManifest rt = Manifest("rt");
  rt.set_realtime(true);
  ASSERT_TRUE(d->LoadApp(App(hl)).ok());
  ASSERT_TRUE(d->LoadApp(App(rt)).ok());
  EXPECT_TRUE(d->Connect("hl", "api.contoso.com").ok());
  EXPECT_TRUE(d->Connect("hl", "hub.azure-devices.net").ok());
  d->DrainErrorEvents();
  EXPECT_EQ(d->Connect("hl", "evil.example").code(),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(d->Connect("rt", "api.contoso.com").code(),
            StatusCode::kPermissionDenied);
  auto ev = d->DrainErrorEvents();
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0].kind(), v1::ErrorEvent::FIREWALL_VIOLATION);
}

TEST_F(DeviceTest, DynamicCompartments_ManifestCapabilitiesAndNoFileIo) {
  auto d = Booted();
  v1::AppManifest m = Manifest("app");
  m.set_system_event_notifications(true);
  m.set_mutable_storage_kib(1);
  ASSERT_TRUE(d->LoadApp(App(m)).ok());
  EXPECT_TRUE(d->CallApi("app", AppApi::kSystemEventNotifications).ok());
  d->DrainErrorEvents();
  EXPECT_EQ(d->CallApi("app", AppApi::kSoftwareUpdateDeferral).code(),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(d->CallApi("app", AppApi::kFileOpen).code(),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(d->CallApi("app", AppApi::kShellExec).code(),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(d->DrainErrorEvents().size(), 3u);
  // Mutable storage: encrypted, quota enforced, content unchanged on refusal.
  ASSERT_TRUE(d->WriteMutableStorage("app", "state-1").ok());
  EXPECT_EQ(d->WriteMutableStorage("app", std::string(2000, 'x')).code(),
            StatusCode::kResourceExhausted);
  EXPECT_EQ(*d->ReadMutableStorage("app"), "state-1");
  EXPECT_TRUE(HasEvent(d->DrainErrorEvents(), v1::ErrorEvent::RESOURCE_LIMIT));
}

TEST_F(DeviceTest, RealtimeCores_TwoCoresAndBoundedMailbox) {
  auto d = Booted();
  v1::AppManifest hl = Manifest("hl");
  ASSERT_TRUE(d->LoadApp(App(hl)).ok());
  for (const char* id : {"rt0", "rt1"}) {
    v1::AppManifest rt = Manifest(id);
    rt.set_realtime(true);
    ASSERT_TRUE(d->LoadApp(App(rt)).ok());
  }
  v1::AppManifest rt2 = Manifest("rt2");
  rt2.set_realtime(true);
  EXPECT_EQ(d->LoadApp(App(rt2)).code(), StatusCode::kResourceExhausted);
  ASSERT_TRUE(d->MailboxSend("hl", "rt0", "ping").ok());
  EXPECT_EQ(*d->MailboxReceive("rt0"), "ping");
  EXPECT_EQ(d->MailboxReceive("rt0").status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(d->MailboxSend("hl", "rt0", std::string(2000, 'x')).code(),
            StatusCode::kInvalidArgument);
  for (size_t i = 0; i < d->type().mailbox_capacity; ++i) {
    ASSERT_TRUE(d->MailboxSend("rt1", "hl", "m").ok());
  }
  EXPECT_EQ(d->MailboxSend("rt1", "hl", "m").code(),
            StatusCode::kResourceExhausted);
  EXPECT_EQ(d->MailboxSend("rt0", "rt1", "x").code(),
            StatusCode::kPermissionDenied);
}

// --------------------------------------- 5. password-less authentication

TEST_F(DeviceTest, PasswordlessAuthentication_QuoteProvesKeyWithoutSecrets) {
  auto d = Booted();
  auto q1 = d->Quote("challenge-1");
  auto q2 = d->Quote("challenge-2");
  ASSERT_TRUE(q1.ok() && q2.ok());
  // A verifier needs only the public key registered at manufacture.
  auto b1 = ParseAndVerifyQuote(*q1, d->public_key());
  ASSERT_TRUE(b1.ok());
  EXPECT_EQ(b1->nonce(), "challenge-1");
  // Replaying quote 1 as an answer to challenge 2 does not work: editing the
  // nonce breaks the signature.
  v1::QuoteBody edited = *b1;
  edited.set_nonce("challenge-2");
  v1::Quote forged = *q1;
  forged.set_body(edited.SerializeAsString());
  EXPECT_EQ(ParseAndVerifyQuote(forged, d->public_key()).status().code(),
            StatusCode::kUnauthenticated);
  // Nothing secret crosses the wire: only public keys and measurements.
  std::string pem = d->ExportCertificateKeyForTls();
  auto cert_key = crypto::EcPrivateKey::FromPem(pem);
  EXPECT_FALSE(absl::StrContains(q1->body(), cert_key->scalar()));
}

// --------------------------------------------------- 6. error reporting

TEST_F(DeviceTest, ErrorReporting_EveryFailureProducesAnEvent) {
  auto d = Booted();
  d->DrainErrorEvents();
  v1::AppManifest m = Manifest("app");
  m.set_watchdog_timeout_ms(1000);
  ASSERT_TRUE(d->LoadApp(App(m)).ok());
  ASSERT_TRUE(d->ReportAppExit("app", 3, 0).ok());
  ASSERT_TRUE(d->ReportAppExit("app", 0, 11).ok());
  clock_.Advance(absl::Seconds(2));
  EXPECT_EQ(d->CheckWatchdogs(), 1);
  EXPECT_TRUE(d->AppRunning("app"));  // restarted
  EXPECT_EQ(d->AppCrashCount("app"), 3u);
  v1::ImagePackage bad = App(Manifest("bad"));
  bad.mutable_signature()->back() ^= 1;
  EXPECT_FALSE(d->LoadApp(bad).ok());
  auto ev = d->DrainErrorEvents();
  ASSERT_EQ(ev.size(), 4u);
  EXPECT_EQ(ev[0].kind(), v1::ErrorEvent::APP_CRASH);
  EXPECT_EQ(ev[0].exit_code(), 3);
  EXPECT_EQ(ev[1].signal(), 11);
  EXPECT_EQ(ev[2].kind(), v1::ErrorEvent::WATCHDOG_RESET);
  EXPECT_EQ(ev[3].kind(), v1::ErrorEvent::UPDATE_FAILED);
  for (size_t i = 1; i < ev.size(); ++i) {
    EXPECT_EQ(ev[i].sequence(), ev[i - 1].sequence() + 1);
  }
  EXPECT_EQ(ev[0].time_unix_ms(), absl::ToUnixMillis(clock_.Now()) - 2000);
}

TEST_F(DeviceTest, ErrorReporting_RingIsBoundedAndCountsDrops) {
  auto d = Booted();
  d->DrainErrorEvents();
  const size_t cap = d->type().error_ring_capacity;
  for (size_t i = 0; i < cap + 5; ++i) {
    EXPECT_FALSE(d->CallApi("nobody", AppApi::kFileOpen).ok());
  }
  EXPECT_EQ(d->pending_error_events(), cap);
  EXPECT_EQ(d->dropped_error_events(), 5u);
  auto ev = d->DrainErrorEvents();
  EXPECT_EQ(ev.front().sequence() + cap - 1, ev.back().sequence());
}

// --------------------------------------------------- 7. renewable security

TEST_F(DeviceTest, RenewableSecurity_UpdateConfirmAndAntiRollback) {
  auto d = Booted();
  ASSERT_TRUE(d->StageUpdate(*BuildOsImage(SigningKey(), kKernel, 2)).ok());
  EXPECT_EQ(d->InstalledVersion(kKernel), 1u);  // staged to inactive slot
  ASSERT_TRUE(d->Reboot().ok());
  EXPECT_EQ(d->active_os_slot(), 1u);
  EXPECT_EQ(d->InstalledVersion(kKernel), 2u);
  EXPECT_EQ(d->AntiRollbackCounter(kKernel), 1u);  // not yet confirmed
  ASSERT_TRUE(d->ConfirmUpdate().ok());
  EXPECT_EQ(d->AntiRollbackCounter(kKernel), 2u);
  d->DrainErrorEvents();
  // Downgrade refused; nothing staged, counters untouched.
  absl::Status s = d->StageUpdate(Factory()[3]);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(s.message(), "anti-rollback")) << s;
  EXPECT_TRUE(HasEvent(d->DrainErrorEvents(), v1::ErrorEvent::UPDATE_FAILED));
  ASSERT_TRUE(d->Reboot().ok());
  EXPECT_EQ(d->InstalledVersion(kKernel), 2u);
  EXPECT_EQ(d->active_os_slot(), 1u);
}

TEST_F(DeviceTest, RenewableSecurity_UnsignedUpdateRefused) {
  auto d = Booted();
  auto rogue = crypto::EcPrivateKey::FromScalar(crypto::Sha256("rogue"));
  absl::Status s = d->StageUpdate(*BuildOsImage(*rogue, kKernel, 9));
  EXPECT_EQ(s.code(), StatusCode::kUnauthenticated);
  EXPECT_FALSE(d->update_pending_confirm());
  ASSERT_TRUE(d->Reboot().ok());
  EXPECT_EQ(d->InstalledVersion(kKernel), 1u);
  EXPECT_EQ(d->active_os_slot(), 0u);
}

TEST_F(DeviceTest, RenewableSecurity_CrashLoopRollsBack) {
  auto d = Booted();
  ASSERT_TRUE(d->StageUpdate(*BuildOsImage(SigningKey(), kOsServices, 2)).ok());
  ASSERT_TRUE(d->Reboot().ok());
  EXPECT_EQ(d->InstalledVersion(kOsServices), 2u);
  d->DrainErrorEvents();
  // The new OS panics before it confirms the update.
  for (int i = 0; i < d->type().max_boot_attempts; ++i) {
    ASSERT_TRUE(d->OsCrash("null deref").ok());
  }
  EXPECT_EQ(d->active_os_slot(), 0u);
  EXPECT_EQ(d->InstalledVersion(kOsServices), 1u);
  EXPECT_EQ(d->AntiRollbackCounter(kOsServices), 1u);
  EXPECT_FALSE(d->update_pending_confirm());
  EXPECT_EQ(d->boot_state(), BootState::kRunning);
  EXPECT_EQ(d->reset_count(), 3u);
  auto ev = d->DrainErrorEvents();
  EXPECT_TRUE(HasEvent(ev, v1::ErrorEvent::UPDATE_ROLLED_BACK));
  EXPECT_TRUE(HasEvent(ev, v1::ErrorEvent::APP_CRASH));
  auto q = d->Quote("n");
  ASSERT_TRUE(q.ok());
  auto body = ParseAndVerifyQuote(*q, d->public_key());
  EXPECT_EQ(body->event_log(4).version(), 1u);
  EXPECT_EQ(body->reset_count(), 3u);
}

TEST_F(DeviceTest, RenewableSecurity_AppUpdateCrashLoopRollsBack) {
  auto d = Booted();
  ASSERT_TRUE(d->LoadApp(App(Manifest("dw100"), 1)).ok());
  ASSERT_TRUE(d->StageUpdate(App(Manifest("dw100"), 2)).ok());
  ASSERT_TRUE(d->Reboot().ok());
  EXPECT_EQ(d->InstalledVersion("app:dw100"), 2u);
  for (int i = 0; i < d->type().app_crash_loop_threshold; ++i) {
    ASSERT_TRUE(d->ReportAppExit("dw100", 1, 0).ok());
  }
  EXPECT_EQ(d->InstalledVersion("app:dw100"), 1u);
  EXPECT_TRUE(d->AppRunning("dw100"));
  EXPECT_EQ(d->AntiRollbackCounter("app:dw100"), 1u);
}

// Issue 8, hole 3 (device side): anti-rollback counters of applications are
// per (tenant, component). Tenant Evil's "app:dw100" v999, side-loaded onto a
// Contoso device, must not block Contoso's own "app:dw100" updates.
TEST_F(DeviceTest, Attack_OtherTenantsHighVersionAppDoesNotBlockOwnUpdates) {
  auto d = Booted();
  ASSERT_TRUE(d->LoadApp(TenantApp("evil", "dw100", 999)).ok());
  EXPECT_EQ(d->AntiRollbackCounter("evil", "app:dw100"), 999u);
  EXPECT_EQ(d->AntiRollbackCounter("contoso", "app:dw100"), 0u);
  EXPECT_EQ(d->AntiRollbackCounter("app:dw100"), 0u);
  // Contoso's v2 of the same component name installs (OTA path) and commits.
  absl::Status s = d->StageUpdate(TenantApp("contoso", "dw100", 2));
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_TRUE(d->Reboot().ok());
  ASSERT_TRUE(d->ConfirmUpdate().ok());
  EXPECT_EQ(d->InstalledVersion("app:dw100"), 2u);
  EXPECT_TRUE(d->AppRunning("dw100"));
  EXPECT_EQ(d->AntiRollbackCounter("contoso", "app:dw100"), 2u);
  EXPECT_EQ(d->AntiRollbackCounter("evil", "app:dw100"), 999u);
  // The quote reports both counters, each with its tenant.
  auto q = d->Quote("n");
  ASSERT_TRUE(q.ok());
  auto body = ParseAndVerifyQuote(*q, d->public_key());
  ASSERT_TRUE(body.ok());
  int app_counters = 0;
  for (const auto& c : body->counters()) {
    if (c.component() != "app:dw100") continue;
    ++app_counters;
    EXPECT_EQ(c.value(), c.tenant_id() == "evil" ? 999u : 2u) << c.tenant_id();
  }
  EXPECT_EQ(app_counters, 2);
  // Per-tenant counters survive persistence; the side-load path works too.
  auto blob = d->Serialize();
  ASSERT_TRUE(blob.ok());
  Device::Options o;
  o.clock = &clock_;
  auto r = Device::Restore(DeviceType::Mt3620(), SigningKey().PublicKey(),
                           *blob, std::move(o));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->AntiRollbackCounter("evil", "app:dw100"), 999u);
  EXPECT_EQ((*r)->AntiRollbackCounter("contoso", "app:dw100"), 2u);
  ASSERT_TRUE((*r)->Boot().ok());
  s = (*r)->LoadApp(TenantApp("contoso", "dw100", 3));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ((*r)->AntiRollbackCounter("contoso", "app:dw100"), 3u);
  EXPECT_EQ((*r)->AntiRollbackCounter("evil", "app:dw100"), 999u);
}

TEST_F(DeviceTest, Attack_SameTenantRollbackStillRefused) {
  auto d = Booted();
  ASSERT_TRUE(d->LoadApp(TenantApp("contoso", "dw100", 5)).ok());
  ASSERT_EQ(d->AntiRollbackCounter("contoso", "app:dw100"), 5u);
  d->DrainErrorEvents();
  // OTA downgrade: refused, nothing staged, counters untouched.
  absl::Status s = d->StageUpdate(TenantApp("contoso", "dw100", 4));
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "anti-rollback")) << s;
  EXPECT_TRUE(HasEvent(d->DrainErrorEvents(), v1::ErrorEvent::UPDATE_FAILED));
  EXPECT_FALSE(d->update_pending_confirm());
  // Side-loaded downgrade: refused, the running v5 keeps running.
  s = d->LoadApp(TenantApp("contoso", "dw100", 4));
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "anti-rollback")) << s;
  EXPECT_EQ(d->InstalledVersion("app:dw100"), 5u);
  EXPECT_TRUE(d->AppRunning("dw100"));
  EXPECT_EQ(d->AntiRollbackCounter("contoso", "app:dw100"), 5u);
  EXPECT_EQ(d->AntiRollbackCounter("app:dw100"), 0u);
  ASSERT_TRUE(d->Reboot().ok());
  EXPECT_EQ(d->InstalledVersion("app:dw100"), 5u);
  EXPECT_EQ(d->AntiRollbackCounter("contoso", "app:dw100"), 5u);
}

// An app counter persisted before per-tenant keys (tenant "") cannot be
// attributed to a tenant, so it still bounds every tenant's app of that name.
TEST_F(DeviceTest, Fault_LegacyUntenantedAppCounterStillBoundsTenantApps) {
  auto d = Booted();
  ASSERT_TRUE(d->LoadApp(App(Manifest("dw100"), 5)).ok());
  ASSERT_EQ(d->AntiRollbackCounter("app:dw100"), 5u);
  absl::Status s = d->StageUpdate(TenantApp("contoso", "dw100", 4));
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s;
  EXPECT_FALSE(d->update_pending_confirm());
  EXPECT_EQ(d->AntiRollbackCounter("contoso", "app:dw100"), 0u);
  EXPECT_TRUE(d->StageUpdate(TenantApp("contoso", "dw100", 6)).ok());
}

// The tenant in an app header is covered by the platform signature: swapping
// Evil's tenant for Contoso's (to raise Contoso's counter) breaks it.
TEST_F(DeviceTest, Attack_AppHeaderTenantSwapBreaksSignature) {
  auto d = Booted();
  ASSERT_TRUE(d->LoadApp(TenantApp("contoso", "dw100", 2)).ok());
  v1::ImagePackage pkg = TenantApp("evil", "dw100", 999);
  v1::ImageHeader h;
  ASSERT_TRUE(h.ParseFromString(pkg.header()));
  ASSERT_EQ(h.tenant_id(), "evil");
  h.set_tenant_id("contoso");
  pkg.set_header(h.SerializeAsString());
  auto v = VerifyImage(pkg, SigningKey().PublicKey());
  EXPECT_EQ(v.status().code(), StatusCode::kUnauthenticated) << v.status();
  d->DrainErrorEvents();
  absl::Status s = d->LoadApp(pkg);
  EXPECT_EQ(s.code(), StatusCode::kUnauthenticated) << s;
  s = d->StageUpdate(pkg);
  EXPECT_EQ(s.code(), StatusCode::kUnauthenticated) << s;
  EXPECT_TRUE(HasEvent(d->DrainErrorEvents(), v1::ErrorEvent::UPDATE_FAILED));
  EXPECT_FALSE(d->update_pending_confirm());
  EXPECT_EQ(d->InstalledVersion("app:dw100"), 2u);
  EXPECT_EQ(d->AntiRollbackCounter("contoso", "app:dw100"), 2u);
  EXPECT_EQ(d->AntiRollbackCounter("evil", "app:dw100"), 0u);
  // Stripping the tenant (to pose as an untenanted image) breaks it too.
  h.clear_tenant_id();
  pkg.set_header(h.SerializeAsString());
  EXPECT_EQ(VerifyImage(pkg, SigningKey().PublicKey()).status().code(),
            StatusCode::kUnauthenticated);
}

TEST_F(DeviceTest, RenewableSecurity_ExplicitRollBack) {
  auto d = Booted();
  ASSERT_TRUE(d->StageUpdate(*BuildOsImage(SigningKey(), kBootloader, 3)).ok());
  ASSERT_TRUE(d->Reboot().ok());
  ASSERT_TRUE(d->RollBackUpdate().ok());
  EXPECT_EQ(d->InstalledVersion(kBootloader), 1u);
  EXPECT_EQ(d->RollBackUpdate().code(), StatusCode::kFailedPrecondition);
}

// --------------------------------------------------------------- memory

TEST_F(DeviceTest, FootprintIsCompact) {
  auto d = Booted();
  size_t bytes = d->FootprintBytes();
  std::printf("bytes per booted device: %zu\n", bytes);
  EXPECT_LE(bytes, 1024u);
}

}  // namespace
}  // namespace sphere::mcu
