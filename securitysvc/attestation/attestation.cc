#include "securitysvc/attestation/attestation.h"

#include <algorithm>
#include <cstring>
#include <string_view>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "common/util/log.h"
#include "common/util/metrics.h"
#include "mcu-model/image.h"
#include "mcu-model/quote.h"

namespace sphere::attestation {
namespace {

metrics::CounterMetric* AttestCounter() {
  static auto* c =
      metrics::Counter("sphere_attestations_total", "Attestations by outcome");
  return c;
}

int64_t ToMs(absl::Time t) { return absl::ToUnixMillis(t); }

// HistoryKey: "<id>|<ring>|NN", ring 'a' (successes) or 'r' (refusals).
std::string HistoryKey(absl::string_view device_id, char ring, uint32_t count) {
  return absl::StrFormat("%s|%c|%02d", device_id, ring,
                         count % kMaxHistoryEntries);
}

// CutUtf8: `s` cut to at most `max` bytes, never inside a UTF-8 sequence.
void CutUtf8(std::string* s, size_t max) {
  if (s->size() <= max) return;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>((*s)[n]) & 0xC0) == 0x80) --n;
  s->resize(n);
}

// BoundedHistoryEntry: `r` with every string cut to the history limits and
// at most kMaxHistoryVersions measured versions (history_count cleared).
v1::AttestationRecord BoundedHistoryEntry(const v1::AttestationRecord& r) {
  v1::AttestationRecord e = r;
  e.clear_history_count();
  CutUtf8(e.mutable_outcome(), kMaxHistoryOutcomeBytes);
  CutUtf8(e.mutable_reason(), kMaxHistoryReasonBytes);
  if (e.versions_size() > kMaxHistoryVersions ||
      std::any_of(e.versions().begin(), e.versions().end(), [](const auto& kv) {
        return kv.first.size() > kMaxHistoryComponentBytes;
      })) {
    e.clear_versions();
    int n = 0;
    for (const auto& [c, v] : r.versions()) {
      if (n++ >= kMaxHistoryVersions) break;
      std::string name = c;
      CutUtf8(&name, kMaxHistoryComponentBytes);
      (*e.mutable_versions())[name] = v;
    }
  }
  return e;
}

// HistoryEntryBytes: BoundedHistoryEntry(r) serialized, without copying
// `r` when it is already within the history limits (every record the
// attestation path writes: a fixed outcome, no reason, the device's few
// measured components).
std::string HistoryEntryBytes(const v1::AttestationRecord& r) {
  const bool within =
      r.history_count() == 0 && r.outcome().size() <= kMaxHistoryOutcomeBytes &&
      r.reason().size() <= kMaxHistoryReasonBytes &&
      r.versions_size() <= kMaxHistoryVersions &&
      std::none_of(r.versions().begin(), r.versions().end(),
                   [](const auto& kv) {
                     return kv.first.size() > kMaxHistoryComponentBytes;
                   });
  return within ? r.SerializeAsString()
                : BoundedHistoryEntry(r).SerializeAsString();
}

// HistoryCountOf: the history_count of a serialized latest-success record
// (0 when it does not parse: the ring then restarts at slot 0, still bounded).
uint32_t HistoryCountOf(absl::string_view bytes) {
  v1::AttestationRecord r;
  return r.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))
             ? r.history_count()
             : 0;
}

// HexNibble: the value of a hex digit, or -1.
int HexNibble(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// NotSynced: a shard whose catalog view has not applied a complete snapshot
// knows devices before their images (or nothing at all); answering would
// report genuine devices as running unsigned images.
absl::Status NotSynced() {
  return absl::UnavailableError(
      "catalog not yet synced: this shard is still loading the catalog from "
      "management; retry shortly");
}

}  // namespace

std::vector<std::string> ColumnFamilies() { return {kDevicesCf, kHistoryCf}; }

absl::Status ValidateDeviceId(absl::string_view id) {
  if (id.size() != 64) {
    return absl::InvalidArgumentError(absl::StrCat(
        "device id must be 64 hex characters (SHA-256 of the device public "
        "key); got ",
        id.size(), " characters"));
  }
  for (char c : id) {
    if (!absl::ascii_isxdigit(c) || absl::ascii_isupper(c)) {
      return absl::InvalidArgumentError(
          "device id must be lowercase hexadecimal");
    }
  }
  return absl::OkStatus();
}

