// A cell's cgroup directories, and a small pool of them that cells reuse instead of creating and
// removing directories per cell.
//
// Why. On a hybrid host a cell lives in three same-named directories (the cgroup2 one for
// cgroup.kill / cgroup.events / cpu.stat, v1 pids, v1 memory). Creating and removing them, and
// opening files in freshly created kernfs directories, cost more than the whole spawn (measured:
// mkdir+rmdir about 160 us a cell, the memory hierarchy alone 85 us). A reused directory costs a
// few preads.
//
// Slots. Slot i is the directory "pool/<i>" under corral's root in every hierarchy in use, i <
// kPoolSlots (16). Slots below kKeptSlots (4) stay, empty, between owners: with their parent, at
// most 5 kept directories per hierarchy, created only as concurrent cells need them. The others
// are overflow for a process that runs more than 4 cells at once (a daemon, `corral mcp`): it
// keeps the overflow slots it made for as long as it lives and removes them when it ends (a
// crashed owner's are removed by the next sweep), so they cost a mkdir once per owner instead
// of a mkdir, 15 opens in a fresh kernfs directory and an rmdir per cell (a fifth of a busy
// daemon's CPU here). A slot is owned by whoever holds flock(LOCK_EX) on the open cgroup2
// directory of the slot (the "anchor"). The lock dies with its holder, so a crashed owner frees its
// slots by dying. Because a lock protects an inode, not a name, a claimer locks first and then
// checks that the directory is still live (its cgroup.events opens); and a holder that removes the
// anchor directory gives the slot up for good (the next claimer creates it afresh). Non-anchor
// directories (v1 pids, v1 memory) may be removed and recreated by the holder at will.
//
// A claimed slot is handed to a cell only when it is clean, checked on every claim (a slot
// released by a crashed owner looks like any other):
//   - empty: its cgroup.events says populated 0 (the whole tree joins the cgroup2 directory
//     first, so this covers the v1 directories too). A slot with processes in it is a dead owner's:
//     they are killed (cgroup.kill) and the slot is skipped this time, so a directory holding stuck
//     (D-state) processes is never handed out;
//   - no limits: cells with --memory / --pids never use the pool (they get per-cell directories),
//     so a slot's pids.max and memory limits are always the defaults;
//   - its own measurements: v1 pids.peak cannot be reset, so a slot is reused as is only while its
//     pids.peak is at most 1 (then the next cell's peak, which is at least 1, is exact); otherwise
//     the pids directory is recreated. memory.max_usage_in_bytes is reset by writing 0, which sets
//     it to the current usage: the slot is reused only while that usage (page cache and kernel
//     objects left charged by earlier cells, per-CPU charge batches) is at most two per-CPU charge
//     batches of every CPU (a fresh memcg is off by one batch); otherwise the memory directory is
//     recreated. So a peak is exact to 2 x 64 pages per CPU (1 MiB on 2 CPUs).
//     Counters that only grow (cpu.stat, pids.events max, memory.oom_control oom_kill) are read at
//     claim and the cell reports the difference.
// Joining. A slot's cgroup2 directory is entered with CLONE_INTO_CGROUP, as a fresh one is, and the
// v1 directories through their `tasks` files: neither takes the global cgroup_threadgroup_rwsem,
// whose write side (any write to cgroup.procs) waits for an RCU grace period when no migration
// happened lately, 1-16 ms here, which a lone `corral run` met every time. But Linux 6.18 (seen
// here) SIGKILLs at birth every child cloned into a cgroup that cgroup.kill was ever written to
// (the fork compares the target's kill sequence with that of the parent's cgroup). So a slot
// whose tree was killed with cgroup.kill is marked `killed` and made afresh at its holder's next
// Claim; and a slot killed by someone who could not remove it (a crashed
// owner, the sweeper) is found out by the spawn itself: the child dies before running its first
// instruction, the spawn reaps it and clones again with the child joining through cgroup.procs
// (spawn.h, cgroup_procs_fallback_fd), and the slot is marked `killed` from then on.
//
// Where this cannot be done exactly the pool is off (WhyOff says why, ForConfig gives nullptr) and
// every cell gets its own directories: cgroup1 without a cgroup2 mount (no anchor, cpuacct cannot
// be baselined cheaply) and cgroup2 with controllers enabled (memory.peak / pids.peak reset
// semantics vary by kernel).
//
// Ownership. A pool is a live object (locks, open files) built on a ContainmentConfig, which stays
// a plain value; whoever runs cells owns one (CellHost), sweeps it once at start (Sweep, beside
// SweepOrphanedCells for per-cell directories) and hands it to MakeContainment, which passes it on
// to the cgroup backends as a pointer: containment.cc never includes this header, so the two files
// do not depend on each other. One pool per owner: two in one process are two owners.
//
// The sweeper (Sweep) kills the processes of every slot it can lock that is not empty: the trees
// of crashed owners. A slot held by a live owner cannot be locked and is never touched.
#pragma once

