#include "mcu-model/image.h"

#include <atomic>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "mcu-model/image_signature_cache.h"

namespace sphere::mcu {

const std::vector<std::string>& BootChainComponents() {
  static const auto* kList = new std::vector<std::string>{
      std::string(kPlutonRuntime), std::string(kSecurityMonitor),
      std::string(kBootloader), std::string(kKernel), std::string(kOsServices)};
  return *kList;
}

v1::ImageKind KindForComponent(absl::string_view component) {
  if (component == kPlutonRuntime) return v1::IMAGE_KIND_PLUTON_RUNTIME;
  if (component == kSecurityMonitor) return v1::IMAGE_KIND_SECURITY_MONITOR;
  if (component == kBootloader) return v1::IMAGE_KIND_BOOTLOADER;
  if (component == kKernel) return v1::IMAGE_KIND_KERNEL;
  if (component == kOsServices) return v1::IMAGE_KIND_OS_SERVICES;
  return v1::IMAGE_KIND_UNSPECIFIED;
}

int RegisterForKind(v1::ImageKind kind) {
  switch (kind) {
    case v1::IMAGE_KIND_PLUTON_RUNTIME:
    case v1::IMAGE_KIND_SECURITY_MONITOR:
      return 0;
    case v1::IMAGE_KIND_BOOTLOADER:
    case v1::IMAGE_KIND_KERNEL:
      return 1;
    case v1::IMAGE_KIND_OS_SERVICES:
      return 2;
    default:
      return 3;
  }
}

std::string AppComponentName(absl::string_view component_id) {
  return absl::StrCat("app:", component_id);
}

std::string ImageHash(absl::string_view header_bytes) {
  return crypto::Sha256(header_bytes);
}

absl::StatusOr<v1::ImagePackage> SignImage(v1::ImageHeader header,
                                           absl::string_view payload,
                                           const crypto::EcPrivateKey& key) {
  if (header.component().empty()) {
    return absl::InvalidArgumentError("image header has no component");
  }
  if (header.kind() == v1::IMAGE_KIND_UNSPECIFIED) {
    return absl::InvalidArgumentError("image header has no kind");
  }
  if (!key.valid()) return absl::InvalidArgumentError("invalid signing key");
  header.set_format_version(kImageFormatVersion);
  header.set_payload_size(payload.size());
  header.set_payload_sha256(crypto::Sha256(payload));
  v1::ImagePackage pkg;
  header.SerializeToString(pkg.mutable_header());
  pkg.set_payload(std::string(payload));
  absl::StatusOr<std::string> sig =
      key.Sign(absl::StrCat(kImageContext, pkg.header()));
  if (!sig.ok()) return sig.status();
  pkg.set_signature(*std::move(sig));
  return pkg;
}

absl::StatusOr<v1::ImagePackage> ResignImage(const v1::ImagePackage& package,
                                             const crypto::EcPrivateKey& key,
                                             absl::string_view tenant_id) {
  v1::ImageHeader header;
  if (!header.ParseFromString(package.header())) {
    return absl::InvalidArgumentError("image header does not parse");
  }
  if (header.payload_size() != package.payload().size() ||
      header.payload_sha256() != crypto::Sha256(package.payload())) {
    return absl::InvalidArgumentError("payload does not match image header");
  }
  header.set_tenant_id(std::string(tenant_id));
  return SignImage(std::move(header), package.payload(), key);
}

namespace {

// Signatures that verified, remembered by SHA-256 over (key, signed bytes,
// signature), each length-prefixed: a fleet of twins in one process boots
// the same factory images over and over (10 ECDSA verifications per
// manufactured twin, the bulk of its CPU). Only successes are kept, and an
// entry matches only the exact same key, header bytes and signature, for
// which ECDSA verification is deterministic; every other check (header
// parse, format, payload digest and size) still runs on every call.
// Bounded: cleared when full (a handful of distinct images in practice).
class VerifiedSignatures {
 public:
  static VerifiedSignatures& Get() {
    static auto* cache = new VerifiedSignatures;
    return *cache;
  }
  static std::string Key(absl::string_view public_key,
                         absl::string_view signed_bytes,
                         absl::string_view signature) {
    auto len = [](absl::string_view v) { return absl::StrCat(v.size(), ":"); };
    return crypto::Sha256(absl::StrCat(len(public_key), public_key,
                                       len(signed_bytes), signed_bytes,
                                       len(signature), signature));
  }
  bool Contains(const std::string& key) {
    absl::MutexLock l(&mu_);
    const bool hit = keys_.contains(key);
    (hit ? hits_ : misses_).fetch_add(1, std::memory_order_relaxed);
    return hit;
  }
  void Add(std::string key) {
    absl::MutexLock l(&mu_);
    if (keys_.size() >= kMaxEntries) keys_.clear();
    keys_.insert(std::move(key));
  }
  ImageSignatureCacheStats Stats() {
    absl::MutexLock l(&mu_);
    return {hits_.load(), misses_.load(), keys_.size()};
  }

