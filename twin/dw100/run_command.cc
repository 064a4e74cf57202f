#include "twin/dw100/run_command.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <iostream>
#include <thread>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/util/file.h"
#include "common/util/log.h"
#include "common/util/metrics_http.h"
#include "mcu-model/device.h"
#include "mcu-model/device_type.h"
#include "mcu-model/image.h"
#include "protos/twin_control.grpc.pb.h"
#include "twin/dw100/control_service.h"
#include "twin/dw100/device_loop.h"
#include "twin/state_file.h"

ABSL_DECLARE_FLAG(std::string, metrics_address);    // common/rpc
ABSL_DECLARE_FLAG(std::string, metrics_port_file);  // common/rpc
ABSL_FLAG(int, port, 0, "run: loopback port of TwinControl (0 = any free)");
ABSL_FLAG(std::string, port_file, "",
          "run: also write the bound TwinControl port here (it is always "
          "written to DIR/twins/NAME/control.port)");
ABSL_FLAG(double, time_scale, 1.0,
          "run: device time runs this many times faster than real time (wash "
          "cycles every 8 device hours; e.g. 2000 = one cycle per ~15 s)");
ABSL_FLAG(std::string, appsvc, "",
          "run: Contoso cloud address host:port (default: cluster.json "
          "\"appsvc\"; none = no cloud)");
ABSL_FLAG(std::string, appsvc_ca, "",
          "run: PEM roots for the Contoso cloud's server certificate "
          "(default: the platform root)");
ABSL_FLAG(double, update_check_hours, 24,
          "run: check for updates every this many DEVICE hours (scaled by "
          "--time_scale), without waiting for an attestation; 0 = only when "
          "asked (check-updates)");
ABSL_FLAG(uint64_t, seed, 0,
          "run: wash-model noise seed (0 = derived from the device id)");
ABSL_FLAG(int, batch_size, 200, "run: telemetry readings per upload (<= 1000)");
ABSL_FLAG(absl::Duration, upload_interval, absl::Seconds(2),
          "run: upload a partial batch after this long (real time)");
ABSL_FLAG(absl::Duration, poll_interval, absl::Seconds(2),
          "run: poll the Contoso cloud for commands this often (real time)");

namespace sphere::dw100 {
namespace {

int Fail(const absl::Status& s) {
  std::cerr << "twin: error: " << s.message() << "\n";
  return 1;
}

// Largest application package file accepted (the app-a partition is 4 MiB).
constexpr size_t kMaxPackageBytes = 8 << 20;

}  // namespace

int InstallAppsCommand(const cluster::ClusterConfig& c, const std::string& name,
                       const std::vector<std::string>& files) {
  if (files.empty()) {
    std::cerr << "usage: twin --cluster C --name N install-app FILE...\n";
    return 2;
  }
  const std::string path = twin::TwinStatePath(c.state_dir, name);
  auto state = twin::ReadTwinState(path);
  if (!state.ok()) return Fail(state.status());
  auto device =
      mcu::Device::Restore(mcu::DeviceType::Mt3620(),
                           state->rom_image_signing_key(), state->device(), {});
  if (!device.ok()) return Fail(device.status());
  if (auto s = (*device)->Boot(); !s.ok()) {
    return Fail(absl::FailedPreconditionError(absl::StrCat(
        "secure boot failed, cannot install apps: ", s.message())));
  }
  for (const std::string& f : files) {
    auto bytes = util::ReadFile(f);
    if (!bytes.ok()) return Fail(bytes.status());
    if (bytes->size() > kMaxPackageBytes) {
      return Fail(absl::InvalidArgumentError(absl::StrCat(
          f, " is ", bytes->size(), " bytes, larger than any app partition")));
    }
    v1::ImagePackage pkg;
    if (!pkg.ParseFromString(*bytes)) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat(f, " is not an image package")));
    }
    if (auto s = (*device)->LoadApp(pkg); !s.ok()) {
      return Fail(absl::Status(s.code(), absl::StrCat(f, ": ", s.message())));
    }
    v1::ImageHeader h;
    h.ParseFromString(pkg.header());
    std::cout << "installed " << h.component() << " v" << h.version() << " on "
              << name << "\n";
  }
  auto sealed = (*device)->Serialize();
  if (!sealed.ok()) return Fail(sealed.status());
  state->set_device(*sealed);
  if (auto s = twin::WriteTwinState(path, *state); !s.ok()) return Fail(s);
  return 0;
}

