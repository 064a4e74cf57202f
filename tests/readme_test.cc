// readme_test: the README's "First run" is true. It extracts every ```sh
// block of README.md and runs them in order, as a new user pasting them
// would, against a fresh local cluster; every command must succeed.
//
// What the test substitutes, and why:
// - the block with `./sphere up --state-dir DIR --shards N` is the cluster
//   the README starts in a terminal of its own: the test starts the same
//   binary (//:local_cluster, which `./sphere up` runs) in the background
//   with N shards and waits for its "ready" line (a blocking pipe read);
// - DIR is replaced by the test's fresh state directory everywhere;
// - `bazel-bin/` is the runfiles tree (the test's data dependencies are the
//   very targets the README builds), so lines that only build or install
//   (`./sphere deps`, `bazel build ...`) are skipped, as are `./sphere demo`
//   and `./sphere test` at the top (each builds and runs a cluster or suite
//   of its own; Bazel cannot run inside a Bazel test);
// - SPHERECTL_CONFIG points `tenant select` at the test's directory instead
//   of ~/.config.
// The remaining blocks run as one bash script with `set -euo pipefail`, so
// the first failing command fails the test and its output is shown.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "tests/cluster_fixture.h"

namespace sphere::testing {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ShellBlocks returns the contents of the README's ```sh blocks, in order.
std::vector<std::string> ShellBlocks(const std::string& markdown) {
  std::vector<std::string> blocks;
  bool in_block = false;
  std::string current;
  for (absl::string_view line : absl::StrSplit(markdown, '\n')) {
    if (!in_block && absl::StripTrailingAsciiWhitespace(line) == "```sh") {
      in_block = true;
      current.clear();
    } else if (in_block && absl::StartsWith(line, "```")) {
      in_block = false;
      blocks.push_back(current);
    } else if (in_block) {
      absl::StrAppend(&current, line, "\n");
    }
  }
  return blocks;
}

// Flag returns the value of `--name V` in `line` ("" if absent).
std::string Flag(const std::string& line, const std::string& name) {
  std::vector<std::string> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
  for (size_t i = 0; i + 1 < words.size(); ++i) {
    if (words[i] == name) return words[i + 1];
  }
  return "";
}

TEST(ReadmeTest, FirstRunCommandsWorkInOrderOnAFreshCluster) {
  const std::string readme = ReadAll(BinaryPath("README.md"));
  ASSERT_FALSE(readme.empty()) << "README.md not in runfiles";
  std::vector<std::string> blocks = ShellBlocks(readme);
  ASSERT_GE(blocks.size(), 3u);

  // The cluster block.
  int cluster_block = -1;
  std::string state_dir;
  int shards = 1;
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (absl::StrContains(blocks[i], "./sphere up")) {
      ASSERT_EQ(cluster_block, -1) << "two blocks start a cluster";
      cluster_block = static_cast<int>(i);
      std::string line = std::string(absl::StripAsciiWhitespace(blocks[i]));
      ASSERT_FALSE(absl::StrContains(line, "\n"))
          << "the cluster block should hold only the cluster command";
      state_dir = Flag(line, "--state-dir");
      std::string n = Flag(line, "--shards");
      if (!n.empty()) shards = std::stoi(n);
    }
  }
  ASSERT_NE(cluster_block, -1) << "README never starts a cluster";
  ASSERT_FALSE(state_dir.empty());

  // Blocks before the cluster only build.
  for (int i = 0; i < cluster_block; ++i) {
    for (absl::string_view line : absl::StrSplit(blocks[i], '\n')) {
      line = absl::StripAsciiWhitespace(line);
      EXPECT_TRUE(line.empty() || absl::StartsWith(line, "./sphere deps") ||
                  absl::StartsWith(line, "./sphere demo") ||
                  absl::StartsWith(line, "./sphere test") ||
                  absl::StartsWith(line, "bazel build"))
          << "unexpected command before the cluster starts: " << line;
    }
  }

  auto cluster = LocalCluster::Start("readme", shards);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  const std::string dir = (*cluster)->dir();
  const std::string bin =
      BinaryPath("cli/spherectl")
          .substr(0, BinaryPath("cli/spherectl").size() -
                         std::string("cli/spherectl").size());

  std::string script =
      absl::StrCat("set -euo pipefail\nset -x\nexport SPHERECTL_CONFIG=", dir,
                   "/spherectl.json\nunset SPHERE_TENANT\n");
  for (size_t i = cluster_block + 1; i < blocks.size(); ++i) {
    EXPECT_FALSE(absl::StrContains(blocks[i], "<id>"))
        << "a block has a placeholder a paste cannot run: " << blocks[i];
    std::string block =
        absl::StrReplaceAll(blocks[i], {{state_dir, dir}, {"bazel-bin/", bin}});
    absl::StrAppend(&script, "echo '== README block ", i + 1, "' >&2\n", block);
  }
  auto [rc, out] = RunCommand({"/bin/bash", "-c", script});
  ASSERT_EQ(rc, 0) << "a README command failed:\n" << out;

  // What the README says the steps show.
  EXPECT_TRUE(absl::StrContains(out, "outcome UP_TO_DATE")) << out;
  EXPECT_TRUE(absl::StrContains(out, "outcome UPDATE_REQUIRED")) << out;
  EXPECT_TRUE(absl::StrContains(out, "scope=update-only")) << out;
  EXPECT_TRUE(absl::StrContains(out, ": OK")) << out;  // openssl verify
  EXPECT_FALSE(absl::StrContains(out, "product= ")) << out;
  EXPECT_FALSE(absl::StrContains(out, "group= ")) << out;
  EXPECT_TRUE(absl::StrContains(out, "selected tenant Contoso")) << out;
  EXPECT_TRUE((*cluster)->Stop().ok());
}

TEST(ReadmeTest, AttestingAnUnclaimedDeviceSaysHowToClaimIt) {
  auto cluster = LocalCluster::Start("unclaimed", 1);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  const std::string twin = BinaryPath("twin/twin");
  const std::string file = (*cluster)->cluster_file();
  auto [rc, out] = RunCommand({BinaryPath("securitysvc/factory/factory"),
                               "--cluster", file, "--name", "lonely"});
  ASSERT_EQ(rc, 0) << out;
  // "manufactured lonely device_id <id>"
  const size_t at = out.find("device_id ");
  ASSERT_NE(at, std::string::npos) << out;
  const std::string id = out.substr(at + 10, 64);
  ASSERT_EQ(id.size(), 64u) << out;
  // A backoff far above the test's timeout: only an immediate answer
  // passes (a refusal is never retried).
  std::tie(rc, out) = RunCommand({twin, "--cluster", file, "--name", "lonely",
                                  "--backoff_initial=1h", "attest"});
  EXPECT_EQ(rc, 1) << out;
  EXPECT_TRUE(absl::StrContains(
      out, absl::StrCat("device ", id,
                        " is not claimed; claim it with spherectl device "
                        "claim --device ",
                        id)))
      << out;
  // Nothing changed: the device is still unclaimed and has no certificate.
  auto d = (*cluster)->GetDevice("", id);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->state(), v1::UNCLAIMED);
  EXPECT_NE(
      access(((*cluster)->dir() + "/twins/lonely/device_chain.pem").c_str(),
             F_OK),
      0);
  EXPECT_TRUE((*cluster)->Stop().ok());
}

}  // namespace
}  // namespace sphere::testing
