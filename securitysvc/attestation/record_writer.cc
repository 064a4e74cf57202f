#include "securitysvc/attestation/record_writer.h"

#include <memory>
#include <utility>

namespace sphere::attestation {

void GroupCommitRecordWriter::Write(store::WriteBatch batch, Done done) {
  // Submit runs `done` only when it accepted the batch; a refusal (queue
  // full, stopping) is answered here, at once.
  auto shared_done = std::make_shared<Done>(std::move(done));
  absl::Status queued = writer_->Submit(
      std::move(batch),
      [shared_done](const absl::Status& s) { (*shared_done)(s); });
  if (!queued.ok()) (*shared_done)(queued);
}

}  // namespace sphere::attestation
