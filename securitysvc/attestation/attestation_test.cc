// Attestor tests. Every attack is its own named test and asserts two things
// (the python-tuf habit, STYLE.md): the exact error, and that the trusted
// state did not change — no device record, no successful history entry, no
// certificate, and the legitimate nonce still usable where one exists.
#include "securitysvc/attestation/attestation.h"

#include <stdlib.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"
#include "common/store/memory_store.h"
#include "common/store/store.h"
#include "common/util/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mcu-model/device.h"
#include "mcu-model/image.h"
#include "mcu-model/quote.h"
#include "securitysvc/attestation/revocation_queue.h"
#include "securitysvc/auth/device_context.h"
#include "securitysvc/catalog/catalog_view.h"

namespace sphere::attestation {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kTenantA[] = "tenant-contoso";
constexpr char kTenantB[] = "tenant-fabrikam";
constexpr char kProduct[] = "product-dw100";
constexpr char kGroup[] = "group-production";

// Platform: keys, CA certificates and signed factory images shared by every
// test (building them is the slow part).
struct Platform {
  crypto::EcPrivateKey root_key = crypto::EcPrivateKey::Generate();
  crypto::EcPrivateKey tenant_a_key = crypto::EcPrivateKey::Generate();
  crypto::EcPrivateKey tenant_b_key = crypto::EcPrivateKey::Generate();
  crypto::EcPrivateKey signing_key = crypto::EcPrivateKey::Generate();
  crypto::EcPrivateKey rogue_signing_key = crypto::EcPrivateKey::Generate();
  std::string root_pem, tenant_a_pem, tenant_b_pem;
  std::vector<v1::ImagePackage> images_v1, images_v2, rogue_images;
};

const absl::Time kStart = absl::FromUnixSeconds(1767225600);

std::string IssueCa(absl::string_view cn, const crypto::EcPrivateKey& key,
                    const crypto::EcPrivateKey& issuer,
                    absl::string_view issuer_pem) {
  crypto::CertificateSpec spec;
  spec.common_name = std::string(cn);
  spec.subject_public_key = key.PublicKey();
  spec.not_before = kStart - absl::Hours(1);
  spec.not_after = kStart + absl::Hours(24 * 3650);
  spec.usage = crypto::KeyUsage::kCa;
  auto pem = crypto::IssueCertificate(spec, issuer, issuer_pem);
  if (!pem.ok()) {
    ADD_FAILURE() << pem.status();
    return "";
  }
  return *pem;
}

const Platform& GetPlatform() {
  static const Platform* p = [] {
    auto* p = new Platform;
    p->root_pem = IssueCa("Sphere Root CA", p->root_key, p->root_key, "");
    p->tenant_a_pem =
        IssueCa("Contoso CA", p->tenant_a_key, p->root_key, p->root_pem);
    p->tenant_b_pem =
        IssueCa("Fabrikam CA", p->tenant_b_key, p->root_key, p->root_pem);
    p->images_v1 = *mcu::BuildFactoryImages(p->signing_key, 1);
    p->images_v2 = *mcu::BuildFactoryImages(p->signing_key, 2);
    // A rogue boot chain: same components and versions, but the kernel's
    // code differs (a backdoored kernel), signed by a key that is not the
    // platform's. Identical bytes would measure identically whoever signed
    // them, so only the content change makes the hash unknown.
    p->rogue_images = *mcu::BuildFactoryImages(p->rogue_signing_key, 1);
    for (auto& pkg : p->rogue_images) {
      v1::ImageHeader h;
      EXPECT_TRUE(h.ParseFromString(pkg.header()));
      if (h.component() != mcu::kKernel) continue;
      pkg = *mcu::SignImage(h, absl::StrCat("backdoor", pkg.payload()),
                            p->rogue_signing_key);
    }
    return p;
  }();
  return *p;
}

// CatalogImages turns signed packages into catalog Image records (the hash
// is the one the device measures).
std::vector<v1::Image> CatalogImages(
    const std::vector<v1::ImagePackage>& packages,
    absl::string_view signing_public_key) {
  std::vector<v1::Image> out;
  for (const auto& pkg : packages) {
    auto v = mcu::VerifyImage(pkg, signing_public_key);
    EXPECT_TRUE(v.ok()) << v.status();
    if (!v.ok()) continue;
    v1::Image img;
    img.set_id(crypto::HexEncode(crypto::Sha256(pkg.SerializeAsString())));
    img.set_component(v->header.component());
    img.set_version(v->header.version());
    img.set_kind(v->header.kind());
    img.set_image_hash(v->image_hash);
    out.push_back(img);
  }
  return out;
}

std::string DeviceIdForKey(absl::string_view public_key) {
  return crypto::HexEncode(crypto::Sha256(public_key));
}

// SignQuote signs `body` the way Pluton does, with a key the test holds.
v1::Quote SignQuote(const v1::QuoteBody& body,
                    const crypto::EcPrivateKey& key) {
  v1::Quote q;
  body.SerializeToString(q.mutable_body());
  q.set_signature(*key.Sign(absl::StrCat(mcu::kQuoteContext, q.body())));
  return q;
}

// Reseal recomputes registers and the event-log digest so that the body is
// internally consistent after an edit of its event log.
void Reseal(v1::QuoteBody* body) {
  auto regs = mcu::ReplayEventLog(body->event_log(), mcu::kNumRegisters);
  body->clear_registers();
  for (const auto& r : regs) body->add_registers(r);
  body->set_event_log_digest(mcu::EventLogDigest(body->event_log()));
}

v1::QuoteBody ParseBody(const v1::Quote& q) {
  v1::QuoteBody body;
  EXPECT_TRUE(body.ParseFromString(q.body()));
  return body;
}

// FakeRevocationSink records the Attestor's automatic revocation decisions.
class FakeRevocationSink : public RevocationSink {
 public:
  void RequestRevocation(RevocationRequest request) override {
    requests.push_back(std::move(request));
  }
  std::vector<RevocationRequest> requests;
};

class AttestationTest : public ::testing::Test {
 protected:
  // The trusted state an attack must not change.
  struct TrustedState {
    size_t device_records = 0;
    int successes = 0;
    std::string last_record;  // serialized, "" when none
  };

  void SetUp() override {
    const Platform& p = GetPlatform();
    master_key_ = crypto::RandomBytes(32);
    catalog_ = std::make_unique<catalog::InMemoryCatalog>(master_key_);
    ASSERT_TRUE(catalog_
                    ->PutTenant(Tenant(kTenantA, "Contoso", p.tenant_a_pem,
                                       p.tenant_a_key))
                    .ok());
    ASSERT_TRUE(catalog_
                    ->PutTenant(Tenant(kTenantB, "Fabrikam", p.tenant_b_pem,
                                       p.tenant_b_key))
                    .ok());
    v1::DeviceGroup group;
    group.set_id(kGroup);
    group.set_tenant_id(kTenantA);
    group.set_product_id(kProduct);
    group.set_name("Production");
    group.set_os_feed(v1::RETAIL);
    catalog_->PutGroup(group);
    PublishOsRelease(p.images_v1, "1.0");

    auto store = store::MemoryStore::Create(ColumnFamilies());
    ASSERT_TRUE(store.ok());
    store_ = *std::move(store);
    nonces_ = std::make_unique<NonceStore>(&clock_);
    tokens_ = std::make_unique<auth::SessionTokens>(crypto::RandomBytes(32));
    Attestor::Options options;
    options.revocation_sink = &revocations_;
    attestor_ =
        std::make_unique<Attestor>(catalog_.get(), store_.get(), nonces_.get(),
                                   tokens_.get(), &clock_, options);

    device_ = MakeDevice("device-1", p.images_v1, p.signing_key.PublicKey());
    ASSERT_NE(device_, nullptr);
    Claim(device_->device_id(), device_->public_key());
  }

  v1::Tenant Tenant(absl::string_view id, absl::string_view name,
                    absl::string_view ca_pem,
                    const crypto::EcPrivateKey& ca_key) {
    v1::Tenant t;
    t.set_id(std::string(id));
    t.set_name(std::string(name));
    t.set_ca_certificate_pem(std::string(ca_pem));
    auto wrapped = catalog::WrapTenantCaKey(master_key_, id, ca_key);
    EXPECT_TRUE(wrapped.ok());
    t.set_wrapped_ca_key(*wrapped);
    return t;
  }

  void PublishOsRelease(const std::vector<v1::ImagePackage>& packages,
                        absl::string_view version) {
    v1::OsRelease rel;
    rel.set_feed(v1::RETAIL);
    rel.set_version(std::string(version));
    for (const auto& img :
         CatalogImages(packages, GetPlatform().signing_key.PublicKey())) {
      catalog_->PutImage(img);
      rel.add_image_ids(img.id());
    }
    catalog_->PutOsRelease(rel);
  }

