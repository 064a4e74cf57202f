#include "appsvc/durable_writer.h"

#include <vector>

namespace contoso::appsvc {

absl::Status GroupCommitWriter::Commit(const sphere::store::WriteBatch& batch) {
  Pending me{&batch};
  absl::MutexLock l(&mu_);
  queue_.push_back(&me);
  while (!me.done) {
    if (writing_) {
      cv_.Wait(&mu_);
      continue;
    }
    // Become the leader for whatever is queued (this caller included unless
    // the queue holds more than one group ahead of it).
    writing_ = true;
    std::vector<Pending*> group;
    while (!queue_.empty() &&
           static_cast<int>(group.size()) < max_group_batches_) {
      group.push_back(queue_.front());
      queue_.pop_front();
    }
    mu_.Unlock();
    absl::Status s;
    if (group.size() == 1) {
      s = store_->Write(*group[0]->batch);
    } else {
      sphere::store::WriteBatch merged;
      for (Pending* p : group) {
        for (const auto& op : p->batch->ops()) {
          if (op.is_delete) {
            merged.Delete(op.cf, op.key);
          } else {
            merged.Put(op.cf, op.key, op.value);
          }
        }
      }
      s = store_->Write(merged);
    }
    mu_.Lock();
    for (Pending* p : group) {
      p->status = s;
      p->done = true;
    }
    ++groups_;
    batches_ += group.size();
    writing_ = false;
    cv_.SignalAll();
  }
  return me.status;
}

uint64_t GroupCommitWriter::groups() const {
  absl::MutexLock l(&mu_);
  return groups_;
}
uint64_t GroupCommitWriter::batches() const {
  absl::MutexLock l(&mu_);
  return batches_;
}

}  // namespace contoso::appsvc
