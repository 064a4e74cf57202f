// Device persistence: Serialize/Restore of the sealed device state and
// the memory footprint.
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"
#include "mcu-model/device.h"
#include "mcu-model/device_internal.h"
#include "mcu-model/image.h"

namespace sphere::mcu {

using device_internal::RollbackFloor;

// ---------------------------------------------------------- persistence

namespace {

std::string SealKey(const DeviceType& type) {
  return crypto::HmacSha256(type.fuse_key, "sphere-seal-v1");
}

void PutSlot(const std::vector<ImageRef>& slot,
             google::protobuf::RepeatedPtrField<v1::StoredImage>* out) {
  for (const ImageRef& i : slot) *out->Add() = i->stored;
}

absl::StatusOr<std::vector<ImageRef>> GetSlot(
    const google::protobuf::RepeatedPtrField<v1::StoredImage>& in) {
  std::vector<ImageRef> out;
  for (const v1::StoredImage& s : in) {
    absl::StatusOr<ImageRef> r = InternImage(s);
    if (!r.ok()) return r.status();
    out.push_back(*std::move(r));
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> Device::Serialize() {
  const SecureWorldToken& t = sm_->token();
  absl::StatusOr<std::string> nonce = pluton_->RandomBytes(t, 12);
  if (!nonce.ok())
    return Record(v1::ErrorEvent::TAMPER, "pluton", nonce.status());
  v1::PersistedDeviceState st;
  st.set_format_version(1);
  st.set_device_type(type_->name);
  for (const auto& c : pluton_->counters()) *st.add_counters() = c;
  st.set_boot_count(pluton_->boot_count());
  st.set_reset_count(pluton_->reset_count());
  st.set_tamper_events(pluton_->tamper_events());
  st.set_tampered(pluton_->tampered());
  st.set_next_error_sequence(next_error_seq_);
  SaveErrorRing(&st);  // device_errors.cc
  st.set_active_os_slot(active_os_);
  st.set_os_boot_attempts(os_attempts_);
  st.set_os_pending_confirm(os_pending_);
  st.set_active_app_slot(active_app_);
  st.set_os_staged(os_staged_);
  st.set_app_staged(app_staged_);
  st.set_app_pending_confirm(app_pending_);
  st.set_app_update_crashes(app_update_crashes_);
  st.set_deferral_started_unix_ms(deferral_started_ms_);
  st.set_deferred_until_unix_ms(deferred_until_ms_);
  for (const ImageRef& i : secure_world_) {
    if (i) *st.add_secure_world_images() = i->stored;
  }
  PutSlot(os_slots_[0], st.mutable_os_slot_a());
  PutSlot(os_slots_[1], st.mutable_os_slot_b());
  PutSlot(app_slots_[0], st.mutable_app_slot_a());
  PutSlot(app_slots_[1], st.mutable_app_slot_b());
  st.set_rng_counter(pluton_->rng_counter());
  st.set_device_public_key(pluton_->public_key());
  std::string aad = st.SerializeAsString();
  absl::StatusOr<std::string> sealed = crypto::AesGcmSeal(
      SealKey(*type_), *nonce, pluton_->SealableSecrets(t), aad);
  if (!sealed.ok()) return sealed.status();
  st.set_seal_nonce(*nonce);
  st.set_sealed_secrets(*std::move(sealed));
  return st.SerializeAsString();
}

absl::StatusOr<std::unique_ptr<Device>> Device::Restore(
    std::shared_ptr<const DeviceType> type,
    absl::string_view image_signing_public_key, absl::string_view serialized,
    Options options) {
  if (type == nullptr) return absl::InvalidArgumentError("no device type");
  v1::PersistedDeviceState st;
  if (!st.ParseFromArray(serialized.data(),
                         static_cast<int>(serialized.size()))) {
    return absl::InvalidArgumentError("persisted device state does not parse");
  }
  if (st.device_type() != type->name) {
    return absl::InvalidArgumentError(
        absl::StrCat("persisted state is for device type ", st.device_type()));
  }
  v1::PersistedDeviceState aad_msg = st;
  aad_msg.clear_seal_nonce();
  aad_msg.clear_sealed_secrets();
  absl::StatusOr<std::string> secrets =
      crypto::AesGcmOpen(SealKey(*type), st.seal_nonce(), st.sealed_secrets(),
                         aad_msg.SerializeAsString());
  if (!secrets.ok()) {
    return absl::UnauthenticatedError(
        "persisted device state does not unseal under this device type's "
        "fuse key (edited or foreign state)");
  }
  absl::StatusOr<std::unique_ptr<Pluton>> pluton = Pluton::FromSecrets(
      *secrets, st.rng_counter(), std::move(options.entropy_for_test));
  if (!pluton.ok()) return pluton.status();
  if ((*pluton)->public_key() != st.device_public_key()) {
    return absl::UnauthenticatedError(
        "sealed key does not match the persisted device identity");
  }
  std::unique_ptr<Device> d(new Device(
      std::move(type), std::string(image_signing_public_key), options.clock));
  d->pluton_ = *std::move(pluton);
  d->sm_ = std::make_unique<SecurityMonitor>(d->pluton_.get());
  // Counters persisted before per-tenant keys have no tenant_id: they restore
  // as tenant "" (see RollbackFloor).
  std::vector<v1::AntiRollbackCounter> counters(st.counters().begin(),
                                                st.counters().end());
  d->pluton_->RestoreCounters(d->sm_->token(), counters, st.boot_count(),
                              st.reset_count(), st.tamper_events(),
                              st.tampered());
  d->next_error_seq_ = st.next_error_sequence();
  d->RestoreErrorRing(st);  // device_errors.cc
  d->active_os_ = st.active_os_slot() & 1;
  d->os_attempts_ = static_cast<uint8_t>(st.os_boot_attempts());
  d->os_pending_ = st.os_pending_confirm();
  d->active_app_ = st.active_app_slot() & 1;
  d->os_staged_ = st.os_staged();
  d->app_staged_ = st.app_staged();
  d->app_pending_ = st.app_pending_confirm();
  d->app_update_crashes_ = st.app_update_crashes();
  d->deferral_started_ms_ = st.deferral_started_unix_ms();
  d->deferred_until_ms_ = st.deferred_until_unix_ms();
  absl::StatusOr<std::vector<ImageRef>> sw = GetSlot(st.secure_world_images());
  if (!sw.ok()) return sw.status();
  for (size_t i = 0; i < sw->size() && i < 2; ++i)
    d->secure_world_[i] = (*sw)[i];
  const google::protobuf::RepeatedPtrField<v1::StoredImage>* slots[4] = {
      &st.os_slot_a(), &st.os_slot_b(), &st.app_slot_a(), &st.app_slot_b()};
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<std::vector<ImageRef>> s = GetSlot(*slots[i]);
    if (!s.ok()) return s.status();
    (i < 2 ? d->os_slots_[i] : d->app_slots_[i - 2]) = *std::move(s);
  }
  return d;
}

size_t Device::FootprintBytes() const {
  auto heap = [](const std::string& s) {
    return s.capacity() > 15 ? s.capacity() + 1 : 0;
  };
  size_t n =
      sizeof(Device) + sizeof(SecurityMonitor) + pluton_->FootprintBytes();
  for (const auto& s : os_slots_) n += s.capacity() * sizeof(ImageRef);
  for (const auto& s : app_slots_) n += s.capacity() * sizeof(ImageRef);
  n += apps_.capacity() * sizeof(App);
  for (const App& a : apps_) {
    n += heap(a.storage) + a.inbox.capacity() * sizeof(std::string);
    for (const std::string& m : a.inbox) n += heap(m);
  }
  n += peripheral_owner_.capacity();
  for (const v1::ErrorEvent& e : errors_) n += e.SpaceUsedLong();
  n += (errors_.capacity() - errors_.size()) * sizeof(v1::ErrorEvent);
  return n;
}

}  // namespace sphere::mcu