  std::unique_ptr<mcu::Device> MakeDevice(
      absl::string_view seed, const std::vector<v1::ImagePackage>& images,
      absl::string_view rom_key) {
    mcu::Device::Options opts;
    opts.seed = std::string(seed);
    opts.clock = &clock_;
    auto d = mcu::Device::Manufacture(mcu::DeviceType::Mt3620(), rom_key,
                                      std::move(opts));
    EXPECT_TRUE(d.ok()) << d.status();
    if (!d.ok()) return nullptr;
    EXPECT_TRUE((*d)->InstallFactoryImages(images).ok());
    EXPECT_TRUE((*d)->Boot().ok());
    return *std::move(d);
  }

  // Claim registers a device claimed into tenant A's production group.
  v1::Device Claim(absl::string_view id, absl::string_view public_key) {
    v1::Device d;
    d.set_id(std::string(id));
    d.set_public_key(std::string(public_key));
    d.set_tenant_id(kTenantA);
    d.set_product_id(kProduct);
    d.set_device_group_id(kGroup);
    d.set_state(v1::CLAIMED);
    catalog_->PutDevice(d);
    return d;
  }

  std::string Nonce(absl::string_view device_id) {
    auto c = attestor_->GetChallenge(device_id);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? c->nonce() : "";
  }

  v1::AttestRequest Request(absl::string_view device_id, v1::Quote quote) {
    v1::AttestRequest req;
    req.set_device_id(std::string(device_id));
    *req.mutable_quote() = std::move(quote);
    return req;
  }

  // GenuineRequest: the device quotes over `nonce`.
  v1::AttestRequest GenuineRequest(mcu::Device& d, absl::string_view nonce) {
    auto q = d.Quote(nonce);
    EXPECT_TRUE(q.ok()) << q.status();
    return Request(d.device_id(), q.ok() ? *q : v1::Quote());
  }

  absl::StatusOr<v1::AttestResponse> AttestGenuine(mcu::Device& d) {
    return attestor_->Attest(GenuineRequest(d, Nonce(d.device_id())));
  }

  // A device whose Pluton key the test holds: lets tests sign bodies a real
  // Pluton would never produce (inconsistent, tampered, rolled back).
  struct HeldKeyDevice {
    crypto::EcPrivateKey key = crypto::EcPrivateKey::Generate();
    std::string id;
  };
  HeldKeyDevice RegisterHeldKeyDevice() {
    HeldKeyDevice h;
    h.id = DeviceIdForKey(h.key.PublicKey());
    Claim(h.id, h.key.PublicKey());
    return h;
  }
  // CraftedBody: a genuine v1 device's measurements re-targeted at `h` with
  // a fresh nonce for `h`; valid as is (see CraftedBaselineSucceeds).
  v1::QuoteBody CraftedBody(const HeldKeyDevice& h) {
    auto q = device_->Quote("template");
    EXPECT_TRUE(q.ok());
    v1::QuoteBody body = ParseBody(*q);
    body.set_device_id(h.id);
    body.set_nonce(Nonce(h.id));
    body.set_certificate_public_key(
        crypto::EcPrivateKey::Generate().PublicKey());
    return body;
  }

  TrustedState Snapshot(absl::string_view device_id) {
    TrustedState s;
    s.device_records = store_->Size(kDevicesCf);
    auto history = attestor_->History(device_id);
    EXPECT_TRUE(history.ok());
    for (const auto& r : *history) s.successes += r.success() ? 1 : 0;
    auto last = attestor_->LastRecord(device_id);
    // Text format prints map entries sorted: a stable comparison.
    if (last.ok()) s.last_record = last->ShortDebugString();
    return s;
  }
  void ExpectUnchanged(const TrustedState& before,
                       absl::string_view device_id) {
    TrustedState after = Snapshot(device_id);
    EXPECT_EQ(after.device_records, before.device_records);
    EXPECT_EQ(after.successes, before.successes);
    EXPECT_EQ(after.last_record, before.last_record);
  }
  // The legitimate device can still attest with `nonce` (it was not burnt).
  void ExpectNonceStillUsable(mcu::Device& d, absl::string_view nonce) {
    auto r = attestor_->Attest(GenuineRequest(d, nonce));
    EXPECT_TRUE(r.ok()) << r.status();
  }
  static void ExpectError(const absl::StatusOr<v1::AttestResponse>& r,
                          absl::StatusCode code, absl::string_view fragment) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), code) << r.status();
    EXPECT_THAT(r.status().message(), HasSubstr(fragment));
  }

  FakeClock clock_{kStart};
  std::string master_key_;
  std::unique_ptr<catalog::InMemoryCatalog> catalog_;
  std::unique_ptr<store::MemoryStore> store_;
  std::unique_ptr<NonceStore> nonces_;
  std::unique_ptr<auth::SessionTokens> tokens_;
  FakeRevocationSink revocations_;
  std::unique_ptr<Attestor> attestor_;
  std::unique_ptr<mcu::Device> device_;
};

// ---------------------------------------------------------------- success

TEST_F(AttestationTest, UpToDateDeviceGetsFullCertificateAndToken) {
  const std::string id = device_->device_id();
  auto r = AttestGenuine(*device_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcome(), v1::UP_TO_DATE);
  EXPECT_TRUE(r->outdated_components().empty());
  EXPECT_EQ(r->tenant_id(), kTenantA);
  EXPECT_EQ(r->product_id(), kProduct);
  EXPECT_EQ(r->device_group_id(), kGroup);

  // The chain verifies: device -> tenant CA -> platform root, clientAuth.
  std::vector<std::string> chain =
      crypto::SplitPemChain(r->certificate_chain_pem());
  ASSERT_EQ(chain.size(), 2u);
  EXPECT_TRUE(crypto::VerifyChain(chain[0], chain[1], GetPlatform().root_pem,
                                  clock_.Now(), /*require_client_auth=*/true)
                  .ok());
  auto leaf = crypto::ParseCertificate(chain[0]);
  ASSERT_TRUE(leaf.ok());
  EXPECT_EQ(leaf->claims.device_id, id);
  EXPECT_EQ(leaf->claims.tenant_id, kTenantA);
  EXPECT_EQ(leaf->claims.product_id, kProduct);
  EXPECT_EQ(leaf->claims.device_group_id, kGroup);
  EXPECT_EQ(leaf->claims.scope, "full");
  EXPECT_TRUE(leaf->client_auth);
  EXPECT_FALSE(leaf->is_ca);
  EXPECT_EQ(leaf->public_key, device_->CertificatePublicKey());
  EXPECT_EQ(leaf->serial_hex, r->certificate_serial());
  EXPECT_EQ(leaf->not_after, clock_.Now() + absl::Hours(24));
  EXPECT_EQ(r->not_after_unix_ms(),
            absl::ToUnixMillis(clock_.Now() + absl::Hours(24)));

  // Both authentication paths end in the same DeviceContext.
  auto from_cert = auth::FromCertificate(*leaf, clock_.Now());
  ASSERT_TRUE(from_cert.ok()) << from_cert.status();
  auto from_token = tokens_->Verify(r->session_token(), clock_.Now());
  ASSERT_TRUE(from_token.ok()) << from_token.status();
  EXPECT_EQ(from_token->device_id, from_cert->device_id);
  EXPECT_EQ(from_token->tenant_id, from_cert->tenant_id);
  EXPECT_EQ(from_token->product_id, from_cert->product_id);
  EXPECT_EQ(from_token->device_group_id, from_cert->device_group_id);
  EXPECT_EQ(from_token->scope, auth::Scope::kFull);
  EXPECT_EQ(from_token->certificate_serial, from_cert->certificate_serial);
  EXPECT_EQ(from_token->not_after, from_cert->not_after);
  EXPECT_TRUE(auth::RequireFullScope(*from_cert).ok());

  // State: the device record and one successful history entry.
  auto last = attestor_->LastRecord(id);
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_TRUE(last->success());
  EXPECT_EQ(last->outcome(), "UP_TO_DATE");
  EXPECT_EQ(last->certificate_serial(), r->certificate_serial());
  EXPECT_EQ(last->tenant_id(), kTenantA);
  EXPECT_EQ(last->versions().at("kernel"), 1u);
  EXPECT_EQ(last->versions().size(), 5u);
  auto history = attestor_->History(id);
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 1u);
  EXPECT_TRUE((*history)[0].success());
  EXPECT_EQ(nonces_->size(), 0u) << "the nonce was consumed";
}

TEST_F(AttestationTest, CraftedBaselineSucceeds) {
  // Sanity check for the crafted-quote attacks below: unmodified, the crafted
  // body of a held-key device attests, so each attack fails for its edit only.
  HeldKeyDevice h = RegisterHeldKeyDevice();
  auto r = attestor_->Attest(Request(h.id, SignQuote(CraftedBody(h), h.key)));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcome(), v1::UP_TO_DATE);
}

TEST_F(AttestationTest, ReattestAfterSuccessAppendsHistory) {
  ASSERT_TRUE(AttestGenuine(*device_).ok());
  clock_.Advance(absl::Hours(1));
  auto r = AttestGenuine(*device_);
  ASSERT_TRUE(r.ok());
  auto last = attestor_->LastRecord(device_->device_id());
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(last->certificate_serial(), r->certificate_serial());
  EXPECT_EQ(attestor_->History(device_->device_id())->size(), 2u);
}

