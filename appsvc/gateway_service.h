// ContosoGatewayService: the gRPC adapter of appsvc's gateway path
// (contoso.v1.ContosoGateway; core: gateway_auth.h, contoso_cloud.h), thin:
// the channel must present a gateway certificate (scope "gateway") of the
// platform PKI; each call names its device and carries appsvc's session
// token in metadata (kGatewayDeviceMetadata, kGatewaySessionMetadata);
// GatewayAuth checks the token and the catalog. GetChallenge and token
// checks are cheap and run on the callback thread; Prove (signature and
// chain verification), durable writes and scans run on the WorkerPool
// (keyed by device, so one device cannot take the whole queue). A full queue
// is RESOURCE_EXHAUSTED: retry with backoff.
//
// Limits (checked before anything else): request sizes below, at most
// kMaxCountDevices devices per CountTelemetry, metadata values bounded by
// GatewayAuthOptions.
//
// Thread-safety: as any gRPC service; every member it uses is thread-safe.
#ifndef SPHERE_APPSVC_GATEWAY_SERVICE_H_
#define SPHERE_APPSVC_GATEWAY_SERVICE_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/message_allocator.h>

#include <string>

#include "absl/status/statusor.h"
#include "google/protobuf/arena.h"
#include "appsvc/contoso_cloud.h"
#include "appsvc/gateway_auth.h"
#include "common/util/worker_pool.h"
#include "protos/contoso.grpc.pb.h"

namespace contoso::appsvc {

inline constexpr size_t kMaxProveRequestBytes = 16 << 10;
inline constexpr size_t kMaxGatewayTelemetryBytes = 256 << 10;
inline constexpr size_t kMaxCountRequestBytes = 1200 << 10;
inline constexpr size_t kMaxChallengesRequestBytes = 16 << 10;

class ContosoGatewayService final : public v1::ContosoGateway::CallbackService {
 public:
  // All pointers must outlive the service.
  ContosoGatewayService(GatewayAuth* auth, ContosoCloud* cloud,
                        sphere::WorkerPool* pool)
      : auth_(auth), cloud_(cloud), pool_(pool) {
    SetMessageAllocatorFor_ReportTelemetryBatch(&telemetry_allocator_);
  }

  grpc::ServerUnaryReactor* GetChallenge(
      grpc::CallbackServerContext* ctx, const v1::GatewayChallengeRequest* req,
      v1::GatewayChallengeResponse* resp) override;
  grpc::ServerUnaryReactor* Prove(grpc::CallbackServerContext* ctx,
                                  const v1::GatewayProveRequest* req,
                                  v1::GatewayProveResponse* resp) override;
  grpc::ServerUnaryReactor* ReportTelemetry(
      grpc::CallbackServerContext* ctx, const v1::ReportTelemetryRequest* req,
      v1::ReportTelemetryResponse* resp) override;
  grpc::ServerUnaryReactor* CountTelemetry(
      grpc::CallbackServerContext* ctx, const v1::CountTelemetryRequest* req,
      v1::CountTelemetryResponse* resp) override;
  // Batch forms for gateways (DESIGN §5): at most kMaxProveBatch devices per
  // call, each device's challenge or proof checked on its own with its own
  // result. GetChallenges runs on the callback thread (cheap); ProveBatch on
  // the WorkerPool keyed by the gateway certificate's name, so one gateway
  // cannot take the whole queue.
  grpc::ServerUnaryReactor* GetChallenges(
      grpc::CallbackServerContext* ctx, const v1::GatewayChallengesRequest* req,
      v1::GatewayChallengesResponse* resp) override;
  grpc::ServerUnaryReactor* ProveBatch(
      grpc::CallbackServerContext* ctx, const v1::GatewayProveBatchRequest* req,
      v1::GatewayProveBatchResponse* resp) override;
  // ReportTelemetryBatch: every item's token is checked on the callback
  // thread (a refused item gets its own code); the accepted items go to
  // ContosoCloud::ReportTelemetryMany on the WorkerPool (keyed by the
  // gateway certificate's name): one durable write for them all.
  grpc::ServerUnaryReactor* ReportTelemetryBatch(
      grpc::CallbackServerContext* ctx,
      const v1::GatewayTelemetryBatchRequest* req,
      v1::GatewayTelemetryBatchResponse* resp) override;

  // CheckGateway: OK when the channel's certificate has scope "gateway".
  static absl::Status CheckGateway(const grpc::ServerContextBase& ctx);
  // DeviceOf: the device named in metadata, authenticated by its token.
  absl::StatusOr<std::string> DeviceOf(
      const grpc::ServerContextBase& ctx) const;

 private:
  // TelemetryArenaAllocator: each ReportTelemetryBatch's request and
  // response live on one protobuf Arena, freed at once when gRPC releases
  // the call (a gateway's call of 16 devices x 100 readings was otherwise a
  // malloc and a free per reading: ~8 % of appsvc's CPU while readings
  // arrive, issue 14).
  class TelemetryArenaAllocator final
      : public grpc::MessageAllocator<v1::GatewayTelemetryBatchRequest,
                                      v1::GatewayTelemetryBatchResponse> {
   public:
    grpc::MessageHolder<v1::GatewayTelemetryBatchRequest,
                        v1::GatewayTelemetryBatchResponse>*
    AllocateMessages() override {
      return new Holder;
    }

   private:
    class Holder final
        : public grpc::MessageHolder<v1::GatewayTelemetryBatchRequest,
                                     v1::GatewayTelemetryBatchResponse> {
     public:
      Holder() {
        set_request(google::protobuf::Arena::CreateMessage<
                    v1::GatewayTelemetryBatchRequest>(&arena_));
        set_response(google::protobuf::Arena::CreateMessage<
                     v1::GatewayTelemetryBatchResponse>(&arena_));
      }
      void Release() override { delete this; }

     private:
      google::protobuf::Arena arena_;
    };
  };

  GatewayAuth* const auth_;
  ContosoCloud* const cloud_;
  sphere::WorkerPool* const pool_;
  TelemetryArenaAllocator telemetry_allocator_;
};

// LoadOrCreateGatewayKey reads appsvc's 32-byte gateway token key from
// `path`, creating it (CSPRNG, mode 0600, atomic write) on first start.
// A file of another size is refused (FailedPrecondition), never replaced.
absl::StatusOr<std::string> LoadOrCreateGatewayKey(const std::string& path);

}  // namespace contoso::appsvc

#endif  // SPHERE_APPSVC_GATEWAY_SERVICE_H_
