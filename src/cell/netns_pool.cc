// Network namespaces made ahead for isolated cells (see netns_pool.h).
#include "cell/netns_pool.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "cell/isolation.h"

namespace corral {
namespace {

// One namespace: unshare into a new one, bring `lo` up, keep it by an fd, go back home.
Result<UniqueFd> BuildOne(int home) {
  if (unshare(CLONE_NEWNET) != 0) return Error::FromErrno("unshare", "CLONE_NEWNET");
  UniqueFd ns(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  int err = ns ? 0 : errno;
  bool lo = ns && LoopbackUp();
  if (!lo && err == 0) err = errno;
  // Home first, whatever happened: this thread must not stay in a cell's namespace.
  if (setns(home, CLONE_NEWNET) != 0) return Error::FromErrno("setns", "the host's network namespace");
  if (!ns) return Error::FromErrno(err, "open", "/proc/thread-self/ns/net");
  if (!lo) return Error::FromErrno(err, "bring up loopback in", "a new network namespace");
  return ns;
}

}  // namespace

NetnsPool::~NetnsPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (helper_.joinable()) helper_.join();
}

UniqueFd NetnsPool::Take() {
  std::unique_lock<std::mutex> lock(mu_);
  if (broken_) return UniqueFd();
  if (!helper_.joinable()) helper_ = std::thread([this] { Fill(); });
  UniqueFd out;
  if (!ready_.empty()) {
    out = std::move(ready_.back());
    ready_.pop_back();
  }
  lock.unlock();
  wake_.notify_one();
  return out;
}

void NetnsPool::Fill() {
  UniqueFd home(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  std::unique_lock<std::mutex> lock(mu_);
  if (!home) broken_ = true;
  while (!stop_ && !broken_) {
    if (static_cast<int>(ready_.size()) >= depth_) {
      wake_.wait(lock);
      continue;
    }
    lock.unlock();
    Result<UniqueFd> ns = BuildOne(home.get());
    lock.lock();
    if (!ns.ok()) {
      // Cells still get their namespace from CLONE_NEWNET, which reports its own errors.
      std::fprintf(stderr, "corral: prebuilt network namespaces are off: %s\n",
                   ns.error().message().c_str());
      broken_ = true;
      break;
    }
    ready_.push_back(std::move(ns).value());
  }
}

}  // namespace corral
