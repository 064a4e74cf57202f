#include "securitysvc/update/update_service.h"

#include <grpcpp/support/proto_buffer_reader.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/rpc/rpc.h"
#include "common/util/log.h"

namespace sphere::update {
namespace {

using shard::DeviceAccess;
using shard::DeviceCall;
using shard::DeviceMethod;

const DeviceMethod& GetUpdatesMethod() {
  static const auto* m = new DeviceMethod("get_updates", DeviceAccess::kDevice,
                                          "sphere_update_get_updates_seconds");
  return *m;
}
const DeviceMethod& ReportMethod() {
  static const auto* m =
      new DeviceMethod("report_update_result", DeviceAccess::kDevice,
                       "sphere_update_report_result_seconds");
  return *m;
}

metrics::CounterMetric* DownloadCounter() {
  static auto* c = metrics::Counter("sphere_update_downloads_total",
                                    "DownloadImage calls by gRPC code");
  return c;
}
metrics::CounterMetric* DownloadBytes() {
  static auto* c = metrics::Counter("sphere_update_download_bytes_total",
                                    "Package bytes streamed by DownloadImage");
  return c;
}

absl::Status ServiceBusy() {
  return absl::ResourceExhaustedError(
      "update service busy (worker queue full); retry with backoff");
}

// NotInSetError: PERMISSION_DENIED for an image the platform signed that is
// not in the caller's set; NOT_FOUND for one it never signed.
absl::Status NotInSetError(const catalog::CatalogView& catalog,
                           absl::string_view image_id) {
  auto hash = crypto::HexDecode(image_id);
  if (hash.ok() && catalog.FindImageByHash(*hash).ok()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "image ", image_id,
        " is not in this device's signed update set; call GetUpdates and "
        "download only the images it lists"));
  }
  return absl::NotFoundError(absl::StrCat("no image ", image_id));
}

