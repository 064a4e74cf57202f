// twin: one simulated Azure Sphere device (an MT3620-like MCU with Pluton)
// as a process of its own, on the twin library (twin/twin.h) and the
// device-side client (client/). Manufacturing is the factory tool's job
// (securitysvc/factory): this binary never sees the manufacturing CA's key.
//
//   twin --cluster DIR/cluster.json --name NAME attest
//       Secure boot, then attestation against the owning shard (computed
//       from the shard ring; redirects followed; transient failures retried
//       with jittered exponential backoff for --retry_budget; refusals are
//       not retried). Prints the outcome (UP_TO_DATE, or UPDATE_REQUIRED
//       with the outdated components), subject, claims and expiry.
//       --min_catalog_revision N makes the shard answer from a catalog that
//       includes revision N (read-your-writes after a spherectl change).
//       --chain_out FILE also writes the issued chain (leaf + tenant CA) as
//       PEM, e.g. for `openssl verify`.
//
//   twin --cluster DIR/cluster.json --name NAME update
//       Attest, then one update check (twin/update_agent.h): verify the
//       signed metadata, download, verify and install what the group should
//       run into the inactive slot, reboot, re-attest, report.
//   twin --cluster DIR/cluster.json --name NAME run
//       The DW100 dishwasher running (twin/dw100/run_command.h): renewals,
//       telemetry to the Contoso cloud, remote diagnostics, TwinControl
//       (faults, diagnostics, update checks) on loopback, until SIGTERM.
//       status|fault F|diagnostics|check-updates talk to it.
//   twin --cluster DIR/cluster.json --name NAME run-basic
//       Long-running without the DW100 cloud link: TwinControl on
//       127.0.0.1:0 (port in DIR/twins/NAME/control.port, certificate in
//       control.crt), renewals and scheduled update checks.
//
// State: the one file DIR/twins/NAME/twin.state (twin/state_file.h).
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/attestation_client.h"
#include "common/cluster/cluster_config.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/util/clock.h"
#include "common/util/file.h"
#include "common/util/log.h"
#include "mcu-model/device.h"
#include "mcu-model/device_type.h"
#include "twin/driver.h"
#include "twin/dw100/run_command.h"
#include "twin/state_file.h"
#include "twin/twin.h"
#include "twin/twin_process.h"

ABSL_FLAG(std::string, cluster, "", "Path to DIR/cluster.json (required)");
ABSL_FLAG(std::string, name, "", "Twin name, e.g. dw100-0001 (required)");
ABSL_FLAG(absl::Duration, retry_budget, absl::Seconds(15),
          "How long attest keeps retrying transient failures (unavailable or "
          "overloaded shard, deadline exceeded)");
ABSL_FLAG(absl::Duration, backoff_initial, absl::Seconds(1),
          "First retry delay (gRPC connection backoff: x1.6 per retry, "
          "jitter 0.2, capped at --backoff_max)");
ABSL_FLAG(absl::Duration, backoff_max, absl::Seconds(120),
          "Largest retry delay");
ABSL_FLAG(int64_t, min_catalog_revision, 0,
          "attest: have the shard answer from a catalog at least this new "
          "(e.g. the revision 'spherectl cluster status' reports after a "
          "change); 0 = any");
ABSL_FLAG(std::string, chain_out, "",
          "attest: also write the issued certificate chain (PEM) here");

