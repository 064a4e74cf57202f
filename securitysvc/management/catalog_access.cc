#include "securitysvc/management/catalog_access.h"

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "securitysvc/management/limits.h"

namespace sphere::management {
namespace {

// Who may run an operation.
enum class Allowed {
  kOperators,        // tenant and platform operators, not shards
  kPlatform,         // platform operators only
  kPlatformOrShard,  // platform operators and internal callers
  kEveryone,         // every authenticated caller (tenant-scoped below)
};

struct Rule {
  Allowed allowed;
  const char* what;  // names the operation in refusals
};

// The table: one row per operation.
Rule RuleFor(Op op) {
  switch (op) {
    case Op::kCreateTenant:
      return {Allowed::kPlatform, "creating a tenant"};
    case Op::kListTenants:
      return {Allowed::kOperators, "listing tenants"};
    case Op::kGetTenant:
      return {Allowed::kEveryone, "reading a tenant"};
    case Op::kIssueOperatorCredential:
      return {Allowed::kPlatform, "issuing operator credentials"};
    case Op::kGetCaCertificate:
      return {Allowed::kOperators, "reading a tenant's CA certificates"};
    case Op::kCreateProduct:
      return {Allowed::kOperators, "creating a product"};
    case Op::kListProducts:
      return {Allowed::kOperators, "listing products"};
    case Op::kGetProduct:
      return {Allowed::kOperators, "reading a product"};
    case Op::kDeleteProduct:
      return {Allowed::kOperators, "deleting a product"};
    case Op::kCreateDeviceGroup:
      return {Allowed::kOperators, "creating a device group"};
    case Op::kListDeviceGroups:
      return {Allowed::kOperators, "listing device groups"};
    case Op::kGetDeviceGroup:
      return {Allowed::kOperators, "reading a device group"};
    case Op::kUpdateDeviceGroup:
      return {Allowed::kOperators, "updating a device group"};
    case Op::kDeleteDeviceGroup:
      return {Allowed::kOperators, "deleting a device group"};
    case Op::kImportDevices:
      return {Allowed::kPlatform, "importing factory devices"};
    case Op::kClaimDevice:
      return {Allowed::kOperators, "claiming a device"};
    case Op::kListDevices:
      return {Allowed::kOperators, "listing devices"};
    case Op::kGetDevice:
      return {Allowed::kEveryone, "reading a device"};
    case Op::kAssignDevice:
      return {Allowed::kOperators, "assigning a device to a device group"};
    case Op::kRevokeDevice:
      return {Allowed::kEveryone, "revoking a device"};
    case Op::kRequestDeviceTransfer:
      return {Allowed::kOperators, "requesting a device transfer"};
    case Op::kAcceptDeviceTransfer:
      return {Allowed::kOperators, "accepting a device transfer"};
    case Op::kCheckImageQuota:
      return {Allowed::kOperators, "checking the image quota"};
    case Op::kRecordImage:
      return {Allowed::kOperators, "recording an image"};
    case Op::kRecordPlatformImage:
      return {Allowed::kPlatform, "recording a platform OS image"};
    case Op::kListImages:
      return {Allowed::kOperators, "listing images"};
    case Op::kDeleteImage:
      return {Allowed::kOperators, "deleting an image"};
    case Op::kCreateDeployment:
      return {Allowed::kOperators, "creating a deployment"};
    case Op::kListDeployments:
      return {Allowed::kOperators, "listing deployments"};
    case Op::kGetDeployment:
      return {Allowed::kOperators, "reading a deployment"};
    case Op::kDeleteDeployment:
      return {Allowed::kOperators, "deleting a deployment"};
    case Op::kSetDeploymentRollout:
      return {Allowed::kPlatform, "publishing a rollout stage"};
    case Op::kListAllDeployments:
      return {Allowed::kPlatform, "listing every deployment"};
    case Op::kReleaseOs:
      return {Allowed::kPlatform, "releasing an OS"};
    case Op::kGetShardMap:
      return {Allowed::kPlatformOrShard, "reading the shard map"};
    case Op::kRegisterShard:
      return {Allowed::kPlatformOrShard, "registering a shard"};
    case Op::kRemoveShard:
      return {Allowed::kPlatformOrShard, "removing a shard"};
    case Op::kWatch:
      return {Allowed::kPlatformOrShard, "watching the catalog"};
  }
  return {Allowed::kPlatform, "an unknown catalog operation"};
}

absl::Status ShardDenied(absl::string_view what) {
  return absl::PermissionDeniedError(absl::StrFormat(
      "%s is not allowed with the shard credential (urn:sphere:scope:shard); "
      "shards may only watch the catalog, register themselves, read the "
      "shard map, tenants and devices, and revoke devices automatically. Use "
      "an operator credential",
      what));
}

absl::Status NeedsPlatform(absl::string_view what) {
  return absl::PermissionDeniedError(absl::StrFormat(
      "%s needs a platform-operator credential; tenant operator credentials "
      "cannot do it",
      what));
}

}  // namespace

absl::Status Authorize(const Caller& caller, Op op) {
  const Rule rule = RuleFor(op);
  switch (rule.allowed) {
    case Allowed::kEveryone:
      return absl::OkStatus();
    case Allowed::kOperators:
      if (caller.is_internal()) return ShardDenied(rule.what);
      return absl::OkStatus();
    case Allowed::kPlatform:
      if (caller.kind == Caller::Kind::kPlatformOperator) {
        return absl::OkStatus();
      }
      if (caller.is_internal()) return ShardDenied(rule.what);
      return NeedsPlatform(rule.what);
    case Allowed::kPlatformOrShard:
      if (caller.is_platform()) return absl::OkStatus();
      return NeedsPlatform(rule.what);
  }
  return NeedsPlatform(rule.what);
}

absl::Status CheckTenantScope(const v1::Tenant& own,
                              absl::string_view requested) {
  if (requested.empty() || requested == own.id() ||
      absl::EqualsIgnoreCase(requested, own.name())) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(absl::StrFormat(
      "tenant \"%s\": your credential is scoped to tenant \"%s\" and cannot "
      "access other tenants",
      limits::EscapedPrefix(requested), own.name()));
}

bool MaySeeWrappedCaKeys(const Caller& caller) { return caller.is_internal(); }

void StripSecrets(const Caller& caller, v1::Tenant* tenant) {
  if (!MaySeeWrappedCaKeys(caller)) tenant->clear_wrapped_ca_key();
}

void StripSecrets(const Caller& caller, v1::WatchEvent* event) {
  if (event->has_tenant()) StripSecrets(caller, event->mutable_tenant());
}

absl::Status HideForeign(absl::Status s, absl::string_view what,
                         absl::string_view name) {
  if (absl::IsPermissionDenied(s)) {
    return absl::NotFoundError(
        absl::StrFormat("%s \"%s\" not found", what, name));
  }
  return s;
}

absl::Status DeviceNotFound(const v1::Tenant& tenant,
                            absl::string_view device_id) {
  return absl::NotFoundError(absl::StrFormat(
      "device \"%s\" not found in tenant \"%s\"; check the id with "
      "'spherectl device list', or claim a new device with 'spherectl device "
      "claim --device ID'",
      device_id, tenant.name()));
}

}  // namespace sphere::management