// DownloadReactor streams one package: one write in flight, each chunk at
// most chunk_ bytes, never past end_ (the signed package_size).
class DownloadReactor final : public grpc::ServerWriteReactor<v1::ImageChunk> {
 public:
  DownloadReactor(const UpdateServiceImpl* service,
                  grpc::CallbackServerContext* context,
                  const v1::DownloadImageRequest* request)
      : d_(service->deps()) {
    absl::Status s = Begin(service, context, *request);
    if (!s.ok()) Done(s);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Done(absl::CancelledError("client went away during the download"));
      return;
    }
    WriteNext();
  }
  void OnDone() override { delete this; }

 private:
  absl::Status Begin(const UpdateServiceImpl* service,
                     grpc::CallbackServerContext* context,
                     const v1::DownloadImageRequest& req) {
    if (!ValidImageId(req.image_id())) {
      return absl::InvalidArgumentError(
          "image_id must be 64 lowercase hex characters "
          "(UpdateTarget.image_id)");
    }
    if (req.max_chunk_bytes() > kMaxChunkBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "max_chunk_bytes is ", req.max_chunk_bytes(), "; at most ",
          kMaxChunkBytes, " (0 = ", kDefaultChunkBytes, ")"));
    }
    chunk_ =
        req.max_chunk_bytes() == 0 ? kDefaultChunkBytes : req.max_chunk_bytes();
    auto call =
        d_.calls->Identify(*context, DeviceAccess::kDevice, req.device_id());
    if (!call.ok()) return call.status();
    if (grpc::Status owner =
            d_.router->CheckOwnership(context, call->device_id);
        !owner.ok()) {
      return rpc::FromGrpcStatus(owner);
    }
    device_ = call->device_id;
    image_id_ = req.image_id();
    offset_ = req.offset();
    length_ = req.length();
    auto variant = service->VariantFor(*call);
    if (!variant.ok()) return variant.status();
    auto m = d_.metadata->Get(*variant);
    if (!m.ok()) return m.status();
    if (*m != nullptr) return WithMetadata(**m);
    // A package must be read before the metadata exists: off this thread.
    if (!d_.worker->Post([this, v = *variant] {
          auto built = d_.metadata->Build(v);
          absl::Status s = built.ok() ? WithMetadata(**built) : built.status();
          if (!s.ok()) Done(s);
        })) {
      return ServiceBusy();
    }
    return absl::OkStatus();
  }

  absl::Status WithMetadata(const GroupMetadata& m) {
    const v1::UpdateTarget* t = m.Find(image_id_);
    if (t == nullptr) return NotInSetError(*d_.catalog, image_id_);
    size_ = t->package_size();
    if (offset_ > size_) {
      return absl::OutOfRangeError(
          absl::StrCat("offset ", offset_, " is past the end of the ", size_,
                       "-byte package of image ", image_id_));
    }
    // A range: stop at offset + length (never past the signed length).
    end_ = length_ > 0 && length_ < size_ - offset_ ? offset_ + length_ : size_;
    if (auto bytes = d_.packages->Cached(image_id_)) return Serve(bytes);
    if (!d_.worker->Post([this] {
          auto bytes = d_.packages->Load(image_id_);
          absl::Status s = bytes.ok() ? Serve(*bytes) : bytes.status();
          if (!s.ok()) Done(s);
        })) {
      return ServiceBusy();
    }
    return absl::OkStatus();
  }

  absl::Status Serve(std::shared_ptr<const std::string> bytes) {
    if (bytes->size() != size_) {
      return absl::DataLossError(absl::StrCat(
          "stored package of image ", image_id_, " is ", bytes->size(),
          " bytes; the signed metadata says ", size_));
    }
    bytes_ = std::move(bytes);
    WriteNext();
    return absl::OkStatus();
  }

  void WriteNext() {
    if (offset_ >= end_) {
      Done(absl::OkStatus());
      return;
    }
    const uint64_t n = std::min<uint64_t>(chunk_, end_ - offset_);
    msg_.set_offset(offset_);
    msg_.set_total_size(size_);
    msg_.set_data(bytes_->data() + offset_, n);
    offset_ += n;
    DownloadBytes()->Increment("", n);
    StartWrite(&msg_);
  }

  void Done(const absl::Status& s) {
    if (absl::IsPermissionDenied(s) || absl::IsInternal(s) ||
        absl::IsDataLoss(s)) {
      log::Warning(
          "download refused",
          {{"device", device_}, {"image", image_id_}, {"error", s.ToString()}});
    }
    DownloadCounter()->Increment(
        absl::StrCat("code=\"", absl::StatusCodeToString(s.code()), "\""));
    Finish(rpc::ToGrpcStatus(s));
  }

  const UpdateServiceImpl::Deps d_;
  uint32_t chunk_ = kDefaultChunkBytes;
  std::string device_, image_id_;
  uint64_t offset_ = 0, length_ = 0;
  uint64_t size_ = 0;  // the signed package_size
  uint64_t end_ = 0;   // where this stream stops (size_, or a range end)
  std::shared_ptr<const std::string> bytes_;
  v1::ImageChunk msg_;
};

}  // namespace

// ReportQueue: the group commit of result reports. Reports queue here; one
// task on the update worker takes every report queued so far and stores
// them with UpdateResults::RecordAll (one synced write), then finishes each
// call with the write's status. Reports arriving during a write form the
// next group. Bounded: kMaxQueuedReports waiting.
class UpdateServiceImpl::ReportQueue {
 public:
  ReportQueue(UpdateResults* results, WorkerPool* worker)
      : results_(results), worker_(worker) {}

