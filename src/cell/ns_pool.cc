// Namespaces made ahead for isolated cells (see ns_pool.h).
#include "cell/ns_pool.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cstdio>

#include "cell/isolation.h"

namespace corral {
namespace {

constexpr int kFlags = CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS;

struct Home {
  UniqueFd net, ipc, uts;
};

Result<UniqueFd> OpenNs(const char* name) {
  std::string path = std::string("/proc/thread-self/ns/") + name;
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Error::FromErrno("open", path);
  return fd;
}

Status GoHome(const Home& home) {
  if (setns(home.net.get(), CLONE_NEWNET) != 0 || setns(home.ipc.get(), CLONE_NEWIPC) != 0 ||
      setns(home.uts.get(), CLONE_NEWUTS) != 0) {
    return Error::FromErrno("setns", "the host's namespaces");
  }
  return Ok();
}

// One set: unshare into new namespaces, bring `lo` up, keep them by fds, go back home.
Result<NamespaceSet> BuildOne(const Home& home) {
  if (unshare(kFlags) != 0) return Error::FromErrno("unshare", "CLONE_NEWNET|NEWIPC|NEWUTS");
  NamespaceSet set;
  Status st = [&]() -> Status {
    ASSIGN_OR_RETURN(set.net, OpenNs("net"));
    ASSIGN_OR_RETURN(set.ipc, OpenNs("ipc"));
    ASSIGN_OR_RETURN(set.uts, OpenNs("uts"));
    if (!LoopbackUp()) return Error::FromErrno("bring up loopback in", "a new network namespace");
    return Ok();
  }();
  // Home first, whatever happened: this thread must not stay in a cell's namespaces.
  TRY(GoHome(home));
  if (!st.ok()) return st.error();
  return set;
}

}  // namespace

NamespacePool::~NamespacePool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (helper_.joinable()) helper_.join();
}

NamespaceSet NamespacePool::Take() {
  std::unique_lock<std::mutex> lock(mu_);
  if (broken_) return {};
  if (!helper_.joinable()) helper_ = std::thread([this] { Fill(); });
  NamespaceSet out;
  if (!ready_.empty()) {
    out = std::move(ready_.back());
    ready_.pop_back();
  }
  lock.unlock();
  wake_.notify_one();
  return out;
}

void NamespacePool::Release(UniqueFd fd) {
  if (!fd) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!helper_.joinable()) return;  // no helper (never started): close here
    to_close_.push_back(std::move(fd));
  }
  wake_.notify_one();
}

void NamespacePool::Fill() {
  Home home;
  Status opened = [&]() -> Status {
    ASSIGN_OR_RETURN(home.net, OpenNs("net"));
    ASSIGN_OR_RETURN(home.ipc, OpenNs("ipc"));
    ASSIGN_OR_RETURN(home.uts, OpenNs("uts"));
    return Ok();
  }();
  std::unique_lock<std::mutex> lock(mu_);
  if (!opened.ok()) broken_ = true;
  while (!stop_) {
    if (!to_close_.empty()) {
      std::vector<UniqueFd> closing = std::move(to_close_);
      to_close_.clear();
      lock.unlock();
      closing.clear();  // the namespaces' teardown runs here
      lock.lock();
      continue;
    }
    if (broken_ || static_cast<int>(ready_.size()) >= depth_) {
      wake_.wait(lock);
      continue;
    }
    lock.unlock();
    Result<NamespaceSet> set = BuildOne(home);
    lock.lock();
    if (!set.ok()) {
      // Cells still get their namespaces from clone, which reports its own errors.
      std::fprintf(stderr, "corral: namespaces made ahead are off: %s\n",
                   set.error().message().c_str());
      broken_ = true;
      continue;
    }
    ready_.push_back(std::move(set).value());
  }
}

}  // namespace corral
