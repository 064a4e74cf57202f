#include "tests/spherectl_runner.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "tests/cluster_fixture.h"

namespace sphere::testing {

std::pair<int, std::string> Spherectl(const std::string& cluster_file,
                                      const std::vector<std::string>& args) {
  std::vector<std::string> argv = {BinaryPath("cli/spherectl"), "--cluster",
                                   cluster_file};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv);
}

nlohmann::json SpherectlJson(const std::string& cluster_file,
                             const std::string& tenant,
                             const std::vector<std::string>& args) {
  std::vector<std::string> a = {"--output", "json"};
  if (!tenant.empty()) a.insert(a.begin(), {"--tenant", tenant});
  a.insert(a.end(), args.begin(), args.end());
  auto [rc, out] = Spherectl(cluster_file, a);
  EXPECT_EQ(rc, 0) << out;
  nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << out;
  return j;
}

void ExpectSpherectlError(const std::pair<int, std::string>& result,
                          int exit_code, const std::string& fragment) {
  EXPECT_EQ(result.first, exit_code) << result.second;
  ExpectSpherectlError(result, fragment);
}

void ExpectSpherectlError(const std::pair<int, std::string>& result,
                          const std::string& fragment) {
  EXPECT_GE(result.first, 1) << result.second;
  EXPECT_LE(result.first, 8) << result.second;
  EXPECT_TRUE(absl::StartsWith(result.second, "error: ")) << result.second;
  EXPECT_TRUE(absl::StrContains(result.second, fragment)) << result.second;
}

}  // namespace sphere::testing
