// The catalog's access control, in one place: which kind of caller may run
// each catalog operation (Authorize and its table), which tenant a tenant
// operator may name (CheckTenantScope), and how what a caller may not see is
// answered (NotFound exactly like a missing object). Every resource file of
// the catalog (catalog_*.cc) calls these and checks nothing on its own.
//
// The policy (see catalog.h): tenant operators act only in their own tenant;
// platform operators act in every tenant; internal callers (the shard
// credential) get least privilege: watch the catalog, register/remove
// shards, read the shard map, tenants and devices, and revoke devices
// (recorded as automatic). Only internal callers receive wrapped CA keys.
//
// Example:
//   if (auto s = Authorize(caller, Op::kCreateProduct); !s.ok()) return s;
#ifndef SPHERE_SECURITYSVC_MANAGEMENT_CATALOG_ACCESS_H_
#define SPHERE_SECURITYSVC_MANAGEMENT_CATALOG_ACCESS_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "protos/management.pb.h"
#include "securitysvc/management/catalog.h"

namespace sphere::management {

// Op: every catalog operation whose caller is checked.
enum class Op {
  kCreateTenant,
  kListTenants,
  kGetTenant,
  kIssueOperatorCredential,
  kGetCaCertificate,
  kCreateProduct,
  kListProducts,
  kGetProduct,
  kDeleteProduct,
  kCreateDeviceGroup,
  kListDeviceGroups,
  kGetDeviceGroup,
  kUpdateDeviceGroup,
  kDeleteDeviceGroup,
  kImportDevices,
  kClaimDevice,
  kListDevices,
  kGetDevice,
  kAssignDevice,
  kRevokeDevice,
  kRequestDeviceTransfer,
  kAcceptDeviceTransfer,
  kCheckImageQuota,
  kRecordImage,
  kRecordPlatformImage,
  kListImages,
  kDeleteImage,
  kCreateDeployment,
  kListDeployments,
  kGetDeployment,
  kDeleteDeployment,
  kSetDeploymentRollout,
  kListAllDeployments,
  kReleaseOs,
  kGetShardMap,
  kRegisterShard,
  kRemoveShard,
  kWatch,
};

// Authorize answers OK when `caller`'s kind may run `op`, else
// PermissionDenied naming the operation and the credential it needs.
absl::Status Authorize(const Caller& caller, Op op);

// CheckTenantScope: a tenant operator (whose own tenant is `own`) may name
// only its own tenant (by id or by name, ignoring case, or empty);
// PermissionDenied otherwise, without looking the other tenant up.
absl::Status CheckTenantScope(const v1::Tenant& own,
                              absl::string_view requested);

// MaySeeWrappedCaKeys: only internal callers (shards) receive wrapped tenant
// CA keys; Visible strips them for everyone else.
bool MaySeeWrappedCaKeys(const Caller& caller);
void StripSecrets(const Caller& caller, v1::Tenant* tenant);
void StripSecrets(const Caller& caller, v1::WatchEvent* event);

// HideForeign turns "belongs to another tenant" (PermissionDenied) into
// NotFound, so that a delete does not confirm another tenant's object.
absl::Status HideForeign(absl::Status s, absl::string_view what,
                         absl::string_view name);

// DeviceNotFound: the one answer for a device the caller may not see
// (missing, unclaimed, or another tenant's).
absl::Status DeviceNotFound(const v1::Tenant& tenant,
                            absl::string_view device_id);

}  // namespace sphere::management

#endif  // SPHERE_SECURITYSVC_MANAGEMENT_CATALOG_ACCESS_H_
