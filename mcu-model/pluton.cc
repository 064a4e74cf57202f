#include "mcu-model/pluton.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "mcu-model/image.h"

namespace sphere::mcu {
namespace {

std::string ToString(const std::array<uint8_t, 32>& a) {
  return std::string(reinterpret_cast<const char*>(a.data()), a.size());
}

void FromString(absl::string_view s, std::array<uint8_t, 32>* a) {
  std::memcpy(a->data(), s.data(), std::min(s.size(), a->size()));
}

std::string U64be(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 7; i >= 0; --i, v >>= 8) s[i] = static_cast<char>(v & 0xff);
  return s;
}

// Entropy-detection unit: reject a block equal to the previous one
// (repetition count test) or with too few distinct byte values (a random
// 32-byte block has < 12 distinct values with negligible probability).
bool BlockLooksRandom(absl::string_view block, uint64_t* last_tag) {
  bool seen[256] = {};
  int distinct = 0;
  for (unsigned char c : block) {
    if (!seen[c]) {
      seen[c] = true;
      ++distinct;
    }
  }
  uint64_t tag = 0;
  std::memcpy(&tag, block.data(), std::min<size_t>(8, block.size()));
  bool repeated = (tag == *last_tag);
  *last_tag = tag;
  return distinct >= 12 && !repeated;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Pluton>> Pluton::Create(Options options) {
  std::unique_ptr<Pluton> p(new Pluton());
  if (options.seed.has_value()) {
    p->seeded_ = true;
    p->keygen_seed_ =
        std::make_unique<std::string>(crypto::Sha256(*options.seed));
  }
  if (options.entropy_for_test) {
    p->entropy_for_test_ =
        std::make_unique<EntropySource>(std::move(options.entropy_for_test));
  }
  for (int attempt = 0; attempt < 8; ++attempt) {
    std::string raw = p->RawEntropy(32);
    if (!BlockLooksRandom(raw, &p->last_block_tag_)) {
      return absl::InternalError(
          "Pluton entropy unit rejected the RNG during key generation");
    }
    if (crypto::EcPrivateKey::FromScalar(raw).ok()) {
      FromString(raw, &p->scalar_);
      p->keygen_seed_.reset();
      p->rng_counter_ = 0;
      absl::Status s = p->InitKey();
      if (!s.ok()) return s;
      return p;
    }
  }
  return absl::InternalError("could not generate a valid P-256 scalar");
}

absl::StatusOr<std::unique_ptr<Pluton>> Pluton::FromSecrets(
    absl::string_view secrets, uint64_t rng_counter,
    EntropySource entropy_for_test) {
  if (secrets.size() != 33 ||
      !crypto::EcPrivateKey::FromScalar(secrets.substr(0, 32)).ok()) {
    return absl::InvalidArgumentError("sealed device secrets are invalid");
  }
  std::unique_ptr<Pluton> p(new Pluton());
  FromString(secrets.substr(0, 32), &p->scalar_);
  p->seeded_ = secrets[32] == 1;
  p->rng_counter_ = rng_counter;
  if (entropy_for_test) {
    p->entropy_for_test_ =
        std::make_unique<EntropySource>(std::move(entropy_for_test));
  }
  absl::Status s = p->InitKey();
  if (!s.ok()) return s;
  return p;
}

absl::Status Pluton::InitKey() {
  crypto::EcPrivateKey key = DeviceKey();
  if (!key.valid()) return absl::InternalError("invalid device key");
  std::string pub = key.PublicKey();
  std::string cert = DeriveKey("sphere-cert-key-v1").PublicKey();
  if (pub.size() != 65 || cert.size() != 65) {
    return absl::InternalError("unexpected public key encoding");
  }
  std::memcpy(public_key_.data(), pub.data(), 65);
  std::memcpy(cert_public_.data(), cert.data(), 65);
  return absl::OkStatus();
}

crypto::EcPrivateKey Pluton::DeviceKey() const {
  absl::StatusOr<crypto::EcPrivateKey> k =
      crypto::EcPrivateKey::FromScalar(ToString(scalar_));
  return k.ok() ? *std::move(k) : crypto::EcPrivateKey();
}

crypto::EcPrivateKey Pluton::DeriveKey(absl::string_view label) const {
  const std::string secret = ToString(scalar_);
  for (uint32_t ctr = 0;; ++ctr) {
    absl::StatusOr<crypto::EcPrivateKey> k = crypto::EcPrivateKey::FromScalar(
        crypto::HmacSha256(secret, absl::StrCat(label, "|", ctr)));
    if (k.ok()) return *std::move(k);
  }
}

std::string Pluton::device_id() const {
  return crypto::HexEncode(crypto::Sha256(public_key()));
}

std::string Pluton::RawEntropy(size_t n) {
  if (entropy_for_test_) return (*entropy_for_test_)(n);
  if (!seeded_) return crypto::RandomBytes(n);
  std::string out;
  const std::string seed =
      keygen_seed_ ? *keygen_seed_
                   : crypto::HmacSha256(ToString(scalar_), "sphere-drbg-v1");
  while (out.size() < n) {
    out.append(crypto::HmacSha256(seed, U64be(rng_counter_++)));
  }
  out.resize(n);
  return out;
}

absl::StatusOr<std::string> Pluton::RandomBytes(const SecureWorldToken& t,
                                                size_t n) {
  std::string out;
  while (out.size() < n) {
    std::string block = RawEntropy(32);
    if (block.size() != 32 || !BlockLooksRandom(block, &last_block_tag_)) {
      Tamper(t);
      return absl::FailedPreconditionError(
          "Pluton entropy unit: stuck or low-entropy RNG source (tamper)");
    }
    out.append(block);
  }
  out.resize(n);
  return out;
}

void Pluton::ResetMeasurements(const SecureWorldToken&) {
  for (auto& r : registers_) r.fill(0);
  event_log_.clear();
}

void Pluton::Measure(const SecureWorldToken&, ImageRef image) {
  v1::BootEvent e;
  e.set_register_index(image->register_index);
  e.set_component(image->component());
  e.set_version(image->version());
  e.set_image_hash(image->image_hash);
  if (event_log_.empty()) event_log_.reserve(BootChainComponents().size());
  auto& reg = registers_[image->register_index];
  FromString(ExtendRegister(ToString(reg), EventDigest(e)), &reg);
  event_log_.push_back(std::move(image));
}

std::string Pluton::Register(int i) const { return ToString(registers_[i]); }

namespace {
int BootIndex(absl::string_view component) {
  const auto& names = BootChainComponents();
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == component) return static_cast<int>(i);
  }
  return -1;
}
}  // namespace

