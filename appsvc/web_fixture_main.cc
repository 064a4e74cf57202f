// appsvc_web_fixture: appsvc's web server over its real core (ContosoCloud on
// a RocksDB in a scratch directory, the same WebServer and pages), with no
// Sphere cluster behind it, for the headless-Chromium page test
// (tests/browser). It seeds two customers, injects three too-hot drying
// cycles for one dishwasher (so the support page shows an anomaly) and a
// normal cycle for the other, creates three web accounts with random
// passwords (support; "ada", owner of the anomalous one; "bob", owner of the
// other), prints one JSON line
//   {"port": P, "anomalous": "<id>", "owner": "<id>",
//    "accounts": {"support": PW, "ada": PW, "bob": PW}}
// and serves until stdin closes or SIGTERM. Test-only.
//
// Sphere half: no Sphere cluster runs behind the fixture. The anomalous
// dishwasher's Sphere history is a fixed sample (one successful
// attestation, one refused attempt, one installed update) answered as
// DeviceStatusService.GetDeviceHistory entries and turned into timeline rows
// by appsvc's own HistoryEntry, so the page test sees the rows the real
// source produces; other devices get sphere_error. The gRPC fetch itself is
// covered against real processes by tests/dw100_scheduled_update_e2e_test.
#include <unistd.h>

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "appsvc/contoso_cloud.h"
#include "appsvc/durable_writer.h"
#include "appsvc/password.h"
#include "appsvc/sphere_source.h"
#include "appsvc/web_auth.h"
#include "appsvc/web_server.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/store/store.h"
#include "common/util/clock.h"
#include "common/util/file.h"
#include "protos/attestation.pb.h"

ABSL_FLAG(std::string, dir, "", "Scratch directory (required)");

namespace contoso::appsvc {
namespace {

class SampleSphere final : public SphereSource {
 public:
  explicit SampleSphere(std::string device_id)
      : device_id_(std::move(device_id)) {}
  SphereFacts Fetch(const std::string& device_id) override {
    SphereFacts f;
    if (device_id != device_id_) {
      f.errors.push_back(
          "Sphere data: this page fixture has no Sphere cluster");
      return f;
    }
    const int64_t now = absl::ToUnixMillis(absl::Now());
    sphere::v1::DeviceHistoryEntry attested;
    attested.set_time_unix_ms(now - 3 * 3600 * 1000);
    auto* a = attested.mutable_attestation();
    a->set_success(true);
    a->set_outcome("UP_TO_DATE");
    a->set_os_version("1");
    (*a->mutable_component_versions())["app:dw100"] = 1;
    (*a->mutable_component_versions())["kernel"] = 1;
    sphere::v1::DeviceHistoryEntry refused;
    refused.set_time_unix_ms(now - 2 * 3600 * 1000);
    refused.mutable_attestation()->set_outcome("UNAUTHENTICATED");
    refused.mutable_attestation()->set_reason("nonce expired");
    sphere::v1::DeviceHistoryEntry update;
    update.set_time_unix_ms(now - 3600 * 1000);
    auto* u = update.mutable_update_result();
    u->set_result("INSTALLED");
    u->set_component("app:dw100");
    u->set_version(2);
    for (const auto* h : {&attested, &refused, &update}) {
      f.entries.push_back(HistoryEntry(*h));
    }
    f.os_version = "1";
    f.app_version = "dw100 v2";
    f.last_attestation = "UP_TO_DATE";
    return f;
  }

 private:
  const std::string device_id_;
};

// Fewer PBKDF2 rounds than production: this fixture's passwords are random
// and live only as long as the test.
constexpr int kFixtureIterations = 20'000;

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "web fixture: %s\n", s.ToString().c_str());
  return 1;
}

