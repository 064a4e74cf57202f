// Catalog: image records and the per-tenant image quota. Images are keyed by
// owner ("<tenant>/<image>", "platform/<image>"), so a tenant's images, its
// quota and its listing are one prefix scan.
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "securitysvc/management/catalog.h"
#include "securitysvc/management/catalog_access.h"
#include "securitysvc/management/catalog_internal.h"

namespace sphere::management {

using namespace catalog_internal;  // NOLINT(build/namespaces): own layout

absl::Status Catalog::CheckImageQuotaLocked(const v1::Tenant& tenant,
                                            const v1::Image& image) {
  size_t count = 0;
  uint64_t bytes = 0;
  bool already_held = false;
  absl::Status s = ScanPrefix<v1::Image>(
      store_, kImages, TenantPrefix(tenant.id()), [&](const v1::Image& i) {
        ++count;
        bytes += i.size();
        if (i.id() == image.id()) already_held = true;
        return true;
      });
  if (!s.ok()) return s;
  if (already_held) return absl::OkStatus();  // a re-upload costs nothing
  if (count + 1 > options_.max_images_per_tenant) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "tenant \"%s\" already has %d images; the quota is %d images. Nothing "
        "was stored; ask a platform operator to raise the quota",
        tenant.name(), count, options_.max_images_per_tenant));
  }
  if (bytes + image.size() > options_.max_image_bytes_per_tenant) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "tenant \"%s\" images would total %d bytes; the quota is %d bytes. "
        "Nothing was stored; ask a platform operator to raise the quota",
        tenant.name(), bytes + image.size(),
        options_.max_image_bytes_per_tenant));
  }
  return absl::OkStatus();
}

absl::Status Catalog::CheckImageQuota(const Caller& caller,
                                      absl::string_view tenant,
                                      uint64_t package_bytes) {
  if (auto s = Authorize(caller, Op::kCheckImageQuota); !s.ok()) return s;
  if (auto s = limits::ValidateSize("image package", package_bytes,
                                    limits::kMaxImagePackageBytes);
      !s.ok()) {
    return s;
  }
  // Platform OS images (a platform operator naming no tenant) have no quota.
  if (tenant.empty() && !caller.is_tenant()) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  v1::Image probe;  // a new image of (at most) this size
  probe.set_size(package_bytes);
  return CheckImageQuotaLocked(*t, probe);
}

absl::StatusOr<v1::Image> Catalog::RecordImage(const Caller& caller,
                                               const v1::Image& image) {
  if (auto s =
          Authorize(caller, image.tenant_id().empty() ? Op::kRecordPlatformImage
                                                      : Op::kRecordImage);
      !s.ok()) {
    return s;
  }
  if (!IsHexId(image.id(), 64)) {
    return absl::InvalidArgumentError(
        "image id must be the 64-hex-character SHA-256 of the signed package");
  }
  if (auto s =
          limits::ValidateComponentId("image component", image.component());
      !s.ok()) {
    return s;
  }
  if (image.image_hash().size() != 32 ||
      image.kind() == v1::IMAGE_KIND_UNSPECIFIED ||
      !v1::ImageKind_IsValid(image.kind())) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "image %s needs a component name, a kind and a 32-byte image hash",
        image.id()));
  }
  absl::MutexLock lock(&mu_);
  if (!image.tenant_id().empty()) {
    absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, image.tenant_id());
    if (!t.ok()) return t.status();
    if (t->id() != image.tenant_id()) {
      return absl::InvalidArgumentError(
          "an image record names its owning tenant by id");
    }
    if (auto s = CheckImageQuotaLocked(*t, image); !s.ok()) return s;
  }
  const std::string key = ImageKey(image.tenant_id(), image.id());
  auto existing = GetRecord<v1::Image>(store_, kImages, key);
  if (!existing.ok()) return existing.status();
  if (existing->has_value()) {
    if ((*existing)->SerializeAsString() == image.SerializeAsString()) {
      return image;  // idempotent re-upload
    }
    return absl::AlreadyExistsError(absl::StrFormat(
        "image %s already exists with different metadata", image.id()));
  }
  Txn txn(revision_);
  txn.Put(kImages, key, image);
  *txn.Emit()->mutable_image() = image;
  if (auto s = Commit(txn); !s.ok()) return s;
  return image;
}

