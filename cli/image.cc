// spherectl image upload|list and os release (images are what OS releases
// publish).
#include <dirent.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <map>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/commands.h"
#include "cli/image_upload.h"
#include "common/util/file.h"

namespace sphere::cli {
namespace {

using S = v1::ManagementService::Stub;

const std::vector<std::string> kImageHeaders = {"COMPONENT", "VERSION", "KIND",
                                                "TENANT", "ID"};

std::vector<std::string> ImageRow(Names& names, const v1::Image& i) {
  return {i.component(), absl::StrCat(i.version()), KindName(i.kind()),
          i.tenant_id().empty() ? "platform" : names.Tenant(i.tenant_id()),
          i.id()};
}

// ImageKey sorts images by component, then version (numerically), then id.
std::string ImageKey(const v1::Image& i) {
  return absl::StrCat(i.component(), "/", absl::StrFormat("%010u", i.version()),
                      "/", i.id());
}

// UploadPackage reads one image package file and uploads it.
absl::StatusOr<v1::Image> UploadPackage(Context& c, const std::string& path) {
  absl::StatusOr<std::string> bytes = util::ReadFile(path);
  if (!bytes.ok()) {
    return absl::NotFoundError(absl::StrCat("cannot read image package ", path,
                                            ": ", bytes.status().message()));
  }
  // Streamed in bounded chunks (UploadImageStream): the server checks the
  // declared size against its cap and the tenant's quota before any bytes.
  absl::StatusOr<v1::Image> image =
      UploadImagePackage(c.stub(), c.TenantField(), *bytes,
                         std::max(c.timeout(), absl::Seconds(60)));
  if (!image.ok()) {
    return absl::Status(
        image.status().code(),
        absl::StrCat("upload of ", path, ": ", image.status().message()));
  }
  return image;
}

// PackagesIn lists DIR/*.pkg in name order.
absl::StatusOr<std::vector<std::string>> PackagesIn(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("cannot open images directory ", dir,
                     " (build one with os_builder --state-dir DIR --version "
                     "V: it writes DIR/images/os-V)"));
  }
  std::vector<std::string> out;
  while (struct dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (absl::EndsWith(name, ".pkg")) out.push_back(dir + "/" + name);
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  if (out.empty()) {
    return absl::NotFoundError(
        absl::StrCat("images directory ", dir, " holds no .pkg files"));
  }
  return out;
}

struct ReleaseArgs {
  std::string feed, version, images_dir;
  std::vector<std::string> image_ids;
};

absl::Status Release(Context& c, const ReleaseArgs& a) {
  auto feed = ParseFeed(a.feed);
  if (!feed.ok()) return feed.status();
  if (a.image_ids.empty() == a.images_dir.empty()) {
    return absl::InvalidArgumentError(
        "'os release' needs either --image ID (repeatable) or --images-dir "
        "DIR");
  }
  std::vector<std::string> ids = a.image_ids;
  std::map<std::string, v1::Image> images;  // by id, for the output
  if (!a.images_dir.empty()) {
    auto files = PackagesIn(a.images_dir);
    if (!files.ok()) return files.status();
    for (const std::string& f : *files) {
      auto image = UploadPackage(c, f);
      if (!image.ok()) return image.status();
      ids.push_back(image->id());
      images[image->id()] = *image;
    }
  }
  v1::ReleaseOsRequest req;
  req.set_feed(*feed);
  req.set_version(a.version);
  for (const std::string& id : ids) req.add_image_ids(id);
  v1::OsRelease release;
  if (auto s = c.Call(&S::ReleaseOs, req, &release); !s.ok()) return s;
  if (images.size() < ids.size()) {
    // Released by id: look the components up for the output (best effort).
    (void)ForEachPage(c, &S::ListImages, v1::ListImagesRequest(),
                      std::function<void(const v1::ListImagesResponse&)>(
                          [&images](const v1::ListImagesResponse& r) {
                            for (const v1::Image& i : r.images()) {
                              images[i.id()] = i;
                            }
                          }));
  }
  std::vector<std::string> components;
  json j = ToJson(release);
  j["images"] = json::array();
  for (const std::string& id : release.image_ids()) {
    auto it = images.find(id);
    if (it == images.end()) {
      components.push_back(id.substr(0, 12));
      continue;
    }
    components.push_back(
        absl::StrCat(it->second.component(), " ", it->second.version()));
    j["images"].push_back(ToJson(it->second));
  }
  c.printer().Print({"FEED", "VERSION", "COMPONENTS"},
                    {{FeedName(release.feed()), release.version(),
                      absl::StrJoin(components, ", ")}},
                    j);
  return absl::OkStatus();
}

}  // namespace

