// See init_process.h for the mechanism and its hazards. Start-up cost matters here (every container
// start pays it, and the benchmark holds it to tini's), so the path to exec is a handful of
// syscalls: sigprocmask, signalfd, prctl, ioctl, epoll_create1, epoll_ctl, mmap, clone. No /proc
// read, no iostream; the orphan search only runs when the child leaves orphans behind.
#include "supervisor/init_process.h"

#include <dirent.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "sys/clock.h"
#include "sys/fd.h"
#include "sys/pidfd.h"

namespace corral {

namespace {

// The signals we never block: a fault means a bug in corral init itself, and blocking a
// synchronous fault signal turns it into a silent kill without a core dump.
constexpr int kFaultSignals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS};

bool IsJobControl(int sig) { return sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU; }

// What the vfork-style child reports back through the memory it shares with us (CLONE_VM): the
// parent reads it only after clone() returns, i.e. after the child has exec'd or exited.
struct ChildArgs {
  char** argv;
  const sigset_t* mask;
  const char* failed_call;  // nullptr when exec succeeded
  int err;
};

// Runs in the child between clone and exec, on its own stack but in our memory, while we are
// suspended (CLONE_VFORK): async-signal-safe calls only, no allocation, no stdio.
int ChildMain(void* p) {
  auto* a = static_cast<ChildArgs*>(p);
  // A new session: the child leads it and its process group (both ids = its pid), so `-g` and the
  // orphan policy have a group to address, and a shell script's own job control keeps working.
  if (::setsid() < 0) {
    a->failed_call = "setsid";
    a->err = errno;
    _exit(125);
  }
  // Take stdin's terminal as the controlling terminal when it is free (we let go of it with
  // TIOCNOTTY); otherwise (not a tty, or another session's) this fails and the child runs
  // without one, as under dumb-init. Never steal (arg 0).
  ::ioctl(STDIN_FILENO, TIOCSCTTY, 0);
  // The mask corral init was started with, so the command sees what it would have without us.
  ::sigprocmask(SIG_SETMASK, a->mask, nullptr);
  ::execvp(a->argv[0], a->argv);
  a->failed_call = "exec";
  a->err = errno;
  _exit(a->err == ENOENT ? 127 : 126);
}

bool Contains(const std::vector<int>& v, int x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

// Our current children: /proc/self/task/<tid>/children (CONFIG_PROC_CHILDREN, Linux 3.5), or, where
// that file is missing, a scan of /proc/<pid>/stat for our pid as parent.
Result<std::vector<pid_t>> ListChildren() {
  std::vector<pid_t> out;
  pid_t self = ::getpid();
  std::string path = "/proc/self/task/" + std::to_string(self) + "/children";
  auto text = ReadSmallFile(path, 8 * 1024 * 1024);
  if (text.ok()) {
    const char* s = text->c_str();
    while (*s != '\0') {
      char* end;
      long pid = std::strtol(s, &end, 10);
      if (end == s) break;
      out.push_back(static_cast<pid_t>(pid));
      s = end;
      while (*s == ' ' || *s == '\n') ++s;
    }
    return out;
  }
  if (text.error().code() != ENOENT) return text.error();
  DIR* dir = ::opendir("/proc");
  if (dir == nullptr) return Error::FromErrno("opendir", "/proc");
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    auto stat = ReadSmallFile(std::string("/proc/") + e->d_name + "/stat", 4096);
    if (!stat.ok()) continue;  // exited meanwhile
    // "pid (comm) state ppid ...": comm may contain anything, so parse after the last ')'.
    size_t close = stat->rfind(')');
    if (close == std::string::npos || close + 4 >= stat->size()) continue;
    if (std::atoi(stat->c_str() + close + 4) == self) out.push_back(std::atoi(e->d_name));
  }
  ::closedir(dir);
  return out;
}

}  // namespace

void DefaultRewrites(InitOptions* opts) {
  for (int sig : {SIGTSTP, SIGTTIN, SIGTTOU}) {
    if (opts->rewrite[sig] == -1) opts->rewrite[sig] = SIGSTOP;
  }
}

