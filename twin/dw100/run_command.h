// The twin binary's DW100 commands (twin/twin_main.cc dispatches to them):
//
//   twin --cluster DIR/cluster.json --name NAME install-app FILE...
//       Installs platform-signed application packages (e.g. the DW100 app
//       and its real-time sensor app) on the device, as the factory line
//       does before shipping; the device verifies each signature and
//       manifest (mcu::Device::LoadApp) and refuses anything else.
//   twin --cluster DIR/cluster.json --name NAME run
//       Runs the device until SIGINT/SIGTERM: attests, sends DW100
//       telemetry to the Contoso cloud (cluster.json "appsvc" or --appsvc),
//       answers remote diagnostics, and serves TwinControl on loopback
//       (port written to DIR/twins/NAME/control.port). Prints
//       "ready NAME device_id ID control 127.0.0.1:PORT" once serving.
//       --time_scale N runs the wash cycles N times faster than real time.
//   twin --cluster DIR/cluster.json --name NAME status
//   twin --cluster DIR/cluster.json --name NAME fault FAULT
//   twin --cluster DIR/cluster.json --name NAME diagnostics
//   twin --cluster DIR/cluster.json --name NAME check-updates
//       TwinControl client for a running twin (address from cluster.json
//       "twins" or DIR/twins/NAME/control.port): prints its status, injects
//       FAULT (APP_CRASH, TAMPER, DRYING_HEATER_DRIFT, DRYING_HEATER_HOT,
//       RINSE_AGENT_LOW, POWER_LOSS_DURING_UPDATE), or runs the heater
//       self-test, or runs one update check (install + re-attest).
#ifndef SPHERE_TWIN_DW100_RUN_COMMAND_H_
#define SPHERE_TWIN_DW100_RUN_COMMAND_H_

#include <string>
#include <vector>

#include "common/cluster/cluster_config.h"

namespace sphere::dw100 {

int InstallAppsCommand(const cluster::ClusterConfig& c, const std::string& name,
                       const std::vector<std::string>& files);
int RunCommand(const cluster::ClusterConfig& c, const std::string& name);
// ControlCommand: `verb` is status, fault, diagnostics or check-updates.
int ControlCommand(const cluster::ClusterConfig& c, const std::string& name,
                   const std::string& verb,
                   const std::vector<std::string>& args);

}  // namespace sphere::dw100

#endif  // SPHERE_TWIN_DW100_RUN_COMMAND_H_
