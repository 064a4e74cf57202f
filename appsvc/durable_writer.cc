#include "appsvc/durable_writer.h"

#include "absl/synchronization/notification.h"

namespace contoso::appsvc {

absl::Status SharedGroupCommit::Commit(sphere::store::WriteBatch batch) {
  absl::Notification durable;
  absl::Status result;
  absl::Status queued = writer_->Submit(
      std::move(batch), [&durable, &result](const absl::Status& s) {
        result = s;
        durable.Notify();
      });
  if (!queued.ok()) return queued;  // the callback will not run
  durable.WaitForNotification();
  return result;
}

}  // namespace contoso::appsvc