absl::StatusOr<v1::ListImagesResponse> Catalog::ListImages(
    const Caller& caller, const v1::ListImagesRequest& request) {
  if (auto s = Authorize(caller, Op::kListImages); !s.ok()) return s;
  // A tenant's images are its prefix; a platform operator naming no tenant
  // pages through everything (every tenant's and the platform's).
  std::string prefix;
  if (caller.is_tenant() || !request.tenant_id().empty()) {
    absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, request.tenant_id());
    if (!t.ok()) return t.status();
    prefix = TenantPrefix(t->id());
  }
  absl::StatusOr<Page> page = ParsePage(
      request.page_size(), request.page_token(), "images", prefix, prefix);
  if (!page.ok()) return page.status();
  v1::ListImagesResponse out;
  std::string next;
  absl::Status s = ScanPage<v1::Image>(
      store_, kImages, prefix, *page, "images", prefix,
      [](absl::string_view key, absl::string_view value) {
        return ParseValue<v1::Image>(kImages, key, value);
      },
      out.mutable_images(), &next);
  if (!s.ok()) return s;
  out.set_next_page_token(next);
  return out;
}

absl::Status Catalog::DeleteImage(const Caller& caller,
                                  absl::string_view tenant,
                                  absl::string_view image_id) {
  if (auto s = Authorize(caller, Op::kDeleteImage); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  // Platform operators without a tenant delete platform OS images.
  std::string owner;
  std::string owner_name = "the platform";
  if (caller.is_tenant() || !tenant.empty()) {
    absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
    if (!t.ok()) return t.status();
    owner = t->id();
    owner_name = absl::StrCat("tenant \"", t->name(), "\"");
  }
  const std::string key = ImageKey(owner, image_id);
  auto image = GetRecord<v1::Image>(store_, kImages, key);
  if (!image.ok()) return image.status();
  if (!image->has_value() || (*image)->tenant_id() != owner) {
    return absl::NotFoundError(absl::StrFormat(
        "image \"%s\" not found among the images of %s; list them with "
        "'spherectl image list'",
        image_id, owner_name));
  }
  std::optional<std::string> used_by;
  if (!owner.empty()) {
    // A deployment names only its own tenant's images: one tenant's prefix.
    absl::Status s = ScanPrefix<v1::Deployment>(
        store_, kDeployments, TenantPrefix(owner),
        [&](const v1::Deployment& d) {
          for (const std::string& id : d.image_ids()) {
            if (id == image_id) {
              used_by = absl::StrFormat(
                  "deployment %s; delete it with 'spherectl deployment "
                  "delete --deployment %s' first",
                  d.id(), d.id());
            }
          }
          return !used_by.has_value();
        });
    if (!s.ok()) return s;
  } else {  // OS releases name platform images only
    absl::Status s = ScanPrefix<v1::OsRelease>(
        store_, kOsReleases, "", [&](const v1::OsRelease& r) {
          for (const std::string& id : r.image_ids()) {
            if (id == image_id) {
              used_by = absl::StrFormat(
                  "OS release %s on feed %s; released OS images stay",
                  r.version(), v1::OsFeed_Name(r.feed()));
            }
          }
          return !used_by.has_value();
        });
    if (!s.ok()) return s;
  }
  if (used_by) {
    return absl::FailedPreconditionError(
        absl::StrFormat("image \"%s\" is in use by %s", image_id, *used_by));
  }
  Txn txn(revision_);
  txn.Delete(kImages, key);
  txn.Emit()->set_deleted_image_id(key);
  return Commit(txn);
}

}  // namespace sphere::management
