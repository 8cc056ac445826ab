// Isolated cells: container-grade isolation at process-spawn cost (docs/isolation.md).
//
// Mechanism. The leader is cloned by the same vfork-style clone3 as every cell (spawn.cc), with
// namespace flags added: CLONE_NEWPID (the leader is PID 1 of its own PID namespace, so when it
// exits the kernel kills everything else in it), CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUTS,
// CLONE_NEWNET unless the network is the host's, and CLONE_NEWUSER when the caller is not root
// (its uid and gid are mapped to themselves). CLONE_NEWPID is accepted together with CLONE_VM |
// CLONE_VFORK (only CLONE_THREAD / CLONE_PARENT are refused with it), so an isolated spawn keeps
// the cost of a plain one plus the namespaces (about 0.9 ms here, most of it the network
// namespace). Between clone and exec the child, still sharing the parent's memory, runs the
// steps of an IsolationPlan that the parent prepared (every string and the seccomp program are
// built before the clone, so the child allocates nothing):
//   1. (user namespace) setgroups "deny", uid_map and gid_map of itself;
//   2. mount_setattr("/", AT_RECURSIVE, RDONLY, MS_PRIVATE): the whole host tree read-only and
//      nothing propagating back (Linux 5.12); no tmpfs root and no pivot_root, so this is one
//      system call however many mounts the host has;
//   3. private tmpfs on /tmp and /dev/shm; --rw binds made writable, --ro binds made read-only
//      again, --hide covered by an empty read-only tmpfs (directory) or /dev/null (file);
//   4. a fresh read-only /proc for the new PID namespace; `lo` up (ioctl SIOCSIFFLAGS); in the
//      daemon, network, IPC and UTS namespaces made ahead are entered instead (ns_pool.h);
//   5. chdir to the parent's cwd again (the inherited cwd points into the old, now read-only,
//      mount), the capability bounding set emptied (a root caller's command runs as uid 0 with
//      no capabilities);
//   and, after the identity switch: PR_SET_NO_NEW_PRIVS, Landlock (writes allowed only beneath
//   the writable paths), the seccomp deny-list last (it refuses mount, so it must follow them).
//
// Hazards. PID 1 ignores signals it has no handler for, even SIGTERM from the parent
// namespace: a timeout's SIGTERM is lost on a leader that does not catch it and SIGKILL follows
// after --grace; orphans of the tree are reparented to the leader, not to corral, and stay
// zombies until it reaps them or the cell ends (`corral run --isolate -- corral init -- CMD`
// puts a reaping, forwarding init in front). A process stuck in D state holds the namespace's
// PID 1 in its exit until it is released (zap_pid_ns_processes waits for it).
#pragma once

#include <linux/filter.h>

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cell/spec.h"
#include "sys/error.h"
#include "sys/fd.h"

namespace corral {

// Everything the child needs, prepared by the parent. Plain data; the child reads it only.
struct IsolationPlan {
  uint64_t clone_flags = 0;  // CLONE_NEW* to add to the spawn's clone

  bool user_ns = false;
  std::string uid_map, gid_map;  // "<id> <id> 1\n"

  enum class MountKind { kTmpfs, kBindRw, kBindRo, kHideDir, kHideFile, kProc };
  struct MountOp {
    MountKind kind;
    std::string path;
  };
  std::vector<MountOp> mounts;
  std::string chdir_to;  // the parent's cwd: re-entered through the new mount tree
  bool lo_up = false;
  // Network (lo up), IPC and UTS namespaces made ahead (ns_pool.h), entered with setns instead
  // of CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS; -1: none.
  int net_fd = -1, ipc_fd = -1, uts_fd = -1;
  int cap_last = -1;  // bounding set 0..cap_last dropped; -1: keep

  std::vector<sock_filter> seccomp;  // empty: none

  int landlock_abi = 0;  // 0: no Landlock
  uint64_t landlock_handled = 0;
  struct LandlockRule {
    std::string path;
    uint64_t access;
    // An O_PATH fd of `path` opened by the parent (the child adds the rule without opening
    // anything; `access` already fits a file or a directory), or -1: the child opens `path`
    // itself after its mounts (the private /tmp and /dev/shm do not exist before).
    int fd = -1;
  };
  std::vector<LandlockRule> landlock_rules;
  std::vector<UniqueFd> landlock_fds;  // the per-plan fds above (--rw paths)
};

// Builds the plan for a spec: resolves and checks every path (absolute, existing, not under the
// private /tmp), checks that each part asked for is available, and says which part is not and
// how to enable it otherwise. `cwd` is the cell's working directory ("" = ours); `uid` is the
// identity the command will run as (-1: ours).
Result<std::unique_ptr<IsolationPlan>> PrepareIsolation(const Isolation& iso,
                                                        const std::string& cwd, long uid);

// Child side, between clone and exec: async-signal-safe system calls only, no allocation. On
// failure they return false and set *what (a static description of the step) and *object (a
// path of the plan, or nullptr); errno is the cause.
bool IsolateEnter(const IsolationPlan& plan, const char** what, const char** object);

// Brings `lo` of the caller's network namespace up; errno set on failure. Async-signal-safe.
bool LoopbackUp();
bool IsolateLockDown(const IsolationPlan& plan, const char** what, const char** object);

// One sentence on how to fix a failed step (empty when there is nothing useful to say).
std::string IsolationHint(const std::string& what, int err);

// The default seccomp deny-list as a classic BPF program for this build's architecture.
std::vector<sock_filter> DefaultSeccompFilter();
// The system calls it refuses, by name, for docs and doctor.
std::vector<std::string> DefaultSeccompDenied();

// What this host supports, part by part, for `corral doctor`.
struct IsolationPart {
  std::string name;
  bool ok = false;
  std::string detail;  // how it is done, or why not and how to enable it
};
std::vector<IsolationPart> ProbeIsolation();

// Profiles: named presets. Built in: readonly, workspace, network (docs/isolation.md); a JSON
// file (default /etc/corral/profiles.json, $CORRAL_PROFILES overrides) may add or replace them:
//   {"profiles": {"NAME": {"net": "none", "rw": ["."], "ro": [], "hide": [], ...}}}
// Returns an error naming the profiles known when `name` is not one of them.
Result<Isolation> LoadProfile(const std::string& name);

// The JSON form of the daemon protocol, MCP and the queue (docs/isolation.md):
//   "isolate": true | false | "PROFILE" |
//              {"profile": "workspace", "net": "none"|"host", "rw": [..], "ro": [..],
//               "hide": [..], "seccomp": true, "landlock": true}
// Fields given override the profile's; lists are added to it. Returns an error sentence that
// names the field ("isolate.net must be \"none\" or \"host\"").
std::optional<std::string> ParseIsolationJson(const nlohmann::json& j, Isolation* out);
// The resolved form (no "profile": its paths are in the lists); parses back to the same.
nlohmann::json IsolationToJson(const Isolation& iso);

}  // namespace corral