uint32_t Pluton::Counter(absl::string_view tenant,
                         absl::string_view component) const {
  if (tenant.empty()) {
    if (int i = BootIndex(component); i >= 0) return boot_counters_[i];
  }
  for (const auto& c : app_counters_) {
    if (c.tenant_id() == tenant && c.component() == component) {
      return c.value();
    }
  }
  return 0;
}

std::vector<v1::AntiRollbackCounter> Pluton::counters() const {
  std::vector<v1::AntiRollbackCounter> out;
  const auto& names = BootChainComponents();
  for (size_t i = 0; i < names.size(); ++i) {
    v1::AntiRollbackCounter c;
    c.set_component(names[i]);
    c.set_value(boot_counters_[i]);
    out.push_back(std::move(c));
  }
  out.insert(out.end(), app_counters_.begin(), app_counters_.end());
  return out;
}

void Pluton::AdvanceCounter(const SecureWorldToken&, absl::string_view tenant,
                            absl::string_view component, uint32_t version) {
  if (tenant.empty()) {
    if (int i = BootIndex(component); i >= 0) {
      boot_counters_[i] = std::max(boot_counters_[i], version);
      return;
    }
  }
  for (auto& c : app_counters_) {
    if (c.tenant_id() == tenant && c.component() == component) {
      c.set_value(std::max(c.value(), version));
      return;
    }
  }
  v1::AntiRollbackCounter c;
  c.set_component(std::string(component));
  c.set_tenant_id(std::string(tenant));
  c.set_value(version);
  app_counters_.push_back(std::move(c));
}

