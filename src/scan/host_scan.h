// The host scan: one pass over /proc that finds what unmanaged children leave behind — zombies
// grouped by the parent that never waits for them, zombies whose parent is itself a zombie,
// processes stuck in D state, processes near their RLIMIT_NOFILE, PID use against pid_max and
// against every pids-limited cgroup, and GPU memory held by processes that are dead or zombies.
//
// Cost (system calls and page faults are slow on VMs, so they are counted): the pass lists /proc
// with getdents64 and, per process, opens PID/stat relative to a /proc dirfd and reads it once,
// then fstatat()s PID/fd, whose st_size is the number of open fds (Linux 6.2+; older kernels
// report 0 and the scan counts the directory instead, which is slower). The stat fds are closed
// in runs with one close_range(2) per 128. That is three system calls per process (measured by
// bench/scan_bench.py with strace -c). Everything else is read only for the few
// processes that matter: cmdline for the top
// zombie parents, wchan and sched for D-state processes, limits for processes holding at least
// `fd_min` fds. No subprocess, no per-process allocation beyond one small record (bounded by
// pid_max), so memory stays bounded on a host with 30,000 processes.
//
// Never blocks: reading a process's memory (cmdline, environ, maps) takes its mmap lock, which a
// process stuck in D state inside a page fault holds forever, so a scanner that reads cmdline of
// a D-state process hangs with it (node_exporter has shipped that bug). For a D-state process
// the scan reads only stat, wchan and sched, which the kernel answers from the task struct
// without taking that lock, and lists what it did not read in `skipped`. cmdline is read only
// for zombie parents, after re-reading their state just before. NVML runs with a deadline on a
// helper thread (see nvml.h).
//
// Limitation: the state of a multi-threaded process in /proc/PID/stat is its main thread's; a
// D-state secondary thread is seen only with ScanOptions::threads (which reads PID/task/*).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "scan/nvml.h"
#include "sys/error.h"

namespace corral::scan {

// What makes the scan say "over a threshold" (and `corral scan` exit 1).
struct Thresholds {
  int zombies_per_parent = 5;       // a parent holding this many zombie children
  double dstate_s = 30;             // a process in D state this long
  double fd_ratio = 0.8;            // open fds >= ratio * soft RLIMIT_NOFILE
  double pid_ratio = 0.8;           // PIDs used >= ratio * pid_max (or a cgroup's pids.max)
  uint64_t gpu_orphaned_bytes = 1;  // GPU memory held by dead or zombie processes
};

struct ScanOptions {
  std::string proc = "/proc";
  Thresholds thresholds;
  size_t top = 20;       // entries kept per list (zombie parents, D state, fds, cgroups)
  uint64_t fd_min = 32;  // processes with fewer open fds are not checked against their limit
  bool threads = false;  // also look at every thread's state (costs a read per thread)
  bool gpu = true;
  std::string nvml_library;  // empty: NvmlLibraryPath()
  int nvml_deadline_ms = 2000;
  bool cgroups = true;
};

struct ZombieParent {
  int pid = 0;
  std::string comm;
  std::string cmdline;  // empty when skipped (see ScanReport::skipped) or a kernel thread
  char state = '?';     // the parent's own state; 'Z' is a zombie chain
  int zombies = 0;
  double oldest_s = 0;      // age (since fork) of its oldest zombie child
  std::vector<int> sample;  // a few zombie PIDs
  std::string advice;
};

// A zombie whose parent is itself a zombie: nobody can reap it until the chain's top is reaped.
struct ZombieChain {
  int pid = 0;  // the zombie parent
  std::string comm;
  int zombies = 0;  // zombies below it
  int reaper = 0;   // nearest live ancestor, which must reap `pid` to free the chain
  std::string reaper_comm;
};

struct DStateProcess {
  int pid = 0;
  int tid = 0;  // == pid unless a secondary thread is the one in D state
  int ppid = 0;
  std::string comm;
  std::string wchan;   // kernel function it sleeps in ("" when the kernel hides it)
  double since_s = 0;  // how long it has slept (scheduler estimate or first seen)
};

struct FdPressure {
  int pid = 0;
  std::string comm;
  uint64_t open_fds = 0;
  uint64_t soft_limit = 0;
  uint64_t hard_limit = 0;
};

struct PidsCgroup {
  std::string path;       // inside its hierarchy, "/" for the root
  std::string hierarchy;  // "v1" or "v2"
  uint64_t current = 0;
  uint64_t max = 0;
};

struct PidsReport {
  uint64_t used = 0;  // tasks (threads included) on the host: /proc/loadavg
  uint64_t max = 0;   // /proc/sys/kernel/pid_max
  uint64_t threads_max = 0;
  uint64_t processes = 0;           // processes seen in this /proc
  std::vector<PidsCgroup> cgroups;  // pids-limited cgroups, fullest first, top N
};

struct GpuProcess {
  uint32_t pid = 0;
  uint64_t used_bytes = 0;
  std::string comm;
  // alive | zombie | dead | other_pid_namespace | not_visible (we are in a PID namespace and
  // cannot tell dead from out of sight)
  std::string state;
};

struct GpuDevice {
  int index = 0;
  std::string name;
  uint64_t total_bytes = 0;
  uint64_t used_bytes = 0;
  uint64_t orphaned_bytes = 0;  // held by dead or zombie processes
  std::vector<GpuProcess> processes;
};

struct GpuReport {
  bool available = false;
  std::string status;
  std::vector<GpuDevice> devices;
  uint64_t orphaned_bytes = 0;
};

struct Skipped {
  int pid = 0;
  std::string comm;
  std::string what;  // the file or query not read
  std::string why;
};

struct ScanReport {
  double timestamp_s = 0;  // wall clock, seconds since the epoch
  double duration_s = 0;
  uint64_t processes = 0;
  uint64_t zombies = 0;  // all zombie processes on the host
  uint64_t dstate_total = 0;
  std::vector<ZombieParent> zombies_by_parent;  // most zombies first, top N
  std::vector<ZombieChain> zombie_chains;
  std::vector<DStateProcess> dstate;    // longest first, top N
  std::vector<FdPressure> fd_pressure;  // fullest first, over the fd threshold
  double fd_max_ratio = 0;              // highest open/soft over processes checked
  PidsReport pids;
  GpuReport gpu;
  std::vector<Skipped> skipped;
  std::vector<std::string> findings;  // one sentence per threshold crossed
};

// Keeps what one scan learns for the next (when each D-state process was first seen), so that
// `--watch`, `--serve` and the daemon give durations even where the scheduler does not.
class HostScanner {
 public:
  explicit HostScanner(ScanOptions options) : options_(std::move(options)) {}
  Result<ScanReport> Scan();
  const ScanOptions& options() const { return options_; }

 private:
  ScanOptions options_;
  // (pid, starttime) -> monotonic ns first seen in D state.
  std::map<std::pair<int, uint64_t>, int64_t> dstate_first_seen_;
};

// The sentence on what to do about a parent's zombies.
std::string ZombieAdvice(int ppid, const std::string& comm, int zombies);

}  // namespace corral::scan
