// Network namespaces made ahead of time for isolated cells of a long-lived host (the daemon).
//
// Why. An isolated cell gets a network namespace of its own with only `lo` in it. Creating one
// (CLONE_NEWNET) costs about 0.55 ms here, more than half of what isolation adds to a cell, and
// none of it depends on the cell. So a helper thread makes a few ahead (unshare(CLONE_NEWNET),
// bring `lo` up, keep the namespace by an fd of /proc/thread-self/ns/net, go back home) and the
// child of an isolated spawn enters one with setns instead of creating its own.
//
// Each namespace is used by exactly one cell: it is taken out of the pool, entered by one child,
// and the pool's fd is closed right after the spawn, so the namespace ends with the cell's last
// process, as one made by CLONE_NEWNET would. Nothing a cell did in its network can be seen by
// another.
//
// Only for a root host (setns into a namespace owned by the initial user namespace needs
// CAP_SYS_ADMIN there); a host that cannot build one (no CONFIG_NET_NS, EPERM) stops trying and
// every Take() is empty, so cells fall back to CLONE_NEWNET and its error messages.
#pragma once

#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "sys/fd.h"

namespace corral {

class NetnsPool {
 public:
  // Keeps up to `depth` namespaces ready. The helper thread starts at the first Take().
  explicit NetnsPool(int depth) : depth_(depth) {}
  ~NetnsPool();
  NetnsPool(const NetnsPool&) = delete;
  NetnsPool& operator=(const NetnsPool&) = delete;

  // A ready namespace (an fd of its ns file), or an invalid fd when none is ready: the caller
  // then creates one the slow way. Never blocks on the helper.
  UniqueFd Take();

  size_t ready() {
    std::lock_guard<std::mutex> lock(mu_);
    return ready_.size();
  }

 private:
  void Fill();

  const int depth_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::vector<UniqueFd> ready_;
  bool stop_ = false;
  bool broken_ = false;  // building one failed: no more tries
  std::thread helper_;
};

}  // namespace corral
