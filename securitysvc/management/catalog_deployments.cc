// Catalog: deployments and their staged rollout. Deployments are keyed
// "<tenant>/<group>/<deployment>", so a group's deployments (its current one,
// "is this group in use", the listing) are one prefix scan; the id index
// (deployment/<id>) finds one by id alone (the rollout controller).
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "securitysvc/management/catalog.h"
#include "securitysvc/management/catalog_access.h"
#include "securitysvc/management/catalog_internal.h"

namespace sphere::management {

using namespace catalog_internal;  // NOLINT(build/namespaces): own layout

namespace {

// Dedupe returns `ids` without repeats, in first-seen order.
std::vector<std::string> Dedupe(
    const google::protobuf::RepeatedPtrField<std::string>& ids) {
  std::vector<std::string> out;
  absl::flat_hash_set<absl::string_view> seen;
  for (const std::string& id : ids) {
    if (seen.insert(id).second) out.push_back(id);
  }
  return out;
}

absl::Status DeploymentNotFound(absl::string_view id,
                                const v1::Tenant& tenant) {
  return absl::NotFoundError(absl::StrFormat(
      "deployment \"%s\" not found in tenant \"%s\"; list them with "
      "'spherectl deployment list'",
      id, tenant.name()));
}

}  // namespace

absl::StatusOr<std::optional<std::pair<std::string, v1::Deployment>>>
Catalog::FindDeployment(absl::string_view id) {
  using Found = std::optional<std::pair<std::string, v1::Deployment>>;
  absl::StatusOr<std::optional<std::string>> key =
      GetIndex(store_, DeploymentIdIndex(id));
  if (!key.ok()) return key.status();
  if (!key->has_value()) return Found();
  auto dep = GetRecord<v1::Deployment>(store_, kDeployments, **key);
  if (!dep.ok()) return dep.status();
  if (!dep->has_value()) return Found();
  return Found(std::make_pair(**key, **std::move(dep)));
}

absl::StatusOr<v1::Deployment> Catalog::CreateDeployment(
    const Caller& caller, const v1::CreateDeploymentRequest& request) {
  if (auto s = Authorize(caller, Op::kCreateDeployment); !s.ok()) return s;
  if (request.image_ids().empty()) {
    return absl::InvalidArgumentError(
        "a deployment needs at least one image id (upload images first)");
  }
  // Limits before any lookup: the raw count is capped first (127k copies of
  // one id are refused, not silently shrunk), then repeats are dropped, and
  // every id must look like one (64 lowercase hex).
  if (auto s = limits::ValidateCount("deployment image_ids",
                                     request.image_ids_size(),
                                     limits::kMaxImagesPerDeployment);
      !s.ok()) {
    return s;
  }
  const std::vector<std::string> image_ids = Dedupe(request.image_ids());
  for (const std::string& id : image_ids) {
    if (!IsHexId(id, 64)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "deployment image id \"%s\" is not 64 lowercase hex characters "
          "(see 'spherectl image list')",
          limits::EscapedPrefix(id)));
    }
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, request.tenant_id());
  if (!t.ok()) return t.status();
  absl::StatusOr<v1::DeviceGroup> g = FindGroup(*t, request.device_group_id());
  if (!g.ok()) return g.status();
  std::set<std::string> components;
  for (const std::string& id : image_ids) {
    // Only the tenant's own images are visible: another tenant's image
    // answers exactly like a missing one.
    auto image = GetRecord<v1::Image>(store_, kImages, ImageKey(t->id(), id));
    if (!image.ok()) return image.status();
    if (!image->has_value()) {
      return absl::NotFoundError(absl::StrFormat(
          "image \"%s\" not found in tenant \"%s\"; list images with "
          "'spherectl image list'",
          id, t->name()));
    }
    if (!components.insert((*image)->component()).second) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "a deployment carries one image per component; %s appears twice",
          (*image)->component()));
    }
    if (IsOsComponentKind((*image)->kind())) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "image \"%s\" is an OS component; OS images reach devices through "
          "their group's OS feed, not through deployments",
          id));
    }
  }
  v1::Deployment dep;
  dep.set_id(NewId());
  dep.set_tenant_id(t->id());
  dep.set_device_group_id(g->id());
  for (const std::string& id : image_ids) dep.add_image_ids(id);
  dep.set_rollout_fraction(options_.new_deployment_rollout_fraction);
  Txn txn(revision_);
  v1::WatchEvent* e = txn.Emit();
  dep.set_create_revision(e->revision());
  *e->mutable_deployment() = dep;
  txn.Put(kDeployments, DeploymentKey(dep), dep);
  txn.PutRaw(kIndex, DeploymentIdIndex(dep.id()), DeploymentKey(dep));
  if (auto s = Commit(txn); !s.ok()) return s;
  return dep;
}

