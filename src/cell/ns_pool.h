// Namespaces made ahead of time for isolated cells of a long-lived host (the daemon, MCP).
//
// Why. An isolated cell gets a network namespace of its own with only `lo` in it, and its own
// IPC and UTS namespaces. Creating them costs about 0.55 ms here (the network namespace 0.46 ms,
// IPC 0.05 ms with its mqueue mount, UTS 0.02 ms), half of what isolation adds to a cell, and
// none of it depends on the cell. So a helper thread makes a few sets ahead (unshare, bring `lo`
// up, keep each namespace by an fd of /proc/thread-self/ns/*, go back home) and the child of an
// isolated spawn enters a set with setns instead of creating its own.
//
// Each set is used by exactly one cell: it is taken out of the pool, entered by one child, and
// the pool's fds are closed right after the spawn, so the namespaces end with the cell's last
// process, as ones made by clone would. Nothing a cell did in them can be seen by another.
//
// Let go behind, too: the last reference to a mount namespace is dropped with its umounts and an
// RCU grace period (0.15-0.25 ms here). Left to the cell's exit, that delays the leader's exit
// notification, so the host holds the cell's mount namespace by an fd and hands it to Release()
// when the cell is done: the helper thread closes it, off the path of any call.
//
// Only for a root host (setns into namespaces owned by the initial user namespace needs
// CAP_SYS_ADMIN there); a host that cannot build a set (no CONFIG_NET_NS, EPERM) stops trying
// and every Take() is empty, so cells fall back to clone's flags and their error messages.
#pragma once

#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "sys/fd.h"

namespace corral {

// One cell's network (with `lo` up), IPC and UTS namespaces; all valid or none.
struct NamespaceSet {
  UniqueFd net, ipc, uts;
  bool valid() const { return net.valid(); }
};

class NamespacePool {
 public:
  // Keeps up to `depth` sets ready. The helper thread starts at the first Take().
  explicit NamespacePool(int depth) : depth_(depth) {}
  ~NamespacePool();
  NamespacePool(const NamespacePool&) = delete;
  NamespacePool& operator=(const NamespacePool&) = delete;

  // A ready set, or an empty one when none is ready: the caller then creates the namespaces
  // the slow way. Never blocks on the helper.
  NamespaceSet Take();
  // Closes fd on the helper thread (a namespace whose teardown should not run on the caller's).
  void Release(UniqueFd fd);

 private:
  void Fill();

  const int depth_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::vector<NamespaceSet> ready_;
  std::vector<UniqueFd> to_close_;
  bool stop_ = false;
  bool broken_ = false;  // building one failed: no more tries
  std::thread helper_;
};

}  // namespace corral
