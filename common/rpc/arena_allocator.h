// ArenaRequestAllocator: a gRPC callback method's request parsed onto one
// protobuf Arena per call (its messages, and its strings' objects, are
// allocated from a few blocks and freed at once when gRPC releases the
// call), its response an ordinary heap message.
//
// For batch methods whose request holds hundreds of items (issue 14: an
// AttestBatch of ~160 quotes is otherwise a malloc and a free per message
// and per string). The response stays off the arena so that results built
// elsewhere (heap messages) move into it without a copy.
//
// Example (in a CallbackService's constructor):
//   SetMessageAllocatorFor_AttestBatch(&attest_batch_allocator_);
//   rpc::ArenaRequestAllocator<v1::AttestBatchRequest,
//                              v1::AttestBatchResponse> attest_batch_allocator_;
#ifndef SPHERE_COMMON_RPC_ARENA_ALLOCATOR_H_
#define SPHERE_COMMON_RPC_ARENA_ALLOCATOR_H_

#include <google/protobuf/arena.h>
#include <grpcpp/support/message_allocator.h>

namespace sphere::rpc {

template <typename Request, typename Response>
class ArenaRequestAllocator final
    : public grpc::MessageAllocator<Request, Response> {
 public:
  grpc::MessageHolder<Request, Response>* AllocateMessages() override {
    return new Holder;
  }

 private:
  class Holder final : public grpc::MessageHolder<Request, Response> {
   public:
    Holder() {
      this->set_request(
          google::protobuf::Arena::CreateMessage<Request>(&arena_));
      this->set_response(&response_);
    }
    void Release() override { delete this; }

   private:
    google::protobuf::Arena arena_;  // destroyed after response_
    Response response_;
  };
};

}  // namespace sphere::rpc

#endif  // SPHERE_COMMON_RPC_ARENA_ALLOCATOR_H_