InitProcess::InitProcess(EventLoop& loop, const InitOptions& opts, SignalFd sfd)
    : loop_(loop), opts_(opts), sfd_(std::move(sfd)) {}

InitProcess::~InitProcess() {
  if (sfd_token_ != 0) loop_.Remove(sfd_token_);
  if (grace_timer_ != 0) loop_.CancelTimer(grace_timer_);
  // Only reached with a live child when corral init itself failed: do not leave it running
  // unsupervised. The pid is still ours (unreaped), so this cannot hit a stranger.
  if (child_pid_ > 0) {
    ::kill(child_pid_, SIGKILL);
    ::waitpid(child_pid_, nullptr, 0);
  }
}

Result<std::unique_ptr<InitProcess>> InitProcess::Start(EventLoop& loop, const InitOptions& opts) {
  // 1. Block every signal we forward or read, before the child exists, so none is lost or acted
  //    on by default in between. The old mask goes to the child.
  sigset_t all;
  sigfillset(&all);
  for (int sig : kFaultSignals) sigdelset(&all, sig);
  sigset_t old_mask;
  TRY(BlockSignals(all, &old_mask));
  ASSIGN_OR_RETURN(SignalFd sfd, SignalFd::Create(all));
  std::unique_ptr<InitProcess> init(new InitProcess(loop, opts, std::move(sfd)));
  init->waited_ = all;

  // 2. Orphans must come to us: PID 1 gets them from the kernel; elsewhere ask for them.
  init->pid1_ = ::getpid() == 1;
  if (!init->pid1_ && ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) {
    return Error::FromErrno("prctl(PR_SET_CHILD_SUBREAPER)");
  }

  // 3. Let go of the controlling terminal so the child's new session can take it. As session
  //    leader, this makes the kernel send SIGHUP and SIGCONT to our process group: swallow the
  //    first of each rather than forward a hang-up to the child (dumb-init #136).
  if (::ioctl(STDIN_FILENO, TIOCNOTTY) == 0 && ::getsid(0) == ::getpid()) {
    init->swallow_hup_ = true;
    init->swallow_cont_ = true;
  }

  // 4. The signalfd joins the caller's loop (which `--serve` will share with its socket).
  ASSIGN_OR_RETURN(init->sfd_token_, loop.Add(init->sfd_.fd(), EPOLLIN,
                                              [p = init.get()](uint32_t) { p->OnSignals(); }));

  // 5. Spawn, then reap once: zombies inherited through exec raise no SIGCHLD of their own.
  TRY(init->Spawn(old_mask));
  init->ReapAll();
  return init;
}

Status InitProcess::Spawn(const sigset_t& child_mask) {
  // The child's stack: ours is suspended until it execs, but it needs its own. 64 KiB covers
  // execvp's PATH buffer; the argv term covers glibc's ENOEXEC fallback (`sh FILE ARGS...`),
  // which copies argv onto the stack.
  size_t argc = 0;
  while (opts_.argv[argc] != nullptr) ++argc;
  size_t size = (64 * 1024 + (argc + 2) * sizeof(char*) + 4095) & ~static_cast<size_t>(4095);
  void* stack =
      ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) return Error::FromErrno("mmap", "child stack");

  ChildArgs args{opts_.argv, &child_mask, nullptr, 0};
  // CLONE_VFORK: we resume only after the child has exec'd or exited, so `args` is final then.
  // No fds are closed in the child: a container hands fds to its command on purpose (systemd
  // socket activation, LISTEN_FDS), and tini and dumb-init pass them through as well; corral
  // init's own fds are all O_CLOEXEC.
  pid_t pid =
      ::clone(ChildMain, static_cast<char*>(stack) + size, CLONE_VM | CLONE_VFORK | SIGCHLD, &args);
  int clone_errno = errno;
  ::munmap(stack, size);
  if (pid < 0) return Error::FromErrno(clone_errno, "clone", opts_.argv[0]);
  if (args.failed_call != nullptr) {
    ::waitpid(pid, nullptr, 0);  // it has _exit'ed; ours to reap
    return Error::FromErrno(args.err, args.failed_call, opts_.argv[0]);
  }
  child_pid_ = pid;
  if (opts_.verbose)
    std::fprintf(stderr, "corral init: spawned %s as pid %d\n", opts_.argv[0], pid);
  return Ok();
}

