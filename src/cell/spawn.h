// Spawning a cell's leader: vfork-style, straight into its cgroup, with a pidfd.
//
// Mechanism. clone3(CLONE_VM | CLONE_VFORK | CLONE_PIDFD | CLONE_INTO_CGROUP) on a small
// separate stack: the child shares our memory and we sleep until it has exec'd, so the cost of a
// spawn does not grow with the spawner's memory (a plain fork of a 256 MiB daemon costs about 5x
// on this VM), the child is in its cgroup from its first instruction (no window in which it could
// fork outside), and the pidfd comes back atomically with the pid.
//
// Fallbacks, chosen once per process when the kernel says no:
// - clone3 missing (ENOSYS, Linux < 5.3) or refusing CLONE_INTO_CGROUP (Linux < 5.7, or the
//   target is not a cgroup2 directory): clone(2) with CLONE_VM | CLONE_VFORK | CLONE_PIDFD
//   (Linux 5.2), and the child joins its cgroup itself by writing "0" to cgroup.procs before
//   exec. Non-x86_64 builds always take this path.
//
// The child, between clone and exec, runs only async-signal-safe system calls and touches no
// heap: it shares the parent's memory, so a malloc there could corrupt the parent. It reports
// which step failed and the errno through a struct on the parent's stack (which the parent reads
// after the vfork wakes it); that costs nothing, unlike a CLOEXEC error pipe.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "sys/error.h"
#include "sys/fd.h"

namespace corral {

struct Isolation;
struct NamespaceSet;  // cell/ns_pool.h

struct SpawnRequest {
  std::string path;               // executable, already resolved (see ResolveExecutable)
  std::vector<std::string> argv;  // argv[0] included
  std::vector<std::string> env;   // "K=V" entries, exactly the child's environment
  std::string cwd;                // empty: inherit
  int umask = -1;                 // -1: inherit
  int stdin_fd = 0;               // fds the child gets as 0, 1, 2
  int stdout_fd = 1;
  int stderr_fd = 2;
  int cgroup_dir_fd = -1;  // cgroup2 directory for CLONE_INTO_CGROUP; -1: none
  // That directory's cgroup.procs, joined through instead when the kernel kills a child cloned
  // into it at birth (Linux 6.18 does so for a directory cgroup.kill was ever written to: see
  // cell/cgroup_pool.h); -1: none, such a spawn fails.
  int cgroup_procs_fallback_fd = -1;
  std::vector<int> join_fds;      // cgroup.procs files (v1 or fallback) the child writes "0" to
  bool new_session = true;        // setsid(): own session and process group
  uint64_t default_signals = 0;   // bit N-1: signal N set to SIG_DFL in the child (IgnoredSignals)
  unsigned long cpu_limit_s = 0;  // RLIMIT_CPU for the child (0: unlimited)
  const struct rlimit* nofile = nullptr;  // RLIMIT_NOFILE for the child; nullptr: ours
  // Identity to switch to (daemon callers); uid < 0 keeps ours.
  long uid = -1;
  long gid = -1;
  std::vector<unsigned> groups;
  // Isolated cell (cell/isolation.h): namespaces added to the clone, set-up steps in the child.
  // nullptr or !enabled: none.
  const Isolation* isolation = nullptr;
  // Namespaces made ahead (ns_pool.h) that an isolated child of a root host enters instead of
  // creating its own; nullptr: clone makes them.
  const NamespaceSet* namespaces = nullptr;
};

struct Spawned {
  pid_t pid = -1;
  UniqueFd pidfd;
  bool clone_into_refused = false;  // the child had to join through cgroup_procs_fallback_fd
};

// Which mechanism this process uses, for `corral doctor`.
const char* SpawnMechanism();

// Spawns the child. On failure the Error's code is the child's errno and its message names the
// step ("exec `/bin/x`: Permission denied", "chdir `/nope`: No such file or directory"); the
// child has then been reaped already. Exec failures carry kExecFailed in `stage`.
struct SpawnFailure {
  bool exec_failed = false;  // the command could not be executed (126/127); else set-up (125)
};
Result<Spawned> Spawn(const SpawnRequest& req, SpawnFailure* failure = nullptr);

// The signals this process ignores, as a SpawnRequest::default_signals mask: asked once, so that a
// child resets only those (usually none) instead of asking about all 64.
uint64_t IgnoredSignals();

// PATH search the way execvp does it, done in the parent so that the child needs no allocation:
// ENOENT if no candidate exists (exit 127), EACCES if one exists but is not executable (126).
Result<std::string> ResolveExecutable(const std::string& name, const std::string& path_env);

}  // namespace corral
