// The update service through real processes (local_cluster: management +
// one shard): a genuine device in DW100/Production attests, then with the
// certificate it got asks the shard's UpdateService for its group's signed
// set and downloads an OS package from management's sealed store through
// the shard. Checks what a device checks: the metadata signature under the
// platform image-signing key (the key in the device's ROM), that the
// downloaded bytes match the signed length and SHA-256, and that they are a
// platform-signed image package. (The install flow, UPDATE_REQUIRED ->
// UP_TO_DATE, is the twin side's test.)
#include <gtest/gtest.h>

#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/util/file.h"
#include "mcu-model/device.h"
#include "mcu-model/image.h"
#include "protos/update.grpc.pb.h"
#include "securitysvc/update/group_metadata.h"
#include "tests/cluster_fixture.h"
#include "tests/spherectl_runner.h"
#include "tests/twin_helpers.h"

namespace sphere::testing {
namespace {

TEST(UpdateE2ETest, DeviceGetsItsGroupsSignedSetAndDownloadsThroughTheShard) {
  auto c = LocalCluster::Start("update", 1);
  ASSERT_TRUE(c.ok()) << c.status();
  LocalCluster& cluster = **c;
  auto ctl = [&](std::vector<std::string> args) {
    auto [rc, out] = Spherectl(cluster.cluster_file(), args);
    EXPECT_EQ(rc, 0) << out;
  };
  ctl({"tenant", "create", "--name", "Contoso"});
  ctl({"tenant", "credential", "--name", "Contoso"});
  ctl({"--tenant", "Contoso", "product", "create", "--name", "DW100"});
  auto dev = ManufactureGenuine(cluster, "update-e2e-device");
  ASSERT_NE(dev, nullptr);
  ASSERT_TRUE(cluster.ImportDevice(dev->public_key()).ok());
  const std::string id = dev->device_id();
  ctl({"--tenant", "Contoso", "device", "claim", "--device", id});
  ctl({"--tenant", "Contoso", "device", "update", "--device", id,
       "--device-group", "DW100/Production"});
  auto attested = AttestViaClient(&cluster, dev.get());
  ASSERT_TRUE(attested.ok()) << attested.status();
  ASSERT_EQ(attested->outcome(), v1::UP_TO_DATE);

  auto root = util::ReadFile(cluster.dir() + "/pki/root.pem");
  ASSERT_TRUE(root.ok()) << root.status();
  rpc::TlsFiles tls{attested->certificate_chain_pem(),
                    dev->ExportCertificateKeyForTls(), *root};
  auto stub = v1::UpdateService::NewStub(
      rpc::NewChannel(cluster.config().shards[0].address, tls));

  v1::GetUpdatesResponse resp;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
    grpc::Status st = stub->GetUpdates(&ctx, v1::GetUpdatesRequest(), &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }
  auto m = update::VerifySignedMetadata(PlatformSigningKey(cluster),
                                        resp.signed_metadata());
  ASSERT_TRUE(m.ok()) << m.status();
  auto record = cluster.GetDevice("", id);
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(m->device_group_id(), record->device_group_id());
  EXPECT_GT(m->expires_unix_ms(), absl::ToUnixMillis(absl::Now()));
  const std::vector<v1::ImagePackage> factory = FactoryImages(cluster);
  ASSERT_EQ(m->targets_size(), static_cast<int>(factory.size()));

  // Download the first OS component in small chunks and check it as a
  // device would.
  const v1::UpdateTarget& t = m->targets(0);
  std::string bytes;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
    v1::DownloadImageRequest req;
    req.set_image_id(t.image_id());
    req.set_max_chunk_bytes(4096);
    auto reader = stub->DownloadImage(&ctx, req);
    v1::ImageChunk chunk;
    while (reader->Read(&chunk)) {
      ASSERT_LE(chunk.data().size(), 4096u);
      bytes += chunk.data();
      ASSERT_LE(bytes.size(), t.package_size());
    }
    grpc::Status st = reader->Finish();
    ASSERT_TRUE(st.ok()) << st.error_message();
  }
  EXPECT_EQ(bytes.size(), t.package_size());
  EXPECT_EQ(crypto::Sha256(bytes), t.package_sha256());
  v1::ImagePackage pkg;
  ASSERT_TRUE(pkg.ParseFromString(bytes));
  auto verified = mcu::VerifyImage(pkg, PlatformSigningKey(cluster));
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->image_hash, t.image_hash());
  EXPECT_EQ(verified->header.component(), t.component());
}

}  // namespace
}  // namespace sphere::testing
