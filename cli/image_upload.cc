#include "cli/image_upload.h"

#include <algorithm>

#include "common/rpc/rpc.h"

namespace sphere::cli {

absl::StatusOr<v1::Image> UploadImagePackage(
    v1::ManagementService::StubInterface* stub, absl::string_view tenant,
    absl::string_view package, absl::Duration timeout, size_t chunk_bytes) {
  if (chunk_bytes == 0) chunk_bytes = 256 * 1024;
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(timeout));
  v1::Image image;
  std::unique_ptr<grpc::ClientWriterInterface<v1::UploadImageChunk>> writer =
      stub->UploadImageStream(&ctx, &image);
  v1::UploadImageChunk first;
  first.set_tenant_id(std::string(tenant));
  first.set_total_size(package.size());
  bool open = writer->Write(first);
  for (size_t off = 0; open && off < package.size(); off += chunk_bytes) {
    v1::UploadImageChunk chunk;
    chunk.set_chunk(std::string(
        package.substr(off, std::min(chunk_bytes, package.size() - off))));
    open = writer->Write(chunk);
  }
  // A refused upload closes the stream early; Finish carries the reason.
  writer->WritesDone();
  grpc::Status status = writer->Finish();
  if (!status.ok()) return rpc::FromGrpcStatus(status);
  return image;
}

}  // namespace sphere::cli