#include <sys/types.h>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "cell/containment.h"
#include "sys/error.h"
#include "sys/fd.h"

namespace corral {

// 4 kept slots + the "pool" parent: at most 5 directories per hierarchy at rest (15 on a hybrid
// host); up to 16 slots while owners that need them live.
inline constexpr int kKeptSlots = 4;
inline constexpr int kPoolSlots = 16;
// A held slot keeps its counter files open: about this many fds more than the 2 (directory,
// cgroup.events) that a cell of its own directories keeps while it runs.
inline constexpr size_t kExtraFdsPerSlot = 8;

// Raw values of a cell's counters; a pooled cell subtracts the ones read at claim.
struct CgroupCounters {
  std::optional<uint64_t> peak_memory_bytes, pids_peak;
  std::optional<uint64_t> cpu_user_usec, cpu_system_usec, cpu_usage_usec;
  uint64_t oom_kills = 0, pids_max_hits = 0;
};

// One cell's directories, one per hierarchy in use, and the files kept open on them so that the
// cell's life costs preads, not opens. Empty path: that hierarchy is not used.
class CgroupDirs {
 public:
  // `name` is the directory name under each root ("run-4242-1", "pool/3").
  CgroupDirs(const ContainmentConfig& config, const std::string& name);

  const std::string& v2() const { return v2_; }
  const std::string& pids() const { return pids_; }
  const std::string& memory() const { return memory_; }
  // cgroup2 directory fd (CLONE_INTO_CGROUP, and a pool slot's lock); -1 when none.
  int v2_fd() const { return v2_dir_.get(); }
  void set_v2_fd(UniqueFd fd) { v2_dir_ = std::move(fd); }
  int events_fd() const { return events_.get(); }
  int v2_procs_fd() const { return v2_procs_.get(); }
  // cgroup.procs files the child writes itself into before exec; with `v2`, the cgroup2 one too
  // (for a reused directory, which CLONE_INTO_CGROUP cannot target safely: see the file comment).
  std::vector<int> join_fds(bool v2) const;

  // mkdir of every directory; an existing one is kept (it must be empty, as cgroup.procs says).
  Status Make();
  // Opens the files a cell uses. Missing optional files (pids.peak on old kernels) are skipped.
  Status Open(bool join_v2);
  // rmdir of every directory, v2 last (a pool slot's anchor); false if one is still busy.
  bool Remove();
  // Recreates the v1 pids / memory directory (never the anchor): fresh counters.
  Status RecreatePids();
  Status RecreateMemory();

  bool Populated();
  std::vector<pid_t> Members();
  // cgroup.kill where there is one; else SIGKILL to every member (true if cgroup.kill was used).
  bool Kill();
  CgroupCounters ReadCounters();
  void ReadCpu(CgroupCounters* c);  // cpu.stat (or cpuacct) fields only
  std::optional<uint64_t> CpuUsageUsec();
  std::optional<uint64_t> PidsCurrent();
  std::optional<uint64_t> MemoryUsage();
  Status ResetMemoryPeak();  // v1 memory.max_usage_in_bytes := current usage
  // Closes what a running cell does not need (the cgroup.procs files it joined through, the
  // counters it reads once at the end): a cell of its own directories then holds 2 fds of them
  // (the directory, cgroup.events) instead of 11, so a daemon's fd limit bounds cells later.
  // Reads reopen what they need.
  void CloseUntilNeeded();