int RunCommand(const cluster::ClusterConfig& c, const std::string& name) {
  rpc::InstallTerminationSignalMask();  // before any thread starts
  const std::string path = twin::TwinStatePath(c.state_dir, name);
  auto state = twin::ReadTwinState(path);
  if (!state.ok()) return Fail(state.status());
  auto root = util::ReadFile(c.root_ca);
  if (!root.ok()) return Fail(root.status());
  auto device =
      mcu::Device::Restore(mcu::DeviceType::Mt3620(),
                           state->rom_image_signing_key(), state->device(), {});
  if (!device.ok()) return Fail(device.status());

  DeviceLoopOptions o;
  o.name = name;
  o.state_path = path;
  o.shards = c.shards;
  o.root_ca_pem = *root;
  o.appsvc_address = absl::GetFlag(FLAGS_appsvc).empty()
                         ? c.appsvc
                         : absl::GetFlag(FLAGS_appsvc);
  o.appsvc_server_name = c.ServerName("appsvc");
  if (const std::string ca = absl::GetFlag(FLAGS_appsvc_ca); !ca.empty()) {
    auto pem = util::ReadFile(ca);
    if (!pem.ok()) return Fail(pem.status());
    o.appsvc_ca_pem = *pem;
  }
  o.time_scale = absl::GetFlag(FLAGS_time_scale);
  if (!(o.time_scale >= 0.001 && o.time_scale <= 1e6)) {
    return Fail(absl::InvalidArgumentError(
        "--time_scale must be between 0.001 and 1000000"));
  }
  const double check_hours = absl::GetFlag(FLAGS_update_check_hours);
  if (!(check_hours >= 0 && check_hours <= 24 * 3650)) {
    return Fail(absl::InvalidArgumentError(
        "--update_check_hours must be between 0 (off) and 87600"));
  }
  o.update_check_interval = absl::Hours(check_hours);
  o.seed = absl::GetFlag(FLAGS_seed);
  const std::string device_id = (*device)->device_id();
  if (o.seed == 0) {
    uint64_t s = 0;
    absl::SimpleHexAtoi(device_id.substr(0, 15), &s);
    o.seed = s;
  }
  o.agent.batch_size = static_cast<size_t>(std::clamp(
      absl::GetFlag(FLAGS_batch_size), 1, static_cast<int>(kMaxBatch)));
  o.agent.upload_interval = absl::GetFlag(FLAGS_upload_interval);
  o.agent.poll_interval = absl::GetFlag(FLAGS_poll_interval);
  o.agent.backoff.initial = absl::Milliseconds(500);
  o.agent.backoff.max = absl::Seconds(10);
  o.twin.root_ca_pem = *root;
  o.twin.backoff.initial = absl::Milliseconds(500);
  o.twin.backoff.max = absl::Seconds(10);
  DeviceLoop loop(std::move(o), *std::move(device), *std::move(state));

  // TwinControl: loopback only, like a local admin socket.
  TwinControlService control(&loop);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(
      absl::StrCat("127.0.0.1:", absl::GetFlag(FLAGS_port)),
      grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(64 << 10);
  builder.RegisterService(&control);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return Fail(absl::UnavailableError("cannot start the TwinControl server"));
  }
  const std::string port_file =
      absl::StrCat(twin::TwinDir(c.state_dir, name), "/control.port");
  if (auto s = util::WriteFile(port_file, absl::StrCat(port)); !s.ok()) {
    return Fail(s);
  }
  if (const std::string f = absl::GetFlag(FLAGS_port_file); !f.empty()) {
    if (auto s = util::WriteFile(f, absl::StrCat(port)); !s.ok())
      return Fail(s);
  }
  // Process metrics (Prometheus text over HTTP), like every process.
  std::unique_ptr<metrics::MetricsHttpServer> metrics_http;
  if (const std::string a = absl::GetFlag(FLAGS_metrics_address); !a.empty()) {
    auto m = metrics::MetricsHttpServer::Start(a);
    if (!m.ok()) return Fail(m.status());
    metrics_http = *std::move(m);
    if (const std::string f = absl::GetFlag(FLAGS_metrics_port_file);
        !f.empty()) {
      if (auto s = util::WriteFile(f, absl::StrCat(metrics_http->port()));
          !s.ok()) {
        return Fail(s);
      }
    }
  }
  std::thread device_thread([&loop] { loop.Run(); });
  std::cout << "ready " << name << " device_id " << device_id
            << " control 127.0.0.1:" << port << std::endl;
  const int sig = rpc::WaitForTerminationSignal();
  log::Info("stopping", {{"signal", absl::StrCat(sig)}});
  // Calls in flight wait on the loop: shut the server down first.
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(3));
  loop.Stop();
  device_thread.join();
  unlink(port_file.c_str());
  return 0;
}