// Issue 13: the history is bounded (the last kMaxHistoryEntries successes
// and refusals), written with the record, and survives a restart.
TEST_F(AttestationTest, HistoryKeepsOnlyTheLastAttemptsAndSurvivesRestart) {
  const std::string id = device_->device_id();
  constexpr int kAttempts = kMaxHistoryEntries + 9;
  for (int i = 0; i < kAttempts; ++i) {
    clock_.Advance(absl::Minutes(1));
    ASSERT_TRUE(AttestGenuine(*device_).ok()) << i;
    ASSERT_LE(store_->Size(kHistoryCf), kMaxHistoryEntries) << i;
  }
  const int64_t newest_success = absl::ToUnixMillis(clock_.Now());
  // Refusals: one recorded per failure_record_interval.
  const std::string nonce = Nonce(id);
  auto genuine = device_->Quote(nonce);
  ASSERT_TRUE(genuine.ok());
  v1::Quote forged =
      SignQuote(ParseBody(*genuine), crypto::EcPrivateKey::Generate());
  for (int i = 0; i < kAttempts; ++i) {
    clock_.Advance(absl::Seconds(11));
    ExpectError(attestor_->Attest(Request(id, forged)),
                absl::StatusCode::kUnauthenticated,
                "does not verify under the device key");
    ASSERT_LE(store_->Size(kHistoryCf), 2 * kMaxHistoryEntries) << i;
  }
  auto check = [&](const std::vector<v1::AttestationRecord>& history) {
    ASSERT_EQ(history.size(), 2 * kMaxHistoryEntries);
    int successes = 0;
    for (size_t i = 0; i < history.size(); ++i) {
      if (i > 0) {
        EXPECT_LE(history[i - 1].time_unix_ms(), history[i].time_unix_ms());
      }
      EXPECT_EQ(history[i].history_count(), 0u);
      successes += history[i].success() ? 1 : 0;
    }
    EXPECT_EQ(successes, static_cast<int>(kMaxHistoryEntries));
    // The oldest kept success is attempt 10 of 41: the first 9 are gone.
    EXPECT_EQ(history.front().time_unix_ms(),
              newest_success - (kMaxHistoryEntries - 1) * 60 * 1000);
    EXPECT_FALSE(history.back().success());
    EXPECT_EQ(history.back().outcome(), "UNAUTHENTICATED");
  };
  auto history = attestor_->History(id);
  ASSERT_TRUE(history.ok());
  check(*history);
  auto last = attestor_->LastRecord(id);
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(last->history_count(), static_cast<uint32_t>(kAttempts));

  // Restart: a new Attestor over the same store sees the same history, and
  // its next attempts keep the bound and overwrite the oldest.
  Attestor::Options options;
  attestor_ =
      std::make_unique<Attestor>(catalog_.get(), store_.get(), nonces_.get(),
                                 tokens_.get(), &clock_, options);
  history = attestor_->History(id);
  ASSERT_TRUE(history.ok());
  check(*history);
  clock_.Advance(absl::Minutes(1));
  ASSERT_TRUE(AttestGenuine(*device_).ok());
  EXPECT_EQ(store_->Size(kHistoryCf), 2 * kMaxHistoryEntries);
  history = attestor_->History(id);
  ASSERT_TRUE(history.ok());
  EXPECT_TRUE(history->back().success());
  EXPECT_EQ(history->back().time_unix_ms(), absl::ToUnixMillis(clock_.Now()));
}

// Issue 14: the success ring's slot is kept in memory, not read from the
// previous record. A store written before that (a record whose
// history_count is 45) continues at slot 45 % 32 after a restart; a record
// that does not parse restarts the ring at slot 0, as the read did.
TEST_F(AttestationTest, RestartContinuesTheRingFromTheStoredRecordsCount) {
  const std::string id = device_->device_id();
  v1::AttestationRecord old;
  old.set_device_id(id);
  old.set_time_unix_ms(absl::ToUnixMillis(clock_.Now()));
  old.set_success(true);
  old.set_outcome("UP_TO_DATE");
  old.set_history_count(45);
  ASSERT_TRUE(store_->Put(kDevicesCf, id, old.SerializeAsString()).ok());
  HeldKeyDevice corrupt = RegisterHeldKeyDevice();
  ASSERT_TRUE(store_->Put(kDevicesCf, corrupt.id, "\xff\xff not a record").ok());
  attestor_ =
      std::make_unique<Attestor>(catalog_.get(), store_.get(), nonces_.get(),
                                 tokens_.get(), &clock_, Attestor::Options());
  EXPECT_EQ(attestor_->attested_device_count(), 2u);

  clock_.Advance(absl::Minutes(1));
  ASSERT_TRUE(AttestGenuine(*device_).ok());
  auto entry = store_->Get(kHistoryCf, absl::StrCat(id, "|a|13"));
  ASSERT_TRUE(entry.ok()) << entry.status();
  v1::AttestationRecord e;
  ASSERT_TRUE(e.ParseFromString(*entry));
  EXPECT_EQ(e.time_unix_ms(), absl::ToUnixMillis(clock_.Now()));
  EXPECT_EQ(attestor_->LastRecord(id)->history_count(), 46u);

  ASSERT_TRUE(attestor_
                  ->Attest(Request(corrupt.id, SignQuote(CraftedBody(corrupt),
                                                         corrupt.key)))
                  .ok());
  EXPECT_TRUE(store_->Get(kHistoryCf, absl::StrCat(corrupt.id, "|a|00")).ok());
  EXPECT_EQ(attestor_->LastRecord(corrupt.id)->history_count(), 1u);
  // Both were attested before the restart: neither is counted again.
  EXPECT_EQ(attestor_->attested_device_count(), 2u);
}

// A write that fails takes no ring slot: the retry gets the slot the failed
// attempt had, for a device's first record as for a later one, and a first
// record that failed is counted once, when it is written.
TEST_F(AttestationTest, FailedWriteGivesItsRingSlotBack) {
  const std::string id = device_->device_id();
  store_->FailNextWrites(1, absl::UnavailableError("disk gone"));
  ExpectError(AttestGenuine(*device_), absl::StatusCode::kUnavailable,
              "could not record the attestation");
  EXPECT_EQ(attestor_->attested_device_count(), 0u);
  clock_.Advance(absl::Minutes(1));
  ASSERT_TRUE(AttestGenuine(*device_).ok());
  EXPECT_EQ(attestor_->attested_device_count(), 1u);
  EXPECT_EQ(attestor_->LastRecord(id)->history_count(), 1u);
  EXPECT_TRUE(store_->Get(kHistoryCf, absl::StrCat(id, "|a|00")).ok());

  store_->FailNextWrites(1, absl::UnavailableError("disk gone"));
  clock_.Advance(absl::Minutes(1));
  ExpectError(AttestGenuine(*device_), absl::StatusCode::kUnavailable,
              "could not record the attestation");
  clock_.Advance(absl::Minutes(1));
  ASSERT_TRUE(AttestGenuine(*device_).ok());
  EXPECT_EQ(attestor_->LastRecord(id)->history_count(), 2u);
  auto entry = store_->Get(kHistoryCf, absl::StrCat(id, "|a|01"));
  ASSERT_TRUE(entry.ok()) << entry.status();
  v1::AttestationRecord e;
  ASSERT_TRUE(e.ParseFromString(*entry));
  EXPECT_EQ(e.time_unix_ms(), absl::ToUnixMillis(clock_.Now()));
  EXPECT_FALSE(store_->Get(kHistoryCf, absl::StrCat(id, "|a|02")).ok());
  EXPECT_EQ(attestor_->attested_device_count(), 1u);
}

// The same bound across a real restart: the encrypted RocksDB closed and
// reopened, a new Attestor over it.
TEST_F(AttestationTest, RingStaysBoundedAcrossARocksDbReopen) {
  const std::string id = device_->device_id();
  const char* tmp = getenv("TEST_TMPDIR");
  std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp",
                                 "/attestation_test.XXXXXX");
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  const std::string path = absl::StrCat(dir, "/db");
  store::RocksOptions ro;
  ro.data_key = crypto::RandomBytes(32);
  constexpr int kBefore = kMaxHistoryEntries + 5;
  {
    auto rocks = store::OpenRocksStore(path, ColumnFamilies(), ro);
    ASSERT_TRUE(rocks.ok()) << rocks.status();
    Attestor a(catalog_.get(), rocks->get(), nonces_.get(), tokens_.get(),
               &clock_, Attestor::Options());
    for (int i = 0; i < kBefore; ++i) {
      clock_.Advance(absl::Minutes(1));
      auto c = a.GetChallenge(id);
      ASSERT_TRUE(c.ok()) << c.status();
      ASSERT_TRUE(a.Attest(GenuineRequest(*device_, c->nonce())).ok()) << i;
    }
  }
  auto rocks = store::OpenRocksStore(path, ColumnFamilies(), ro);
  ASSERT_TRUE(rocks.ok()) << rocks.status();
  Attestor a(catalog_.get(), rocks->get(), nonces_.get(), tokens_.get(),
             &clock_, Attestor::Options());
  EXPECT_EQ(a.attested_device_count(), 1u);
  constexpr int kAfter = 3;
  for (int i = 0; i < kAfter; ++i) {
    clock_.Advance(absl::Minutes(1));
    auto c = a.GetChallenge(id);
    ASSERT_TRUE(c.ok()) << c.status();
    ASSERT_TRUE(a.Attest(GenuineRequest(*device_, c->nonce())).ok()) << i;
  }
  EXPECT_EQ(a.attested_device_count(), 1u);
  EXPECT_EQ(a.LastRecord(id)->history_count(),
            static_cast<uint32_t>(kBefore + kAfter));
  auto history = a.History(id);
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), kMaxHistoryEntries);
  // The last 32 successes, one minute apart, the newest just written.
  const int64_t newest = absl::ToUnixMillis(clock_.Now());
  for (size_t i = 0; i < history->size(); ++i) {
    EXPECT_TRUE((*history)[i].success());
    EXPECT_EQ((*history)[i].time_unix_ms(),
              newest - static_cast<int64_t>(kMaxHistoryEntries - 1 - i) *
                           60 * 1000)
        << i;
  }
}

