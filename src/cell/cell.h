// A cell: one command's process tree, contained, time-limited, killed as a whole, reaped and
// measured. Cells live on an EventLoop and are owned by a CellHost, which also reaps orphans
// the host adopts and keeps quarantined cells (processes stuck in D state after SIGKILL) until
// the kernel lets them go.
//
// Teardown (the heart of it):
//   leader exits              -> any process still in the tree is killed at once (leftover)
//   timeout / Cancel()        -> SIGTERM to the whole tree, `grace`, SIGKILL to the whole tree
//   after SIGKILL             -> wait for "tree gone" at most `kill_wait`; whatever is still
//                                there is stuck (D state): report it, quarantine it, return
//   output pipes              -> drained to EOF; if something outside the tree holds them, the
//                                cell returns anyway after `kill_wait`
// The done callback runs exactly once, from the loop, also for a command that failed to start.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>

#include "cell/containment.h"
#include "cell/ns_pool.h"
#include "cell/spec.h"
#include "sys/error.h"
#include "sys/event_loop.h"
#include "sys/fd.h"
#include "sys/pidfd.h"
#include "sys/signal_fd.h"

namespace corral {

class CellHost;
class CgroupPool;  // cgroup_pool.h

// One captured stream: the first max bytes are kept, the rest counted and dropped, so memory
// stays constant whatever the child writes.
struct OutputStream {
  UniqueFd fd;
  EventLoop::Token token = 0;
  std::string data;
  uint64_t total = 0;
  bool truncated = false;
  int forward_fd = -1;  // kStream: copy to this fd instead of keeping
  bool open() const { return fd.valid(); }
};

class Cell {
 public:
  using DoneCallback = std::function<void(const CellResult&)>;

  Cell(CellHost* host, CellSpec spec, DoneCallback on_done);
  ~Cell();
  Cell(const Cell&) = delete;
  Cell& operator=(const Cell&) = delete;

  const std::string& id() const { return spec_.id; }
  const CellSpec& spec() const { return spec_; }
  pid_t leader_pid() const { return leader_pid_; }
  bool done() const { return done_; }
  int64_t started_ns() const { return start_ns_; }
  const OutputStream& out() const { return stdout_; }
  const OutputStream& err() const { return stderr_; }

  // Ends the cell early: SIGTERM to the tree, grace, SIGKILL. reason: "cancelled",
  // "client_gone", "shutdown".
  void Cancel(const std::string& reason);
  // Forwards a signal to the whole tree (corral run got SIGINT); escalates to SIGKILL after the
  // grace if the tree does not end.
  void ForwardSignal(int sig);

 private:
  friend class CellHost;
  enum class Phase { kRunning, kTerminating, kKilling, kDraining, kDone };

  void Launch();  // called by the host right after construction
  void FailToStart(int exit_code, const std::string& error);
  Status SetUpStdio(int* in_fd, int* out_fd, int* err_fd, UniqueFd* in_keep);
  bool TryReapLeader();  // true once reaped
  void OnLeaderReadable();
  void OnOutput(OutputStream* s);
  void OnStdinWritable();
  void OnTimeout();
  void StartTerminate();
  void StartKill();
  void CheckTreeGone();
  void OnKillWaitExpired();
  void CheckCpuBudget();
  void MaybeFinish();
  void Finish();
  void CloseOutput(OutputStream* s);
  void CollectStuck();

  CellHost* host_;
  EventLoop* loop_;
  CellSpec spec_;
  DoneCallback on_done_;
  std::unique_ptr<Containment> containment_;

  Phase phase_ = Phase::kRunning;
  int64_t start_ns_ = 0;
  pid_t leader_pid_ = -1;
  UniqueFd pidfd_;
  UniqueFd mnt_ns_;  // an isolated cell's mount namespace, let go off the loop (ns_pool.h)
  EventLoop::Token pidfd_token_ = 0;
  bool leader_reaped_ = false;
  bool leader_lost_ = false;  // reaped by someone else: status unknown
  ExitStatus leader_status_;
  struct rusage leader_usage_ {};

  OutputStream stdout_, stderr_;
  UniqueFd stdin_pipe_;  // kBytes: our write end
  EventLoop::Token stdin_token_ = 0;
  size_t stdin_written_ = 0;