namespace sphere::twin {
namespace {

int Fail(const absl::Status& s) {
  std::cerr << "twin: error: " << s.message() << "\n";
  return 1;
}

int Attest(const cluster::ClusterConfig& c, const std::string& name) {
  const std::string path = TwinStatePath(c.state_dir, name);
  auto state = ReadTwinState(path);
  if (!state.ok()) return Fail(state.status());
  auto root = util::ReadFile(c.root_ca);
  if (!root.ok()) return Fail(root.status());
  auto device =
      mcu::Device::Restore(mcu::DeviceType::Mt3620(),
                           state->rom_image_signing_key(), state->device(), {});
  if (!device.ok()) return Fail(device.status());

  TwinConfig config;
  config.root_ca_pem = *root;
  config.min_catalog_revision = absl::GetFlag(FLAGS_min_catalog_revision);
  config.backoff.initial = absl::GetFlag(FLAGS_backoff_initial);
  config.backoff.max = absl::GetFlag(FLAGS_backoff_max);
  Twin twin(std::move(*device), &config);

  // The device's own mTLS identity: the factory's manufacturing certificate
  // for its certificate key (TLS offload; the device key stays in Pluton).
  rpc::TlsFiles tls;
  tls.cert_pem = state->manufacturing_chain_pem();
  tls.key_pem = twin.device().ExportCertificateKeyForTls();
  tls.ca_pem = *root;
  v1::AttestResponse issued;
  {
    client::AsyncAttestationClient client(c.shards, tls, {});
    TwinDriver driver(&client, Clock::Real());
    driver.set_attest_observer(
        [&](uint32_t, Twin&, const v1::AttestResponse& r) { issued = r; });
    driver.Add(&twin);
    driver.RunUntil(
        [&] {
          return twin.phase() == Twin::Phase::kCertified ||
                 twin.phase() == Twin::Phase::kRefused;
        },
        absl::Now() + absl::GetFlag(FLAGS_retry_budget));
  }
  if (!twin.boot_status().ok()) {
    std::cerr << "twin: secure boot failed, device in recovery: "
              << twin.boot_status().message() << "\n";
  }
  // Persist the device (boot counters moved) whatever the outcome.
  auto sealed = twin.device().Serialize();
  if (!sealed.ok()) return Fail(sealed.status());
  state->set_device(*sealed);
  if (twin.phase() == Twin::Phase::kCertified) {
    state->set_certificate_chain_pem(issued.certificate_chain_pem());
    state->set_session_token(issued.session_token());
    state->set_not_after_unix_ms(issued.not_after_unix_ms());
  }
  if (auto s = WriteTwinState(path, *state); !s.ok()) return Fail(s);
  if (twin.phase() != Twin::Phase::kCertified) {
    if (twin.last_error().ok()) {
      return Fail(absl::DeadlineExceededError(absl::StrCat(
          "no answer from the Security Service within --retry_budget=",
          absl::FormatDuration(absl::GetFlag(FLAGS_retry_budget)))));
    }
    return Fail(twin.last_error());
  }
  if (const std::string out = absl::GetFlag(FLAGS_chain_out); !out.empty()) {
    if (auto s = util::WriteFile(out, issued.certificate_chain_pem());
        !s.ok()) {
      return Fail(s);
    }
  }
  auto chain = crypto::SplitPemChain(issued.certificate_chain_pem());
  auto leaf = crypto::ParseCertificate(chain[0]);  // verified by the Twin
  if (!leaf.ok()) return Fail(leaf.status());
  std::cout << "attested " << name << " outcome "
            << v1::AttestationOutcome_Name(issued.outcome()) << "\n"
            << "  subject: " << leaf->subject_line << "\n"
            << "  issuer:  " << leaf->issuer_line << "\n"
            << "  claims:  device=" << leaf->claims.device_id
            << " tenant=" << leaf->claims.tenant_id
            << " product=" << leaf->claims.product_id
            << " group=" << leaf->claims.device_group_id
            << " scope=" << leaf->claims.scope << "\n"
            << "  valid until " << absl::FormatTime(leaf->not_after) << "\n"
            << "  chain:   device -> " << leaf->issuer_line
            << " -> Sphere Platform Root CA (in " << path << ")\n";
  if (issued.outdated_components_size() > 0) {
    std::cout << "  update required for: "
              << absl::StrJoin(issued.outdated_components(), ", ") << "\n";
  }
  return 0;
}

}  // namespace
}  // namespace sphere::twin

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "twin --cluster DIR/cluster.json --name NAME "
      "attest|update|run|run-basic|\n"
      "install-app FILE...|status|fault F|diagnostics|check-updates");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() < 2 || absl::GetFlag(FLAGS_cluster).empty() ||
      absl::GetFlag(FLAGS_name).empty()) {
    std::cerr << "usage: twin --cluster DIR/cluster.json --name NAME "
                 "attest|update|run|...\n";
    return 2;
  }
  const std::string name = absl::GetFlag(FLAGS_name);
  if (auto s = sphere::twin::ValidateTwinName(name); !s.ok()) {
    return sphere::twin::Fail(s);
  }
  sphere::log::SetComponent(absl::StrCat("twin:", name));
  auto c = sphere::cluster::LoadClusterConfig(absl::GetFlag(FLAGS_cluster));
  if (!c.ok()) return sphere::twin::Fail(c.status());
  const std::string cmd = args[1];
  if (cmd == "install-app") {
    return sphere::dw100::InstallAppsCommand(
        *c, name, std::vector<std::string>(args.begin() + 2, args.end()));
  }
  if (cmd == "status" || cmd == "fault" || cmd == "diagnostics" ||
      cmd == "check-updates") {
    return sphere::dw100::ControlCommand(
        *c, name, cmd, std::vector<std::string>(args.begin() + 2, args.end()));
  }
  if (args.size() != 2) {
    std::cerr << "usage: twin --cluster DIR/cluster.json --name NAME "
                 "attest|run|install-app FILE...|status|fault F|diagnostics\n";
    return 2;
  }
  if (cmd == "run") return sphere::dw100::RunCommand(*c, name);
  if (cmd == "attest") return sphere::twin::Attest(*c, name);
  const int64_t rev = absl::GetFlag(FLAGS_min_catalog_revision);
  if (cmd == "update") return sphere::twin::RunUpdateCommand(*c, name, rev);
  // The plain twin without the DW100 apps' cloud link (no telemetry).
  if (cmd == "run-basic") return sphere::twin::RunTwinCommand(*c, name, rev);
  if (cmd == "manufacture") {
    std::cerr << "twin: manufacturing moved to the factory tool (the twin "
                 "never holds the manufacturing CA's key): run "
                 "bazel-bin/securitysvc/factory/factory --cluster "
              << absl::GetFlag(FLAGS_cluster) << " --name " << name << "\n";
    return 2;
  }
  std::cerr << "twin: unknown command '" << cmd
            << "': expected attest, update, run, run-basic, install-app, "
               "status, fault, diagnostics or check-updates\n";
  return 2;
}
