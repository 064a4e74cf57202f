// Test-only helpers for driving in-process device twins (mcu::Device)
// against a LocalCluster: manufacturing devices with the cluster's factory
// images, registering and claiming them, and talking to the shards'
// AttestationService directly (challenge, attest, owner lookup).
//
// Helpers report unexpected failures with gtest EXPECT_* (so a test keeps
// running and reports every failure) and return a value a test can ASSERT on;
// call them from the test's thread.
#ifndef SPHERE_TESTS_TWIN_HELPERS_H_
#define SPHERE_TESTS_TWIN_HELPERS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "mcu-model/device.h"
#include "protos/attestation.grpc.pb.h"
#include "tests/cluster_fixture.h"

namespace sphere::testing {

// PlatformSigningKey is the platform image-signing public key the cluster's
// devices' ROM trusts (DIR/pki/image-signing.pub.pem), as SEC1 bytes.
std::string PlatformSigningKey(const LocalCluster& cluster);

// FactoryImages reads the cluster's factory OS 1 boot chain
// (DIR/images/os-1/<component>.pkg) in boot order.
std::vector<v1::ImagePackage> FactoryImages(const LocalCluster& cluster);

// ManufactureBooted manufactures an MT3620 whose ROM trusts `rom_key`,
// installs `images` and boots it. Returns nullptr if manufacturing failed.
std::unique_ptr<mcu::Device> ManufactureBooted(
    const std::string& seed, const std::string& rom_key,
    const std::vector<v1::ImagePackage>& images);

// ManufactureGenuine is ManufactureBooted with the platform key and the
// cluster's factory images: a genuine device running OS 1, not registered.
std::unique_ptr<mcu::Device> ManufactureGenuine(const LocalCluster& cluster,
                                                const std::string& seed);

// RegisterAndClaim imports `dev`'s public key into management and has
// `tenant_id` claim it.
void RegisterAndClaim(LocalCluster* cluster, const std::string& tenant_id,
                      const mcu::Device& dev);

// CatalogRevision is the management catalog revision (0 on failure, which
// is reported), to pass as min_catalog_revision.
int64_t CatalogRevision(LocalCluster* cluster);

// kCatalogCatchUp bounds how long the helpers below wait for a shard's
// catalog to catch up with management (a loaded 2-core machine, a follower
// reconnecting after a restart with its backoff): generous, since only a
// broken cluster reaches it.
inline constexpr absl::Duration kCatalogCatchUp = absl::Seconds(60);

// CatalogCatchingUp: `code`/`message` is a shard's answer that its catalog
// has not yet caught up (UNAVAILABLE: the revision gate's bound passed
// before the requested revision arrived, the catalog is not synced yet after
// a start, or stale while its watch reconnects). A client retries these;
// transport failures (a dead shard) are not among them.
bool CatalogCatchingUp(absl::StatusCode code, absl::string_view message);

// WaitForShardRevision waits (polling the shard's
// sphere_catalog_applied_revision gauge, up to `limit`) until shard `shard`
// has applied catalog revision `revision`: its ring and device records are
// then at least that new. Use it before a call whose answer depends on the
// ring (redirects are decided before min_catalog_revision is waited for).
absl::Status WaitForShardRevision(const LocalCluster& cluster, int shard,
                                  int64_t revision,
                                  absl::Duration limit = kCatalogCatchUp);

// GetChallenge asks shard `shard` for a nonce for `device_id`, at a catalog
// that includes every change made so far (operator credential, kCallDeadline
// per call; retried while the shard's catalog is catching up, up to
// kCatalogCatchUp).
grpc::Status GetChallenge(LocalCluster* cluster, int shard,
                          const std::string& device_id,
                          v1::GetChallengeResponse* resp);

// OwnerShard is the index of the shard that issues `device_id` a challenge
// (the others redirect), or -1.
int OwnerShard(LocalCluster* cluster, const std::string& device_id);

// SendAttest sends `req` to shard `shard` (operator credential,
// kCallDeadline).
grpc::Status SendAttest(const LocalCluster& cluster, int shard,
                        const v1::AttestRequest& req, v1::AttestResponse* resp);

// AttestWithNonce has `dev` quote `nonce` and sends the quote to `shard`.
grpc::Status AttestWithNonce(const LocalCluster& cluster, int shard,
                             mcu::Device& dev, const std::string& nonce,
                             v1::AttestResponse* resp);

// AttestViaClient attests `dev` with the twin's AttestationClient (starting
// at shard 0, following redirects) at the current catalog revision, retried
// while the shard's catalog is catching up (up to kCatalogCatchUp).
absl::StatusOr<v1::AttestResponse> AttestViaClient(LocalCluster* cluster,
                                                   mcu::Device* dev);

// TwinProcessTls is the mTLS credential twin process NAME presents: the
// manufacturing chain from its state file (DIR/twins/NAME/twin.state) and
// the certificate key its device model derives, with the cluster root as CA.
rpc::TlsFiles TwinProcessTls(const LocalCluster& cluster,
                             const std::string& name);

}  // namespace sphere::testing

#endif  // SPHERE_TESTS_TWIN_HELPERS_H_