void InitProcess::OnSignals() {
  for (;;) {
    pid_t sender = 0;
    auto sig = sfd_.Read(&sender);
    if (!sig.ok()) {
      std::fprintf(stderr, "corral init: %s\n", sig.error().message().c_str());
      break;
    }
    if (*sig == 0) break;
    if (*sig != SIGCHLD) HandleSignal(*sig, sender);
  }
  // Reap on every wake-up, not only on SIGCHLD: one waitid when nothing is ready, and it cannot
  // miss an exit whose SIGCHLD merged with an earlier one.
  ReapAll();
  // Fast path while the signalfd is all there is to wait for (no --serve sockets, no grace
  // timer): wait for the next signal right here with sigwaitinfo, one system call, instead of
  // epoll + read + the read that says "drained". A storm of exiting orphans then costs what a
  // bare signalfd + waitid loop costs. Anything else on the loop sends us back to it.
  while (!finished_ && loop_.watched_fds() == 1 && loop_.pending_timers() == 0) {
    siginfo_t info;
    int sig = ::sigwaitinfo(&waited_, &info);
    if (sig < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (sig != SIGCHLD) HandleSignal(sig, info.si_pid);
    ReapAll();
  }
}

void InitProcess::HandleSignal(int sig, pid_t sender) {
  if (sig == SIGHUP && swallow_hup_) {
    swallow_hup_ = false;
    if (opts_.verbose) std::fprintf(stderr, "corral init: ignored SIGHUP from TIOCNOTTY\n");
    return;
  }
  if (sig == SIGCONT && swallow_cont_) {
    swallow_cont_ = false;
    if (opts_.verbose) std::fprintf(stderr, "corral init: ignored SIGCONT from TIOCNOTTY\n");
    return;
  }
  if (opts_.verbose) {
    std::fprintf(stderr, "corral init: received %s from pid %d\n", SignalName(sig).c_str(), sender);
  }
  switch (phase_) {
    case Phase::kRunning:
      Forward(sig);
      // Stop ourselves too, so the shell that started us sees its job stop and can `fg` it; the
      // SIGCONT that resumes us is then forwarded like any other signal. (A no-op as PID 1: the
      // kernel does not stop a namespace's init.)
      if (IsJobControl(sig)) ::kill(::getpid(), SIGSTOP);
      break;
    case Phase::kWaiting:
      // The child is gone; a request to stop the container ends the wait for its orphans.
      if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP || sig == SIGQUIT) StartTermination();
      break;
    case Phase::kTerminating:
      if (sig == SIGTERM || sig == SIGINT || sig == SIGQUIT) StartKilling();  // asked twice
      break;
    case Phase::kKilling:
    case Phase::kDone: break;
  }
}

void InitProcess::Forward(int sig) {
  int out = opts_.rewrite[sig] == -1 ? sig : opts_.rewrite[sig];
  if (out == 0) {
    if (opts_.verbose) std::fprintf(stderr, "corral init: dropped %s\n", SignalName(sig).c_str());
    return;
  }
  // child_pid_ is unreaped here (phase kRunning), so neither the pid nor the group id (= the pid,
  // the child leads its session) can belong to anyone else.
  pid_t target = opts_.group ? -child_pid_ : child_pid_;
  if (::kill(target, out) != 0 && opts_.verbose) {
    std::fprintf(stderr, "corral init: kill %d %s: %s\n", target, SignalName(out).c_str(),
                 std::strerror(errno));
  } else if (opts_.verbose) {
    std::fprintf(stderr, "corral init: forwarded %s to %s %d\n", SignalName(out).c_str(),
                 opts_.group ? "group" : "pid", child_pid_);
  }
}

