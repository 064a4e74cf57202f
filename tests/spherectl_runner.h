// Test-only helpers that run the spherectl binary (//cli:spherectl, a data
// dependency of the test) as a subprocess against a cluster file, e.g.
//   auto [rc, out] = Spherectl(cluster->cluster_file(),
//                              {"--tenant", "Contoso", "device", "list"});
//   json devices = SpherectlJson(cluster->cluster_file(), "Contoso",
//                                {"device", "list"});
// The gtest helpers report failures with EXPECT_*.
#ifndef SPHERE_TESTS_SPHERECTL_RUNNER_H_
#define SPHERE_TESTS_SPHERECTL_RUNNER_H_

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace sphere::testing {

// Spherectl runs `spherectl --cluster CLUSTER_FILE ARGS...` and returns
// (exit code, combined stdout+stderr).
std::pair<int, std::string> Spherectl(const std::string& cluster_file,
                                      const std::vector<std::string>& args);

// SpherectlJson runs spherectl with --output json, as `tenant`'s operator
// (--tenant) or, when `tenant` is empty, the platform operator; it expects
// exit code 0 and returns the parsed output (discarded if not JSON).
nlohmann::json SpherectlJson(const std::string& cluster_file,
                             const std::string& tenant,
                             const std::vector<std::string>& args);

// ExpectSpherectlError expects a spherectl failure: a failing exit code
// (1..8, see cli/exit_codes.h) and output "error: ..." containing
// `fragment`. The three-argument form also checks the exact exit code.
void ExpectSpherectlError(const std::pair<int, std::string>& result,
                          const std::string& fragment);
void ExpectSpherectlError(const std::pair<int, std::string>& result,
                          int exit_code, const std::string& fragment);

}  // namespace sphere::testing

#endif  // SPHERE_TESTS_SPHERECTL_RUNNER_H_
