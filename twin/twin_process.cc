#include "twin/twin_process.h"

#include <atomic>
#include <iostream>
#include <thread>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "client/update_client.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/util/clock.h"
#include "common/util/file.h"
#include "common/util/log.h"
#include "mcu-model/device.h"
#include "mcu-model/device_type.h"
#include "mcu-model/image.h"
#include "twin/driver.h"
#include "twin/state_file.h"
#include "twin/update_runner.h"

ABSL_FLAG(absl::Duration, update_budget, absl::Seconds(60),
          "update/run: how long one attestation or one update check may take "
          "(transient failures are retried with backoff within it)");
ABSL_FLAG(absl::Duration, update_check_interval, absl::Hours(6),
          "run: time between scheduled update checks (one also follows every "
          "accepted attestation)");

ABSL_FLAG(uint64_t, update_progress_bytes, 1 << 20,
          "update: download images in ranges of this many bytes and save the "
          "progress to twin.state after each, so a kill -9 mid-download "
          "resumes there (0 = one stream, progress saved only when the check "
          "ends)");
ABSL_FLAG(uint64_t, update_download_bytes_per_s, 0,
          "update: cap the download rate (bytes/s, paced per range) like a "
          "device on a slow link; 0 = no cap");

namespace sphere::twin {
namespace {

// PaceDownload waits out what `bytes` cost at the --update_download_bytes_per_s
// cap (a timed wait on the twin's own thread, never a gRPC thread).
void PaceDownload(uint64_t bytes) {
  const uint64_t rate = absl::GetFlag(FLAGS_update_download_bytes_per_s);
  if (rate == 0) return;
  absl::Notification never;
  never.WaitForNotificationWithTimeout(
      absl::Seconds(static_cast<double>(bytes) / static_cast<double>(rate)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<TwinProcess>> TwinProcess::Load(
    const cluster::ClusterConfig& cluster, const std::string& name,
    absl::Duration budget, int64_t min_catalog_revision) {
  std::unique_ptr<TwinProcess> p(new TwinProcess());
  p->cluster_ = cluster;
  p->name_ = name;
  p->budget_ = budget;
  p->path_ = TwinStatePath(cluster.state_dir, name);
  auto state = ReadTwinState(p->path_);
  if (!state.ok()) return state.status();
  p->state_ = *std::move(state);
  auto root = util::ReadFile(cluster.root_ca);
  if (!root.ok()) return root.status();
  p->root_pem_ = *std::move(root);
  auto device = mcu::Device::Restore(mcu::DeviceType::Mt3620(),
                                     p->state_.rom_image_signing_key(),
                                     p->state_.device(), {});
  if (!device.ok()) return device.status();
  p->twin_config_.root_ca_pem = p->root_pem_;
  p->twin_config_.min_catalog_revision = min_catalog_revision;
  p->agent_config_.check_interval = absl::GetFlag(FLAGS_update_check_interval);
  p->twin_ = std::make_unique<Twin>(std::move(*device), &p->twin_config_);
  p->agent_config_.progress_range_bytes =
      absl::GetFlag(FLAGS_update_progress_bytes);
  p->agent_ = std::make_unique<UpdateAgent>(
      p->twin_.get(), &p->agent_config_, p->state_.update_metadata_version());
  // Each completed download range is a save point (kill -9 resumes there).
  p->agent_->set_progress_listener([t = p.get()](const UpdateAgent& a) {
    auto progress = a.download_progress();
    absl::Status s = t->Save();
    log::Info(
        "twin: download progress saved",
        {{"image", progress ? progress->image_id() : ""},
         {"offset", absl::StrCat(progress ? progress->bytes().size() : 0)},
         {"of", absl::StrCat(progress ? progress->package_size() : 0)},
         {"status", s.ok() ? "ok" : s.ToString()}});
    PaceDownload(t->agent_config_.progress_range_bytes);
  });
  if (!p->state_.update_download().empty()) {
    // An interrupted download resumes at its offset; bad progress only
    // costs a download from the start.
    v1::UpdateDownloadProgress progress;
    absl::Status restored =
        progress.ParseFromString(p->state_.update_download())
            ? p->agent_->RestoreDownload(progress)
            : absl::DataLossError("update download progress does not parse");
    if (!restored.ok()) {
      log::Warning("twin: download progress dropped",
                   {{"error", restored.ToString()}});
    } else {
      log::Info("twin: download resumes from saved progress",
                {{"image", progress.image_id()},
                 {"offset", absl::StrCat(progress.bytes().size())},
                 {"of", absl::StrCat(progress.package_size())}});
    }
  }
  rpc::TlsFiles tls;
  tls.cert_pem = p->state_.manufacturing_chain_pem();
  tls.key_pem = p->twin_->device().ExportCertificateKeyForTls();
  tls.ca_pem = p->root_pem_;
  p->attestation_ = std::make_unique<client::AsyncAttestationClient>(
      cluster.shards, tls, client::AsyncAttestationClient::Options());
  return p;
}

TwinProcess::~TwinProcess() {
  agent_.reset();  // unregisters from the twin first
  attestation_.reset();
}

absl::Status TwinProcess::Save() {
  auto sealed = twin_->device().Serialize();
  if (!sealed.ok()) return sealed.status();
  state_.set_device(*std::move(sealed));
  state_.set_update_metadata_version(agent_->metadata_version());
  auto progress = agent_->download_progress();
  state_.set_update_download(progress ? progress->SerializeAsString() : "");
  return WriteTwinState(path_, state_);
}

absl::Status TwinProcess::Attest() {
  const absl::Time start = absl::Now();
  twin_->RequestAttestation(start);
  bool accepted = false;
  {
    TwinDriver driver(attestation_.get(), Clock::Real());
    driver.set_attest_observer(
        [&](uint32_t, Twin&, const v1::AttestResponse& r) {
          issued_ = r;
          accepted = true;
          state_.set_certificate_chain_pem(r.certificate_chain_pem());
          state_.set_session_token(r.session_token());
          state_.set_not_after_unix_ms(r.not_after_unix_ms());
        });
    driver.Add(twin_.get());
    driver.RunUntil(
        [&] { return accepted || twin_->phase() == Twin::Phase::kRefused; },
        start + budget_);
  }
  absl::Status s = absl::OkStatus();
  if (!accepted) {
    s = twin_->last_error().ok()
            ? absl::DeadlineExceededError(
                  absl::StrCat("no answer from the Security Service within ",
                               absl::FormatDuration(budget_)))
            : twin_->last_error();
  }
  last_attest_status_ = s;
  if (absl::Status saved = Save(); !saved.ok() && s.ok()) s = saved;
  return s;
}

absl::Status TwinProcess::Reboot() {
  absl::Status s = twin_->device().Reboot();
  twin_->RequestAttestation(absl::Now());  // measurements changed
  if (absl::Status saved = Save(); !saved.ok() && s.ok()) s = saved;
  return s;
}

absl::Status TwinProcess::CheckForUpdates() {
  if (!twin_->certified() || twin_->certificate_not_after() <= absl::Now() ||
      state_.certificate_chain_pem().empty()) {
    if (absl::Status s = Attest(); !s.ok()) {
      // No certificate for the update service: try again later, not in a
      // loop against a shard that refuses or is down.
      agent_->ScheduleCheck(absl::Now() + absl::Minutes(1));
      return s;
    }
  }
  rpc::TlsFiles tls;
  tls.cert_pem = state_.certificate_chain_pem();
  tls.key_pem = twin_->device().ExportCertificateKeyForTls();
  tls.ca_pem = root_pem_;
  absl::Status s;
  {
    client::UpdateClient updates(cluster_.shards, tls, {});
    // Re-attestation after an install: keep the new chain.
    s = RunUpdateCheck(
        *twin_, *agent_, updates, *attestation_, Clock::Real(),
        absl::Now() + budget_,
        [this](uint32_t, Twin&, const v1::AttestResponse& r) {
          issued_ = r;
          last_attest_status_ = absl::OkStatus();
          state_.set_certificate_chain_pem(r.certificate_chain_pem());
          state_.set_session_token(r.session_token());
          state_.set_not_after_unix_ms(r.not_after_unix_ms());
        });
  }
  if (absl::Status saved = Save(); !saved.ok() && s.ok()) s = saved;
  return s;
}

v1::TwinStatus TwinProcess::Status() {
  v1::TwinStatus st;
  mcu::Device& d = twin_->device();
  st.set_device_id(d.device_id());
  st.set_boot_state(d.tampered() ? "tampered"
                                 : mcu::BootStateName(d.boot_state()));
  for (const std::string& c : mcu::BootChainComponents()) {
    auto* v = st.add_components();
    v->set_component(c);
    v->set_version(d.InstalledVersion(c));
  }
  auto chain = crypto::SplitPemChain(state_.certificate_chain_pem());
  if (!chain.empty()) {
    auto leaf = crypto::ParseCertificate(chain[0]);
    if (leaf.ok()) {
      st.set_certificate_subject(leaf->subject_line);
      st.set_certificate_not_after_unix_ms(absl::ToUnixMillis(leaf->not_after));
      st.set_tenant_id(leaf->claims.tenant_id);
      st.set_device_group_id(leaf->claims.device_group_id);
    }
  }
  st.set_attestation_outcome(
      last_attest_status_.ok() ? v1::AttestationOutcome_Name(issued_.outcome())
                               : std::string(last_attest_status_.message()));
  return st;
}

namespace {

int Fail(const absl::Status& s) {
  std::cerr << "twin: error: " << s.message() << "\n";
  return 1;
}

void PrintOutcome(const std::string& name, const v1::AttestResponse& r) {
  std::cout << "attested " << name << " outcome "
            << v1::AttestationOutcome_Name(r.outcome()) << "\n";
  if (r.outdated_components_size() > 0) {
    std::cout << "  update required for: "
              << absl::StrJoin(r.outdated_components(), ", ") << "\n";
  }
}

}  // namespace

int RunUpdateCommand(const cluster::ClusterConfig& cluster,
                     const std::string& name, int64_t min_catalog_revision) {
  auto p = TwinProcess::Load(cluster, name, absl::GetFlag(FLAGS_update_budget),
                             min_catalog_revision);
  if (!p.ok()) return Fail(p.status());
  TwinProcess& t = **p;
  if (absl::Status s = t.Attest(); !s.ok()) return Fail(s);
  PrintOutcome(name, t.last_attestation());
  absl::Status s = t.CheckForUpdates();
  const UpdateAgent& agent = t.agent();
  std::cout << "update metadata version " << agent.metadata_version() << "\n";
  if (agent.last_results().empty() && s.ok()) {
    std::cout << "  up to date: nothing to install\n";
  }
  for (const auto& r : agent.last_results()) {
    std::cout << "  " << v1::ReportUpdateResultRequest::Result_Name(r.result())
              << " image " << r.image_id().substr(0, 16) << " version "
              << r.version() << (r.detail().empty() ? "" : ": ") << r.detail()
              << "\n";
  }
  if (!s.ok()) return Fail(s);
  PrintOutcome(name, t.last_attestation());
  return 0;
}

int RunTwinCommand(const cluster::ClusterConfig& cluster,
                   const std::string& name, int64_t min_catalog_revision) {
  rpc::InstallTerminationSignalMask();  // before any thread starts
  auto loaded = TwinProcess::Load(
      cluster, name, absl::GetFlag(FLAGS_update_budget), min_catalog_revision);
  if (!loaded.ok()) return Fail(loaded.status());
  TwinProcess& t = **loaded;
  if (absl::Status s = t.Attest(); !s.ok()) {
    log::Warning("initial attestation failed",
                 {{"twin", name}, {"error", std::string(s.message())}});
  }
  // TwinControl listens on loopback with a certificate made for this run.
  auto key = crypto::EcPrivateKey::Generate();
  crypto::CertificateSpec spec;
  spec.common_name = absl::StrCat("twin-control ", name);
  spec.subject_public_key = key.PublicKey();
  spec.not_before = absl::Now() - absl::Minutes(5);
  spec.not_after = absl::Now() + absl::Hours(24 * 365);
  spec.usage = crypto::KeyUsage::kServerAuth;
  spec.dns_sans = {"localhost"};
  spec.ip_sans = {"127.0.0.1"};
  auto cert = crypto::IssueCertificate(spec, key, "");
  if (!cert.ok()) return Fail(cert.status());
  WorkQueue queue(64);
  TwinControlService control(&t, &queue);
  rpc::ServerOptions options;
  options.address = "127.0.0.1:0";
  options.tls.cert_pem = *cert;
  options.tls.key_pem = key.ToPem();
  options.require_client_cert = false;
  options.max_threads = 4;
  options.max_connections = 64;
  rpc::ServerRunner runner(options);
  runner.AddService(&control);
  if (absl::Status s = runner.Start(); !s.ok()) return Fail(s);
  const std::string dir = TwinDir(cluster.state_dir, name);
  if (absl::Status s = util::WriteFile(dir + "/control.crt", *cert, 0600);
      !s.ok()) {
    return Fail(s);
  }
  if (absl::Status s = util::WriteFile(dir + "/control.port",
                                       absl::StrCat(runner.port(), "\n"), 0600);
      !s.ok()) {
    return Fail(s);
  }
  log::Info("twin control serving",
            {{"twin", name}, {"port", absl::StrCat(runner.port())}});
  std::atomic<bool> stop{false};
  std::thread signals([&] {
    rpc::WaitForTerminationSignal();
    stop = true;
    queue.Wake();
  });
  while (!stop) {
    const absl::Time now = absl::Now();
    if (t.twin().next_wakeup() <= now) {
      if (absl::Status s = t.Attest(); !s.ok()) {
        log::Warning("attestation failed",
                     {{"twin", name}, {"error", std::string(s.message())}});
      }
      continue;
    }
    if (t.agent().next_wakeup() <= now) {
      if (absl::Status s = t.CheckForUpdates(); !s.ok()) {
        log::Warning("update check failed",
                     {{"twin", name}, {"error", std::string(s.message())}});
      }
      continue;
    }
    const absl::Time due =
        std::min(t.twin().next_wakeup(), t.agent().next_wakeup());
    queue.RunFor(
        std::clamp(due - now, absl::Milliseconds(1), absl::Minutes(1)));
  }
  queue.Close();
  queue.RunFor(absl::ZeroDuration());  // finish what was accepted
  runner.Shutdown(absl::Seconds(5));
  signals.join();
  if (absl::Status s = t.Save(); !s.ok()) return Fail(s);
  log::Info("twin stopped", {{"twin", name}});
  return 0;
}

}  // namespace sphere::twin