  EventLoop::Token timeout_timer_ = 0, grace_timer_ = 0, kill_wait_timer_ = 0, poll_timer_ = 0,
                   drain_timer_ = 0, cpu_timer_ = 0;
  EventLoop::Token events_token_ = 0;
  bool tree_gone_ = false;
  bool gave_up_ = false;  // kill_wait expired with processes still there
  bool timed_out_ = false;
  bool cancelled_ = false;
  bool cpu_exceeded_ = false;
  bool signalled_ = false;  // ForwardSignal was used
  std::string cancel_reason_;
  int leftover_killed_ = 0;
  bool done_ = false;
  CellResult result_;
};

struct HostOptions {
  ContainmentConfig containment;
  // Become PR_SET_CHILD_SUBREAPER and reap every child of this process from a SIGCHLD signalfd.
  // Only for a process that owns all its children (corral run, the daemon); in-process library
  // users (tests) leave it off and get leaders reaped through their pidfds.
  bool reap_orphans = false;
  // Every adopted orphan belongs to the one cell there is (corral run, pgroup backend).
  bool single_cell = false;
  // Isolated cells enter network, IPC and UTS namespaces made ahead by a helper thread
  // (ns_pool.h): for a long-lived root host that runs many of them (the daemon), not for one
  // cell (corral run).
  int prebuilt_namespaces = 0;  // how many sets to keep ready; 0: off
  // Cells start with every signal at its default disposition, whatever this process ignored when
  // the host was created: a server's cells must not depend on how the server was started (a
  // shell's `&` ignores SIGINT and SIGQUIT, nohup SIGHUP; a Python cell with SIGINT ignored never
  // raises KeyboardInterrupt). Off for corral run, whose command keeps what the shell or nohup
  // meant for it, as under timeout(1).
  bool default_signals = false;
  // RLIMIT_NOFILE for the cells, when this process raised its own (the daemon takes all the fds
  // the kernel allows): cells get the soft limit the process was started with, as under systemd,
  // not a soft limit of a million that makes every close-all-fds loop and select() user suffer.
  std::optional<struct rlimit> cell_nofile;
};

class CellHost {
 public:
  static Result<std::unique_ptr<CellHost>> Create(EventLoop* loop, HostOptions options);
  ~CellHost();

  // Opens a cell; `on_done` runs once from the loop with the result, after which the cell is
  // destroyed. The returned pointer is valid until then.
  Cell* Start(CellSpec spec, Cell::DoneCallback on_done);

  EventLoop* loop() const { return loop_; }
  const ContainmentConfig& containment() const { return options_.containment; }
  // Fds the host's pool of reusable cell cgroups keeps open beyond what its running cells' own
  // directories would, for fd admission (0 without a pool).
  size_t fds_held_by_pool() const;
  bool reap_orphans() const { return options_.reap_orphans; }
  size_t running() const { return cells_.size(); }
  size_t quarantined_processes() const;
  uint64_t reaped_total() const { return reaped_total_; }
  uint64_t leftover_killed_total() const { return leftover_killed_total_; }
  // Called by the loop on SIGCHLD; public for hosts that own the signalfd themselves.
  void ReapChildren();
  // For a process whose own reaper is someone else (corral init --serve): if pid is the leader
  // of one of our cells, reaps it through the cell's pidfd and returns true.
  bool ReapIfLeader(pid_t pid);

 private:
  friend class Cell;
  CellHost(EventLoop* loop, HostOptions options);  // in cell.cc, where CgroupPool is complete
  void CellDone(Cell* cell);
  void Quarantine(std::unique_ptr<Containment> c, UniqueFd pidfd, size_t stuck);
  void RetryQuarantine();
  // /dev/null for every cell's stdin, opened once (two system calls less a cell).
  Result<int> DevNull();
  // Namespaces made ahead for an isolated cell, or an empty set (then clone makes them).
  NamespaceSet TakeNamespaces(const Isolation& iso);

  struct Quarantined {
    std::unique_ptr<Containment> containment;
    UniqueFd pidfd;  // leader not reaped yet (it is among the stuck)
    size_t stuck = 0;
  };

  EventLoop* loop_;
  HostOptions options_;
  // Reusable cell cgroups built on options_.containment (nullptr: off). Declared before the cells
  // and the quarantine, whose containments give their slots back to it when they are destroyed.
  std::unique_ptr<CgroupPool> pool_;
  uint64_t ignored_signals_ = 0;  // bit N-1: signal N, set back to default in cells
  std::list<std::unique_ptr<Cell>> cells_;
  std::list<Quarantined> quarantine_;
  EventLoop::Token quarantine_timer_ = 0;
  std::unique_ptr<SignalFd> sigchld_;
  EventLoop::Token sigchld_token_ = 0;
  uint64_t reaped_total_ = 0;
  uint64_t leftover_killed_total_ = 0;
  UniqueFd dev_null_;
  std::unique_ptr<NamespacePool> ns_pool_;  // made at the first isolated cell, if asked for
};

}  // namespace corral

namespace corral {
// Runs one cell on the host's loop until it is done, for callers with nothing else to wait on
// (`corral run`, tests, benchmarks).
CellResult RunCellSync(CellHost* host, CellSpec spec);
}  // namespace corral
