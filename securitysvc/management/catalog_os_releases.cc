// Catalog: OS releases on the Retail and RetailEval feeds (platform
// operators), keyed "<feed>/<version>".
#include <map>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "securitysvc/management/catalog.h"
#include "securitysvc/management/catalog_access.h"
#include "securitysvc/management/catalog_internal.h"

namespace sphere::management {

using namespace catalog_internal;  // NOLINT(build/namespaces): own layout

absl::StatusOr<v1::OsRelease> Catalog::ReleaseOs(
    const Caller& caller, const v1::ReleaseOsRequest& request) {
  if (auto s = Authorize(caller, Op::kReleaseOs); !s.ok()) return s;
  if (request.feed() == v1::OS_FEED_UNSPECIFIED ||
      !v1::OsFeed_IsValid(request.feed())) {
    return absl::InvalidArgumentError(
        "an OS release needs a feed: Retail or RetailEval");
  }
  if (auto s = limits::ValidateVersion("OS release version", request.version());
      !s.ok()) {
    return s;
  }
  if (request.image_ids().empty()) {
    return absl::InvalidArgumentError(
        "an OS release needs at least one OS component image id");
  }
  // Capped before anything else; a repeated image is refused below (one
  // image per component).
  if (auto s = limits::ValidateCount("OS release image_ids",
                                     request.image_ids_size(),
                                     limits::kMaxImagesPerOsRelease);
      !s.ok()) {
    return s;
  }
  const auto& image_ids = request.image_ids();
  for (const std::string& id : image_ids) {
    if (!IsHexId(id, 64)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "OS release image id \"%s\" is not 64 lowercase hex characters",
          limits::EscapedPrefix(id)));
    }
  }
  absl::MutexLock lock(&mu_);
  std::map<std::string, v1::Image> components;  // the new release's images
  for (const std::string& id : image_ids) {
    auto image = GetRecord<v1::Image>(store_, kImages, ImageKey("", id));
    if (!image.ok()) return image.status();
    if (!image->has_value() || !(*image)->tenant_id().empty() ||
        !IsOsComponentKind((*image)->kind())) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "image \"%s\" is not a platform OS component image; upload OS "
          "images as a platform operator first",
          id));
    }
    const v1::Image& img = **image;
    if (!components.emplace(img.component(), img).second) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "an OS release carries one image per component; %s appears twice",
          img.component()));
    }
  }
  const std::string feed_name = v1::OsFeed_Name(request.feed());
  const std::string key = absl::StrCat(feed_name, "/", request.version());
  auto existing = GetRecord<v1::OsRelease>(store_, kOsReleases, key);
  if (!existing.ok()) return existing.status();
  if (existing->has_value()) {
    return absl::AlreadyExistsError(absl::StrFormat(
        "OS %s is already released on feed %s; pick a new version",
        request.version(), feed_name));
  }
  // No rollback through a feed: devices refuse older images (anti-rollback
  // counters), so a release older than what the feed already shipped could
  // never install and would leave the feed's devices UPDATE_REQUIRED for
  // good. Compare with the highest version of each component released on
  // this feed so far (and the release that shipped it).
  std::map<std::string, std::pair<uint32_t, std::string>> highest;
  absl::Status read_error;
  // One feed's releases: a prefix scan ("<feed>/<version>").
  absl::Status scan = ScanPrefix<v1::OsRelease>(
      store_, kOsReleases, absl::StrCat(feed_name, "/"),
      [&](const v1::OsRelease& r) {
        if (r.feed() != request.feed()) return true;
        for (const std::string& id : r.image_ids()) {
          auto image = GetRecord<v1::Image>(store_, kImages, ImageKey("", id));
          if (!image.ok()) {
            read_error = image.status();
            return false;
          }
          if (!image->has_value()) continue;  // released images are kept
          auto& h = highest[(*image)->component()];
          if ((*image)->version() >= h.first) {
            h = {(*image)->version(), r.version()};
          }
        }
        return true;
      });
  if (!scan.ok()) return scan;
  if (!read_error.ok()) return read_error;
  for (const auto& [component, image] : components) {
    auto it = highest.find(component);
    if (it != highest.end() && image.version() < it->second.first) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "OS %s would roll back %s on feed %s from version %d (released in "
          "OS %s) to %d; an OS release must not carry older components than "
          "the feed already shipped",
          request.version(), component, feed_name, it->second.first,
          it->second.second, image.version()));
    }
  }
  v1::OsRelease release;
  release.set_feed(request.feed());
  release.set_version(request.version());
  for (const std::string& id : image_ids) release.add_image_ids(id);
  Txn txn(revision_);
  v1::WatchEvent* e = txn.Emit();
  release.set_create_revision(e->revision());
  *e->mutable_os_release() = release;
  txn.Put(kOsReleases, key, release);
  if (auto s = Commit(txn); !s.ok()) return s;
  return release;
}

}  // namespace sphere::management
