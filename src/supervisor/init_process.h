// corral init: the PID 1 of a container, or a subreaper anywhere else.
//
// Mechanism. Every catchable signal is blocked before the child exists and read from one
// signalfd registered on the caller's EventLoop, so no signal handler ever runs and the same loop
// can later own a listening socket (`corral init --serve`). The child is spawned vfork-style
// (clone(CLONE_VM | CLONE_VFORK)) into its own session, as dumb-init does: it becomes the leader
// of a new session and process group whose id is its pid, and takes stdin's terminal as its
// controlling terminal when there is one. Every SIGCHLD drains the signalfd and then calls
// waitid(P_ALL, WEXITED | WNOHANG) until nothing is ready, so every zombie in reach (our child,
// and every orphan the kernel re-parents to us as PID 1 or as PR_SET_CHILD_SUBREAPER) is reaped
// as soon as it appears. We also reap once before the first wait: zombies inherited through exec
// raise no new SIGCHLD.
//
// When the child ends, the exit code is fixed (its code, or 128+N when signal N killed it) and the
// orphans still alive are handled per OrphanPolicy; the loop is done once waitid says ECHILD.
//
// Hazards:
// - PID reuse: the child's pid (and, while it lives, its process group id) cannot be reused until
//   we reap it, and we are the only reaper, so kill(pid) before that reap is exact. We never
//   signal a bare pid after reaping it.
// - Orphans as a subreaper: kill(-1) would hit the whole host, so outside PID 1 the orphans are our
//   current children (/proc/self/task/<tid>/children), signalled one by one, again whenever new
//   ones are re-parented to us. As PID 1, kill(-1, sig) reaches exactly the namespace.
// - Job control: the child's process group is orphaned (its parent is in another session), so the
//   kernel drops SIGTSTP/SIGTTIN/SIGTTOU aimed at it; they are forwarded as SIGSTOP by default and
//   we stop ourselves afterwards so the shell that started us sees the job stop (dumb-init's rule).
// - TIOCNOTTY by a session leader makes the kernel send SIGHUP and SIGCONT to our own process
//   group; the first of each is swallowed, not forwarded (dumb-init issue #136).
// - Fault signals (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS) stay unblocked: they mean a
//   bug in corral itself and must crash it visibly, not be forwarded.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "sys/error.h"
#include "sys/event_loop.h"
#include "sys/signal_fd.h"

namespace corral {

enum class OrphanPolicy {
  kWait,  // wait for every orphan to exit on its own
  kTerm,  // SIGTERM, then SIGKILL after the grace
  kKill,  // SIGKILL at once
};

struct InitOptions {
  InitOptions() {
    for (int& r : rewrite) r = -1;
  }

  char** argv = nullptr;  // CMD [ARG...], NULL-terminated; searched in PATH
  bool group = false;     // forward to the child's whole process group (-g)
  bool verbose = false;   // log every reap and forward to stderr
  OrphanPolicy orphans = OrphanPolicy::kTerm;
  int64_t grace_ns = 2000000000;  // TERM -> KILL, for OrphanPolicy::kTerm
  std::vector<int> exit_zero;     // child exit codes reported as 0 (tini's -e)
  // rewrite[s] = r: forward signal s as r (0: drop it); -1: forward as is. DefaultRewrites()
  // fills the job-control signals; an explicit rewrite set before it wins.
  int rewrite[NSIG];
  // --serve: cells of an in-process daemon are our children too. Before reaping a child, init
  // offers its pid here; the hook reaps it through the cell's pidfd and returns true when it is a
  // cell's leader (so the cell gets its status), false otherwise.
  std::function<bool(pid_t)> reap_hook;
};

// SIGTSTP/SIGTTIN/SIGTTOU -> SIGSTOP, everything else unchanged (see the job-control hazard).
void DefaultRewrites(InitOptions* opts);

class InitProcess {
 public:
  // Blocks the forwarded signals, becomes a subreaper unless PID 1, gives up the controlling
  // terminal, spawns the child and registers the signalfd on `loop`. Call before any thread
  // exists. An exec failure is returned with errno ENOENT / EACCES (the caller maps 127 / 126).
  static Result<std::unique_ptr<InitProcess>> Start(EventLoop& loop, const InitOptions& opts);
  ~InitProcess();

  InitProcess(const InitProcess&) = delete;
  InitProcess& operator=(const InitProcess&) = delete;

  // True once the child has been reaped and no child of ours is left.
  bool finished() const { return finished_; }
  // The child's shell-style exit code (after -e remapping); valid once finished().
  int exit_code() const { return exit_code_; }
  pid_t child_pid() const { return child_pid_; }
  uint64_t reaped() const { return reaped_; }

 private:
  enum class Phase { kRunning, kWaiting, kTerminating, kKilling, kDone };

  InitProcess(EventLoop& loop, const InitOptions& opts, SignalFd sfd);
  Status Spawn(const sigset_t& child_mask);
  void OnSignals();
  void HandleSignal(int sig, pid_t sender);
  void Forward(int sig);
  void ReapAll();
  void ChildExited(int shell_code);
  void SignalOrphans(int sig, bool only_new);
  void StartTermination();
  void StartKilling();

  EventLoop& loop_;
  InitOptions opts_;
  SignalFd sfd_;
  sigset_t waited_;  // what the signalfd reads; the sigwaitinfo fast path waits for the same
  EventLoop::Token sfd_token_ = 0;
  EventLoop::Token grace_timer_ = 0;  // 0 when none is armed
  bool pid1_ = false;
  pid_t child_pid_ = -1;  // -1 once reaped: never signal the number after that
  Phase phase_ = Phase::kRunning;
  bool finished_ = false;
  int exit_code_ = 0;
  uint64_t reaped_ = 0;
  bool swallow_hup_ = false;   // first SIGHUP after TIOCNOTTY came from the kernel, not a user
  bool swallow_cont_ = false;  // the same for SIGCONT
  std::vector<pid_t> termed_;  // subreaper mode: orphans already sent SIGTERM (sorted)
};

}  // namespace corral
