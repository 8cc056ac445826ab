// How a cell holds its process tree: three backends behind one interface, the best one chosen
// at start-up (DESIGN.md, "Containment").
//
//   cgroup2  one cgroup2 directory per cell: the leader is cloned straight into it, the tree is
//            killed with cgroup.kill and "tree gone" is `populated 0` in cgroup.events. Limits
//            through pids.max / memory.max where those controllers are enabled.
//   cgroup1  hybrid hosts whose controllers sit on v1 hierarchies: membership, limits and stats
//            through v1 pids + memory (+ cpuacct) directories the child joins before exec, and,
//            where a controller-less cgroup2 is mounted beside them (this project's CI), its
//            cgroup.kill / cgroup.events for a race-free kill and an event for "tree gone".
//   pgroup   no writable cgroups: the leader gets its own session and process group, corral is
//            PR_SET_CHILD_SUBREAPER so that orphans of the tree come back to it, and members are
//            found by walking /proc from the leader and from the orphans corral adopted. No limits
//            but RLIMIT_CPU per process.
//
// Per-cell directories are named after the cell id, which starts with the owner's kind and pid
// ("run-4242-1", "d-977-15"). A new owner sweeps directories of owners that are gone: it kills
// what is left in them (a crashed owner's cells must not outlive it) and removes them; a
// directory whose processes are stuck in D state stays until they are released.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cell/spec.h"
#include "sys/error.h"
#include "sys/fd.h"

namespace corral {

enum class ContainmentMode { kCgroup2, kCgroup1, kPgroup };
const char* ContainmentModeName(ContainmentMode m);
std::optional<ContainmentMode> ParseContainmentMode(const std::string& s);

// What the host offers, read from /proc/self/mounts and the cgroup roots.
struct HostCgroups {
  std::string v2_mount;                                    // empty: no cgroup2 mounted
  bool v2_hybrid = false;                                  // cgroup2 mounted beside v1 hierarchies
  std::vector<std::string> v2_controllers;                 // available at the cgroup2 root
  std::string v1_pids, v1_memory, v1_cpuacct, v1_freezer;  // mount points; empty if absent
};
HostCgroups DetectHostCgroups();

class CgroupPool;  // cgroup_pool.h: built on a config, owned by whoever runs the cells

// The chosen backend and where its cells live: a plain value, copied into each cell and printed by
// `corral doctor`. Nothing live (no fd, no lock) belongs to it.
struct ContainmentConfig {
  ContainmentMode mode = ContainmentMode::kPgroup;
  std::string v2_root;  // cgroup2 directory holding the cells ("" in pgroup, or v1 w/o v2)
  std::vector<std::string> v2_enabled;  // controllers enabled for cells under v2_root
  std::string v1_pids_root, v1_memory_root, v1_cpuacct_root;  // cgroup1 mode
  std::string why;  // one sentence: why this mode was chosen
};

// Picks the best mode (or checks the forced one) and prepares the root directories.
// `cgroup_root` overrides the name of corral's directory under each hierarchy ("corral").
Result<ContainmentConfig> ChooseContainment(std::optional<ContainmentMode> forced,
                                            const std::string& cgroup_root = "corral");

// Kills and removes per-cell directories whose owner process is gone. Returns how many processes
// it killed. Cheap when there is nothing to do (one readdir per root). The pool's slots are swept
// by the pool (CgroupPool::Sweep): this file knows the pool only as a pointer it passes on.
int SweepOrphanedCells(const ContainmentConfig& config);

// Tree-wide accounting read when a cell closes.
struct CellStats {
  std::optional<uint64_t> peak_memory_bytes;
  std::optional<double> cpu_user_s, cpu_system_s;
  std::optional<uint64_t> pids_peak;
  uint64_t oom_kills = 0;      // processes the memory limit killed
  uint64_t pids_max_hits = 0;  // forks refused by the pids limit
};

// One cell's containment. Created before the spawn, released after the tree is gone.
class Containment {
 public:
  virtual ~Containment() = default;
  virtual ContainmentMode mode() const = 0;

  // Spawn-time: a cgroup2 directory fd for CLONE_INTO_CGROUP (-1: none) and the cgroup.procs
  // files the child writes itself into before exec.
  virtual int clone_into_fd() const { return -1; }
  virtual std::vector<int> join_fds() const { return {}; }
  virtual void OnSpawned(pid_t leader) { leader_ = leader; }
  // cgroup.procs of the clone_into_fd() directory, for a child the kernel kills when cloned into
  // it (see cgroup_pool.h); -1: none.
  virtual int cgroup_procs_fallback_fd() const { return -1; }
  // The spawn had to use it: that directory must not be cloned into again.
  virtual void OnCloneIntoRefused() {}

  // Live (non-zombie) processes of the tree.
  virtual std::vector<pid_t> Members() = 0;
  // Sends sig to every member. Race note: the cgroup backends read cgroup.procs and signal at
  // once; for a PID to be reused in between, the PID space would have to wrap in microseconds.
  virtual void SignalAll(int sig) = 0;
  // SIGKILL to the whole tree; race-free with cgroup.kill where there is one.
  virtual void KillAll() = 0;
  virtual bool Populated() = 0;
  // An fd that turns readable (EPOLLPRI) when Populated() may have changed; -1: poll instead.
  virtual int populated_event_fd() const { return -1; }
  // CPU time the tree has used so far, for --cpu budgets; nullopt when the backend cannot tell.
  virtual std::optional<double> CpuSecondsUsed() { return std::nullopt; }
  virtual CellStats ReadStats() = 0;
  // Removes the cell's directories; with processes still inside (stuck), leaves them for the
  // sweeper and returns false.
  virtual bool Release() = 0;

 protected:
  pid_t leader_ = -1;
};

// Creates the containment for one cell. A cell without limits takes a slot of `pool` where it is
// given one (nullptr: the cell creates and removes directories of its own); the pool must outlive
// the containment. `single_cell` tells the pgroup backend that every orphan corral adopts belongs
// to this cell (`corral run`).
Result<std::unique_ptr<Containment>> MakeContainment(const ContainmentConfig& config,
                                                     CgroupPool* pool, const std::string& cell_id,
                                                     const Limits& limits, bool single_cell);

}  // namespace corral