  // Add queues `st`; `finish` runs exactly once (now when refused, else on
  // the worker once the group is durable or failed).
  void Add(v1::DeviceUpdateStatus st, shard::DeviceCallHandler::Finish finish) {
    bool post = false;
    {
      absl::MutexLock l(&mu_);
      if (pending_.size() >= kMaxQueuedReports) {
        post = false;
      } else {
        pending_.emplace_back(std::move(st), std::move(finish));
        post = !scheduled_;
        scheduled_ = true;
        finish = nullptr;
      }
    }
    if (finish != nullptr) {  // not queued: the queue is full
      finish(ServiceBusy());
      return;
    }
    if (post && !worker_->Post([this] { Drain(); })) {
      // The worker refused (its queue is full): nothing will drain what
      // waits now, so answer it busy.
      for (auto& [unused, f] : Take()) f(ServiceBusy());
    }
  }

 private:
  using Pending =
      std::vector<std::pair<v1::DeviceUpdateStatus,
                            shard::DeviceCallHandler::Finish>>;
  Pending Take() {
    absl::MutexLock l(&mu_);
    Pending out;
    out.swap(pending_);
    scheduled_ = false;
    return out;
  }
  void Drain() {
    Pending group = Take();
    if (group.empty()) return;
    std::vector<v1::DeviceUpdateStatus> statuses;
    statuses.reserve(group.size());
    for (auto& entry : group) statuses.push_back(std::move(entry.first));
    const absl::Status s = results_->RecordAll(statuses);
    for (auto& entry : group) entry.second(s);
  }

  UpdateResults* const results_;
  WorkerPool* const worker_;
  absl::Mutex mu_;
  Pending pending_ ABSL_GUARDED_BY(mu_);
  bool scheduled_ ABSL_GUARDED_BY(mu_) = false;  // a Drain is posted
};

UpdateServiceImpl::UpdateServiceImpl(Deps deps)
    : d_(deps),
      reports_(std::make_unique<ReportQueue>(deps.results, deps.worker)) {}

UpdateServiceImpl::~UpdateServiceImpl() = default;

bool ValidImageId(absl::string_view id) {
  if (id.size() != 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return absl::ascii_isdigit(c) || (c >= 'a' && c <= 'f');
  });
}

absl::StatusOr<GroupVariant> UpdateServiceImpl::VariantFor(
    const DeviceCall& call) const {
  // The record the call's authentication read (one catalog read per call);
  // read here only for a call identified without one.
  if (call.context.has_value() && call.device.id() == call.device_id) {
    return VariantOf(call, call.device);
  }
  auto device = d_.catalog->GetDevice(call.device_id);
  if (!device.ok()) return device.status();
  return VariantOf(call, *device);
}

absl::StatusOr<GroupVariant> UpdateServiceImpl::VariantOf(
    const DeviceCall& call, const v1::Device& device) const {
  if (call.context.has_value() &&
      device.tenant_id() != call.context->tenant_id) {
    return absl::PermissionDeniedError(absl::StrCat(
        "device ", call.device_id,
        " belongs to another tenant than its credential names; attest again"));
  }
  if (device.device_group_id().empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "device ", call.device_id,
        " is not in a device group; assign it to one (spherectl device "
        "assign) to receive updates"));
  }
  return d_.metadata->VariantFor(device.device_group_id(), call.device_id);
}

namespace {

// SharedBytes: `m`'s pre-serialized answer as a ByteBuffer that references
// it (no copy); the slice keeps the metadata alive until gRPC sent it.
grpc::ByteBuffer SharedBytes(std::shared_ptr<const GroupMetadata> m) {
  auto* hold = new std::shared_ptr<const GroupMetadata>(std::move(m));
  const std::string& b = (*hold)->response_bytes;
  grpc::Slice slice(
      const_cast<char*>(b.data()), b.size(),
      [](void* p) {
        delete static_cast<std::shared_ptr<const GroupMetadata>*>(p);
      },
      hold);
  return grpc::ByteBuffer(&slice, 1);
}

}  // namespace