namespace {

void PrintStatus(const std::string& name, const v1::TwinStatus& st) {
  std::cout << name << " device_id " << st.device_id() << "\n"
            << "  boot state:  " << st.boot_state() << "\n"
            << "  attestation: " << st.attestation_outcome() << "\n"
            << "  running:    ";
  for (const auto& c : st.components()) {
    std::cout << " " << c.component() << "=v" << c.version();
  }
  std::cout << "\n";
  if (!st.certificate_subject().empty()) {
    std::cout << "  certificate: " << st.certificate_subject() << " until "
              << absl::FormatTime(
                     absl::FromUnixMillis(st.certificate_not_after_unix_ms()))
              << " (tenant " << st.tenant_id() << ", group "
              << st.device_group_id() << ")\n";
  }
}

}  // namespace

int ControlCommand(const cluster::ClusterConfig& c, const std::string& name,
                   const std::string& verb,
                   const std::vector<std::string>& args) {
  std::string address;
  if (auto it = c.twins.find(name); it != c.twins.end()) {
    address = it->second;
  } else {
    auto port = util::ReadFile(
        absl::StrCat(twin::TwinDir(c.state_dir, name), "/control.port"));
    if (!port.ok()) {
      return Fail(absl::NotFoundError(absl::StrCat(
          "twin ", name,
          " is not running (no TwinControl address in "
          "cluster.json or control.port); start it with: twin --cluster ... "
          "--name ",
          name, " run")));
    }
    address = absl::StrCat("127.0.0.1:", absl::StripAsciiWhitespace(*port));
  }
  auto stub = v1::TwinControl::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(20)));
  if (verb == "status") {
    v1::TwinStatus st;
    grpc::Status s = stub->GetStatus(&ctx, v1::GetStatusRequest(), &st);
    if (!s.ok()) return Fail(rpc::FromGrpcStatus(s));
    PrintStatus(name, st);
    return 0;
  }
  if (verb == "fault") {
    v1::InjectFaultRequest::Fault f;
    if (args.size() != 1 || !v1::InjectFaultRequest::Fault_Parse(args[0], &f) ||
        f == v1::InjectFaultRequest::FAULT_UNSPECIFIED) {
      std::cerr << "usage: twin --name N fault APP_CRASH|TAMPER|"
                   "DRYING_HEATER_DRIFT|DRYING_HEATER_HOT|RINSE_AGENT_LOW|"
                   "POWER_LOSS_DURING_UPDATE\n";
      return 2;
    }
    v1::InjectFaultRequest req;
    req.set_fault(f);
    v1::TwinStatus st;
    grpc::Status s = stub->InjectFault(&ctx, req, &st);
    if (!s.ok()) return Fail(rpc::FromGrpcStatus(s));
    std::cout << "injected " << args[0] << " on " << name << "\n";
    PrintStatus(name, st);
    return 0;
  }
  if (verb == "check-updates") {
    grpc::ClientContext uctx;
    uctx.set_deadline(rpc::Deadline(absl::Seconds(90)));
    v1::TwinStatus st;
    grpc::Status s =
        stub->CheckForUpdates(&uctx, v1::CheckForUpdatesRequest(), &st);
    if (!s.ok()) return Fail(rpc::FromGrpcStatus(s));
    PrintStatus(name, st);
    return 0;
  }
  if (verb == "diagnostics") {
    v1::RunDiagnosticsRequest req;
    req.set_requested_by("twin-cli");
    v1::DiagnosticsReport r;
    grpc::Status s = stub->RunDiagnostics(&ctx, req, &r);
    if (!s.ok()) return Fail(rpc::FromGrpcStatus(s));
    std::cout << name << " self-test: " << (r.healthy() ? "healthy" : "FAULT")
              << "\n";
    for (const auto& f : r.findings()) std::cout << "  " << f << "\n";
    if (!r.suspected_part().empty()) {
      std::cout << "  suspected part: " << r.suspected_part() << "\n";
    }
    return 0;
  }
  std::cerr << "twin: unknown control verb " << verb << "\n";
  return 2;
}

}  // namespace sphere::dw100
