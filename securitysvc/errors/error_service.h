// ErrorReportingServiceImpl: the gRPC adapter of ErrorStore
// (protos/error_reporting.proto).
//
// UploadErrors goes through the shard's DeviceCallHandler (device
// certificate or gateway + session token; the device id and tenant come
// from the credential; a device owned by another shard is redirected) and
// finishes from the group-commit callback once the batch is durable: no
// callback thread waits for the disk.
//
// UploadErrorsBatch (gateways only, DeviceCallHandler::RequireGateway)
// carries many devices' batches: the call limits below are checked first
// (INVALID_ARGUMENT for the call, nothing stored); then each item is
// authenticated on its own from its session token
// (DeviceCallHandler::IdentifyGatewayItem: the same checks as the single
// call's metadata token), routed (another shard's device: FAILED_PRECONDITION
// with redirect_address) and handed to ErrorStore::Ingest, so every item
// gets exactly the single call's validation, quota, idempotency and
// durability; a refused item stores nothing and affects no other item. The
// items' writes share the group commit (a call's items are queued together,
// so they usually land in one synced write). The call finishes from the last
// item's callback: no callback thread waits.
//
// QueryErrors, ListIssues and GetIssue take an operator credential issued by
// the platform root (attestation::IdentifyStatusReader): a platform operator
// reads any tenant; a tenant credential (tenant operator, or the tenant's
// relying party such as the Contoso cloud) reads only its own tenant and is
// refused PERMISSION_DENIED for another. They run on the callback thread with
// bounded work (ErrorStore's page and scan limits).
//
// Thread-safe.
#ifndef SPHERE_SECURITYSVC_ERRORS_ERROR_SERVICE_H_
#define SPHERE_SECURITYSVC_ERRORS_ERROR_SERVICE_H_

#include <grpcpp/support/message_allocator.h>

#include <string>

#include "google/protobuf/arena.h"
#include "protos/error_reporting.grpc.pb.h"
#include "securitysvc/errors/error_store.h"
#include "securitysvc/shard_server/device_call.h"

namespace sphere::errors {

// Limits of one UploadErrorsBatch call (each item also has every limit of
// the single UploadErrors).
inline constexpr int kMaxUploadBatchItems = 256;
inline constexpr int kMaxUploadBatchEvents = 16000;
inline constexpr size_t kMaxUploadBatchBytes = 4 << 20;

// ValidateUploadBatch: the call limits above, INVALID_ARGUMENT naming the
// one exceeded.
absl::Status ValidateUploadBatch(const v1::UploadErrorsBatchRequest& request);

// AcceptedHook: called once an upload is durable (before the device is
// answered), with the authenticated device id and the batch; it must not
// block (issue 11: the update plug-in counts crashes after install).
using AcceptedHook = std::function<void(const std::string& device_id,
                                        const v1::UploadErrorsRequest& batch)>;

class ErrorReportingServiceImpl final
    : public v1::ErrorReportingService::CallbackService {
 public:
  // Pointers must outlive the service.
  ErrorReportingServiceImpl(ErrorStore* errors,
                            const shard::DeviceCallHandler* device_calls,
                            std::string root_subject_line)
      : errors_(errors),
        device_calls_(device_calls),
        root_subject_line_(std::move(root_subject_line)) {
    SetMessageAllocatorFor_UploadErrorsBatch(&batch_allocator_);
  }

  // set_on_accepted: see AcceptedHook; call before serving.
  void set_on_accepted(AcceptedHook hook) { on_accepted_ = std::move(hook); }

  grpc::ServerUnaryReactor* UploadErrors(
      grpc::CallbackServerContext* context,
      const v1::UploadErrorsRequest* request,
      v1::UploadErrorsResponse* response) override;
  grpc::ServerUnaryReactor* UploadErrorsBatch(
      grpc::CallbackServerContext* context,
      const v1::UploadErrorsBatchRequest* request,
      v1::UploadErrorsBatchResponse* response) override;
  grpc::ServerUnaryReactor* QueryErrors(
      grpc::CallbackServerContext* context,
      const v1::QueryErrorsRequest* request,
      v1::QueryErrorsResponse* response) override;
  grpc::ServerUnaryReactor* ListIssues(
      grpc::CallbackServerContext* context,
      const v1::ListIssuesRequest* request,
      v1::ListIssuesResponse* response) override;
  grpc::ServerUnaryReactor* GetIssue(grpc::CallbackServerContext* context,
                                     const v1::GetIssueRequest* request,
                                     v1::GetIssueResponse* response) override;

 private:
  // BatchArenaAllocator: each UploadErrorsBatch's request and response live
  // on one protobuf Arena, freed at once when gRPC releases the call (a
  // gateway's 256 items are otherwise a malloc and a free per string and
  // per message).
  class BatchArenaAllocator final
      : public grpc::MessageAllocator<v1::UploadErrorsBatchRequest,
                                      v1::UploadErrorsBatchResponse> {
   public:
    grpc::MessageHolder<v1::UploadErrorsBatchRequest,
                        v1::UploadErrorsBatchResponse>*
    AllocateMessages() override {
      return new Holder;
    }

   private:
    class Holder final
        : public grpc::MessageHolder<v1::UploadErrorsBatchRequest,
                                     v1::UploadErrorsBatchResponse> {
     public:
      Holder() {
        set_request(google::protobuf::Arena::CreateMessage<
                    v1::UploadErrorsBatchRequest>(&arena_));
        set_response(google::protobuf::Arena::CreateMessage<
                     v1::UploadErrorsBatchResponse>(&arena_));
      }
      void Release() override { delete this; }

     private:
      google::protobuf::Arena arena_;
    };
  };

  // Operator: authorise the caller for `tenant_id`, run `fn`, finish.
  grpc::ServerUnaryReactor* Operator(grpc::CallbackServerContext* context,
                                     absl::string_view method,
                                     const std::string& tenant_id,
                                     const std::function<absl::Status()>& fn);

  ErrorStore* const errors_;
  const shard::DeviceCallHandler* const device_calls_;
  const std::string root_subject_line_;
  AcceptedHook on_accepted_;
  BatchArenaAllocator batch_allocator_;
};

}  // namespace sphere::errors

#endif  // SPHERE_SECURITYSVC_ERRORS_ERROR_SERVICE_H_