grpc::ServerUnaryReactor* UpdateServiceImpl::GetUpdates(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  // The request is tiny (an optional device id, checked against
  // kMaxDeviceIdBytes before use); gRPC bounds its size.
  v1::GetUpdatesRequest req;
  grpc::ByteBuffer copy(*request);  // a reference, not a copy of the bytes
  const bool parsed =
      !copy.Valid() ||  // no payload: the empty request
      grpc::SerializationTraits<v1::GetUpdatesRequest>::Deserialize(&copy, &req)
          .ok();
  if (!parsed) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 "GetUpdatesRequest does not parse"));
    return reactor;
  }
  return d_.calls->UnaryAsync(
      context, GetUpdatesMethod(), req.device_id(),
      [this, response](const DeviceCall& call,
                       shard::DeviceCallHandler::Finish finish) {
        auto variant = VariantFor(call);
        if (!variant.ok()) return finish(variant.status());
        auto m = d_.metadata->Get(*variant);
        if (!m.ok()) return finish(m.status());
        if (*m != nullptr) {
          *response = SharedBytes(*std::move(m));
          return finish(absl::OkStatus());
        }
        auto task = [this, response, finish, v = *variant] {
          auto built = d_.metadata->Build(v);
          if (built.ok()) *response = SharedBytes(*std::move(built));
          finish(built.status());
        };
        if (!d_.worker->Post(task)) finish(ServiceBusy());
      });
}

namespace {

const DeviceMethod& GetUpdatesBatchMethod() {
  static const auto* m =
      new DeviceMethod("get_updates_batch", DeviceAccess::kDevice,
                       "sphere_update_get_updates_batch_seconds");
  return *m;
}

metrics::CounterMetric* BatchCalls() {
  static auto* c = metrics::Counter("sphere_update_get_updates_batch_calls_total",
                                    "GetUpdatesBatch calls by code");
  return c;
}

metrics::CounterMetric* BatchItems() {
  static auto* c =
      metrics::Counter("sphere_update_get_updates_batch_items_total",
                       "GetUpdatesBatch items by their own code");
  return c;
}

void CountItem(absl::StatusCode code) {
  BatchItems()->Increment(
      absl::StrCat("code=\"", absl::StatusCodeToString(code), "\""));
}

void SetItemError(v1::GetUpdatesResult* result, const absl::Status& s) {
  result->set_code(static_cast<int>(s.code()));
  result->set_message(rpc::TruncateForStatus(s.message()));
  CountItem(s.code());
}

// BatchAnswers: the distinct answers of one GetUpdatesBatch call, one per
// signed variant (the devices of a group share it).
class BatchAnswers {
 public:
  explicit BatchAnswers(v1::GetUpdatesBatchResponse* response)
      : response_(response) {}
  void Answer(v1::GetUpdatesResult* result,
              const std::shared_ptr<const GroupMetadata>& m) {
    auto [it, added] =
        index_.try_emplace(m.get(), static_cast<uint32_t>(index_.size()));
    if (added) {
      *response_->add_answers() = m->response;
      held_.push_back(m);  // keeps the key's address unique
    }
    result->set_answer_index(it->second);
    CountItem(absl::StatusCode::kOk);
  }

 private:
  v1::GetUpdatesBatchResponse* const response_;
  absl::flat_hash_map<const GroupMetadata*, uint32_t> index_;
  std::vector<std::shared_ptr<const GroupMetadata>> held_;
};

}  // namespace

