// See durable_sync.h.
#include "supervisor/durable_sync.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace corral {

Result<std::unique_ptr<DurableSync>> DurableSync::Start(const std::string& wal_path,
                                                        std::function<void()> checkpoint) {
  ASSIGN_OR_RETURN(UniqueFd wal, OpenFile(wal_path, O_RDWR | O_CLOEXEC));
  UniqueFd event(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!event) return Error::FromErrno("eventfd", "task queue sync");
  std::unique_ptr<DurableSync> s(
      new DurableSync(std::move(wal), std::move(event), std::move(checkpoint)));
  s->thread_ = std::thread([p = s.get()] { p->Run(); });
  return s;
}

DurableSync::~DurableSync() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void DurableSync::Request(uint64_t seq, int wal_frames) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    wal_frames_ = wal_frames;
    if (seq <= requested_) return;
    requested_ = seq;
  }
  wake_.notify_one();
}

uint64_t DurableSync::Done(std::string* error) {
  uint64_t count;
  while (read(event_.get(), &count, sizeof count) > 0) {
  }
  std::lock_guard<std::mutex> lock(mu_);
  *error = error_;
  return done_;
}

Status DurableSync::SyncNow() {
  if (fdatasync(wal_.get()) != 0) return Error::FromErrno("fdatasync", "tasks.db-wal");
  return Ok();
}

void DurableSync::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (requested_ <= done_ || !error_.empty()) {
      wake_.wait(lock);
      continue;
    }
    uint64_t target = requested_;  // every commit counted so far has returned: one sync for all
    lock.unlock();
    Status st = SyncNow();
    lock.lock();
    if (st.ok()) {
      done_ = target;
    } else {
      error_ = st.error().message();
    }
    uint64_t one = 1;
    (void)!write(event_.get(), &one, sizeof one);
    if (st.ok() && checkpoint_ && wal_frames_ >= kCheckpointFrames) {
      wal_frames_ = 0;  // the next commit's count says where the WAL is then
      lock.unlock();
      checkpoint_();  // after the answers were released: it takes two fsyncs
      lock.lock();
    }
  }
}

}  // namespace corral