Attestor::Attestor(const catalog::CatalogView* catalog, store::Store* store,
                   NonceStore* nonces, const auth::SessionTokens* tokens,
                   Clock* clock, Options options)
    : catalog_(catalog),
      store_(store),
      nonces_(nonces),
      tokens_(tokens),
      clock_(clock),
      options_(options),
      own_writer_(options.record_writer != nullptr
                      ? nullptr
                      : std::make_unique<DirectRecordWriter>(store)),
      writer_(options.record_writer != nullptr ? options.record_writer
                                               : own_writer_.get()) {
  uint64_t n = 0;
  auto s = store_->Scan(
      kDevicesCf, "", [this, &n](absl::string_view id, absl::string_view v) {
        ++n;
        IdKey key;
        if (IdKeyOf(id, &key)) {
          HistoryStripe& stripe = StripeOf(key);
          absl::MutexLock l(&stripe.mu);
          stripe.history_count[key] = HistoryCountOf(v);
        }
        return true;
      });
  if (!s.ok()) {
    log::Warning("cannot count attested devices",
                 {{"error", std::string(s.message())}});
  }
  attested_devices_ = n;
}

absl::Status Attestor::MayChallenge(absl::string_view device_id) const {
  if (auto s = ValidateDeviceId(device_id); !s.ok()) return s;
  if (!catalog_->synced()) return NotSynced();
  if (auto s = catalog_->CheckFresh(); !s.ok()) return s;  // bounded lag
  auto device = catalog_->GetDevice(device_id);
  if (!device.ok()) return device.status();
  if (device->state() == v1::REVOKED) {
    return absl::PermissionDeniedError(
        absl::StrCat("device ", device_id,
                     " is revoked: it can no longer attest or receive "
                     "certificates ('spherectl device show' gives the "
                     "reason)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::GetChallengeResponse> Attestor::GetChallenge(
    absl::string_view device_id) {
  if (auto s = MayChallenge(device_id); !s.ok()) return s;
  return IssueChallenge(device_id);
}

absl::StatusOr<v1::GetChallengeResponse> Attestor::IssueChallenge(
    absl::string_view device_id) {
  auto c = nonces_->Issue(device_id);
  if (!c.ok()) return c.status();
  v1::GetChallengeResponse resp;
  resp.set_nonce(c->nonce);
  resp.set_expires_unix_ms(ToMs(c->expires));
  return resp;
}

size_t Attestor::IdKeyHash::operator()(const IdKey& k) const {
  // Device ids are SHA-256 digests: any 8 of their bytes are uniform.
  uint64_t h;
  memcpy(&h, k.data(), sizeof(h));
  return static_cast<size_t>(h);
}

bool Attestor::IdKeyOf(absl::string_view device_id, IdKey* key) {
  if (device_id.size() != 2 * key->size()) return false;
  for (size_t i = 0; i < key->size(); ++i) {
    const int hi = HexNibble(device_id[2 * i]);
    const int lo = HexNibble(device_id[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    (*key)[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

absl::StatusOr<v1::AttestResponse> Attestor::Attest(
    const v1::AttestRequest& request) {
  absl::Notification done;
  absl::StatusOr<v1::AttestResponse> result;
  AttestAsync(request, [&](absl::StatusOr<v1::AttestResponse> r) {
    result = std::move(r);
    done.Notify();
  });
  done.WaitForNotification();
  return result;
}

void Attestor::AttestAsync(const v1::AttestRequest& request, AttestDone done) {
  Compromise compromise;
  absl::StatusOr<Prepared> prepared = Verify(request, &compromise);
  if (!prepared.ok()) {
    Reject(request, prepared.status(), compromise);
    done(prepared.status());
    return;
  }
  // Verify validated the id; the credential-named id was copied into the
  // request by the adapter.
  const std::string& device_id = request.device_id();
  // The success ring's slot: the device's count in memory (no read of its
  // previous record). Taken now, so two concurrent attestations of one
  // device get two slots; given back if the write fails and nothing took a
  // later slot meanwhile, so a failed write leaves the ring as it was.
  IdKey key;
  if (!IdKeyOf(device_id, &key)) {  // Verify accepted it: cannot happen
    absl::Status s = absl::InternalError("device id is not hexadecimal");
    nonces_->Restore(device_id, prepared->nonce, prepared->nonce_expires);
    done(s);
    return;
  }
  HistoryStripe& stripe = StripeOf(key);
  bool first = false;
  uint32_t history_count = 0;
  {
    absl::MutexLock l(&stripe.mu);
    auto [it, inserted] = stripe.history_count.try_emplace(key, 0);
    first = inserted;
    history_count = it->second++;
  }
  auto p = std::make_shared<Prepared>(*std::move(prepared));
  store::WriteBatch batch;
  AddRecordWithHistory(&batch, &p->record, history_count);
  writer_->Write(std::move(batch), [this, p, first, history_count, key,
                                    &stripe, device_id = device_id,
                                    done = std::move(done)](
                                       absl::Status written) mutable {
    if (!written.ok()) {
      {
        absl::MutexLock l(&stripe.mu);
        auto it = stripe.history_count.find(key);
        if (it != stripe.history_count.end() &&
            it->second == history_count + 1) {
          if (first) {
            stripe.history_count.erase(it);
          } else {
            it->second = history_count;
          }
        }
      }
      nonces_->Restore(device_id, p->nonce, p->nonce_expires);
      absl::Status s = absl::UnavailableError(absl::StrCat(
          "could not record the attestation (", written.message(), "); retry"));
      v1::AttestRequest named;
      named.set_device_id(device_id);
      Reject(named, s, Compromise());
      done(s);
      return;
    }
    if (first) ++attested_devices_;
    AttestCounter()->Increment(absl::StrCat("outcome=\"", p->outcome, "\""));
    done(std::move(p->response));
  });
}

void Attestor::Reject(const v1::AttestRequest& request,
                      const absl::Status& status,
                      const Compromise& compromise) {
  AttestCounter()->Increment(absl::StrCat(
      "outcome=\"", absl::StatusCodeToString(status.code()), "\""));
  if (ValidateDeviceId(request.device_id()).ok()) {
    RecordFailure(request.device_id(), status);
  }
  log::Info("attestation rejected",
            {{"device", request.device_id()},
             {"code", absl::StatusCodeToString(status.code())},
             {"reason", std::string(status.message())}});
  if (!compromise.reason.empty() && options_.revocation_sink != nullptr) {
    log::Warning(
        "requesting automatic revocation",
        {{"device", request.device_id()}, {"reason", compromise.reason}});
    options_.revocation_sink->RequestRevocation(
        {request.device_id(), compromise.tenant_id,
         absl::StrCat("automatic: ", compromise.reason),
         compromise.unknown_image_hash});
  }
}

absl::StatusOr<Attestor::Prepared> Attestor::Verify(
    const v1::AttestRequest& request, Compromise* compromise) {
  const std::string& device_id = request.device_id();
  if (auto s = ValidateDeviceId(device_id); !s.ok()) return s;
  if (!catalog_->synced()) return NotSynced();
  if (auto s = catalog_->CheckFresh(); !s.ok()) return s;  // bounded lag
  // 1. Registered, claimed, not revoked.
  auto device = catalog_->GetDevice(device_id);
  if (!device.ok()) return device.status();
  if (device->state() == v1::REVOKED) {
    return absl::PermissionDeniedError(
        absl::StrCat("device ", device_id, " is revoked"));
  }
  if (device->tenant_id().empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "device ", device_id,
        " is not claimed; claim it with spherectl device claim --device ",
        device_id));
  }
  // 2. Signature by the registered device key.
  auto body = mcu::ParseAndVerifyQuote(request.quote(), device->public_key());
  if (!body.ok()) return body.status();
  if (body->device_id() != device_id) {
    return absl::UnauthenticatedError(
        absl::StrCat("quote names device ", body->device_id(),
                     " but the request names ", device_id));
  }
  // 3. Nonce: check first, consume only once everything else verified, so a
  // forged or broken quote never burns the device's challenge.
  if (auto s = nonces_->Check(device_id, body->nonce()); !s.ok()) return s;
  // From here on the quote is signed by the genuine device key over a fresh
  // nonce issued to it: an integrity failure proves the device compromised.
  auto compromised = [&](absl::string_view what, absl::Status s) {
    compromise->tenant_id = device->tenant_id();
    compromise->unknown_image_hash.clear();
    compromise->reason = absl::StrCat(what, ": ", s.message());
    return s;
  };
  // 4. Event log and registers.
  if (auto s = mcu::CheckQuoteConsistency(*body); !s.ok()) {
    return compromised("event log does not replay", s);
  }
  if (body->tamper_events() > 0) {
    return compromised(
        "tamper",
        absl::PermissionDeniedError(absl::StrCat(
            "device ", device_id, " reports ", body->tamper_events(),
            " tamper event(s): Pluton refuses trust after tampering")));
  }
  // 5. Every measured image is platform-signed for this device's tenant (or
  // a platform OS image) and not rolled back. Versions and anti-rollback
  // counters are compared per component of this tenant only: another
  // tenant's app named like ours ("app:dw100" v999) is refused here, so it
  // can neither pass as ours nor stand in for our component's version.
  std::map<std::string, uint32_t> measured;
  for (const auto& e : body->event_log()) {
    auto image =
        catalog_->FindImageForTenant(e.image_hash(), device->tenant_id());
    if (absl::IsPermissionDenied(image.status())) {
      // The platform signed it (for another tenant): this proves nothing
      // about the device's integrity, so no automatic revocation.
      return absl::PermissionDeniedError(
          absl::StrCat("component ", e.component(), " v", e.version(),
                       " is not an image of the device's tenant: ",
                       image.status().message()));
    }
    if (!image.ok()) {
      if (!absl::IsNotFound(image.status())) return image.status();
      absl::Status unsigned_image = compromised(
          "unsigned image",
          absl::PermissionDeniedError(absl::StrCat(
              "component ", e.component(), " version ", e.version(),
              " runs an image the platform never signed (hash ",
              crypto::HexEncode(e.image_hash()).substr(0, 16), "...)")));
      compromise->unknown_image_hash = e.image_hash();
      return unsigned_image;
    }
    if (image->component() != e.component() ||
        image->version() != e.version()) {
      return compromised("event log mislabels an image",
                         absl::PermissionDeniedError(absl::StrCat(
                             "event log claims ", e.component(), " v",
                             e.version(), " but the measured image is ",
                             image->component(), " v", image->version())));
    }
    // A boot-chain component name counts only when measured from an image
    // of that kind: a platform-signed application named "kernel" must not
    // stand in for the kernel in the version and anti-rollback checks.
    // (The platform signed it, so this proves nothing about the device: no
    // automatic revocation.)
    const v1::ImageKind boot_kind = mcu::KindForComponent(image->component());
    if (boot_kind != v1::IMAGE_KIND_UNSPECIFIED && image->kind() != boot_kind) {
      return absl::PermissionDeniedError(absl::StrCat(
          "boot-chain component ", e.component(), " v", e.version(),
          " is measured from an application image (",
          v1::ImageKind_Name(image->kind()), "), not a platform OS image"));
    }
    measured[e.component()] = e.version();
  }
  for (const auto& c : body->counters()) {
    // Counters are per (tenant, component) on the device: another tenant's
    // app counter (e.g. a side-loaded "app:dw100" v999) says nothing about
    // this tenant's component of that name.
    if (!c.tenant_id().empty() && c.tenant_id() != device->tenant_id()) {
      continue;
    }
    auto it = measured.find(c.component());
    if (it != measured.end() && it->second < c.value()) {
      return compromised(
          "anti-rollback violation",
          absl::PermissionDeniedError(absl::StrCat(
              "component ", c.component(), " runs version ", it->second,
              " below its anti-rollback counter ", c.value())));
    }
  }
  // 6. Versions against what the group should run.
  std::vector<std::string> outdated;
  for (const auto& [component, image] : catalog_->ExpectedImages(*device)) {
    auto it = measured.find(component);
    if (it == measured.end() || it->second < image.version()) {
      outdated.push_back(component);
    }
  }
  const bool update_only = !outdated.empty();
  const std::string& cert_key = body->certificate_public_key();
  if (cert_key.size() != 65 || cert_key[0] != 0x04) {
    return absl::InvalidArgumentError(
        "quote carries no valid certificate public key (65-byte SEC1 point)");
  }
  auto shared_ca = catalog_->GetSharedTenantCa(device->tenant_id());
  if (!shared_ca.ok()) return shared_ca.status();
  const catalog::TenantCa& ca = **shared_ca;

  // Everything verified: now consume the nonce (exactly once). If anything
  // below fails, the nonce goes back so the device can retry with it.
  auto nonce_expires = nonces_->Consume(device_id, body->nonce());
  if (!nonce_expires.ok()) return nonce_expires.status();
  auto restore_nonce = [&] {
    nonces_->Restore(device_id, body->nonce(), *nonce_expires);
  };

  absl::Time now = clock_->Now();
  crypto::CertificateSpec spec;
  spec.common_name = device_id;
  spec.organization = ca.name;
  spec.subject_public_key = cert_key;
  spec.not_before = now - options_.backdate;
  spec.not_after = now + options_.certificate_lifetime;
  spec.usage = crypto::KeyUsage::kClientAuth;
  spec.claims.device_id = device_id;
  spec.claims.tenant_id = device->tenant_id();
  spec.claims.product_id = device->product_id();
  spec.claims.device_group_id = device->device_group_id();
  spec.claims.scope = std::string(auth::ScopeName(
      update_only ? auth::Scope::kUpdateOnly : auth::Scope::kFull));
  spec.claims.epoch = absl::StrCat(device->ownership_epoch());
  // The tenant's issuer was built when the catalog applied the tenant (CA
  // certificate parsed, signing key ready); it reports the serial it chose.
  absl::StatusOr<crypto::IssuedCertificate> leaf =
      ca.issuer != nullptr ? ca.issuer->IssueWithSerial(spec)
      : !ca.issuer_status.ok()
          ? absl::StatusOr<crypto::IssuedCertificate>(ca.issuer_status)
          : absl::InternalError(absl::StrCat("tenant ", ca.tenant_id,
                                             " has no certificate issuer"));
  if (!leaf.ok()) {
    restore_nonce();
    return leaf.status();
  }

  auth::DeviceContext ctx;
  ctx.device_id = device_id;
  ctx.tenant_id = device->tenant_id();
  ctx.product_id = device->product_id();
  ctx.device_group_id = device->device_group_id();
  ctx.scope = update_only ? auth::Scope::kUpdateOnly : auth::Scope::kFull;
  ctx.certificate_serial = leaf->serial_hex;
  ctx.ownership_epoch = device->ownership_epoch();
  ctx.not_after = spec.not_after;

  Prepared prepared;
  prepared.nonce = body->nonce();
  prepared.nonce_expires = *nonce_expires;
  prepared.outcome = update_only ? "UPDATE_REQUIRED" : "UP_TO_DATE";
  v1::AttestResponse& resp = prepared.response;
  resp.set_outcome(update_only ? v1::UPDATE_REQUIRED : v1::UP_TO_DATE);
  resp.set_certificate_chain_pem(absl::StrCat(leaf->pem, ca.ca_cert_pem));
  resp.set_session_token(tokens_->Issue(ctx));
  resp.set_not_after_unix_ms(ToMs(spec.not_after));
  resp.set_tenant_id(device->tenant_id());
  resp.set_product_id(device->product_id());
  resp.set_device_group_id(device->device_group_id());
  for (const auto& c : outdated) resp.add_outdated_components(c);
  resp.set_certificate_serial(leaf->serial_hex);

  v1::AttestationRecord rec;
  v1::AttestationRecord* record = &rec;
  record->set_device_id(device_id);
  record->set_time_unix_ms(ToMs(now));
  record->set_success(true);
  record->set_outcome(update_only ? "UPDATE_REQUIRED" : "UP_TO_DATE");
  if (update_only) {
    record->set_reason(
        absl::StrCat("outdated: ", absl::StrJoin(outdated, ", ")));
  }
  record->set_certificate_serial(leaf->serial_hex);
  record->set_certificate_not_after_unix_ms(ToMs(spec.not_after));
  for (const auto& [c, v] : measured) (*record->mutable_versions())[c] = v;
  record->set_tenant_id(device->tenant_id());
  record->set_device_group_id(device->device_group_id());
  prepared.record = std::move(rec);
  return prepared;
}

void Attestor::AddRecordWithHistory(store::WriteBatch* batch,
                                    v1::AttestationRecord* record,
                                    uint32_t history_count) {
  batch->Put(kHistoryCf, HistoryKey(record->device_id(), 'a', history_count),
             HistoryEntryBytes(*record));
  record->set_history_count(history_count + 1);
  batch->Put(kDevicesCf, record->device_id(), record->SerializeAsString());
}

void Attestor::RecordFailure(absl::string_view device_id,
                             const absl::Status& status) {
  // Only registered devices get a history (no unbounded writes for junk ids).
  if (!catalog_->GetDevice(device_id).ok()) return;
  absl::Time now = clock_->Now();
  uint32_t slot = 0;
  {
    absl::MutexLock l(&failure_mu_);
    auto it = last_failure_record_.find(device_id);
    if (it != last_failure_record_.end() &&
        now - it->second.time < options_.failure_record_interval) {
      static auto* skipped = metrics::Counter(
          "sphere_attestation_failures_not_recorded_total",
          "Rejected attestations not written to device history (rate limit)");
      skipped->Increment();
      return;
    }
    if (last_failure_record_.size() >= (1u << 20)) last_failure_record_.clear();
    auto [rec, inserted] = last_failure_record_.try_emplace(device_id);
    if (inserted) {
      // Not seen since a restart (or the table was cleared): start where
      // time puts us, so a restart does not always overwrite slot 0.
      rec->second.next_slot = static_cast<uint32_t>(
          ToMs(now) /
          std::max<int64_t>(
              1, absl::ToInt64Milliseconds(options_.failure_record_interval)));
    }
    rec->second.time = now;
    slot = rec->second.next_slot++;
  }
  v1::AttestationRecord r;
  r.set_device_id(std::string(device_id));
  r.set_time_unix_ms(ToMs(now));
  r.set_success(false);
  r.set_outcome(absl::StatusCodeToString(status.code()));
  r.set_reason(std::string(status.message()));
  store::WriteBatch batch;
  batch.Put(kHistoryCf, HistoryKey(device_id, 'r', slot),
            HistoryEntryBytes(r));
  // Not waited for: the caller's rejection does not depend on it.
  writer_->Write(
      std::move(batch), [id = std::string(device_id)](absl::Status s) {
        if (!s.ok()) {
          log::Warning("could not record failed attestation",
                       {{"device", id}, {"error", std::string(s.message())}});
        }
      });
}

absl::StatusOr<v1::AttestationRecord> Attestor::LastRecord(
    absl::string_view device_id) {
  auto bytes = store_->Get(kDevicesCf, device_id);
  if (!bytes.ok()) return bytes.status();
  v1::AttestationRecord r;
  if (!r.ParseFromString(*bytes)) {
    return absl::DataLossError(
        absl::StrCat("corrupt attestation record for ", device_id));
  }
  return r;
}

absl::StatusOr<std::vector<v1::AttestationRecord>> Attestor::History(
    absl::string_view device_id) {
  std::vector<v1::AttestationRecord> out;
  absl::Status parse_error;
  auto s = store_->Scan(kHistoryCf, absl::StrCat(device_id, "|"),
                        [&](absl::string_view, absl::string_view v) {
                          v1::AttestationRecord r;
                          if (!r.ParseFromArray(v.data(), v.size())) {
                            parse_error = absl::DataLossError(
                                "corrupt attestation history record");
                            return false;
                          }
                          out.push_back(std::move(r));
                          return true;
                        });
  if (!s.ok()) return s;
  if (!parse_error.ok()) return parse_error;
  std::stable_sort(
      out.begin(), out.end(),
      [](const v1::AttestationRecord& a, const v1::AttestationRecord& b) {
        return a.time_unix_ms() < b.time_unix_ms();
      });
  return out;
}

}  // namespace sphere::attestation
