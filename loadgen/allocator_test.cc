// allocator_test: loadgen's DecommitScope against the allocator the
// loadgen binary links (tcmalloc; glibc under the sanitizer configs).
#include "loadgen/allocator.h"

#include <cstdlib>

#include "gtest/gtest.h"

namespace sphere::loadgen {
namespace {

TEST(AllocatorTest, DecommitIsOffByDefaultUnderTcmalloc) {
  const auto on = AggressiveDecommit();
#ifdef SPHERE_EXPECT_GLIBC_MALLOC
  EXPECT_FALSE(on.has_value());
#else
  ASSERT_TRUE(on.has_value());
  if (std::getenv("TCMALLOC_AGGRESSIVE_DECOMMIT") == nullptr) {
    EXPECT_FALSE(*on);
  }
#endif
}

TEST(AllocatorTest, DecommitScopeSetsAndRestores) {
  const auto before = AggressiveDecommit();
  if (!before.has_value()) {
    DecommitScope scope(true);  // glibc: nothing to change, nothing fails
    EXPECT_FALSE(scope.changed());
    return;
  }
  {
    DecommitScope scope(!*before);
    EXPECT_TRUE(scope.changed());
    EXPECT_EQ(AggressiveDecommit(), !*before);
    void* p = std::malloc(1 << 20);
    ASSERT_NE(p, nullptr);
    std::free(p);
  }
  EXPECT_EQ(AggressiveDecommit(), *before);
  {
    DecommitScope same(*before);  // already so: left alone
    EXPECT_FALSE(same.changed());
    EXPECT_EQ(AggressiveDecommit(), *before);
  }
  ReleaseFreeMemory();
  EXPECT_EQ(AggressiveDecommit(), *before);
}

}  // namespace
}  // namespace sphere::loadgen
