// What a caller asks for when it opens a cell, and what it gets back when the cell closes.
// The JSON shape of CellResult is the contract of DESIGN.md ("Result object"): the same from
// `corral run --json`, the daemon and MCP.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sys/clock.h"

namespace corral {

struct Limits {
  uint64_t memory_bytes = 0;  // 0: no limit
  uint64_t pids = 0;          // 0: no limit
  double cpu_s = 0;           // CPU time of the whole tree; 0: no limit
  bool any() const { return memory_bytes != 0 || pids != 0 || cpu_s > 0; }
};

// Isolation of a cell (docs/isolation.md): namespaces, a read-only view of the host, writable
// paths only where granted, loopback-only network, no new privileges, a seccomp deny-list and
// Landlock rules mirroring the writable paths. Off unless `enabled`; every part asked for is
// either set up or the spawn fails (exit 125) with the part named: never a silent downgrade.
// JSON form (daemon protocol, MCP, queue): see ParseIsolationJson in cell/isolation.h.
enum class NetMode { kNone, kHost };
struct Isolation {
  bool enabled = false;
  NetMode net = NetMode::kNone;   // kNone: a new network namespace with `lo` only
  std::vector<std::string> rw;    // writable (bind-mounted read-write); "." is the cell's cwd
  std::vector<std::string> ro;    // read-only again (e.g. a .git inside a --rw path)
  std::vector<std::string> hide;  // covered: an empty read-only tmpfs (dir), /dev/null (file)
  bool seccomp = true;            // the default deny-list (ptrace, mount, bpf, kexec, ...)
  bool landlock = true;           // when the kernel has it (doctor says); mounts enforce anyway
  std::string profile;            // the profile it came from, for messages; empty: flags only
};

enum class StdinMode { kInherit, kNull, kFile, kBytes };
// kStream copies the tree's output to our own stdout/stderr as it comes, through pipes of our
// own: a process stuck in D state then holds only our pipe, never the caller's, so the caller
// sees EOF when corral returns. kCapture keeps it (bounded) for the result object.
enum class OutputMode { kStream, kCapture };

struct CellSpec {
  std::string id;                 // e.g. "run-1234-1"; unique on the host while the cell lives
  std::vector<std::string> argv;  // argv[0] is looked up in PATH unless it contains '/'
  std::string cwd;                // empty: inherit
  int umask = -1;                 // file mode creation mask (0..0777); -1: inherit
  std::vector<std::pair<std::string, std::string>> env;  // set/override
  bool clear_env = false;  // start from an empty environment instead of ours
  StdinMode stdin_mode = StdinMode::kNull;
  std::string stdin_data;  // kFile: the path; kBytes: the bytes
  OutputMode output = OutputMode::kCapture;
  uint64_t max_output_bytes = 1 << 20;   // per stream, capture mode
  int64_t timeout_ns = 0;                // 0: none
  int64_t grace_ns = 2 * kNsPerSec;      // SIGTERM -> SIGKILL
  int64_t kill_wait_ns = 1 * kNsPerSec;  // SIGKILL -> give up waiting, report stuck
  Limits limits;
  long uid = -1;  // run as this identity (daemon, root callers); -1: ours
  long gid = -1;
  std::vector<unsigned> groups;
  Isolation isolation;
};

enum class CellState { kExited, kTimedOut, kKilled, kCancelled, kFailedToStart };
const char* CellStateName(CellState s);

struct StuckProcess {
  int pid = 0;
  std::string comm;
  char state = '?';
  std::string wchan;
  bool holds_output = false;  // still holds the cell's stdout/stderr pipe
};

struct CellResult {
  std::string id;
  std::vector<std::string> argv;
  CellState state = CellState::kExited;
  std::optional<int> exit_code;
  std::optional<int> signal;
  double duration_s = 0;
  std::string stdout_data, stderr_data;
  bool stdout_truncated = false, stderr_truncated = false;
  uint64_t stdout_bytes = 0, stderr_bytes = 0;
  std::optional<uint64_t> peak_memory_bytes;
  std::optional<double> cpu_user_s, cpu_system_s;
  std::optional<uint64_t> pids_peak;
  int leftover_killed = 0;
  std::vector<StuckProcess> stuck;
  std::string containment;
  std::string reason;                   // empty: plain exit
  std::vector<std::string> limits_hit;  // "memory", "pids", "cpu"
  std::string error;                    // failed_to_start
  double spawn_s = 0;  // time to create the cell and spawn its leader (metrics; not in JSON)
  // The exit code `corral run` returns for this result (coreutils `timeout` conventions).
  int ShellExitCode() const;
};

}  // namespace corral
