#include "securitysvc/attestation/attestation_plugin.h"

#include "absl/strings/str_cat.h"
#include "common/rpc/rpc.h"

namespace sphere::attestation {
namespace {

// Revoke: RevokeDevice as the shard (an internal caller). Runs on the
// RevocationQueue's worker thread, never on the attestation path.
absl::Status Revoke(const shard::ShardContext& c, const RevocationRequest& r) {
  if (!r.unknown_image_hash.empty()) {
    // Catch up with management before calling an image unsigned: the image
    // may have been released after this shard's catalog revision.
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
    v1::CatalogRevision rev;
    grpc::Status st = c.management->GetCatalogRevision(
        &ctx, v1::GetCatalogRevisionRequest(), &rev);
    if (!st.ok()) return rpc::FromGrpcStatus(st);
    if (!c.wait_for_revision(rev.revision(), absl::Seconds(10))) {
      return absl::UnavailableError(absl::StrCat(
          "catalog has not reached revision ", rev.revision(), " yet"));
    }
    if (c.catalog->FindImageByHash(r.unknown_image_hash).ok()) {
      return absl::FailedPreconditionError(
          "the image is platform-signed after all (catalog caught up); not "
          "revoking");
    }
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
  v1::RevokeDeviceRequest req;
  req.set_tenant_id(r.tenant_id);
  req.set_device_id(r.device_id);
  req.set_reason(r.reason);
  v1::Device device;
  return rpc::FromGrpcStatus(c.management->RevokeDevice(&ctx, req, &device));
}

}  // namespace

std::vector<std::string> AttestationPlugin::ColumnFamilies() const {
  return attestation::ColumnFamilies();
}

absl::Status AttestationPlugin::Init(shard::ShardContext& context) {
  Attestor::Options aopts = options_.attestor;
  if (context.management != nullptr) {
    const shard::ShardContext* c = &context;
    revocations_ = std::make_unique<RevocationQueue>(
        [c](const RevocationRequest& r) { return Revoke(*c, r); },
        RevocationQueue::Options());
    aopts.revocation_sink = revocations_.get();
  }
  group_commit_ = std::make_unique<store::GroupCommitWriter>(
      context.store, options_.record_writer);
  record_writer_ =
      std::make_unique<GroupCommitRecordWriter>(group_commit_.get());
  aopts.record_writer = record_writer_.get();
  nonces_ = std::make_unique<NonceStore>(context.clock);
  challenge_limiter_ =
      std::make_unique<RateLimiter>(context.clock, options_.challenge_rate);
  attestor_ =
      std::make_unique<Attestor>(context.catalog, context.store, nonces_.get(),
                                 context.session_tokens, context.clock, aopts);
  service_ = std::make_unique<AttestationServiceImpl>(
      attestor_.get(), context.device_calls, context.catalog,
      context.revision_gate, challenge_limiter_.get());
  status_service_ = std::make_unique<DeviceStatusServiceImpl>(
      attestor_.get(), context.catalog, context.router,
      context.root_subject_line, options_.device_status_extension,
      options_.device_history_extension, options_.status_reads);
  return absl::OkStatus();
}

std::vector<grpc::Service*> AttestationPlugin::Services() {
  return {service_.get(), status_service_.get()};
}

uint64_t AttestationPlugin::DeviceCount() const {
  return attestor_ ? attestor_->attested_device_count() : 0;
}

void AttestationPlugin::Stop() {
  // The server no longer serves: write what is queued (each waiting call
  // gets its answer), then no more.
  if (group_commit_) group_commit_->Stop();
  if (revocations_) revocations_->Stop();
  if (status_service_) status_service_->Stop();
}

}  // namespace sphere::attestation
