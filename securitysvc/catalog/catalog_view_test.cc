#include "securitysvc/catalog/catalog_view.h"

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"

namespace sphere::catalog {
namespace {

v1::Image Kernel(uint32_t version) {
  v1::Image i;
  const std::string tag = absl::StrCat("kernel/", version);
  i.set_id(crypto::HexEncode(crypto::Sha256(tag)));
  i.set_component("kernel");
  i.set_version(version);
  i.set_kind(v1::IMAGE_KIND_KERNEL);
  i.set_image_hash(crypto::Sha256(tag));
  return i;
}

v1::OsRelease Release(const std::string& version, const v1::Image& image,
                      int64_t revision) {
  v1::OsRelease r;
  r.set_feed(v1::RETAIL);
  r.set_version(version);
  r.add_image_ids(image.id());
  r.set_create_revision(revision);
  return r;
}

// A snapshot lists a feed's releases in key order ("RETAIL/10" before
// "RETAIL/9"); the view must still expect the one released last.
TEST(InMemoryCatalogTest, LatestOsReleaseIsTheLastPublishedNotTheLastApplied) {
  InMemoryCatalog view(crypto::RandomBytes(32));
  view.PutImage(Kernel(9));
  view.PutImage(Kernel(10));
  view.PutOsRelease(Release("10", Kernel(10), /*revision=*/20));
  view.PutOsRelease(Release("9", Kernel(9), /*revision=*/10));
  v1::Device device;
  auto expected = view.ExpectedImages(device);
  ASSERT_EQ(expected.count("kernel"), 1u);
  EXPECT_EQ(expected["kernel"].version(), 10u);

  // A later live event replaces it.
  view.PutImage(Kernel(11));
  view.PutOsRelease(Release("11", Kernel(11), /*revision=*/30));
  EXPECT_EQ(view.ExpectedImages(device)["kernel"].version(), 11u);
}

}  // namespace
}  // namespace sphere::catalog
