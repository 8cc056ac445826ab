#include "cell/spawn.h"

#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

#include "cell/isolation.h"
#include "cell/ns_pool.h"
#include "sys/pidfd.h"

#if defined(__x86_64__)
extern "C" long corral_clone3(void* args, size_t size, int (*fn)(void*), void* arg);
#define CORRAL_HAVE_CLONE3_ASM 1
#endif

namespace corral {
namespace {

constexpr uint64_t kCloneIntoCgroup = 0x200000000ULL;  // CLONE_INTO_CGROUP, Linux 5.7
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

// struct clone_args as of Linux 5.7 (CLONE_ARGS_SIZE_VER2); spelled out to avoid mixing
// <linux/sched.h> with glibc's <sched.h>.
struct CloneArgs {
  uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
      set_tid_size, cgroup;
};

enum class Stage : int {
  kNone = 0,
  kSetsid,
  kJoinCgroup,
  kStdin,
  kStdout,
  kStderr,
  kChdir,
  kRlimit,
  kNofile,
  kSetgroups,
  kSetgid,
  kSetuid,
  kCloseRange,
  kSigmask,
  kExec,
  kIsolate,
};

const char* StageName(Stage s) {
  switch (s) {
    case Stage::kNone: return "spawn";
    case Stage::kSetsid: return "setsid";
    case Stage::kJoinCgroup: return "join cgroup (write cgroup.procs)";
    case Stage::kStdin: return "dup2 stdin";
    case Stage::kStdout: return "dup2 stdout";
    case Stage::kStderr: return "dup2 stderr";
    case Stage::kChdir: return "chdir";
    case Stage::kRlimit: return "setrlimit(RLIMIT_CPU)";
    case Stage::kNofile: return "setrlimit(RLIMIT_NOFILE)";
    case Stage::kSetgroups: return "setgroups";
    case Stage::kSetgid: return "setgid";
    case Stage::kSetuid: return "setuid";
    case Stage::kCloseRange: return "close_range";
    case Stage::kSigmask: return "reset signals (sigaction, sigprocmask)";
    case Stage::kExec: return "exec";
    case Stage::kIsolate: return "isolate";
  }
  return "spawn";
}

// Everything the child needs, prepared by the parent so the child allocates nothing. The child
// writes stage/err; the parent reads them after the vfork-style clone returns.
struct ChildArgs {
  const SpawnRequest* req;
  const char* path;
  char* const* argv;
  char* const* envp;
  const gid_t* groups;
  size_t ngroups;
  const int* join_fds;
  size_t njoin;
  Stage stage;
  int err;
  // Isolated cells: the plan, and which of its steps failed (static text, a path of the plan).
  const IsolationPlan* iso;
  const char* iso_what;
  const char* iso_object;
  // Set by the child's first instruction: still false after the clone returns, the child was
  // killed before it ran (a CLONE_INTO_CGROUP target that had cgroup.kill written).
  volatile bool started;
};

// Runs in the child, on its own stack, sharing the parent's memory: async-signal-safe system
// calls only, no allocation, no locks. Returns only on failure (after recording why).
int ChildMain(void* p) {
  auto* a = static_cast<ChildArgs*>(p);
  a->started = true;
  const SpawnRequest& r = *a->req;
  auto fail = [a](Stage s) {
    a->stage = s;
    a->err = errno;
    return 127;
  };
  if (r.new_session && setsid() < 0) return fail(Stage::kSetsid);
  for (size_t i = 0; i < a->njoin; ++i) {
    if (write(a->join_fds[i], "0", 1) != 1) return fail(Stage::kJoinCgroup);
  }
  // Isolation, part 1 (isolation.cc): user map, mounts, loopback, capabilities.
  if (a->iso != nullptr && !IsolateEnter(*a->iso, &a->iso_what, &a->iso_object)) {
    return fail(Stage::kIsolate);
  }
  if (r.stdin_fd != 0 && dup2(r.stdin_fd, 0) < 0) return fail(Stage::kStdin);
  if (r.stdout_fd != 1 && dup2(r.stdout_fd, 1) < 0) return fail(Stage::kStdout);
  if (r.stderr_fd != 2 && dup2(r.stderr_fd, 2) < 0) return fail(Stage::kStderr);
  if (r.cpu_limit_s > 0) {
    struct rlimit cur;
    if (getrlimit(RLIMIT_CPU, &cur) < 0) return fail(Stage::kRlimit);
    struct rlimit lim;
    // Soft limit: SIGXCPU at the budget; hard limit one second later: SIGKILL.
    lim.rlim_max = r.cpu_limit_s + 1;
    if (cur.rlim_max != RLIM_INFINITY && cur.rlim_max < lim.rlim_max) lim.rlim_max = cur.rlim_max;
    lim.rlim_cur = r.cpu_limit_s < lim.rlim_max ? r.cpu_limit_s : lim.rlim_max;
    if (setrlimit(RLIMIT_CPU, &lim) < 0) return fail(Stage::kRlimit);
  }
  if (r.nofile != nullptr && setrlimit(RLIMIT_NOFILE, r.nofile) < 0) return fail(Stage::kNofile);
  if (r.uid >= 0) {
    if (setgroups(a->ngroups, a->groups) < 0) return fail(Stage::kSetgroups);
    if (setgid(static_cast<gid_t>(r.gid)) < 0) return fail(Stage::kSetgid);
    if (setuid(static_cast<uid_t>(r.uid)) < 0) return fail(Stage::kSetuid);
  }
  // After the switch: a caller gets a working directory only where it may search itself (a
  // chdir as root would put it inside directories closed to it).
  if (!r.cwd.empty() && chdir(r.cwd.c_str()) < 0) return fail(Stage::kChdir);
  if (r.umask >= 0) umask(static_cast<mode_t>(r.umask));
  // Isolation, part 2: no new privileges, Landlock, seccomp (last: it refuses mount).
  if (a->iso != nullptr && !IsolateLockDown(*a->iso, &a->iso_what, &a->iso_object)) {
    return fail(Stage::kIsolate);
  }
  // Nothing of ours but 0, 1, 2 may survive exec (Linux 5.9; older kernels: close one by one).
  if (syscall(SYS_close_range, 3U, ~0U, 0U) < 0) {
    if (errno != ENOSYS && errno != EINVAL) return fail(Stage::kCloseRange);
    for (int fd = 3; fd < 65536; ++fd) close(fd);
  }
  for (int sig = 1; sig <= 64; ++sig) {
    if ((r.default_signals >> (sig - 1) & 1) == 0) continue;
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    if (sigaction(sig, &dfl, nullptr) < 0) return fail(Stage::kSigmask);
  }
  sigset_t none;
  sigemptyset(&none);
  if (sigprocmask(SIG_SETMASK, &none, nullptr) < 0) return fail(Stage::kSigmask);
  execve(a->path, a->argv, a->envp);
  return fail(Stage::kExec);
}

// One 64 KiB stack per spawning thread, with a guard page below it. The parent is suspended
// while the child runs on it (CLONE_VFORK), so one stack per thread is enough.
char* ChildStackTop() {
  constexpr size_t kSize = 64 * 1024;
  thread_local char* top = nullptr;
  if (top == nullptr) {
    void* p = mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK,
                   -1, 0);
    if (p == MAP_FAILED) return nullptr;
    mprotect(p, 4096, PROT_NONE);
    top = static_cast<char*>(p) + kSize;
  }
  return top;
}

enum class Mechanism { kUnknown, kClone3, kClone };
Mechanism g_mechanism =
#ifdef CORRAL_HAVE_CLONE3_ASM
    Mechanism::kUnknown;
#else
    Mechanism::kClone;
#endif

std::vector<char*> CStrings(const std::vector<std::string>& v) {
  std::vector<char*> out;
  out.reserve(v.size() + 1);
  for (const std::string& s : v) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

// The clone of an isolated cell failed: say that isolation is what the kernel refused.
Error IsolationCloneError(int err, const char* call) {
  Error e = Error::FromErrno(err, std::string(call) + " with namespaces (isolation)");
  std::string hint = IsolationHint("clone", err);
  return hint.empty() ? e : Error::Msg(e.message() + " (" + hint + ")", err);
}

}  // namespace

const char* SpawnMechanism() {
  switch (g_mechanism) {
    case Mechanism::kClone3: return "clone3(CLONE_VM|CLONE_VFORK|CLONE_PIDFD|CLONE_INTO_CGROUP)";
    case Mechanism::kClone: return "clone(CLONE_VM|CLONE_VFORK|CLONE_PIDFD) + write cgroup.procs";
    case Mechanism::kUnknown: break;
  }
  return "clone3(CLONE_VM|CLONE_VFORK|CLONE_PIDFD|CLONE_INTO_CGROUP), clone(2) if refused";
}

uint64_t IgnoredSignals() {
  uint64_t mask = 0;
  for (int sig = 1; sig <= 64; ++sig) {
    struct sigaction sa {};
    // glibc refuses its own two (32, 33) with EINVAL; SIGKILL and SIGSTOP are never ignored.
    if (sigaction(sig, nullptr, &sa) == 0 && sa.sa_handler == SIG_IGN) {
      mask |= uint64_t{1} << (sig - 1);
    }
  }
  return mask;
}

Result<Spawned> Spawn(const SpawnRequest& req, SpawnFailure* failure) {
  char* stack_top = ChildStackTop();
  if (stack_top == nullptr) return Error::FromErrno("mmap", "child stack");

  std::vector<char*> argv = CStrings(req.argv);
  std::vector<char*> envp = CStrings(req.env);
  std::vector<gid_t> groups(req.groups.begin(), req.groups.end());
  std::vector<int> join_fds = req.join_fds;
  UniqueFd unified_procs;  // fallback: the child writes itself into the cgroup2 directory
  bool clone_into_refused = false;

  std::unique_ptr<IsolationPlan> iso;
  if (req.isolation != nullptr && req.isolation->enabled) {
    auto plan = PrepareIsolation(*req.isolation, req.cwd, req.uid);
    if (!plan.ok()) return plan.error();
    iso = std::move(plan).value();
    const NamespaceSet* ns = req.namespaces;
    if (ns != nullptr && ns->valid() && (iso->clone_flags & CLONE_NEWNET) != 0 && !iso->user_ns) {
      iso->clone_flags &= ~static_cast<uint64_t>(CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS);
      iso->net_fd = ns->net.get();
      iso->ipc_fd = ns->ipc.get();
      iso->uts_fd = ns->uts.get();
      iso->lo_up = false;  // up already
    }
  }
  uint64_t ns_flags = iso ? iso->clone_flags : 0;

  ChildArgs args{};
  args.req = &req;
  args.iso = iso.get();
  args.path = req.path.c_str();
  args.argv = argv.data();
  args.envp = envp.data();
  args.groups = groups.data();
  args.ngroups = groups.size();

  // No signal handler may run in the child while it shares our memory; the child restores an
  // empty mask right before exec.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);

  long pid = -1;
  int pidfd = -1;
#ifdef CORRAL_HAVE_CLONE3_ASM
  if (g_mechanism != Mechanism::kClone) {
    CloneArgs ca{};
    ca.flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD | ns_flags;
    ca.pidfd = reinterpret_cast<uint64_t>(&pidfd);
    ca.exit_signal = SIGCHLD;
    ca.stack = reinterpret_cast<uint64_t>(stack_top - 64 * 1024 + 4096);
    ca.stack_size = 64 * 1024 - 4096;
    if (req.cgroup_dir_fd >= 0) {
      ca.flags |= kCloneIntoCgroup;
      ca.cgroup = static_cast<uint64_t>(req.cgroup_dir_fd);
    }
    args.join_fds = join_fds.data();
    args.njoin = join_fds.size();
    pid = corral_clone3(&ca, sizeof ca, ChildMain, &args);
    if (pid > 0 && (ca.flags & kCloneIntoCgroup) != 0 && !args.started &&
        req.cgroup_procs_fallback_fd >= 0) {
      // Killed at birth: reap it, and clone again with the child joining through cgroup.procs.
      UniqueFd dead(pidfd);
      (void)WaitPidfd(dead.get(), 0);
      ca.flags &= ~kCloneIntoCgroup;
      ca.cgroup = 0;
      join_fds.push_back(req.cgroup_procs_fallback_fd);
      args.join_fds = join_fds.data();
      args.njoin = join_fds.size();
      clone_into_refused = true;
      pid = corral_clone3(&ca, sizeof ca, ChildMain, &args);
    }
    if (pid == -ENOSYS || pid == -E2BIG ||
        (pid == -EINVAL && req.cgroup_dir_fd >= 0 && ns_flags == 0)) {
      g_mechanism = Mechanism::kClone;  // this kernel cannot: fall back, once and for all
    } else if (pid < 0) {
      pthread_sigmask(SIG_SETMASK, &old, nullptr);
      if (iso) return IsolationCloneError(static_cast<int>(-pid), "clone3");
      return Error::FromErrno(static_cast<int>(-pid), "clone3");
    } else {
      g_mechanism = Mechanism::kClone3;
    }
  }
#endif
  if (g_mechanism == Mechanism::kClone) {
    if (req.cgroup_dir_fd >= 0) {
      int fd = openat(req.cgroup_dir_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC);
      if (fd < 0) {
        int e = errno;
        pthread_sigmask(SIG_SETMASK, &old, nullptr);
        return Error::FromErrno(e, "openat", "cgroup.procs");
      }
      unified_procs.reset(fd);
      join_fds.push_back(fd);
    }
    args.join_fds = join_fds.data();
    args.njoin = join_fds.size();
    pid = clone(ChildMain, stack_top,
                CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD | static_cast<int>(ns_flags), &args,
                &pidfd);
    if (pid < 0) {
      int e = errno;
      pthread_sigmask(SIG_SETMASK, &old, nullptr);
      if (iso) return IsolationCloneError(e, "clone");
      return Error::FromErrno(e, "clone");
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);

  Spawned out;
  out.pid = static_cast<pid_t>(pid);
  out.pidfd.reset(pidfd);
  out.clone_into_refused = clone_into_refused;
  if (args.stage != Stage::kNone) {
    // The child has already exited (the vfork wake-up came from its exit): reap it.
    (void)WaitPidfd(out.pidfd.get(), 0);
    if (failure != nullptr) failure->exec_failed = args.stage == Stage::kExec;
    if (args.stage == Stage::kIsolate) {
      Error e = Error::FromErrno(args.err, args.iso_what,
                                 args.iso_object != nullptr ? args.iso_object : "");
      std::string hint = IsolationHint(args.iso_what, args.err);
      return hint.empty() ? e : Error::Msg(e.message() + " (" + hint + ")", args.err);
    }
    std::string object = args.stage == Stage::kExec    ? req.path
                         : args.stage == Stage::kChdir ? req.cwd
                                                       : std::string();
    return Error::FromErrno(args.err, StageName(args.stage), object);
  }
  return out;
}

Result<std::string> ResolveExecutable(const std::string& name, const std::string& path_env) {
  if (name.empty()) return Error::Msg("empty command name", ENOENT);
  auto check = [](const std::string& p) -> int {
    struct stat st;
    if (stat(p.c_str(), &st) != 0) return errno;
    if (S_ISDIR(st.st_mode)) return EACCES;
    if (access(p.c_str(), X_OK) != 0) return EACCES;
    return 0;
  };
  if (name.find('/') != std::string::npos) {
    int e = check(name);
    if (e != 0) return Error::FromErrno(e, "exec", name);
    return name;
  }
  std::string path = path_env.empty() ? "/usr/local/bin:/usr/bin:/bin" : path_env;
  int best = ENOENT;
  size_t start = 0;
  for (;;) {
    size_t end = path.find(':', start);
    std::string dir =
        path.substr(start, end == std::string::npos ? std::string::npos : end - start);
    std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + name;
    int e = check(candidate);
    if (e == 0) return candidate;
    if (e == EACCES) best = EACCES;
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return Error::FromErrno(best, "exec", name);
}

}  // namespace corral