absl::StatusOr<v1::Quote> Pluton::Quote(const SecureWorldToken&,
                                        absl::string_view nonce) const {
  // A tampered Pluton still quotes: the signed tamper count is the evidence
  // the Security Service needs to revoke the device without anyone acting.
  v1::QuoteBody body;
  body.set_format_version(kQuoteFormatVersion);
  body.set_device_id(device_id());
  body.set_nonce(std::string(nonce));
  for (const auto& r : registers_) body.add_registers(ToString(r));
  for (const ImageRef& img : event_log_) {
    v1::BootEvent* e = body.add_event_log();
    e->set_register_index(img->register_index);
    e->set_component(img->component());
    e->set_version(img->version());
    e->set_image_hash(img->image_hash);
  }
  for (const auto& c : counters()) *body.add_counters() = c;
  body.set_boot_count(boot_count_);
  body.set_reset_count(reset_count_);
  body.set_event_log_digest(EventLogDigest(body.event_log()));
  body.set_certificate_public_key(certificate_public_key());
  body.set_tamper_events(tamper_events_);
  v1::Quote q;
  body.SerializeToString(q.mutable_body());
  absl::StatusOr<std::string> sig =
      DeviceKey().Sign(absl::StrCat(kQuoteContext, q.body()));
  if (!sig.ok()) return sig.status();
  q.set_signature(*std::move(sig));
  return q;
}

absl::StatusOr<std::string> Pluton::SignWithCertificateKey(
    const SecureWorldToken&, absl::string_view message) const {
  if (tampered_) {
    return absl::FailedPreconditionError(
        "Pluton tamper detected: signing is disabled");
  }
  return DeriveKey("sphere-cert-key-v1").Sign(message);
}

std::string Pluton::ExportCertificateKeyForTls(const SecureWorldToken&) const {
  return DeriveKey("sphere-cert-key-v1").ToPem();
}

absl::StatusOr<std::string> Pluton::SealStorage(const SecureWorldToken& t,
                                                absl::string_view plaintext,
                                                absl::string_view context) {
  absl::StatusOr<std::string> nonce = RandomBytes(t, 12);
  if (!nonce.ok()) return nonce.status();
  std::string key =
      crypto::HmacSha256(ToString(scalar_), "sphere-storage-key-v1");
  absl::StatusOr<std::string> sealed =
      crypto::AesGcmSeal(key, *nonce, plaintext, context);
  if (!sealed.ok()) return sealed.status();
  return absl::StrCat(*nonce, *sealed);
}

absl::StatusOr<std::string> Pluton::UnsealStorage(
    const SecureWorldToken&, absl::string_view sealed,
    absl::string_view context) const {
  if (sealed.size() < 12 + 16) {
    return absl::UnauthenticatedError("sealed storage blob too short");
  }
  std::string key =
      crypto::HmacSha256(ToString(scalar_), "sphere-storage-key-v1");
  return crypto::AesGcmOpen(key, sealed.substr(0, 12), sealed.substr(12),
                            context);
}

std::string Pluton::SealableSecrets(const SecureWorldToken&) const {
  // One explicit byte: a "\x00" literal would convert to an empty string.
  return absl::StrCat(ToString(scalar_), std::string(1, seeded_ ? 1 : 0));
}

void Pluton::RestoreCounters(
    const SecureWorldToken& t,
    const std::vector<v1::AntiRollbackCounter>& counters, uint64_t boots,
    uint64_t resets, uint32_t tamper_events, bool tampered) {
  boot_counters_.fill(0);
  app_counters_.clear();
  for (const auto& c : counters) {
    AdvanceCounter(t, c.tenant_id(), c.component(), c.value());
  }
  boot_count_ = boots;
  reset_count_ = resets;
  tamper_events_ = tamper_events;
  tampered_ = tampered;
}

size_t Pluton::FootprintBytes() const {
  auto heap = [](const std::string& s) {
    return s.capacity() > 15 ? s.capacity() + 1 : 0;
  };
  size_t n = sizeof(Pluton);
  n += event_log_.capacity() * sizeof(ImageRef);
  n += app_counters_.capacity() * sizeof(app_counters_[0]);
  for (const auto& c : app_counters_) {
    n += heap(c.component()) + heap(c.tenant_id());
  }
  if (entropy_for_test_) n += sizeof(EntropySource);
  return n;
}

}  // namespace sphere::mcu