absl::Status ValidateUpdatesBatch(const v1::GetUpdatesBatchRequest& request) {
  if (request.items_size() == 0) {
    return absl::InvalidArgumentError(
        "GetUpdatesBatch: no items; send at least one device's check");
  }
  if (request.items_size() > kMaxUpdatesBatchItems) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GetUpdatesBatch: ", request.items_size(), " items; at most ",
        kMaxUpdatesBatchItems, " per call (split the batch)"));
  }
  if (const size_t bytes = request.ByteSizeLong();
      bytes > kMaxUpdatesBatchBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("GetUpdatesBatch: ", bytes, " bytes; at most ",
                     kMaxUpdatesBatchBytes, " per call (split the batch)"));
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* UpdateServiceImpl::GetUpdatesBatch(
    grpc::CallbackServerContext* context,
    const v1::GetUpdatesBatchRequest* request,
    v1::GetUpdatesBatchResponse* response) {
  const absl::Time start = absl::Now();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  auto finish = [reactor, start](const absl::Status& s) {
    GetUpdatesBatchMethod().latency->Observe(
        absl::ToDoubleSeconds(absl::Now() - start));
    BatchCalls()->Increment(
        absl::StrCat("code=\"", absl::StatusCodeToString(s.code()), "\""));
    reactor->Finish(rpc::ToGrpcStatus(s));
  };
  absl::Status refused = d_.calls->RequireGateway(*context);
  if (absl::IsPermissionDenied(refused)) {
    refused = absl::PermissionDeniedError(
        "GetUpdatesBatch is for gateways: a device checks its own updates "
        "with GetUpdates");
  }
  if (refused.ok()) refused = ValidateUpdatesBatch(*request);
  if (!refused.ok()) {
    if (absl::IsPermissionDenied(refused) ||
        absl::IsUnauthenticated(refused)) {
      log::Warning("device call denied",
                   {{"method", GetUpdatesBatchMethod().name},
                    {"peer", context->peer()},
                    {"error", std::string(refused.message())}});
    }
    finish(refused);
    return reactor;
  }
  const int n = request->items_size();
  auto* results = response->mutable_results();
  results->Reserve(n);
  for (int i = 0; i < n; ++i) {
    v1::GetUpdatesResult* r = results->Add();
    const std::string& id = request->items(i).request().device_id();
    if (ValidImageId(id)) r->set_device_id(id);  // never echo a malformed one
  }
  auto answers = std::make_shared<BatchAnswers>(response);
  // Items whose metadata needs a package read first (built on the worker).
  std::vector<std::pair<int, GroupVariant>> to_build;
  absl::Status first_denial;
  int denials = 0;
  for (int i = 0; i < n; ++i) {
    const v1::GetUpdatesItem& item = request->items(i);
    v1::GetUpdatesResult* result = response->mutable_results(i);
    absl::StatusOr<DeviceCall> call = d_.calls->IdentifyGatewayItem(
        *context, GetUpdatesMethod().access, item.session_token(),
        item.request().device_id());
    if (!call.ok()) {
      if (absl::IsPermissionDenied(call.status()) ||
          absl::IsUnauthenticated(call.status())) {
        if (denials++ == 0) first_denial = call.status();
      }
      SetItemError(result, call.status());
      continue;
    }
    if (std::optional<std::string> owner =
            d_.calls->RedirectAddress(call->device_id);
        owner.has_value()) {
      SetItemError(result, absl::FailedPreconditionError(absl::StrCat(
                               "device ", call->device_id,
                               " is served by shard ", *owner)));
      result->set_redirect_address(*owner);
      continue;
    }
    auto variant = VariantFor(*call);
    if (!variant.ok()) {
      SetItemError(result, variant.status());
      continue;
    }
    auto m = d_.metadata->Get(*variant);
    if (!m.ok()) {
      SetItemError(result, m.status());
    } else if (*m == nullptr) {
      to_build.emplace_back(i, *std::move(variant));
    } else {
      answers->Answer(result, *m);
    }
  }
  if (denials > 0) {
    // One line per call, not per item: a gateway's bad batch cannot flood
    // the log.
    log::Warning("device call denied",
                 {{"method", GetUpdatesBatchMethod().name},
                  {"peer", context->peer()},
                  {"items", absl::StrCat(denials)},
                  {"error", std::string(first_denial.message())}});
  }
  if (to_build.empty()) {
    finish(absl::OkStatus());
    return reactor;
  }
  // A package must be read before some items' metadata exists: one task on
  // the update worker builds each distinct variant (Build caches it) and
  // answers those items; the callback thread returns now.
  auto task = [this, response, answers, finish, to_build] {
    for (const auto& [i, variant] : to_build) {
      auto built = d_.metadata->Build(variant);
      v1::GetUpdatesResult* result = response->mutable_results(i);
      if (built.ok()) {
        answers->Answer(result, *built);
      } else {
        SetItemError(result, built.status());
      }
    }
    finish(absl::OkStatus());
  };
  if (!d_.worker->Post(task)) {
    for (const auto& entry : to_build) {
      SetItemError(response->mutable_results(entry.first), ServiceBusy());
    }
    finish(absl::OkStatus());
  }
  return reactor;
}