void AddImageCommands(CLI::App* app, Context* ctx) {
  CLI::App* noun = Noun(app, "image", "application and OS image packages");

  auto file = std::make_shared<std::string>();
  CLI::App* upload = Verb(
      noun, ctx, "upload",
      "upload an image package: a tenant's application (the platform "
      "re-signs it) or, as platform operator, a platform-signed OS component",
      Access::kTenant, [file](Context& c) -> absl::Status {
        auto image = UploadPackage(c, *file);
        if (!image.ok()) return image.status();
        Names names(c);
        PrintOne(c, *image, kImageHeaders, ImageRow(names, *image));
        return absl::OkStatus();
      });
  upload->add_option("--file", *file, "image package (.pkg)")->required();

  auto page = std::make_shared<PageRequest>();
  CLI::App* list = Verb(
      noun, ctx, "list",
      "list the tenant's images (platform operator without a tenant: all), "
      "by component and version",
      Access::kTenant, [page](Context& c) -> absl::Status {
        v1::ListImagesRequest req;
        req.set_tenant_id(c.TenantField());
        std::vector<v1::Image> all;
        if (auto s =
                ForEachPage(c, &S::ListImages, req,
                            std::function<void(const v1::ListImagesResponse&)>(
                                [&all](const v1::ListImagesResponse& r) {
                                  all.insert(all.end(), r.images().begin(),
                                             r.images().end());
                                }));
            !s.ok()) {
          return s;
        }
        Names names(c);
        PrintList<v1::Image>(
            c, std::move(all), ImageKey, *page, kImageHeaders,
            [&names](const v1::Image& i) { return ImageRow(names, i); });
        return absl::OkStatus();
      });
  AddPaging(list, page.get());

  auto doomed = std::make_shared<std::string>();
  CLI::App* del = Verb(
      noun, ctx, "delete",
      "delete an image; refused (exit 7) while a deployment or an OS release "
      "names it",
      Access::kTenant, [doomed](Context& c) -> absl::Status {
        v1::DeleteImageRequest req;
        req.set_tenant_id(c.TenantField());
        req.set_image_id(*doomed);
        v1::DeleteResponse resp;
        if (auto s = c.Call(&S::DeleteImage, req, &resp); !s.ok()) return s;
        PrintDeleted(c, "image", *doomed);
        return absl::OkStatus();
      });
  del->add_option("--image", *doomed, "image id")->required();
}

void AddOsCommands(CLI::App* app, Context* ctx) {
  CLI::App* noun = Noun(app, "os", "OS releases (platform operator)");
  auto ra = std::make_shared<ReleaseArgs>();
  CLI::App* release =
      Verb(noun, ctx, "release",
           "publish platform OS images as version V on a feed; --images-dir "
           "uploads every DIR/*.pkg first (os_builder writes DIR/images/os-V)",
           Access::kPlatform, [ra](Context& c) { return Release(c, *ra); });
  release->add_option("--feed", ra->feed, "Retail or RetailEval")->required();
  release->add_option("--version", ra->version, "new version, e.g. 2")
      ->required();
  auto* image =
      release->add_option("--image", ra->image_ids, "OS image id (repeatable)");
  auto* dir = release->add_option("--images-dir", ra->images_dir,
                                  "directory of OS image packages");
  image->excludes(dir);
  dir->excludes(image);
}

}  // namespace sphere::cli