TEST_F(AttestationTest, Attack_OversizedQuoteStringsAreCutInHistory) {
  // A genuine device key signs a quote measuring an unknown image under a
  // 4 KiB component name: refused, and the history keeps at most the limits.
  HeldKeyDevice h = RegisterHeldKeyDevice();
  v1::QuoteBody body = CraftedBody(h);
  v1::BootEvent* e = body.add_event_log();
  e->set_register_index(mcu::kRegisterApps);
  e->set_component(std::string(4096, 'k'));
  e->set_version(7);
  e->set_image_hash(crypto::Sha256("never signed"));
  Reseal(&body);
  TrustedState before = Snapshot(h.id);
  ExpectError(attestor_->Attest(Request(h.id, SignQuote(body, h.key))),
              absl::StatusCode::kPermissionDenied,
              "runs an image the platform never signed");
  ExpectUnchanged(before, h.id);
  auto history = attestor_->History(h.id);
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 1u);
  EXPECT_FALSE((*history)[0].success());
  EXPECT_LE((*history)[0].reason().size(), kMaxHistoryReasonBytes);
  EXPECT_LE((*history)[0].outcome().size(), kMaxHistoryOutcomeBytes);
  EXPECT_THAT((*history)[0].reason(), HasSubstr("component kkkk"));
}

// ---------------------------------------------------------------- attacks

TEST_F(AttestationTest, ReplayedNonce) {
  auto req = GenuineRequest(*device_, Nonce(device_->device_id()));
  ASSERT_TRUE(attestor_->Attest(req).ok());
  TrustedState before = Snapshot(device_->device_id());

  auto replay = attestor_->Attest(req);
  ExpectError(replay, absl::StatusCode::kUnauthenticated, "already used");
  ExpectUnchanged(before, device_->device_id());
}

TEST_F(AttestationTest, ExpiredNonce) {
  auto req = GenuineRequest(*device_, Nonce(device_->device_id()));
  TrustedState before = Snapshot(device_->device_id());
  clock_.Advance(absl::Seconds(31));

  ExpectError(attestor_->Attest(req), absl::StatusCode::kUnauthenticated,
              "expired");
  ExpectUnchanged(before, device_->device_id());
  EXPECT_EQ(nonces_->size(), 0u);
}

TEST_F(AttestationTest, NonceIssuedToAnotherDevice) {
  auto other = MakeDevice("device-2", GetPlatform().images_v1,
                          GetPlatform().signing_key.PublicKey());
  Claim(other->device_id(), other->public_key());
  const std::string others_nonce = Nonce(other->device_id());
  TrustedState before = Snapshot(device_->device_id());

  ExpectError(attestor_->Attest(GenuineRequest(*device_, others_nonce)),
              absl::StatusCode::kUnauthenticated, "issued to another device");
  ExpectUnchanged(before, device_->device_id());
  EXPECT_EQ(nonces_->size(), 1u);
  ExpectNonceStillUsable(*other, others_nonce);
}

TEST_F(AttestationTest, QuoteByUnregisteredKey) {
  // A genuine Sphere chip that is not in the catalog quotes over device-1's
  // nonce and the request claims to be device-1.
  auto intruder = MakeDevice("intruder", GetPlatform().images_v1,
                             GetPlatform().signing_key.PublicKey());
  const std::string nonce = Nonce(device_->device_id());
  auto q = intruder->Quote(nonce);
  ASSERT_TRUE(q.ok());
  TrustedState before = Snapshot(device_->device_id());

  ExpectError(attestor_->Attest(Request(device_->device_id(), *q)),
              absl::StatusCode::kUnauthenticated,
              "does not verify under the device key");
  ExpectUnchanged(before, device_->device_id());
  ExpectNonceStillUsable(*device_, nonce);
}

TEST_F(AttestationTest, UnregisteredDevice) {
  auto stranger = MakeDevice("stranger", GetPlatform().images_v1,
                             GetPlatform().signing_key.PublicKey());
  auto c = attestor_->GetChallenge(stranger->device_id());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  auto q = stranger->Quote(std::string(32, 'n'));
  ASSERT_TRUE(q.ok());
  ExpectError(attestor_->Attest(Request(stranger->device_id(), *q)),
              absl::StatusCode::kNotFound,
              "is not claimed; claim it with spherectl device claim");
  EXPECT_TRUE(attestor_->History(stranger->device_id())->empty())
      << "no history for ids the factory never registered";
  EXPECT_EQ(store_->Size(kHistoryCf), 0u);
  EXPECT_EQ(nonces_->size(), 0u);
}

TEST_F(AttestationTest, QuoteSignedByWrongKey) {
  const std::string nonce = Nonce(device_->device_id());
  auto genuine = device_->Quote(nonce);
  ASSERT_TRUE(genuine.ok());
  v1::Quote forged =
      SignQuote(ParseBody(*genuine), crypto::EcPrivateKey::Generate());
  TrustedState before = Snapshot(device_->device_id());

  ExpectError(attestor_->Attest(Request(device_->device_id(), forged)),
              absl::StatusCode::kUnauthenticated,
              "does not verify under the device key");
  ExpectUnchanged(before, device_->device_id());
  ExpectNonceStillUsable(*device_, nonce);
}

TEST_F(AttestationTest, Attack_JunkQuotesCannotFloodDeviceHistory) {
  // Anyone can send junk for a known device id: each attempt is refused, but
  // the device's history gets at most one failure row per interval.
  const std::string nonce = Nonce(device_->device_id());
  auto genuine = device_->Quote(nonce);
  ASSERT_TRUE(genuine.ok());
  v1::Quote forged =
      SignQuote(ParseBody(*genuine), crypto::EcPrivateKey::Generate());
  TrustedState before = Snapshot(device_->device_id());
  for (int i = 0; i < 50; ++i) {
    ExpectError(attestor_->Attest(Request(device_->device_id(), forged)),
                absl::StatusCode::kUnauthenticated,
                "does not verify under the device key");
  }
  ExpectUnchanged(before, device_->device_id());
  auto history = attestor_->History(device_->device_id());
  ASSERT_TRUE(history.ok());
  size_t failures = 0;
  for (const auto& r : *history) failures += r.success() ? 0 : 1;
  EXPECT_EQ(failures, 1u);
  clock_.Advance(absl::Seconds(11));
  ExpectError(attestor_->Attest(Request(device_->device_id(), forged)),
              absl::StatusCode::kUnauthenticated,
              "does not verify under the device key");
  history = attestor_->History(device_->device_id());
  failures = 0;
  for (const auto& r : *history) failures += r.success() ? 0 : 1;
  EXPECT_EQ(failures, 2u);
}

TEST_F(AttestationTest, QuoteNamingAnotherDevice) {
  // A registered device (key held by the attacker) signs a body naming
  // device-1, and sends it under its own id.
  HeldKeyDevice h = RegisterHeldKeyDevice();
  v1::QuoteBody body = CraftedBody(h);
  body.set_device_id(device_->device_id());
  TrustedState before = Snapshot(h.id);

  ExpectError(attestor_->Attest(Request(h.id, SignQuote(body, h.key))),
              absl::StatusCode::kUnauthenticated, "quote names device");
  ExpectUnchanged(before, h.id);
  EXPECT_TRUE(nonces_->Check(h.id, body.nonce()).ok());
}

TEST_F(AttestationTest, TamperedRegister) {
  // Edit a register in a genuine quote: the signature no longer verifies and
  // the attacker cannot re-sign without the device key.
  const std::string nonce = Nonce(device_->device_id());
  auto q = device_->Quote(nonce);
  ASSERT_TRUE(q.ok());
  v1::QuoteBody body = ParseBody(*q);
  body.set_registers(1, crypto::Sha256("a kernel nobody signed"));
  v1::Quote tampered = *q;
  body.SerializeToString(tampered.mutable_body());
  TrustedState before = Snapshot(device_->device_id());

  ExpectError(attestor_->Attest(Request(device_->device_id(), tampered)),
              absl::StatusCode::kUnauthenticated,
              "does not verify under the device key");
  ExpectUnchanged(before, device_->device_id());
  ExpectNonceStillUsable(*device_, nonce);
}