void InitProcess::ReapAll() {
  bool children_left = true;
  for (;;) {
    if (opts_.reap_hook) {
      siginfo_t info{};
      if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid != 0 &&
          info.si_pid != child_pid_ && opts_.reap_hook(info.si_pid)) {
        ++reaped_;
        continue;
      }
    }
    auto r = ReapAny();
    if (!r.ok()) {
      if (r.error().code() != ECHILD) {
        std::fprintf(stderr, "corral init: %s\n", r.error().message().c_str());
      }
      children_left = false;
      break;
    }
    if (r->pid == 0) break;
    ++reaped_;
    if (opts_.verbose) {
      std::fprintf(stderr, "corral init: reaped %d (%s)%s\n", r->pid, r->status.ToString().c_str(),
                   r->pid == child_pid_ ? " [child]" : "");
    }
    if (r->pid == child_pid_) {
      child_pid_ = -1;
      int code = r->status.ShellCode();
      exit_code_ = Contains(opts_.exit_zero, code) ? 0 : code;
    } else if (!termed_.empty()) {
      auto it = std::lower_bound(termed_.begin(), termed_.end(), r->pid);
      if (it != termed_.end() && *it == r->pid) termed_.erase(it);  // the number may be reused
    }
  }
  if (child_pid_ > 0) return;  // still running: orphans are only reaped until then

  if (!children_left) {
    phase_ = Phase::kDone;
    finished_ = true;
    if (grace_timer_ != 0) loop_.CancelTimer(grace_timer_);
    grace_timer_ = 0;
    return;
  }
  switch (phase_) {
    case Phase::kRunning:  // the child just ended and left orphans behind
      if (opts_.verbose) std::fprintf(stderr, "corral init: child gone, orphans remain\n");
      if (opts_.orphans == OrphanPolicy::kWait) phase_ = Phase::kWaiting;
      if (opts_.orphans == OrphanPolicy::kTerm) StartTermination();
      if (opts_.orphans == OrphanPolicy::kKill) StartKilling();
      break;
    case Phase::kTerminating:
      // As subreaper, the children of a process that just died are re-parented to us now.
      if (!pid1_) SignalOrphans(SIGTERM, /*only_new=*/true);
      break;
    case Phase::kKilling: SignalOrphans(SIGKILL, /*only_new=*/false); break;
    case Phase::kWaiting:
    case Phase::kDone: break;
  }
}

void InitProcess::SignalOrphans(int sig, bool only_new) {
  if (pid1_) {
    // Every process of the namespace but ourselves (kill(2): -1 skips the caller and init).
    ::kill(-1, sig);
    if (sig == SIGTERM) ::kill(-1, SIGCONT);  // a stopped process acts on TERM only once resumed
    return;
  }
  auto children = ListChildren();
  if (!children.ok()) {
    std::fprintf(stderr, "corral init: cannot find orphans to %s: %s\n", SignalName(sig).c_str(),
                 children.error().message().c_str());
    return;
  }
  // These are our unreaped children: their pids cannot be reused under us.
  for (pid_t pid : *children) {
    if (sig == SIGTERM) {
      auto it = std::lower_bound(termed_.begin(), termed_.end(), pid);
      if (only_new && it != termed_.end() && *it == pid) continue;
      if (it == termed_.end() || *it != pid) termed_.insert(it, pid);
    }
    ::kill(pid, sig);
    if (sig == SIGTERM) ::kill(pid, SIGCONT);
    if (opts_.verbose)
      std::fprintf(stderr, "corral init: sent %s to orphan %d\n", SignalName(sig).c_str(), pid);
  }
}

void InitProcess::StartTermination() {
  if (phase_ == Phase::kTerminating || phase_ == Phase::kKilling) return;
  phase_ = Phase::kTerminating;
  SignalOrphans(SIGTERM, /*only_new=*/false);
  grace_timer_ = loop_.AddTimer(MonotonicNs() + opts_.grace_ns, [this] {
    grace_timer_ = 0;
    StartKilling();
  });
}

void InitProcess::StartKilling() {
  if (grace_timer_ != 0) loop_.CancelTimer(grace_timer_);
  grace_timer_ = 0;
  phase_ = Phase::kKilling;
  SignalOrphans(SIGKILL, /*only_new=*/false);
}

}  // namespace corral