grpc::ServerWriteReactor<v1::ImageChunk>* UpdateServiceImpl::DownloadImage(
    grpc::CallbackServerContext* context,
    const v1::DownloadImageRequest* request) {
  return new DownloadReactor(this, context, request);
}

grpc::ServerUnaryReactor* UpdateServiceImpl::ReportUpdateResult(
    grpc::CallbackServerContext* context,
    const v1::ReportUpdateResultRequest* request,
    v1::ReportUpdateResultResponse*) {
  // Field limits first: nothing oversized is compared, logged or stored.
  absl::Status invalid;
  using R = v1::ReportUpdateResultRequest;
  if (!ValidImageId(request->image_id())) {
    invalid = absl::InvalidArgumentError(
        "image_id must be 64 lowercase hex characters (UpdateTarget.image_id)");
  } else if (request->detail().size() > kMaxDetailBytes) {
    invalid = absl::InvalidArgumentError(
        absl::StrCat("detail is ", request->detail().size(), " bytes; at most ",
                     kMaxDetailBytes));
  } else if (!R::Result_IsValid(request->result())) {
    invalid = absl::InvalidArgumentError(
        absl::StrCat("unknown result ", static_cast<int>(request->result())));
  }
  return d_.calls->UnaryAsync(
      context, ReportMethod(), request->device_id(),
      [this, request, invalid](const DeviceCall& call,
                               shard::DeviceCallHandler::Finish finish) {
        if (!invalid.ok()) return finish(invalid);
        if (auto s = d_.report_limiter->Acquire(call.device_id,
                                                "update result reports");
            !s.ok()) {
          return finish(s);
        }
        auto device = d_.catalog->GetDevice(call.device_id);
        if (!device.ok()) return finish(device.status());
        auto hash = crypto::HexDecode(request->image_id());
        if (!hash.ok()) return finish(hash.status());
        // Only images the platform signed for this tenant (or OS images).
        auto image = d_.catalog->FindImageForTenant(*hash, device->tenant_id());
        if (!image.ok()) return finish(image.status());
        v1::DeviceUpdateStatus st;
        st.set_device_id(call.device_id);
        st.set_image_id(request->image_id());
        st.set_component(image->component());
        st.set_tenant_id(device->tenant_id());
        R::Result r = request->result();
        if (r == R::RESULT_UNSPECIFIED) {
          r = request->success() ? R::INSTALLED : R::FAILED;
        }
        st.set_result(r);
        st.set_detail(request->detail());
        st.set_metadata_version(request->metadata_version());
        st.set_version(request->version());
        st.set_reported_unix_ms(absl::ToUnixMillis(d_.clock->Now()));
        auto dep = d_.catalog->CurrentDeployment(device->device_group_id());
        if (dep.ok() &&
            std::find(dep->image_ids().begin(), dep->image_ids().end(),
                      request->image_id()) != dep->image_ids().end()) {
          st.set_deployment_id(dep->id());
          st.set_rollout_stage(RolloutStage(*dep, call.device_id));
        }
        reports_->Add(std::move(st), std::move(finish));
      });
}

}  // namespace sphere::update
