#include "securitysvc/management/management_service.h"

#include <deque>
#include <iterator>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/rpc/rpc.h"
#include "common/util/log.h"
#include "securitysvc/auth/scope.h"
#include "securitysvc/management/limits.h"

namespace sphere::management {
namespace {

template <typename T>
absl::Status Assign(absl::StatusOr<T> result, T* out) {
  if (!result.ok()) return result.status();
  *out = *std::move(result);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Caller> IdentifyCaller(const crypto::ParsedCertificate& cert,
                                      absl::string_view root_subject_line) {
  const crypto::DeviceClaims& claims = cert.claims;
  if (!claims.device_id.empty()) {
    return absl::PermissionDeniedError(
        "device certificates cannot call the management API; use an "
        "operator credential");
  }
  if (!root_subject_line.empty() && cert.issuer_line != root_subject_line) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "certificate \"%s\" was not issued by the platform root CA; use an "
        "operator credential issued by 'spherectl' or the cluster bootstrap",
        cert.subject_line));
  }
  const auth::Scope scope = auth::ParseScope(claims.scope);
  if (scope == auth::Scope::kPlatformOperator) {
    return Caller::PlatformOperator();
  }
  if (scope == auth::Scope::kShard) return Caller::Internal();
  if (!claims.tenant_id.empty())
    return Caller::TenantOperator(claims.tenant_id);
  return absl::PermissionDeniedError(absl::StrFormat(
      "certificate \"%s\" carries no operator claim (urn:sphere:tenant:<id> "
      "or urn:sphere:scope:platform-operator)",
      cert.subject_line));
}

ManagementService::ManagementService(Catalog* catalog,
                                     ManagementServiceOptions options)
    : catalog_(catalog), options_(std::move(options)) {
  if (options_.watch_progress_interval > absl::ZeroDuration()) {
    progress_ticker_ = std::thread([this] { RunProgressTicker(); });
  }
}

absl::StatusOr<Caller> ManagementService::Identify(
    grpc::CallbackServerContext* ctx) const {
  absl::StatusOr<rpc::PeerIdentity> peer = rpc::PeerFromContext(*ctx);
  if (!peer.ok()) return peer.status();
  return IdentifyCaller(peer->cert, options_.root_subject_line);
}

std::string ManagementService::PoolKey(const Caller& caller,
                                       grpc::CallbackServerContext* ctx) {
  if (caller.is_tenant()) return "tenant:" + caller.tenant_id;
  // Shards share one principal: each connection gets its own share.
  if (caller.is_internal()) {
    return ctx != nullptr ? "internal:" + ctx->peer() : "internal";
  }
  return "platform-operator";
}

absl::Status ManagementService::Busy() {
  return absl::ResourceExhaustedError(
      "management is busy: its request queue is full or this caller already "
      "has its share of it queued; retry with backoff");
}

bool ManagementService::Offload(const std::string& key,
                                std::function<void()> task) {
  if (options_.workers == nullptr) {
    task();
    return true;
  }
  return options_.workers->TrySubmit(key, std::move(task));
}

void ManagementService::FinishUnary(grpc::CallbackServerContext* ctx,
                                    grpc::ServerUnaryReactor* reactor,
                                    const absl::Status& status) {
  if (absl::IsPermissionDenied(status) || absl::IsUnauthenticated(status)) {
    log::Warning("denied", {{"peer", ctx->peer()},
                            {"error", std::string(status.message())}});
  } else if (absl::IsInternal(status) || absl::IsDataLoss(status) ||
             absl::IsUnavailable(status)) {
    log::Error("call failed", {{"error", status.ToString()}});
  }
  reactor->Finish(rpc::ToGrpcStatus(status));
}

grpc::ServerUnaryReactor* ManagementService::Unary(
    grpc::CallbackServerContext* ctx,
    std::function<absl::Status(const Caller&)> fn) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::StatusOr<Caller> caller = Identify(ctx);
  if (!caller.ok()) {
    FinishUnary(ctx, reactor, caller.status());
    return reactor;
  }
  // The catalog call (on etcd: network round trips) runs on the worker
  // pool, never on this callback thread. `fn` captures the request and
  // response pointers, which live until Finish.
  const std::string key = PoolKey(*caller, ctx);
  if (!Offload(key, [this, ctx, reactor, c = *caller, fn = std::move(fn)] {
        FinishUnary(ctx, reactor, fn(c));
      })) {
    FinishUnary(ctx, reactor, Busy());
  }
  return reactor;
}