TEST_F(AttestationTest, InconsistentRegisterSignedByDeviceKey) {
  // Even a correctly signed quote is refused when a register does not match
  // its event log (a compromised signer, or a buggy Pluton).
  HeldKeyDevice h = RegisterHeldKeyDevice();
  v1::QuoteBody body = CraftedBody(h);
  body.set_registers(1, crypto::Sha256("a kernel nobody signed"));
  TrustedState before = Snapshot(h.id);

  ExpectError(attestor_->Attest(Request(h.id, SignQuote(body, h.key))),
              absl::StatusCode::kInvalidArgument,
              "register 1 does not match the replayed event log");
  ExpectUnchanged(before, h.id);
  EXPECT_TRUE(nonces_->Check(h.id, body.nonce()).ok());
}

TEST_F(AttestationTest, EventLogDoesNotReplay) {
  // The log claims a different kernel image than the one measured into the
  // registers (which still hold the genuine values).
  HeldKeyDevice h = RegisterHeldKeyDevice();
  v1::QuoteBody body = CraftedBody(h);
  for (auto& e : *body.mutable_event_log()) {
    if (e.component() == "kernel") e.set_image_hash(crypto::Sha256("other"));
  }
  TrustedState before = Snapshot(h.id);

  ExpectError(attestor_->Attest(Request(h.id, SignQuote(body, h.key))),
              absl::StatusCode::kInvalidArgument,
              "does not match the replayed event log");
  ExpectUnchanged(before, h.id);
  EXPECT_TRUE(nonces_->Check(h.id, body.nonce()).ok());
}

TEST_F(AttestationTest, EventLogDigestMismatch) {
  HeldKeyDevice h = RegisterHeldKeyDevice();
  v1::QuoteBody body = CraftedBody(h);
  body.set_event_log_digest(crypto::Sha256("not the log"));
  TrustedState before = Snapshot(h.id);

  ExpectError(attestor_->Attest(Request(h.id, SignQuote(body, h.key))),
              absl::StatusCode::kInvalidArgument, "event_log_digest");
  ExpectUnchanged(before, h.id);
}

TEST_F(AttestationTest, UnknownImageHash) {
  // A chip whose ROM trusts another signing key boots images the platform
  // never signed; its quote is genuine, the images are not.
  auto rogue = MakeDevice("rogue", GetPlatform().rogue_images,
                          GetPlatform().rogue_signing_key.PublicKey());
  ASSERT_EQ(rogue->boot_state(), mcu::BootState::kRunning);
  Claim(rogue->device_id(), rogue->public_key());
  const std::string nonce = Nonce(rogue->device_id());
  TrustedState before = Snapshot(rogue->device_id());

  ExpectError(attestor_->Attest(GenuineRequest(*rogue, nonce)),
              absl::StatusCode::kPermissionDenied,
              "runs an image the platform never signed");
  ExpectUnchanged(before, rogue->device_id());
  EXPECT_TRUE(nonces_->Check(rogue->device_id(), nonce).ok());
  auto history = attestor_->History(rogue->device_id());
  ASSERT_EQ(history->size(), 1u) << "the rejection is recorded";
  EXPECT_FALSE((*history)[0].success());
  EXPECT_EQ((*history)[0].outcome(), "PERMISSION_DENIED");
}

TEST_F(AttestationTest, EventLogMislabelsImageVersion) {
  // The log names kernel v2 for the v1 kernel hash (consistent registers).
  HeldKeyDevice h = RegisterHeldKeyDevice();
  v1::QuoteBody body = CraftedBody(h);
  for (auto& e : *body.mutable_event_log()) {
    if (e.component() == "kernel") e.set_version(2);
  }
  Reseal(&body);
  TrustedState before = Snapshot(h.id);

  ExpectError(attestor_->Attest(Request(h.id, SignQuote(body, h.key))),
              absl::StatusCode::kPermissionDenied,
              "event log claims kernel v2 but the measured image is kernel v1");
  ExpectUnchanged(before, h.id);
}

TEST_F(AttestationTest, TamperedDeviceRejected) {
  // A quote that reports tamper events is refused by the service...
  HeldKeyDevice h = RegisterHeldKeyDevice();
  v1::QuoteBody body = CraftedBody(h);
  body.set_tamper_events(1);
  TrustedState before = Snapshot(h.id);
  ExpectError(attestor_->Attest(Request(h.id, SignQuote(body, h.key))),
              absl::StatusCode::kPermissionDenied, "1 tamper event(s)");
  ExpectUnchanged(before, h.id);
  EXPECT_TRUE(nonces_->Check(h.id, body.nonce()).ok());

  // ...and handed to the revocation sink: the quote is signed by the
  // registered device key over a fresh nonce, so it proves the device itself
  // was tampered with.
  ASSERT_EQ(revocations_.requests.size(), 1u);
  EXPECT_EQ(revocations_.requests[0].device_id, h.id);
  EXPECT_EQ(revocations_.requests[0].tenant_id, kTenantA);
  EXPECT_THAT(revocations_.requests[0].reason,
              HasSubstr("automatic: tamper: device "));
}

// The real Pluton keeps quoting after a tamper event and reports it in the
// signed quote; the Attestor refuses the device and its shard revokes it
// through the RevocationQueue (off the attestation path), exactly once.
TEST_F(AttestationTest, Attack_TamperedPlutonIsRevokedAutomaticallyOnce) {
  auto dev = MakeDevice("tampered-dw100", GetPlatform().images_v1,
                        GetPlatform().signing_key.PublicKey());
  ASSERT_NE(dev, nullptr);
  const std::string id = dev->device_id();
  Claim(id, dev->public_key());

  // What management does with RevokeDevice, as seen by this shard: the
  // catalog records the revocation and Watch brings it back.
  int revoke_calls = 0;
  std::vector<RevocationRequest> revoked;
  int64_t revision = catalog_->revision();
  RevocationQueue queue(
      [&](const RevocationRequest& r) {
        ++revoke_calls;
        revoked.push_back(r);
        v1::WatchEvent e;
        e.set_revision(++revision);
        e.set_revoked_device_id(r.device_id);
        return catalog_->Apply(e);
      },
      RevocationQueue::Options());
  Attestor::Options options;
  options.revocation_sink = &queue;
  Attestor attestor(catalog_.get(), store_.get(), nonces_.get(), tokens_.get(),
                    &clock_, options);
  auto genuine = attestor.GetChallenge(id);  // genuine until opened
  ASSERT_TRUE(genuine.ok());
  ASSERT_TRUE(attestor.Attest(GenuineRequest(*dev, genuine->nonce())).ok());

  auto first = attestor.GetChallenge(id);
  auto second = attestor.GetChallenge(id);  // outstanding when revoked
  ASSERT_TRUE(first.ok() && second.ok());
  dev->TriggerTamper("enclosure opened");
  TrustedState before = Snapshot(id);
  TrustedState other_before = Snapshot(device_->device_id());

  auto q = dev->Quote(first->nonce());
  ASSERT_TRUE(q.ok()) << q.status();
  ExpectError(attestor.Attest(Request(id, *q)),
              absl::StatusCode::kPermissionDenied, "reports 1 tamper event(s)");
  ASSERT_TRUE(queue.WaitIdle(absl::Seconds(30)));
  EXPECT_EQ(queue.delivered(), 1u);
  ASSERT_EQ(revoked.size(), 1u);
  EXPECT_EQ(revoked[0].device_id, id);
  EXPECT_EQ(revoked[0].tenant_id, kTenantA);
  EXPECT_THAT(revoked[0].reason, HasSubstr("automatic: tamper: device "));
  EXPECT_TRUE(revoked[0].unknown_image_hash.empty());
  auto d = catalog_->GetDevice(id);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->state(), v1::REVOKED);

  // Refused from now on, without a second revocation: the outstanding
  // challenge is dead and no new one is issued.
  auto q2 = dev->Quote(second->nonce());
  ASSERT_TRUE(q2.ok());
  ExpectError(attestor.Attest(Request(id, *q2)),
              absl::StatusCode::kPermissionDenied, "is revoked");
  EXPECT_EQ(attestor.GetChallenge(id).status().code(),
            absl::StatusCode::kPermissionDenied);
  ASSERT_TRUE(queue.WaitIdle(absl::Seconds(30)));
  EXPECT_EQ(revoke_calls, 1);

  // Nothing else changed: no certificate, no new success, the last good
  // record stays; the other device is untouched and still attests.
  ExpectUnchanged(before, id);
  ExpectUnchanged(other_before, device_->device_id());
  EXPECT_EQ(catalog_->GetDevice(device_->device_id())->state(), v1::CLAIMED);
  EXPECT_TRUE(AttestGenuine(*device_).ok());
  EXPECT_TRUE(revocations_.requests.empty());  // the fixture's sink: unused
  queue.Stop();
}