int Main() {
  const std::string dir = absl::GetFlag(FLAGS_dir);
  if (dir.empty()) return Fail(absl::InvalidArgumentError("--dir is required"));
  if (auto s = sphere::util::MakeDirs(dir, 0700); !s.ok()) return Fail(s);
  // A self-signed server certificate for 127.0.0.1.
  auto key = sphere::crypto::EcPrivateKey::Generate();
  sphere::crypto::CertificateSpec spec;
  spec.common_name = "appsvc web fixture";
  spec.subject_public_key = key.PublicKey();
  spec.not_before = absl::Now() - absl::Hours(1);
  spec.not_after = absl::Now() + absl::Hours(24);
  spec.usage = sphere::crypto::KeyUsage::kServerAuth;
  spec.ip_sans = {"127.0.0.1"};
  spec.dns_sans = {"localhost"};
  auto pem = sphere::crypto::IssueCertificate(spec, key, "");
  if (!pem.ok()) return Fail(pem.status());
  if (auto s = sphere::util::WriteFile(dir + "/web.pem", *pem); !s.ok())
    return Fail(s);
  if (auto s = sphere::util::WriteFile(dir + "/web.key", key.ToPem(), 0600);
      !s.ok())
    return Fail(s);

  auto store = sphere::store::OpenRocksStore(dir + "/db", ColumnFamilies());
  if (!store.ok()) return Fail(store.status());
  sphere::store::GroupCommitWriter group(store->get(), {"appsvc"});
  SharedGroupCommit writer(&group);
  ContosoCloud cloud(store->get(), &writer, sphere::Clock::Real());
  const std::string anomalous(64, 'a'), owner(64, 'b');
  SeedData seed;
  for (auto [id, name] :
       {std::pair{anomalous, "Ada"}, std::pair{owner, "Bob"}}) {
    records::Customer c;
    c.set_device_id(id);
    c.set_name(name);
    c.set_email(absl::StrCat(name, "@example.com"));
    c.set_shop_id("shop-1");
    c.set_warranty_until_unix_ms(
        absl::ToUnixMillis(absl::Now() + absl::Hours(24 * 365)));
    seed.customers.push_back(c);
  }
  records::Shop shop;
  shop.set_id("shop-1");
  shop.set_name("Redmond Appliance Repair");
  (*shop.mutable_inventory())["DW100-HTR-220"] = 1;
  seed.shops.push_back(shop);
  if (auto s = cloud.LoadSeed(seed); !s.ok()) return Fail(s);
  uint64_t seq = 1;
  auto cycle = [&](const std::string& dev, uint64_t id, double drying) {
    v1::ReportTelemetryRequest req;
    for (int i = 0; i < 6; ++i) {
      v1::Telemetry* t = req.add_samples();
      t->set_time_unix_ms(absl::ToUnixMillis(absl::Now()));
      t->set_water_temperature_c(55);
      t->set_drying_temperature_c(drying);
      t->set_rinse_agent_level_pct(dev == owner ? 12 : 70);
      t->set_cycle_state(i == 5 ? v1::Telemetry::DONE : v1::Telemetry::DRYING);
      t->set_cycle_id(id);
      t->set_sequence(seq++);
    }
    return cloud.ReportTelemetry(dev, req).status();
  };
  for (uint64_t c = 1; c <= 3; ++c) {
    if (auto s = cycle(anomalous, c, 64); !s.ok()) return Fail(s);
  }
  for (uint64_t c = 4; c <= 6; ++c) {
    if (auto s = cycle(anomalous, c, 97); !s.ok()) return Fail(s);
  }
  if (auto s = cycle(owner, 1, 65); !s.ok()) return Fail(s);

  // Web accounts with fresh random passwords (printed below for the test).
  WebAuth::Options auth_options;
  auth_options.dummy_iterations = kFixtureIterations;
  WebAuth auth(sphere::Clock::Real(), auth_options);
  const std::string support_pw = RandomToken(12), ada_pw = RandomToken(12),
                    bob_pw = RandomToken(12);
  std::vector<WebAccount> accounts = {{"support", WebRole::kSupport, "", ""},
                                      {"ada", WebRole::kOwner, anomalous, ""},
                                      {"bob", WebRole::kOwner, owner, ""}};
  for (auto [a, pw] :
       {std::pair{&accounts[0], &support_pw}, std::pair{&accounts[1], &ada_pw},
        std::pair{&accounts[2], &bob_pw}}) {
    auto h = HashPassword(*pw, kFixtureIterations);
    if (!h.ok()) return Fail(h.status());
    a->password_hash = *h;
  }
  if (auto s = auth.SetAccounts(accounts); !s.ok()) return Fail(s);

  SampleSphere sphere(anomalous);
  WebServerOptions w;
  w.cert_file = dir + "/web.pem";
  w.key_file = dir + "/web.key";
  WebServer web(&cloud, &sphere, &auth, w);
  if (auto s = web.Start(); !s.ok()) return Fail(s);
  std::printf(
      "{\"port\": %d, \"anomalous\": \"%s\", \"owner\": \"%s\", "
      "\"accounts\": {\"support\": \"%s\", \"ada\": \"%s\", \"bob\": "
      "\"%s\"}}\n",
      web.port(), anomalous.c_str(), owner.c_str(), support_pw.c_str(),
      ada_pw.c_str(), bob_pw.c_str());
  std::fflush(stdout);
  // Serve until the test closes our stdin (or kills us).
  char buf[256];
  while (read(0, buf, sizeof buf) > 0) {
  }
  web.Stop();
  return 0;
}

}  // namespace
}  // namespace contoso::appsvc

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return contoso::appsvc::Main();
}