// ---- Unary handlers -------------------------------------------------------

grpc::ServerUnaryReactor* ManagementService::CreateTenant(
    grpc::CallbackServerContext* ctx, const v1::CreateTenantRequest* req,
    v1::Tenant* resp) {
  return Unary(ctx, [=](const Caller& c) {
    absl::Status s = Assign(catalog_->CreateTenant(c, req->name()), resp);
    if (s.ok()) log::Info("tenant created", {{"tenant", resp->name()}});
    return s;
  });
}

grpc::ServerUnaryReactor* ManagementService::ListTenants(
    grpc::CallbackServerContext* ctx, const v1::ListTenantsRequest* req,
    v1::ListTenantsResponse* resp) {
  return Unary(ctx, [=](const Caller& c) {
    return Assign(catalog_->ListTenants(c, *req), resp);
  });
}

grpc::ServerUnaryReactor* ManagementService::GetTenant(
    grpc::CallbackServerContext* ctx, const v1::GetTenantRequest* req,
    v1::Tenant* resp) {
  return Unary(ctx, [=](const Caller& c) {
    return Assign(catalog_->GetTenant(c, req->tenant_id()), resp);
  });
}

grpc::ServerUnaryReactor* ManagementService::IssueOperatorCredential(
    grpc::CallbackServerContext* ctx,
    const v1::IssueOperatorCredentialRequest* req,
    v1::OperatorCredential* resp) {
  return Unary(ctx, [=](const Caller& c) {
    // A tenant id, a name and a 65-byte key: anything near the server-wide
    // 8 MiB cap is an attack on the logs and the signer, not a request.
    if (absl::Status s =
            rpc::CheckRequestSize(*req, 4096, "IssueOperatorCredential");
        !s.ok()) {
      return s;
    }
    if (absl::Status s = LimitExpensiveCall(c, "credential issuance", 1);
        !s.ok()) {
      return s;
    }
    absl::StatusOr<std::string> pem = catalog_->IssueOperatorCredential(
        c, req->tenant_id(), req->operator_name(), req->public_key());
    if (!pem.ok()) return pem.status();
    resp->set_certificate_pem(*pem);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* ManagementService::CreateProduct(
    grpc::CallbackServerContext* ctx, const v1::CreateProductRequest* req,
    v1::Product* resp) {
  return Unary(ctx, [=](const Caller& c) {
    return Assign(catalog_->CreateProduct(c, req->tenant_id(), req->name(),
                                          req->description()),
                  resp);
  });
}

grpc::ServerUnaryReactor* ManagementService::ListProducts(
    grpc::CallbackServerContext* ctx, const v1::ListProductsRequest* req,
    v1::ListProductsResponse* resp) {
  return Unary(ctx, [=](const Caller& c) {
    return Assign(catalog_->ListProducts(c, *req), resp);
  });
}

grpc::ServerUnaryReactor* ManagementService::GetProduct(
    grpc::CallbackServerContext* ctx, const v1::GetProductRequest* req,
    v1::Product* resp) {
  return Unary(ctx, [=](const Caller& c) {
    return Assign(catalog_->GetProduct(c, req->tenant_id(), req->product()),
                  resp);
  });
}

grpc::ServerUnaryReactor* ManagementService::CreateDeviceGroup(
    grpc::CallbackServerContext* ctx, const v1::CreateDeviceGroupRequest* req,
    v1::DeviceGroup* resp) {
  return Unary(ctx, [=](const Caller& c) {
    return Assign(catalog_->CreateDeviceGroup(c, *req), resp);
  });
}

grpc::ServerUnaryReactor* ManagementService::ListDeviceGroups(
    grpc::CallbackServerContext* ctx, const v1::ListDeviceGroupsRequest* req,
    v1::ListDeviceGroupsResponse* resp) {
  return Unary(ctx, [=](const Caller& c) {
    return Assign(catalog_->ListDeviceGroups(c, *req), resp);
  });
}

grpc::ServerUnaryReactor* ManagementService::GetDeviceGroup(
    grpc::CallbackServerContext* ctx, const v1::GetDeviceGroupRequest* req,
    v1::DeviceGroup* resp) {
  return Unary(ctx, [=](const Caller& c) {
    return Assign(
        catalog_->GetDeviceGroup(c, req->tenant_id(), req->device_group_id()),
        resp);
  });
}

grpc::ServerUnaryReactor* ManagementService::UpdateDeviceGroup(
    grpc::CallbackServerContext* ctx, const v1::UpdateDeviceGroupRequest* req,
    v1::DeviceGroup* resp) {
  return Unary(ctx, [=](const Caller& c) {
    return Assign(catalog_->UpdateDeviceGroup(c, *req), resp);
  });
}

grpc::ServerUnaryReactor* ManagementService::ClaimDevice(
    grpc::CallbackServerContext* ctx, const v1::ClaimDeviceRequest* req,
    v1::Device* resp) {
  return Unary(ctx, [=](const Caller& c) {
    return Assign(catalog_->ClaimDevice(c, req->tenant_id(), req->device_id()),
                  resp);
  });
}

grpc::ServerUnaryReactor* ManagementService::ClaimDevices(
    grpc::CallbackServerContext* ctx, const v1::ClaimDevicesRequest* req,
    v1::ClaimDevicesResponse* resp) {
  return Unary(ctx, [=](const Caller& c) -> absl::Status {
    // The count is checked before the ids are copied.
    if (req->device_ids_size() > static_cast<int>(limits::kMaxDevicesPerClaim)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "a bulk claim names %d devices; the limit is %d per call (split "
          "the list); nothing was claimed",
          req->device_ids_size(), limits::kMaxDevicesPerClaim));
    }
    std::vector<std::string> ids(req->device_ids().begin(),
                                 req->device_ids().end());
    absl::StatusOr<Catalog::ClaimResult> r = catalog_->ClaimDevices(
        c, req->tenant_id(), ids, req->device_group_id());
    if (!r.ok()) return r.status();
    resp->set_claimed(r->claimed);
    resp->set_already_claimed(r->already_claimed);
    resp->set_revision(r->revision);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* ManagementService::ListDevices(
    grpc::CallbackServerContext* ctx, const v1::ListDevicesRequest* req,
    v1::ListDevicesResponse* resp) {
  return Unary(ctx, [=](const Caller& c) {
    return Assign(catalog_->ListDevices(c, *req), resp);
  });
}

grpc::ServerUnaryReactor* ManagementService::GetDevice(
    grpc::CallbackServerContext* ctx, const v1::GetDeviceRequest* req,
    v1::Device* resp) {
  return Unary(ctx, [=](const Caller& c) {
    return Assign(catalog_->GetDevice(c, req->tenant_id(), req->device_id()),
                  resp);
  });
}

grpc::ServerUnaryReactor* ManagementService::AssignDevice(
    grpc::CallbackServerContext* ctx, const v1::AssignDeviceRequest* req,
    v1::Device* resp) {
  return Unary(ctx, [=](const Caller& c) {
    return Assign(catalog_->AssignDevice(c, req->tenant_id(), req->device_id(),
                                         req->device_group_id()),
                  resp);
  });
}

grpc::ServerUnaryReactor* ManagementService::RevokeDevice(
    grpc::CallbackServerContext* ctx, const v1::RevokeDeviceRequest* req,
    v1::Device* resp) {
  return Unary(ctx, [=](const Caller& c) {
    absl::Status s =
        Assign(catalog_->RevokeDevice(c, req->tenant_id(), req->device_id(),
                                      req->reason()),
               resp);
    if (s.ok()) {
      log::Info("device revoked",
                {{"device", resp->id()}, {"reason", req->reason()}});
    }
    return s;
  });
}

grpc::ServerUnaryReactor* ManagementService::RequestDeviceTransfer(
    grpc::CallbackServerContext* ctx,
    const v1::RequestDeviceTransferRequest* req, v1::Device* resp) {
  return Unary(ctx, [=](const Caller& c) {
    return Assign(
        catalog_->RequestDeviceTransfer(c, req->tenant_id(), req->device_id(),
                                        req->to_tenant_id()),
        resp);
  });
}

grpc::ServerUnaryReactor* ManagementService::AcceptDeviceTransfer(
    grpc::CallbackServerContext* ctx,
    const v1::AcceptDeviceTransferRequest* req, v1::Device* resp) {
  return Unary(ctx, [=](const Caller& c) {
    return Assign(
        catalog_->AcceptDeviceTransfer(c, req->tenant_id(), req->device_id()),
        resp);
  });
}

grpc::ServerUnaryReactor* ManagementService::GetCaCertificate(
    grpc::CallbackServerContext* ctx, const v1::GetCaCertificateRequest* req,
    v1::CaCertificate* resp) {
  return Unary(ctx, [=](const Caller& c) {
    return Assign(catalog_->GetCaCertificate(c, req->tenant_id()), resp);
  });
}

absl::StatusOr<std::string> ManagementService::UploadTenant(
    const Caller& c, absl::string_view tenant, uint64_t total_size) {
  if (c.is_internal()) {
    // Checked before the (costly) package verification; RecordImage
    // refuses shards too.
    return absl::PermissionDeniedError(
        "uploading an image is not allowed with the shard credential "
        "(urn:sphere:scope:shard); use an operator credential");
  }
  // One token per started MiB, keyed by the caller (see
  // ManagementServiceOptions::expensive_call_limiter).
  if (absl::Status s = LimitExpensiveCall(
          c, "image upload", 1 + static_cast<double>(total_size / (1 << 20)));
      !s.ok()) {
    return s;
  }
  if (!options_.verify_image_package) {
    return absl::UnimplementedError(
        "image upload is not enabled on this management server (no image "
        "verifier is configured)");
  }
  std::string tenant_id;
  if (c.is_tenant() || !tenant.empty()) {
    absl::StatusOr<v1::Tenant> t = catalog_->GetTenant(c, tenant);
    if (!t.ok()) return t.status();
    tenant_id = t->id();
  }
  // Size cap and tenant quota before the package is verified or stored.
  if (auto s = catalog_->CheckImageQuota(c, tenant_id, total_size); !s.ok()) {
    return s;
  }
  return tenant_id;
}

absl::Status ManagementService::StoreImage(const Caller& c,
                                           const std::string& tenant_id,
                                           absl::string_view package,
                                           v1::Image* resp) {
  absl::StatusOr<v1::Image> image =
      options_.verify_image_package(tenant_id, package);
  if (!image.ok()) return image.status();
  image->set_tenant_id(tenant_id);
  return Assign(catalog_->RecordImage(c, *image), resp);
}

grpc::ServerUnaryReactor* ManagementService::UploadImage(
    grpc::CallbackServerContext* ctx, const v1::UploadImageRequest* req,
    v1::Image* resp) {
  return Unary(ctx, [=](const Caller& c) -> absl::Status {
    absl::StatusOr<std::string> tenant_id =
        UploadTenant(c, req->tenant_id(), req->package().size());
    if (!tenant_id.ok()) return tenant_id.status();
    return StoreImage(c, *tenant_id, req->package(), resp);
  });
}

// ---- UploadImageStream: client streaming ------------------------------------

// UploadReactor collects one package in bounded chunks: the first message's
// total_size is checked (cap and quota) before any bytes are kept, every
// chunk is capped, and the sum may never pass total_size. The package is
// verified and recorded when the client half-closes.
class ManagementService::UploadReactor
    : public grpc::ServerReadReactor<v1::UploadImageChunk> {
 public:
  UploadReactor(ManagementService* service, absl::StatusOr<Caller> caller,
                std::string pool_key, v1::Image* response)
      : service_(service), pool_key_(std::move(pool_key)), response_(response) {
    if (!caller.ok()) {
      End(caller.status());
      return;
    }
    caller_ = *caller;
    StartRead(&chunk_);
  }

  // Each message is handled on the worker pool (tenant lookup, verify and
  // record are catalog calls); one read is outstanding at a time.
  void OnReadDone(bool ok) override {
    if (!service_->Offload(pool_key_, [this, ok] { Handle(ok); })) {
      End(ManagementService::Busy());
    }
  }

  void OnDone() override { delete this; }

 private:
  void Handle(bool ok) {
    if (!ok) {  // client half-closed (or went away)
      if (!started_) {
        End(absl::InvalidArgumentError(
            "UploadImageStream carried no message; send tenant_id and "
            "total_size first"));
        return;
      }
      if (package_.size() != total_size_) {
        End(absl::InvalidArgumentError(absl::StrFormat(
            "the upload ended after %d of its declared %d bytes; nothing was "
            "stored",
            package_.size(), total_size_)));
        return;
      }
      absl::Status s =
          service_->StoreImage(caller_, tenant_id_, package_, response_);
      if (s.ok()) {
        log::Info("image uploaded", {{"image", response_->id()},
                                     {"component", response_->component()}});
      }
      End(s);
      return;
    }
    if (!started_) {
      started_ = true;
      total_size_ = chunk_.total_size();
      absl::StatusOr<std::string> tenant =
          service_->UploadTenant(caller_, chunk_.tenant_id(), total_size_);
      if (!tenant.ok()) {
        End(tenant.status());
        return;
      }
      tenant_id_ = *tenant;
    }
    if (chunk_.chunk().size() > limits::kMaxUploadChunkBytes) {
      End(absl::InvalidArgumentError(absl::StrFormat(
          "upload chunk is %d bytes; the limit is %d; nothing was stored",
          chunk_.chunk().size(), limits::kMaxUploadChunkBytes)));
      return;
    }
    if (package_.size() + chunk_.chunk().size() > total_size_) {
      End(absl::InvalidArgumentError(absl::StrFormat(
          "upload exceeds its declared total_size of %d bytes; nothing was "
          "stored",
          total_size_)));
      return;
    }
    package_.append(chunk_.chunk());
    chunk_.Clear();
    StartRead(&chunk_);
  }

  void End(const absl::Status& status) {
    if (!status.ok() && !absl::IsInvalidArgument(status) &&
        !absl::IsResourceExhausted(status) && !absl::IsNotFound(status) &&
        !absl::IsAlreadyExists(status)) {
      log::Warning("image upload refused",
                   {{"error", std::string(status.message())}});
    }
    package_.clear();
    package_.shrink_to_fit();
    Finish(rpc::ToGrpcStatus(status));
  }

  ManagementService* const service_;
  const std::string pool_key_;
  v1::Image* const response_;
  Caller caller_;
  v1::UploadImageChunk chunk_;
  bool started_ = false;
  uint64_t total_size_ = 0;
  std::string tenant_id_;
  std::string package_;
};

grpc::ServerReadReactor<v1::UploadImageChunk>*
ManagementService::UploadImageStream(grpc::CallbackServerContext* ctx,
                                     v1::Image* resp) {
  absl::StatusOr<Caller> caller = Identify(ctx);
  std::string key = caller.ok() ? PoolKey(*caller, ctx) : "";
  return new UploadReactor(this, std::move(caller), std::move(key), resp);
}

grpc::ServerUnaryReactor* ManagementService::ListImages(
    grpc::CallbackServerContext* ctx, const v1::ListImagesRequest* req,
    v1::ListImagesResponse* resp) {
  return Unary(ctx, [=](const Caller& c) {
    return Assign(catalog_->ListImages(c, *req), resp);
  });
}

grpc::ServerUnaryReactor* ManagementService::CreateDeployment(
    grpc::CallbackServerContext* ctx, const v1::CreateDeploymentRequest* req,
    v1::Deployment* resp) {
  return Unary(ctx, [=](const Caller& c) {
    return Assign(catalog_->CreateDeployment(c, *req), resp);
  });
}

grpc::ServerUnaryReactor* ManagementService::ListDeployments(
    grpc::CallbackServerContext* ctx, const v1::ListDeploymentsRequest* req,
    v1::ListDeploymentsResponse* resp) {
  return Unary(ctx, [=](const Caller& c) {
    return Assign(catalog_->ListDeployments(c, *req), resp);
  });
}

grpc::ServerUnaryReactor* ManagementService::ReleaseOs(
    grpc::CallbackServerContext* ctx, const v1::ReleaseOsRequest* req,
    v1::OsRelease* resp) {
  return Unary(ctx, [=](const Caller& c) {
    return Assign(catalog_->ReleaseOs(c, *req), resp);
  });
}

grpc::ServerUnaryReactor* ManagementService::GetCatalogRevision(
    grpc::CallbackServerContext* ctx, const v1::GetCatalogRevisionRequest*,
    v1::CatalogRevision* resp) {
  return Unary(ctx, [=](const Caller&) -> absl::Status {
    resp->set_revision(catalog_->revision());
    resp->set_compacted_revision(catalog_->compacted_revision());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* ManagementService::GetShardMap(
    grpc::CallbackServerContext* ctx, const v1::GetShardMapRequest*,
    v1::ShardMap* resp) {
  return Unary(ctx, [=](const Caller& c) {
    return Assign(catalog_->GetShardMap(c), resp);
  });
}

grpc::ServerUnaryReactor* ManagementService::RegisterShard(
    grpc::CallbackServerContext* ctx, const v1::RegisterShardRequest* req,
    v1::ShardMap* resp) {
  return Unary(ctx, [=](const Caller& c) {
    absl::Status s = Assign(catalog_->RegisterShard(c, req->shard()), resp);
    if (s.ok()) {
      log::Debug("shard registered", {{"shard", req->shard().id()},
                                      {"address", req->shard().address()}});
      if (options_.on_shard_registered) {
        options_.on_shard_registered(req->shard().id());
      }
    }
    return s;
  });
}

// ---- ImportDevices: client streaming ---------------------------------------

// ImportReactor imports each streamed message as one atomic catalog batch
// and answers the totals when the client half-closes.
class ManagementService::ImportReactor
    : public grpc::ServerReadReactor<v1::ImportDevicesRequest> {
 public:
  ImportReactor(ManagementService* service, Catalog* catalog,
                absl::StatusOr<Caller> caller, std::string pool_key,
                v1::ImportDevicesResponse* response)
      : service_(service),
        catalog_(catalog),
        pool_key_(std::move(pool_key)),
        response_(response) {
    if (!caller.ok()) {
      Finish(rpc::ToGrpcStatus(caller.status()));
      return;
    }
    caller_ = *caller;
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // client finished sending (or went away)
      log::Info(
          "factory import",
          {{"imported", std::to_string(response_->imported())},
           {"already_known", std::to_string(response_->already_known())}});
      Finish(grpc::Status::OK);
      return;
    }
    // The batch (one catalog transaction) is imported on the worker pool.
    if (!service_->Offload(pool_key_, [this] { ImportBatch(); })) {
      Finish(rpc::ToGrpcStatus(absl::Status(
          absl::StatusCode::kResourceExhausted,
          absl::StrFormat("%s (earlier messages of this stream imported %d "
                          "devices and are kept; re-running is safe)",
                          ManagementService::Busy().message(),
                          response_->imported()))));
    }
  }

  void OnDone() override { delete this; }

 private:
  void ImportBatch() {
    std::vector<v1::FactoryDevice> devices(
        std::make_move_iterator(request_.mutable_devices()->begin()),
        std::make_move_iterator(request_.mutable_devices()->end()));
    absl::StatusOr<ImportResult> r = catalog_->ImportDevices(caller_, devices);
    if (!r.ok()) {
      Finish(rpc::ToGrpcStatus(absl::Status(
          r.status().code(),
          absl::StrFormat("%s (earlier messages of this stream imported %d "
                          "devices and are kept; re-running is safe)",
                          r.status().message(), response_->imported()))));
      return;
    }
    response_->set_imported(response_->imported() + r->imported);
    response_->set_already_known(response_->already_known() + r->already_known);
    request_.Clear();
    StartRead(&request_);
  }

  ManagementService* const service_;
  Catalog* const catalog_;
  const std::string pool_key_;
  v1::ImportDevicesResponse* const response_;
  Caller caller_;
  v1::ImportDevicesRequest request_;
};

grpc::ServerReadReactor<v1::ImportDevicesRequest>*
ManagementService::ImportDevices(grpc::CallbackServerContext* ctx,
                                 v1::ImportDevicesResponse* resp) {
  absl::StatusOr<Caller> caller = Identify(ctx);
  std::string key = caller.ok() ? PoolKey(*caller, ctx) : "";
  return new ImportReactor(this, catalog_, std::move(caller), std::move(key),
                           resp);
}

// ---- Watch: server streaming with flow control -----------------------------

// WatchReactor pulls pages of events from a Catalog::WatchStream and writes
// them one at a time, pulling the next page only after the previous page's
// last Write completed: a snapshot of any size streams at the client's pace
// (HTTP/2 flow control), never buffering more than one page. Once the stream
// is live, the catalog queues new events in the stream (bounded; overflow
// ends the call with RESOURCE_EXHAUSTED) and wakes the reactor.
//
// Pumping (calling Next, then StartWrite) is owned by one thread at a time
// (pumping_). Next is never called with mu_ held, so the catalog mutex is
// never taken under mu_: lock order is catalog -> stream -> reactor.
class ManagementService::WatchReactor
    : public grpc::ServerWriteReactor<v1::WatchEvent> {
 public:
  WatchReactor(ManagementService* service, Catalog* catalog, size_t limit,
               size_t page_size)
      : service_(service),
        catalog_(catalog),
        limit_(limit),
        page_size_(page_size) {}

  void Start(absl::StatusOr<Caller> caller, int64_t start_revision) {
    if (!caller.ok()) {
      FinishNow(rpc::ToGrpcStatus(caller.status()));
      return;
    }
    Catalog::WatchOptions options;
    options.live_queue_limit = limit_;
    options.wakeup = [this] { Pump(); };
    absl::StatusOr<std::unique_ptr<Catalog::WatchStream>> stream =
        catalog_->OpenWatch(*caller, start_revision, std::move(options));
    if (!stream.ok()) {
      FinishNow(rpc::ToGrpcStatus(stream.status()));
      return;
    }
    stream_ = *std::move(stream);
    {
      absl::MutexLock lock(&mu_);
      started_ = true;
    }
    Pump();
  }

  // Progress writes a progress notification when the stream is live and
  // idle (nothing being written or pulled); otherwise events are flowing
  // and say as much. Called by the service's progress ticker.
  void Progress() {
    absl::MutexLock lock(&mu_);
    if (!started_ || finished_ || cancelled_ || pumping_ || !page_.empty()) {
      return;
    }
    pumping_ = true;  // released by Fill after the write, as for events
    v1::WatchEvent e;
    e.set_revision(last_revision_);
    e.set_progress(true);
    page_.push_back(std::move(e));
    StartWrite(&page_.front());
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      page_.pop_front();
      if (!ok) {
        FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED,
                                  "watch stream closed by the client"));
        return;
      }
      if (cancelled_) {
        FinishLocked(
            grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled"));
        return;
      }
      if (!page_.empty()) {
        StartWrite(&page_.front());
        return;
      }
    }
    Fill();  // still owns pumping_
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    if (!pumping_) {
      FinishLocked(
          grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled"));
    }
  }

  void OnDone() override {
    service_->RemoveWatcher(this);  // no progress tick reaches it after this
    stream_.reset();  // no wakeup can reach this object afterwards
    delete this;
  }

 private:
  // Pump takes ownership of pumping and fills, unless another thread owns
  // it (it will look again: wake_pending_).
  void Pump() {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      if (pumping_) {
        wake_pending_ = true;
        return;
      }
      pumping_ = true;
    }
    Fill();
  }

  // Fill pulls the next page and starts writing it; the caller owns
  // pumping_, which is released when the stream has nothing to send.
  void Fill() {
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        wake_pending_ = false;
        if (finished_) return;
        if (cancelled_) {
          FinishLocked(
              grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled"));
          return;
        }
      }
      std::vector<v1::WatchEvent> events;
      absl::Status s = stream_->Next(page_size_, &events);
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      if (!s.ok()) {
        if (absl::IsResourceExhausted(s) || absl::IsAborted(s)) {
          log::Warning("watcher cut off",
                       {{"error", std::string(s.message())}});
        }
        FinishLocked(rpc::ToGrpcStatus(s));
        return;
      }
      if (events.empty()) {
        if (wake_pending_ || cancelled_) continue;
        pumping_ = false;  // live and idle: the stream's wakeup calls Pump
        return;
      }
      // Commit refuses events above the limit; one stored before that rule
      // (or a corrupt log) ends the stream with a specific error instead of
      // a write above the channel limit that fails without saying why.
      for (const v1::WatchEvent& e : events) {
        const size_t bytes = e.ByteSizeLong();
        if (bytes > limits::kMaxWatchEventBytes) {
          absl::Status too_big = absl::FailedPreconditionError(absl::StrFormat(
              "catalog event at revision %d is %d bytes, above the %d-byte "
              "Watch event limit; it cannot be replicated (compact the log "
              "past it or repair the record)",
              e.revision(), bytes, limits::kMaxWatchEventBytes));
          log::Error("oversized catalog event",
                     {{"error", std::string(too_big.message())}});
          FinishLocked(rpc::ToGrpcStatus(too_big));
          return;
        }
      }
      last_revision_ = events.back().revision();
      page_.assign(std::make_move_iterator(events.begin()),
                   std::make_move_iterator(events.end()));
      StartWrite(&page_.front());
      return;
    }
  }

  void FinishNow(const grpc::Status& status) {
    absl::MutexLock lock(&mu_);
    FinishLocked(status);
  }
  void FinishLocked(const grpc::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  ManagementService* const service_;
  Catalog* const catalog_;
  const size_t limit_;
  const size_t page_size_;
  // Set in Start before any Pump; reset in OnDone.
  std::unique_ptr<Catalog::WatchStream> stream_;

  absl::Mutex mu_;
  std::deque<v1::WatchEvent> page_ ABSL_GUARDED_BY(mu_);  // front is in flight
  bool pumping_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;  // the stream is open
  // Revision of the last event handed to this stream (progress carries it).
  int64_t last_revision_ ABSL_GUARDED_BY(mu_) = 0;
};

grpc::ServerWriteReactor<v1::WatchEvent>* ManagementService::Watch(
    grpc::CallbackServerContext* ctx, const v1::WatchRequest* req) {
  auto* reactor = new WatchReactor(this, catalog_, options_.watch_queue_limit,
                                   options_.watch_page_size);
  {
    // Registered before Start: OnDone (which unregisters) may run as soon
    // as Start finishes the call.
    absl::MutexLock lock(&watchers_mu_);
    watchers_.insert(reactor);
  }
  reactor->Start(Identify(ctx), req->start_revision());
  return reactor;
}

void ManagementService::RemoveWatcher(WatchReactor* reactor) {
  absl::MutexLock lock(&watchers_mu_);
  watchers_.erase(reactor);
}

void ManagementService::RunProgressTicker() {
  while (true) {
    {
      absl::MutexLock lock(&watchers_mu_);
      watchers_mu_.AwaitWithTimeout(absl::Condition(&ticker_stopping_),
                                    options_.watch_progress_interval);
      if (ticker_stopping_) return;
    }
    // Progress claims management can still reach its catalog backend: on
    // etcd, a quorum read; a failed probe sends nothing, so followers see
    // the catalog go stale instead of being told it is current.
    if (options_.catalog_probe) {
      if (absl::Status s = options_.catalog_probe(); !s.ok()) {
        log::Warning("catalog backend unreachable; no watch progress sent",
                     {{"error", std::string(s.message()).substr(0, 256)}});
        continue;
      }
    }
    absl::MutexLock lock(&watchers_mu_);
    for (WatchReactor* w : watchers_) w->Progress();
  }
}

ManagementService::~ManagementService() {
  {
    absl::MutexLock lock(&watchers_mu_);
    ticker_stopping_ = true;
  }
  if (progress_ticker_.joinable()) progress_ticker_.join();
}

absl::Status ManagementService::LimitExpensiveCall(const Caller& caller,
                                                   absl::string_view what,
                                                   double cost) const {
  if (options_.expensive_call_limiter == nullptr) return absl::OkStatus();
  return options_.expensive_call_limiter->Acquire(PoolKey(caller, nullptr),
                                                  what, cost);
}

// ---- Deletes --------------------------------------------------------------

grpc::ServerUnaryReactor* ManagementService::DeleteProduct(
    grpc::CallbackServerContext* ctx, const v1::DeleteProductRequest* req,
    v1::DeleteResponse*) {
  return Unary(ctx, [=](const Caller& c) {
    return catalog_->DeleteProduct(c, req->tenant_id(), req->product());
  });
}

grpc::ServerUnaryReactor* ManagementService::DeleteDeviceGroup(
    grpc::CallbackServerContext* ctx, const v1::DeleteDeviceGroupRequest* req,
    v1::DeleteResponse*) {
  return Unary(ctx, [=](const Caller& c) {
    return catalog_->DeleteDeviceGroup(c, req->tenant_id(),
                                       req->device_group_id());
  });
}

grpc::ServerUnaryReactor* ManagementService::DeleteDeployment(
    grpc::CallbackServerContext* ctx, const v1::DeleteDeploymentRequest* req,
    v1::DeleteResponse*) {
  return Unary(ctx, [=](const Caller& c) {
    return catalog_->DeleteDeployment(c, req->tenant_id(),
                                      req->deployment_id());
  });
}

grpc::ServerUnaryReactor* ManagementService::DeleteImage(
    grpc::CallbackServerContext* ctx, const v1::DeleteImageRequest* req,
    v1::DeleteResponse*) {
  return Unary(ctx, [=](const Caller& c) {
    return catalog_->DeleteImage(c, req->tenant_id(), req->image_id());
  });
}

}  // namespace sphere::management
