#include "tests/spherectl_helpers.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "tests/cluster_fixture.h"
#include "tests/spherectl_runner.h"

namespace sphere::testing {
namespace {

absl::Status Failed(const std::vector<std::string>& args,
                    const std::pair<int, std::string>& result) {
  return absl::InternalError(absl::StrCat(absl::StrJoin(args, " "), ": exit ",
                                          result.first, "\n", result.second));
}

}  // namespace

absl::Status SetUpTenant(const std::string& cluster_file,
                         const std::string& tenant,
                         const std::vector<std::string>& products) {
  std::vector<std::vector<std::string>> steps = {
      {"tenant", "create", "--name", tenant},
      {"tenant", "credential", "--name", tenant}};
  for (const std::string& product : products) {
    steps.push_back(
        {"--tenant", tenant, "product", "create", "--name", product});
  }
  for (const auto& args : steps) {
    auto result = Spherectl(cluster_file, args);
    if (result.first != 0) return Failed(args, result);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ClaimNewTwin(const std::string& cluster_file,
                                         const std::string& tenant,
                                         const std::string& name,
                                         const std::string& device_group) {
  const std::vector<std::string> factory = {
      BinaryPath("securitysvc/factory/factory"), "--cluster", cluster_file,
      "--name", name};
  auto made = RunCommand(factory);
  if (made.first != 0) return Failed(factory, made);
  // "manufactured NAME device_id DEVICE_ID"
  std::vector<std::string> words = absl::StrSplit(made.second, ' ');
  if (words.size() < 4) return Failed(factory, made);
  const std::string id(absl::StripAsciiWhitespace(words[3]));
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--tenant", tenant, "device", "claim",
                                 "--device", id},
        {"--tenant", tenant, "device", "update", "--device", id,
         "--device-group", device_group}}) {
    auto result = Spherectl(cluster_file, args);
    if (result.first != 0) return Failed(args, result);
  }
  return id;
}

}  // namespace sphere::testing
