// factory: the manufacturing line (platform side; holds the manufacturing
// CA's key, which no twin ever reads).
//
//   factory --cluster DIR/cluster.json --name NAME [--os_version 1]
//
// Creates device NAME in the MCU model, installs the factory OS, issues its
// manufacturing identity, records its public key in the factory registry
// and writes DIR/twins/NAME/twin.state. Prints
//   manufactured NAME device_id <64 hex>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "common/cluster/cluster_config.h"
#include "securitysvc/factory/factory.h"

ABSL_FLAG(std::string, cluster, "", "Path to DIR/cluster.json (required)");
ABSL_FLAG(std::string, name, "", "Twin name, e.g. dw100-0001 (required)");
ABSL_FLAG(uint32_t, os_version, 1, "OS version installed at manufacture");

namespace {
int Fail(const absl::Status& s) {
  std::cerr << "factory: error: " << s.message() << "\n";
  return 1;
}
}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "factory --cluster DIR/cluster.json --name NAME [--os_version N]");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 1 || absl::GetFlag(FLAGS_cluster).empty() ||
      absl::GetFlag(FLAGS_name).empty()) {
    std::cerr << "usage: factory --cluster DIR/cluster.json --name NAME "
                 "[--os_version N]\n";
    return 2;
  }
  auto c = sphere::cluster::LoadClusterConfig(absl::GetFlag(FLAGS_cluster));
  if (!c.ok()) return Fail(c.status());
  auto registry = sphere::factory::ManagementRegistry(*c);
  if (!registry.ok()) return Fail(registry.status());
  auto factory = sphere::factory::Factory::Open(
      c->state_dir, absl::GetFlag(FLAGS_os_version), registry->get());
  if (!factory.ok()) return Fail(factory.status());
  const std::string name = absl::GetFlag(FLAGS_name);
  auto made = (*factory)->ManufactureTwin(c->state_dir, name);
  if (!made.ok()) return Fail(made.status());
  std::cout << "manufactured " << name << " device_id " << made->device_id
            << "\n";
  return 0;
}