absl::StatusOr<v1::ListDeploymentsResponse> Catalog::ListDeployments(
    const Caller& caller, const v1::ListDeploymentsRequest& request) {
  if (auto s = Authorize(caller, Op::kListDeployments); !s.ok()) return s;
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, request.tenant_id());
  if (!t.ok()) return t.status();
  std::string prefix = TenantPrefix(t->id());
  if (!request.device_group_id().empty()) {
    absl::StatusOr<v1::DeviceGroup> g =
        FindGroup(*t, request.device_group_id());
    if (!g.ok()) return g.status();
    prefix = DeploymentPrefix(t->id(), g->id());
  }
  absl::StatusOr<Page> page = ParsePage(
      request.page_size(), request.page_token(), "deployments", prefix, prefix);
  if (!page.ok()) return page.status();
  v1::ListDeploymentsResponse out;
  std::string next;
  absl::Status s = ScanPage<v1::Deployment>(
      store_, kDeployments, prefix, *page, "deployments", prefix,
      [](absl::string_view key, absl::string_view value) {
        return ParseValue<v1::Deployment>(kDeployments, key, value);
      },
      out.mutable_deployments(), &next);
  if (!s.ok()) return s;
  out.set_next_page_token(next);
  return out;
}

absl::StatusOr<v1::Deployment> Catalog::GetDeployment(const Caller& caller,
                                                      absl::string_view tenant,
                                                      absl::string_view id) {
  if (auto s = Authorize(caller, Op::kGetDeployment); !s.ok()) return s;
  if (auto s = limits::ValidateReference("deployment", id); !s.ok()) return s;
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  auto dep = FindDeployment(id);
  if (!dep.ok()) return dep.status();
  if (!dep->has_value() || (*dep)->second.tenant_id() != t->id()) {
    return DeploymentNotFound(id, *t);
  }
  return (*dep)->second;
}

absl::StatusOr<std::vector<v1::Deployment>> Catalog::AllDeployments(
    const Caller& caller) {
  if (auto s = Authorize(caller, Op::kListAllDeployments); !s.ok()) return s;
  return CollectPrefix<v1::Deployment>(store_, kDeployments, "");
}

absl::Status Catalog::DeleteDeployment(const Caller& caller,
                                       absl::string_view tenant,
                                       absl::string_view deployment_id) {
  if (auto s = Authorize(caller, Op::kDeleteDeployment); !s.ok()) return s;
  if (auto s = limits::ValidateReference("deployment", deployment_id);
      !s.ok()) {
    return s;
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  auto found = FindDeployment(deployment_id);
  if (!found.ok()) return found.status();
  if (!found->has_value() || (*found)->second.tenant_id() != t->id()) {
    return DeploymentNotFound(deployment_id, *t);
  }
  // Named references, not a structured binding: the lambda below uses dep
  // (clang refuses to capture a structured binding in C++17).
  const std::string& key = (*found)->first;
  const v1::Deployment& dep = (*found)->second;
  // The group's newest remaining deployment becomes current again: shards
  // keep only the newest per group, so it is sent once more after the
  // delete. One prefix scan of this group's deployments.
  std::optional<v1::Deployment> previous;
  absl::Status s = ScanPrefix<v1::Deployment>(
      store_, kDeployments, DeploymentPrefix(t->id(), dep.device_group_id()),
      [&](const v1::Deployment& d) {
        if (d.id() != dep.id() &&
            (!previous || d.create_revision() > previous->create_revision())) {
          previous = d;
        }
        return true;
      });
  if (!s.ok()) return s;
  Txn txn(revision_);
  txn.Delete(kDeployments, key);
  txn.Delete(kIndex, DeploymentIdIndex(dep.id()));
  txn.Emit()->set_deleted_deployment_id(dep.id());
  if (previous) *txn.Emit()->mutable_deployment() = *previous;
  return Commit(txn);
}

absl::StatusOr<v1::Deployment> Catalog::SetDeploymentRollout(
    const Caller& caller, const v1::Deployment& update) {
  if (auto s = Authorize(caller, Op::kSetDeploymentRollout); !s.ok()) return s;
  if (!(update.rollout_fraction() >= 0 && update.rollout_fraction() <= 1)) {
    return absl::InvalidArgumentError(
        "a rollout fraction must be in [0, 1]; nothing changed");
  }
  if (auto s = limits::ValidateSize("rollout halt reason",
                                    update.halt_reason().size(),
                                    limits::kMaxRolloutReasonBytes);
      !s.ok()) {
    return s;
  }
  if (auto s =
          limits::ValidateSize("rollout status", update.rollout_status().size(),
                               limits::kMaxRolloutStatusBytes);
      !s.ok()) {
    return s;
  }
  if (auto s = limits::ValidateReference("deployment", update.id()); !s.ok()) {
    return s;
  }
  absl::MutexLock lock(&mu_);
  auto found = FindDeployment(update.id());
  if (!found.ok()) return found.status();
  if (!found->has_value()) {
    return absl::NotFoundError(absl::StrFormat(
        "deployment \"%s\" not found; it may have been deleted", update.id()));
  }
  v1::Deployment d = (*found)->second;
  d.set_rollout_fraction(update.rollout_fraction());
  d.set_halted(update.halted());
  d.set_halt_reason(update.halt_reason());
  d.set_rollout_status(update.rollout_status());
  Txn txn(revision_);
  *txn.Emit()->mutable_deployment() = d;
  txn.Put(kDeployments, (*found)->first, d);
  if (auto s = Commit(txn); !s.ok()) return s;
  return d;
}

}  // namespace sphere::management