 private:
  static constexpr size_t kMaxEntries = 4096;
  absl::Mutex mu_;
  absl::flat_hash_set<std::string> keys_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> hits_{0}, misses_{0};
};

absl::Status VerifyImageSignature(absl::string_view public_key,
                                  absl::string_view header_bytes,
                                  absl::string_view signature) {
  const std::string signed_bytes = absl::StrCat(kImageContext, header_bytes);
  VerifiedSignatures& cache = VerifiedSignatures::Get();
  std::string key =
      VerifiedSignatures::Key(public_key, signed_bytes, signature);
  if (cache.Contains(key)) return absl::OkStatus();
  absl::Status s = crypto::EcdsaVerify(public_key, signed_bytes, signature);
  if (s.ok()) cache.Add(std::move(key));
  return s;
}

absl::StatusOr<VerifiedImage> VerifyParts(absl::string_view header_bytes,
                                          absl::string_view signature,
                                          absl::string_view payload_sha256,
                                          uint64_t payload_size,
                                          absl::string_view public_key) {
  absl::Status s = VerifyImageSignature(public_key, header_bytes, signature);
  if (!s.ok()) {
    return absl::UnauthenticatedError(absl::StrCat(
        "image signature does not verify under the image-signing key: ",
        s.message()));
  }
  VerifiedImage v;
  if (!v.header.ParseFromArray(header_bytes.data(),
                               static_cast<int>(header_bytes.size()))) {
    return absl::InvalidArgumentError("image header does not parse");
  }
  if (v.header.format_version() != kImageFormatVersion) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unsupported image format_version ", v.header.format_version()));
  }
  if (v.header.payload_size() != payload_size ||
      !crypto::ConstantTimeEquals(v.header.payload_sha256(), payload_sha256)) {
    return absl::UnauthenticatedError(absl::StrCat(
        "image '", v.header.component(),
        "' payload does not match its signed digest (tampered image)"));
  }
  v.image_hash = ImageHash(header_bytes);
  return v;
}

}  // namespace

ImageSignatureCacheStats GetImageSignatureCacheStats() {
  return VerifiedSignatures::Get().Stats();
}

absl::StatusOr<VerifiedImage> VerifyImage(
    const v1::ImagePackage& package, absl::string_view signing_public_key) {
  return VerifyParts(package.header(), package.signature(),
                     crypto::Sha256(package.payload()),
                     package.payload().size(), signing_public_key);
}

v1::StoredImage ToStoredImage(const v1::ImagePackage& package) {
  v1::StoredImage s;
  s.set_header(package.header());
  s.set_signature(package.signature());
  s.set_payload_sha256(crypto::Sha256(package.payload()));
  s.set_payload_size(package.payload().size());
  return s;
}

absl::StatusOr<VerifiedImage> VerifyStoredImage(
    const v1::StoredImage& stored, absl::string_view signing_public_key) {
  return VerifyParts(stored.header(), stored.signature(),
                     stored.payload_sha256(), stored.payload_size(),
                     signing_public_key);
}

std::string SyntheticPayload(absl::string_view component, uint32_t version,
                             size_t size) {
  // 4 KiB of SHA-256 output, repeated with a per-page counter mixed in, so
  // large images are cheap to build but every page differs.
  std::string page;
  const std::string seed = absl::StrCat(component, "|", version);
  for (uint32_t i = 0; page.size() < 4096; ++i) {
    page.append(crypto::Sha256(absl::StrCat(seed, "|", i)));
  }
  std::string out;
  out.reserve(size);
  for (uint32_t p = 0; out.size() < size; ++p) {
    size_t n = std::min(page.size(), size - out.size());
    size_t start = out.size();
    out.append(page, 0, n);
    for (int b = 0; b < 4 && start + b < out.size(); ++b) {
      out[start + b] ^= static_cast<char>((p >> (8 * b)) & 0xff);
    }
  }
  return out;
}

size_t FactoryPayloadSize(absl::string_view component) {
  if (component == kPlutonRuntime) return 160 * 1024;
  if (component == kSecurityMonitor) return 240 * 1024;
  if (component == kBootloader) return 96 * 1024;
  if (component == kKernel) return 2560 * 1024;
  if (component == kOsServices) return 1024 * 1024;
  return 64 * 1024;
}

absl::StatusOr<v1::ImagePackage> BuildOsImage(const crypto::EcPrivateKey& key,
                                              absl::string_view component,
                                              uint32_t version) {
  v1::ImageKind kind = KindForComponent(component);
  if (kind == v1::IMAGE_KIND_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", component, "' is not a boot-chain component"));
  }
  v1::ImageHeader h;
  h.set_component(std::string(component));
  h.set_version(version);
  h.set_kind(kind);
  return SignImage(
      std::move(h),
      SyntheticPayload(component, version, FactoryPayloadSize(component)), key);
}

absl::StatusOr<std::vector<v1::ImagePackage>> BuildFactoryImages(
    const crypto::EcPrivateKey& key, uint32_t version) {
  std::vector<v1::ImagePackage> out;
  for (const std::string& c : BootChainComponents()) {
    absl::StatusOr<v1::ImagePackage> p = BuildOsImage(key, c, version);
    if (!p.ok()) return p.status();
    out.push_back(*std::move(p));
  }
  return out;
}

absl::StatusOr<v1::ImagePackage> BuildAppImage(const crypto::EcPrivateKey& key,
                                               const v1::AppManifest& manifest,
                                               uint32_t version,
                                               size_t payload_size,
                                               absl::string_view tenant_id) {
  if (manifest.component_id().empty()) {
    return absl::InvalidArgumentError("app manifest has no component_id");
  }
  v1::ImageHeader h;
  h.set_component(AppComponentName(manifest.component_id()));
  h.set_version(version);
  h.set_kind(manifest.realtime() ? v1::IMAGE_KIND_REALTIME_APP
                                 : v1::IMAGE_KIND_APPLICATION);
  *h.mutable_manifest() = manifest;
  h.set_tenant_id(std::string(tenant_id));
  std::string payload = SyntheticPayload(h.component(), version, payload_size);
  return SignImage(std::move(h), payload, key);
}

}  // namespace sphere::mcu