TEST_F(AttestationTest, RevokedDevice) {
  const std::string id = device_->device_id();
  const std::string nonce = Nonce(id);  // issued before the revocation
  v1::WatchEvent revoke;
  revoke.set_revision(7);
  revoke.set_revoked_device_id(id);
  ASSERT_TRUE(catalog_->Apply(revoke).ok());
  TrustedState before = Snapshot(id);

  auto c = attestor_->GetChallenge(id);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(c.status().message(), HasSubstr("revoked"));
  ExpectError(attestor_->Attest(GenuineRequest(*device_, nonce)),
              absl::StatusCode::kPermissionDenied, "is revoked");
  ExpectUnchanged(before, id);
  EXPECT_EQ(nonces_->size(), 1u);
}

TEST_F(AttestationTest, UnclaimedDevice) {
  auto fresh = MakeDevice("fresh-from-factory", GetPlatform().images_v1,
                          GetPlatform().signing_key.PublicKey());
  v1::Device d;
  d.set_id(fresh->device_id());
  d.set_public_key(fresh->public_key());
  d.set_state(v1::UNCLAIMED);
  catalog_->PutDevice(d);
  const std::string nonce = Nonce(fresh->device_id());
  TrustedState before = Snapshot(fresh->device_id());

  ExpectError(attestor_->Attest(GenuineRequest(*fresh, nonce)),
              absl::StatusCode::kFailedPrecondition,
              "is not claimed; claim it with spherectl device claim");
  ExpectUnchanged(before, fresh->device_id());
  EXPECT_TRUE(nonces_->Check(fresh->device_id(), nonce).ok());
}

TEST_F(AttestationTest, MalformedDeviceId) {
  auto q = device_->Quote(std::string(32, 'n'));
  ASSERT_TRUE(q.ok());
  for (const std::string& bad :
       {std::string("abc"), std::string(64, 'g'),
        absl::AsciiStrToUpper(device_->device_id()), std::string()}) {
    SCOPED_TRACE(bad);
    auto c = attestor_->GetChallenge(bad);
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
    ExpectError(attestor_->Attest(Request(bad, *q)),
                absl::StatusCode::kInvalidArgument, "device id must be");
  }
  EXPECT_EQ(store_->Size(kHistoryCf), 0u);
  EXPECT_EQ(store_->Size(kDevicesCf), 0u);
  EXPECT_EQ(nonces_->size(), 0u);
}

TEST_F(AttestationTest, AntiRollbackViolation) {
  // The device reports an anti-rollback counter for kernel at 2 while the
  // measured kernel is v1: it was rolled back below what it once confirmed.
  HeldKeyDevice h = RegisterHeldKeyDevice();
  v1::QuoteBody body = CraftedBody(h);
  bool found = false;
  for (auto& c : *body.mutable_counters()) {
    if (c.component() == "kernel") {
      c.set_value(2);
      found = true;
    }
  }
  if (!found) {
    auto* c = body.add_counters();
    c->set_component("kernel");
    c->set_value(2);
  }
  TrustedState before = Snapshot(h.id);

  ExpectError(attestor_->Attest(Request(h.id, SignQuote(body, h.key))),
              absl::StatusCode::kPermissionDenied,
              "kernel runs version 1 below its anti-rollback counter 2");
  ExpectUnchanged(before, h.id);
  EXPECT_TRUE(nonces_->Check(h.id, body.nonce()).ok());
}

// Issue 8, hole 3 (device side): devices key app anti-rollback counters by
// (tenant, component) and quote each counter with its tenant. Another
// tenant's counter of the same name (a side-loaded "app:dw100" v999) says
// nothing about this tenant's component; a counter of the device's own tenant
// is still compared.
TEST_F(AttestationTest, OtherTenantsCounterIsNotComparedButOwnIs) {
  HeldKeyDevice h = RegisterHeldKeyDevice();
  v1::QuoteBody body = CraftedBody(h);
  auto* evil = body.add_counters();
  evil->set_component("kernel");
  evil->set_tenant_id(kTenantB);
  evil->set_value(999);
  auto r = attestor_->Attest(Request(h.id, SignQuote(body, h.key)));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcome(), v1::UP_TO_DATE);

  body.set_nonce(Nonce(h.id));
  auto* own = body.add_counters();
  own->set_component("kernel");
  own->set_tenant_id(kTenantA);
  own->set_value(2);
  TrustedState before = Snapshot(h.id);
  ExpectError(attestor_->Attest(Request(h.id, SignQuote(body, h.key))),
              absl::StatusCode::kPermissionDenied,
              "kernel runs version 1 below its anti-rollback counter 2");
  ExpectUnchanged(before, h.id);
}

// A register index of 2^31 or more used to pass the bounds check as a
// negative int and index the replay far out of range (a crash of the shard).
TEST_F(AttestationTest, Attack_EventNamingHugeRegisterIndexIsRejected) {
  HeldKeyDevice h = RegisterHeldKeyDevice();
  v1::QuoteBody body = CraftedBody(h);
  body.mutable_event_log(0)->set_register_index(0xffffffffu);
  TrustedState before = Snapshot(h.id);

  ExpectError(attestor_->Attest(Request(h.id, SignQuote(body, h.key))),
              absl::StatusCode::kInvalidArgument, "names register 4294967295");
  ExpectUnchanged(before, h.id);
  EXPECT_TRUE(nonces_->Check(h.id, body.nonce()).ok());
}

// Platform-signed applications named like boot-chain components (as the
// image pipeline used to sign for tenants) must not stand in for the OS:
// measured after the boot chain, they masked an outdated OS and the device
// got a full-scope certificate. Not a proof of device compromise (the
// platform signed them), so no automatic revocation.
TEST_F(AttestationTest, Attack_AppImageNamedLikeOsComponentMasksOutdatedOs) {
  PublishOsRelease(GetPlatform().images_v2, "2.0");
  HeldKeyDevice h = RegisterHeldKeyDevice();
  v1::QuoteBody body = CraftedBody(h);
  for (const std::string& component : mcu::BootChainComponents()) {
    v1::Image squat;
    squat.set_image_hash(crypto::Sha256(absl::StrCat("squat ", component)));
    squat.set_id(crypto::HexEncode(squat.image_hash()));
    squat.set_tenant_id(kTenantA);
    squat.set_component(component);
    squat.set_version(2);
    squat.set_kind(v1::IMAGE_KIND_APPLICATION);
    catalog_->PutImage(squat);
    v1::BootEvent* e = body.add_event_log();
    e->set_register_index(mcu::kRegisterApps);
    e->set_component(component);
    e->set_version(2);
    e->set_image_hash(squat.image_hash());
  }
  Reseal(&body);
  TrustedState before = Snapshot(h.id);

  ExpectError(attestor_->Attest(Request(h.id, SignQuote(body, h.key))),
              absl::StatusCode::kPermissionDenied,
              "is measured from an application image");
  ExpectUnchanged(before, h.id);
  EXPECT_TRUE(nonces_->Check(h.id, body.nonce()).ok());
  EXPECT_TRUE(revocations_.requests.empty());
}

// MeasureApp appends to `body` the boot event of an application image of
// `tenant` (hash of `tag`) and returns its catalog record (not yet stored).
v1::Image MeasureApp(v1::QuoteBody* body, absl::string_view tenant,
                     absl::string_view component, uint32_t version,
                     absl::string_view tag) {
  v1::Image app;
  app.set_image_hash(crypto::Sha256(tag));
  app.set_id(crypto::HexEncode(app.image_hash()));
  app.set_tenant_id(std::string(tenant));
  app.set_component(std::string(component));
  app.set_version(version);
  app.set_kind(v1::IMAGE_KIND_APPLICATION);
  v1::BootEvent* e = body->add_event_log();
  e->set_register_index(mcu::kRegisterApps);
  e->set_component(std::string(component));
  e->set_version(version);
  e->set_image_hash(app.image_hash());
  return app;
}

// Issue 8 hole 3: tenant Evil's "app:dw100" v999 passed as Contoso's app:
// a Contoso device running it attested UP_TO_DATE with a full certificate.
// Images are bound to their tenant; another tenant's app is refused (the
// platform signed it, so no automatic revocation).
TEST_F(AttestationTest, Attack_OtherTenantAppWithSameComponentName) {
  HeldKeyDevice h = RegisterHeldKeyDevice();
  v1::QuoteBody body = CraftedBody(h);
  catalog_->PutImage(
      MeasureApp(&body, kTenantB, "app:dw100", 999, "evil app:dw100 v999"));
  Reseal(&body);
  TrustedState before = Snapshot(h.id);

  ExpectError(attestor_->Attest(Request(h.id, SignQuote(body, h.key))),
              absl::StatusCode::kPermissionDenied,
              "not an image of the device's tenant");
  ExpectUnchanged(before, h.id);
  EXPECT_TRUE(nonces_->Check(h.id, body.nonce()).ok());
  EXPECT_TRUE(revocations_.requests.empty());
}

