// spherectl: the operator CLI for a Sphere cluster, modelled on azsphere.
//
//   spherectl [--cluster FILE] [--tenant NAME] [--output table|json]
//             [--timeout SECONDS] NOUN VERB [--option VALUE ...]
//
// `spherectl --help` lists the nouns, `spherectl NOUN --help` the verbs and
// `spherectl NOUN VERB --help` the options; all exit 0. Exit codes are in
// cli/exit_codes.h and at the end of every --help. The cluster file is the
// one local_cluster writes (default $SPHERE_CLUSTER, else ./cluster.json);
// see cli/context.h for how the tenant and credential are chosen.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "cli/context.h"
#include "cli/exit_codes.h"
#include "cli/output.h"

namespace sphere::cli {
namespace {

int Main(int argc, char** argv) {
  Context ctx;
  CLI::App app(
      "spherectl: manage a Sphere cluster (tenants, products, device groups, "
      "devices, images, OS releases, deployments)",
      "spherectl");
  app.require_subcommand(1);
  app.fallthrough();  // global options may also follow NOUN VERB
  app.footer(std::string("\nThe tenant: --tenant, else $SPHERE_TENANT, else "
                         "'spherectl tenant select'.\n") +
             kExitCodeHelp);
  GlobalOptions& o = ctx.options();
  app.add_option("--cluster", o.cluster,
                 "cluster file written by local_cluster (default "
                 "$SPHERE_CLUSTER, else ./cluster.json)");
  app.add_option("--tenant", o.tenant,
                 "tenant to act on (default $SPHERE_TENANT, else the "
                 "selected tenant)");
  app.add_option("--output", o.output, "table or json")
      ->check(CLI::IsMember({"table", "json"}));
  app.add_option("--timeout", o.timeout_seconds,
                 "deadline of each call in seconds (default 30)")
      ->check(CLI::PositiveNumber);

  AddTenantCommands(&app, &ctx);
  AddProductCommands(&app, &ctx);
  AddDeviceGroupCommands(&app, &ctx);
  AddDeviceCommands(&app, &ctx);
  AddCaCertificateCommands(&app, &ctx);
  AddImageCommands(&app, &ctx);
  AddOsCommands(&app, &ctx);
  AddDeploymentCommands(&app, &ctx);
  AddClusterCommands(&app, &ctx);
  AddErrorCommands(&app, &ctx);
  // Every subcommand's help ends with the exit codes too.
  std::vector<CLI::App*> pending = app.get_subcommands({});
  while (!pending.empty()) {
    CLI::App* sub = pending.back();
    pending.pop_back();
    sub->footer(kExitCodeHelp);
    for (CLI::App* s : sub->get_subcommands({})) pending.push_back(s);
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);  // prints the help of the command asked about; 0
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "error: %s\nrun '%s --help' for usage\n",
                 Escape(e.what()).c_str(), "spherectl [NOUN [VERB]]");
    return kExitUsage;
  }
  absl::Status s = ctx.Run();
  if (!s.ok()) {
    std::fprintf(stderr, "error: %s\n", Escape(s.message()).c_str());
    return ExitCodeFor(s);
  }
  return kExitOk;
}

}  // namespace
}  // namespace sphere::cli

int main(int argc, char** argv) { return sphere::cli::Main(argc, argv); }
