// ClusterPackageSource: the update service's PackageSource in a cluster:
// management's sealed package store under DIR/images/catalog (see
// management/image_pipeline.h), opened with the package key derived from the
// cluster master key that every shard already loads. Returns the serialized
// ImagePackage as management stored it (platform-signed).
//
// This relies on the shards sharing the cluster state directory with
// management (local_cluster, one machine). Across machines, a fetch from
// management behind the same PackageSource interface replaces it.
#ifndef SPHERE_SECURITYSVC_UPDATE_CLUSTER_PACKAGE_SOURCE_H_
#define SPHERE_SECURITYSVC_UPDATE_CLUSTER_PACKAGE_SOURCE_H_

#include <memory>
#include <string>

#include "securitysvc/update/package_cache.h"

namespace sphere::update {

std::shared_ptr<PackageSource> ClusterPackageSource(
    const std::string& state_dir, const std::string& master_key);

}  // namespace sphere::update

#endif  // SPHERE_SECURITYSVC_UPDATE_CLUSTER_PACKAGE_SOURCE_H_