 private:
  Status OpenPids();
  Status OpenMemory();
  Status OpenCpuacct();
  Status OpenV2Stats();
  void EnsureStats();  // reopens after CloseUntilNeeded()

  ContainmentMode mode_;
  std::string v2_, pids_, memory_, cpuacct_;
  UniqueFd v2_dir_, v2_procs_, events_, kill_, cpu_stat_;
  UniqueFd pids_procs_, pids_peak_, pids_events_, pids_current_;
  UniqueFd memory_procs_, memory_peak_, memory_usage_, memory_events_;
  UniqueFd cpuacct_procs_, cpuacct_stat_, cpuacct_usage_;
  bool stats_closed_ = false;
};

// A claimed slot: its directories (the v2 directory fd holds the lock) and the counters read at
// claim.
struct PoolSlot {
  int index = -1;
  CgroupDirs dirs;
  CgroupCounters base;
  bool opened = false;          // files open (else only the anchor is, locked)
  bool counters_known = false;  // base holds the slot's current counters (else read at claim)
  // cgroup.kill was written to it (by its cells, or found so by a spawn): it is not cloned into
  // again, and its holder makes it afresh (removed, created, locked anew) at its next Claim.
  bool killed = false;
  PoolSlot(const ContainmentConfig& config, int i);
};

class CgroupPool {
 public:
  // Why pooling cannot measure exactly with this config (see the file comment); nullptr: it can.
  static const char* WhyOff(const ContainmentConfig& config);
  // A pool for config; nullptr where WhyOff says it is off.
  static std::unique_ptr<CgroupPool> ForConfig(const ContainmentConfig& config);
  explicit CgroupPool(const ContainmentConfig& config);
  CgroupPool(const CgroupPool&) = delete;
  CgroupPool& operator=(const CgroupPool&) = delete;
  // Removes the free slots that are overflow (above kKeptSlots) or marked `killed`: a lock and a
  // flag die with this process, but a slot's refusal of CLONE_INTO_CGROUP does not, and the next
  // process to claim it would pay a refused clone and a cgroup.procs join (1-19 ms here) on every
  // cell until one of its own Claims made it afresh -- which a one-shot `corral run` never reaches.
  ~CgroupPool();

  // A clean slot (empty, default limits, fresh peaks, baseline read); nullptr if none is free.
  std::unique_ptr<PoolSlot> Claim();
  // Back to this process's free list (keeps the lock); the slot must be empty.
  void Return(std::unique_ptr<PoolSlot> slot);
  // Lets a slot go (unlocks it); with `remove`, removes its directories first (anchor last), for
  // a slot that must not be reused (it had limits, or a stuck tree was finally released).
  void Drop(std::unique_ptr<PoolSlot> slot, bool remove);
  // Fds the slots this pool holds (free or in use) keep open beyond what as many cells of their
  // own directories would (kExtraFdsPerSlot each), for fd admission.
  size_t ExtraFds();
  // Kills the processes in every slot no live owner holds; returns how many it signalled (a
  // cgroup.kill counts each process it found). Removes the empty overflow slots of owners that
  // died. Keeps one clean slot for the next Claim.
  int Sweep();

 private:
  // Locks slot i on disk (creating it if missing); nullptr if held elsewhere, gone, or not empty
  // (then its processes are killed and *killed counts them).
  // *exists (if given) says whether slot i's directory exists at all.
  std::unique_ptr<PoolSlot> LockSlot(int i, bool create, int* killed, bool* exists);
  // Makes a locked slot clean for the next cell; false if it must not be used.
  bool Refresh(PoolSlot* slot);

  const ContainmentConfig config_;
  std::mutex mu_;
  bool held_[kPoolSlots] = {};  // locked by this process (free list or in use)
  // Found held by another live owner (or not empty) by the last Sweep: the next Claim does not
  // try them again (a `corral run` beside a busy daemon would lock-probe each twice).
  bool busy_hint_[kPoolSlots] = {};
  std::vector<std::unique_ptr<PoolSlot>> free_;
};

}  // namespace corral