// A byte-identical app uploaded by two tenants is each tenant's own image:
// the other tenant's copy neither blocks nor replaces it.
TEST_F(AttestationTest, Attack_OtherTenantUploadsIdenticalBytesFirst) {
  HeldKeyDevice h = RegisterHeldKeyDevice();
  v1::QuoteBody body = CraftedBody(h);
  v1::Image theirs =
      MeasureApp(&body, kTenantB, "app:dw100", 1, "dw100 app v1");
  catalog_->PutImage(theirs);
  v1::Image mine = theirs;
  mine.set_tenant_id(kTenantA);
  catalog_->PutImage(mine);
  Reseal(&body);
  auto r = attestor_->Attest(Request(h.id, SignQuote(body, h.key)));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->tenant_id(), kTenantA);
  auto found = catalog_->FindImageForTenant(mine.image_hash(), kTenantA);
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->tenant_id(), kTenantA);
}

// Issue 8 hole 2: a shard whose catalog has not completed its first
// snapshot answers UNAVAILABLE, never "unsigned image" (which revoked
// genuine devices).
TEST_F(AttestationTest, Fault_UnsyncedCatalogAnswersUnavailable) {
  const std::string nonce = Nonce(device_->device_id());
  v1::AttestRequest req = GenuineRequest(*device_, nonce);
  TrustedState before = Snapshot(device_->device_id());
  catalog_->RequireSnapshot();
  auto challenge = attestor_->GetChallenge(device_->device_id());
  EXPECT_EQ(challenge.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(challenge.status().message(), HasSubstr("not yet synced"));
  ExpectError(attestor_->Attest(req), absl::StatusCode::kUnavailable,
              "catalog not yet synced");
  ExpectUnchanged(before, device_->device_id());
  EXPECT_TRUE(revocations_.requests.empty());
  EXPECT_TRUE(nonces_->Check(device_->device_id(), nonce).ok());
}

TEST_F(AttestationTest, QuoteWithoutCertificateKey) {
  HeldKeyDevice h = RegisterHeldKeyDevice();
  v1::QuoteBody body = CraftedBody(h);
  body.set_certificate_public_key("not a point");
  TrustedState before = Snapshot(h.id);

  ExpectError(attestor_->Attest(Request(h.id, SignQuote(body, h.key))),
              absl::StatusCode::kInvalidArgument,
              "no valid certificate public key");
  ExpectUnchanged(before, h.id);
  EXPECT_TRUE(nonces_->Check(h.id, body.nonce()).ok());
}

// ---------------------------------------------------------------- outdated

TEST_F(AttestationTest, OutdatedDeviceGetsUpdateOnlyCertificate) {
  PublishOsRelease(GetPlatform().images_v2, "2.0");
  auto r = AttestGenuine(*device_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcome(), v1::UPDATE_REQUIRED);
  EXPECT_THAT(r->outdated_components(),
              ElementsAre("bootloader", "kernel", "os-services",
                          "pluton-runtime", "security-monitor"));
  auto chain = crypto::SplitPemChain(r->certificate_chain_pem());
  ASSERT_EQ(chain.size(), 2u);
  EXPECT_TRUE(crypto::VerifyChain(chain[0], chain[1], GetPlatform().root_pem,
                                  clock_.Now(), true)
                  .ok());
  auto leaf = crypto::ParseCertificate(chain[0]);
  ASSERT_TRUE(leaf.ok());
  EXPECT_EQ(leaf->claims.scope, "update-only");
  auto token = tokens_->Verify(r->session_token(), clock_.Now());
  ASSERT_TRUE(token.ok());
  EXPECT_TRUE(token->update_only());

  auto last = attestor_->LastRecord(device_->device_id());
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(last->outcome(), "UPDATE_REQUIRED");
  EXPECT_THAT(last->reason(), HasSubstr("kernel"));
}

TEST_F(AttestationTest, RelyingPartyRefusesUpdateOnlyCertificate) {
  PublishOsRelease(GetPlatform().images_v2, "2.0");
  auto r = AttestGenuine(*device_);
  ASSERT_TRUE(r.ok());
  // What Contoso's cloud does with the client certificate: verify the chain
  // to the platform root, read the claims, require full scope.
  auto chain = crypto::SplitPemChain(r->certificate_chain_pem());
  ASSERT_TRUE(crypto::VerifyChain(chain[0], chain[1], GetPlatform().root_pem,
                                  clock_.Now(), true)
                  .ok());
  auto leaf = crypto::ParseCertificate(chain[0]);
  ASSERT_TRUE(leaf.ok());
  auto ctx = auth::FromCertificate(*leaf, clock_.Now());
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  absl::Status s = auth::RequireFullScope(*ctx);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr("update-only"));
  // The session-token path gives the same answer.
  auto token_ctx = tokens_->Verify(r->session_token(), clock_.Now());
  ASSERT_TRUE(token_ctx.ok());
  EXPECT_EQ(auth::RequireFullScope(*token_ctx).code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(AttestationTest, RelyingPartyRefusesCertificateWithoutScope) {
  // A certificate with device claims but no scope claim never means "full".
  crypto::CertificateSpec spec;
  spec.common_name = device_->device_id();
  spec.subject_public_key = device_->CertificatePublicKey();
  spec.not_before = clock_.Now() - absl::Minutes(1);
  spec.not_after = clock_.Now() + absl::Hours(1);
  spec.claims.device_id = device_->device_id();
  spec.claims.tenant_id = kTenantA;
  auto pem = crypto::IssueCertificate(spec, GetPlatform().tenant_a_key,
                                      GetPlatform().tenant_a_pem);
  ASSERT_TRUE(pem.ok());
  auto leaf = crypto::ParseCertificate(*pem);
  ASSERT_TRUE(leaf.ok());
  auto ctx = auth::FromCertificate(*leaf, clock_.Now());
  EXPECT_EQ(ctx.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(ctx.status().message(), HasSubstr("no scope claim"));
}

// ------------------------------------------------- certificates + storage

TEST_F(AttestationTest, CertificateFromAnotherTenantCaDoesNotChain) {
  // Tenant B's CA issues a leaf for device-1 claiming tenant A; presented
  // with tenant A's CA as intermediate, the chain must not verify.
  crypto::CertificateSpec spec;
  spec.common_name = device_->device_id();
  spec.subject_public_key = device_->CertificatePublicKey();
  spec.not_before = clock_.Now() - absl::Minutes(1);
  spec.not_after = clock_.Now() + absl::Hours(1);
  spec.claims.device_id = device_->device_id();
  spec.claims.tenant_id = kTenantA;
  spec.claims.scope = "full";
  auto leaf_b = crypto::IssueCertificate(spec, GetPlatform().tenant_b_key,
                                         GetPlatform().tenant_b_pem);
  ASSERT_TRUE(leaf_b.ok());
  absl::Status s =
      crypto::VerifyChain(*leaf_b, GetPlatform().tenant_a_pem,
                          GetPlatform().root_pem, clock_.Now(), true);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
  // (With tenant B's own CA the chain does verify: it is the wrong tenant,
  // not a broken certificate.)
  EXPECT_TRUE(crypto::VerifyChain(*leaf_b, GetPlatform().tenant_b_pem,
                                  GetPlatform().root_pem, clock_.Now(), true)
                  .ok());
  // And the issued certificate of a tenant-A device names tenant A's CA.
  auto r = AttestGenuine(*device_);
  ASSERT_TRUE(r.ok());
  auto chain = crypto::SplitPemChain(r->certificate_chain_pem());
  EXPECT_EQ(chain[1], GetPlatform().tenant_a_pem);
  EXPECT_FALSE(crypto::VerifyChain(chain[0], GetPlatform().tenant_b_pem,
                                   GetPlatform().root_pem, clock_.Now(), true)
                   .ok());
}

TEST_F(AttestationTest, StorageFailureIsUnavailableAndKeepsNonce) {
  const std::string nonce = Nonce(device_->device_id());
  auto req = GenuineRequest(*device_, nonce);
  TrustedState before = Snapshot(device_->device_id());
  store_->FailNextWrites(1, absl::UnavailableError("disk gone"));

  ExpectError(attestor_->Attest(req), absl::StatusCode::kUnavailable,
              "could not record the attestation");
  ExpectUnchanged(before, device_->device_id());
  EXPECT_EQ(nonces_->size(), 1u);
  // The device retries the very same request once storage is back.
  auto retry = attestor_->Attest(req);
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->outcome(), v1::UP_TO_DATE);
  EXPECT_EQ(nonces_->size(), 0u);
}

TEST_F(AttestationTest, UnknownTenantCaKeepsNonce) {
  // Catalog not yet caught up: the device's tenant CA is missing on this
  // shard. NotFound, and nothing consumed.
  HeldKeyDevice h = RegisterHeldKeyDevice();
  auto d = catalog_->GetDevice(h.id);
  ASSERT_TRUE(d.ok());
  v1::Device moved = *d;
  moved.set_tenant_id("tenant-unknown");
  catalog_->PutDevice(moved);
  v1::QuoteBody body = CraftedBody(h);
  TrustedState before = Snapshot(h.id);

  ExpectError(attestor_->Attest(Request(h.id, SignQuote(body, h.key))),
              absl::StatusCode::kNotFound, "has no issuing CA");
  ExpectUnchanged(before, h.id);
  EXPECT_TRUE(nonces_->Check(h.id, body.nonce()).ok());
}

// ------------------------------------------------- automatic revocation

// Each integrity failure proven by a genuine device signature over a fresh
// nonce asks for the device's revocation, with the reason.
TEST_F(AttestationTest, UnsignedImageUnderDeviceKeyRequestsRevocation) {
  auto rogue = MakeDevice("rogue-revoked", GetPlatform().rogue_images,
                          GetPlatform().rogue_signing_key.PublicKey());
  Claim(rogue->device_id(), rogue->public_key());
  TrustedState before = Snapshot(rogue->device_id());

  ExpectError(
      attestor_->Attest(GenuineRequest(*rogue, Nonce(rogue->device_id()))),
      absl::StatusCode::kPermissionDenied,
      "runs an image the platform never signed");
  ExpectUnchanged(before, rogue->device_id());
  ASSERT_EQ(revocations_.requests.size(), 1u);
  EXPECT_EQ(revocations_.requests[0].device_id, rogue->device_id());
  EXPECT_EQ(revocations_.requests[0].tenant_id, kTenantA);
  EXPECT_THAT(revocations_.requests[0].reason,
              ::testing::StartsWith("automatic: unsigned image: component "
                                    "kernel"));
  EXPECT_EQ(revocations_.requests[0].unknown_image_hash.size(), 32u);
  EXPECT_FALSE(
      catalog_->FindImageByHash(revocations_.requests[0].unknown_image_hash)
          .ok());
}

TEST_F(AttestationTest, IntegrityFailuresUnderDeviceKeyRequestRevocation) {
  struct Case {
    std::string name;
    std::function<void(v1::QuoteBody*)> edit;
    std::string reason;
  };
  const std::vector<Case> cases = {
      {"tamper", [](v1::QuoteBody* b) { b->set_tamper_events(2); },
       "automatic: tamper: device "},
      {"log-does-not-replay",
       [](v1::QuoteBody* b) {
         b->set_registers(1, crypto::Sha256("a kernel nobody signed"));
       },
       "automatic: event log does not replay: register 1"},
      {"mislabelled-image",
       [](v1::QuoteBody* b) {
         for (auto& e : *b->mutable_event_log()) {
           if (e.component() == "kernel") e.set_version(2);
         }
         Reseal(b);
       },
       "automatic: event log mislabels an image: event log claims kernel v2"},
      {"rollback",
       [](v1::QuoteBody* b) {
         auto* c = b->add_counters();
         c->set_component("kernel");
         c->set_value(7);
       },
       "automatic: anti-rollback violation: component kernel runs version 1"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    revocations_.requests.clear();
    HeldKeyDevice h = RegisterHeldKeyDevice();
    v1::QuoteBody body = CraftedBody(h);
    c.edit(&body);
    TrustedState before = Snapshot(h.id);
    auto r = attestor_->Attest(Request(h.id, SignQuote(body, h.key)));
    ASSERT_FALSE(r.ok());
    ExpectUnchanged(before, h.id);
    ASSERT_EQ(revocations_.requests.size(), 1u) << r.status();
    EXPECT_EQ(revocations_.requests[0].device_id, h.id);
    EXPECT_EQ(revocations_.requests[0].tenant_id, kTenantA);
    EXPECT_THAT(revocations_.requests[0].reason,
                ::testing::StartsWith(c.reason));
  }
}

// An attacker who does not hold the device key must never be able to get a
// victim revoked: forged signatures and stale nonces decide nothing.
TEST_F(AttestationTest, Attack_ForgedTamperQuoteDoesNotRevokeVictim) {
  const std::string nonce = Nonce(device_->device_id());
  auto genuine = device_->Quote(nonce);
  ASSERT_TRUE(genuine.ok());
  v1::QuoteBody body = ParseBody(*genuine);
  body.set_tamper_events(1);
  body.set_registers(1, crypto::Sha256("a kernel nobody signed"));
  v1::Quote forged = SignQuote(body, crypto::EcPrivateKey::Generate());
  // Also the genuine signature over an edited body.
  v1::Quote edited = *genuine;
  body.SerializeToString(edited.mutable_body());
  TrustedState before = Snapshot(device_->device_id());

  for (const v1::Quote& q : {forged, edited}) {
    ExpectError(attestor_->Attest(Request(device_->device_id(), q)),
                absl::StatusCode::kUnauthenticated,
                "does not verify under the device key");
  }
  EXPECT_TRUE(revocations_.requests.empty());
  ExpectUnchanged(before, device_->device_id());
  ExpectNonceStillUsable(*device_, nonce);
}

TEST_F(AttestationTest, Attack_ReplayedCompromisedQuoteDoesNotRevokeAgain) {
  // A compromised quote over a nonce that is not (or no longer) outstanding:
  // stale evidence proves nothing about the device now.
  HeldKeyDevice h = RegisterHeldKeyDevice();
  v1::QuoteBody body = CraftedBody(h);
  body.set_tamper_events(1);
  body.set_nonce(std::string(32, 'x'));  // never issued
  ExpectError(attestor_->Attest(Request(h.id, SignQuote(body, h.key))),
              absl::StatusCode::kUnauthenticated, "nonce");
  EXPECT_TRUE(revocations_.requests.empty());
}

TEST_F(AttestationTest, SuccessAndOrdinaryRejectionsDoNotRevoke) {
  ASSERT_TRUE(AttestGenuine(*device_).ok());
  HeldKeyDevice h = RegisterHeldKeyDevice();
  v1::QuoteBody body = CraftedBody(h);
  body.set_certificate_public_key("not a point");
  EXPECT_FALSE(attestor_->Attest(Request(h.id, SignQuote(body, h.key))).ok());
  EXPECT_TRUE(revocations_.requests.empty());
}

TEST_F(AttestationTest, AttestedDeviceCountCountsDevicesOnce) {
  EXPECT_EQ(attestor_->attested_device_count(), 0u);
  ASSERT_TRUE(AttestGenuine(*device_).ok());
  ASSERT_TRUE(AttestGenuine(*device_).ok());
  EXPECT_EQ(attestor_->attested_device_count(), 1u);
  HeldKeyDevice h = RegisterHeldKeyDevice();
  ASSERT_TRUE(
      attestor_->Attest(Request(h.id, SignQuote(CraftedBody(h), h.key))).ok());
  EXPECT_EQ(attestor_->attested_device_count(), 2u);
  // A rejected attempt adds nothing.
  HeldKeyDevice bad = RegisterHeldKeyDevice();
  v1::QuoteBody body = CraftedBody(bad);
  body.set_tamper_events(1);
  EXPECT_FALSE(
      attestor_->Attest(Request(bad.id, SignQuote(body, bad.key))).ok());
  EXPECT_EQ(attestor_->attested_device_count(), 2u);
  // A restarted shard counts what its store holds.
  Attestor restarted(catalog_.get(), store_.get(), nonces_.get(), tokens_.get(),
                     &clock_, Attestor::Options());
  EXPECT_EQ(restarted.attested_device_count(), 2u);
}

TEST_F(AttestationTest, TenantCaKeyNotMatchingItsCertificateKeepsNonce) {
  // A tenant whose wrapped key does not belong to its CA certificate: the
  // catalog accepts it (as before), issuance fails, nothing is consumed.
  ASSERT_TRUE(catalog_
                  ->PutTenant(Tenant("tenant-mismatch", "Mismatch",
                                     GetPlatform().tenant_a_pem,
                                     GetPlatform().tenant_b_key))
                  .ok());
  auto ca = catalog_->GetSharedTenantCa("tenant-mismatch");
  ASSERT_TRUE(ca.ok()) << ca.status();
  EXPECT_EQ((*ca)->issuer, nullptr);
  EXPECT_EQ((*ca)->issuer_status.code(), absl::StatusCode::kInvalidArgument);

  HeldKeyDevice h = RegisterHeldKeyDevice();
  auto d = catalog_->GetDevice(h.id);
  ASSERT_TRUE(d.ok());
  v1::Device moved = *d;
  moved.set_tenant_id("tenant-mismatch");
  catalog_->PutDevice(moved);
  v1::QuoteBody body = CraftedBody(h);
  TrustedState before = Snapshot(h.id);

  ExpectError(attestor_->Attest(Request(h.id, SignQuote(body, h.key))),
              absl::StatusCode::kInvalidArgument,
              "issuer key does not match the issuer certificate");
  ExpectUnchanged(before, h.id);
  EXPECT_TRUE(nonces_->Check(h.id, body.nonce()).ok());
}

TEST_F(AttestationTest, SharedTenantCaIsNotCopiedPerCall) {
  auto a = catalog_->GetSharedTenantCa(kTenantA);
  auto b = catalog_->GetSharedTenantCa(kTenantA);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->get(), b->get());
  ASSERT_NE((*a)->issuer, nullptr);
  EXPECT_EQ((*a)->issuer->public_key(), (*a)->ca_key.PublicKey());
  // The copying accessor still works and carries the same issuer.
  auto copy = catalog_->GetTenantCa(kTenantA);
  ASSERT_TRUE(copy.ok());
  EXPECT_EQ(copy->issuer, (*a)->issuer);
  EXPECT_EQ(copy->ca_cert_pem, (*a)->ca_cert_pem);
}

}  // namespace
}  // namespace sphere::attestation
