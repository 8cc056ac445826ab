// The one owner of cells, free of any transport: it owns the CellHost (and so every cell that
// came through the daemon, `corral init --serve` or `corral mcp`), a bounded wait queue in front
// of max_running, admission control, the records callers query (wait/output/list), and the
// crash-recovery files in the state dir. Front ends (the JSON-RPC methods in
// src/api/methods/, `corral init --serve`, the MCP tools in src/api/mcp/) turn their requests
// into calls here and differ only in the SupervisorOptions they pass: how many cells run, whether
// one more waits or is refused (max_queued 0), how many finished records are kept.
//
// Ownership and hazards:
// - Every cell is started and ended on the one EventLoop thread; callbacks run there.
// - A record outlives its cell: results are kept for `wait`/`output` until retention evicts
//   them (at most keep_finished, oldest first), so memory stays bounded however many calls come.
//   A cell started with Retention::kDropWhenDone leaves no record once its waiters have run.
// - Done callbacks and waiters never run inside Start/Wait/Kill on a running cell: always from
//   the loop, so a caller may register state after Start returned.
// - Crash safety: each running cell has a file `cells/<id>` in the state dir holding the leader's
//   pid and start time. The cgroup backends need nothing more (the sweeper finds the cgroups of
//   a dead daemon by the owner pid in their names); for the pgroup backend the next daemon kills
//   the leaders it finds recorded (checked by start time, never by bare pid) and every process
//   whose environment carries a dead daemon's CORRAL_CELL id.
#pragma once

#include <sys/types.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "cell/cell.h"
#include "sys/event_loop.h"
#include "sys/fd.h"

namespace corral {

// Who asks. A default Caller owns nothing and is not root: the supervisor's own housekeeping
// says so with System(), never by leaving fields at zero.
struct Caller {
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
  pid_t pid = 0;
  bool system = false;  // the supervisor itself: sees and may end every cell
  bool root() const { return uid == 0 || system; }
  static Caller System() { return Caller{0, 0, 0, true}; }
  static Caller Peer(uid_t uid, gid_t gid, pid_t pid) { return Caller{uid, gid, pid, false}; }
};

// Counters for `stats` and metrics.
struct SupervisorStats {
  size_t running = 0, queued = 0, max_running = 0;
  uint64_t reaped_total = 0, leftover_killed_total = 0;
  size_t stuck_processes = 0;
  const char* containment = "";
  int recovered_killed = 0;
  std::map<std::string, uint64_t> finished_by_state;
};

struct SupervisorOptions {
  ContainmentConfig containment;
  size_t max_running = 64;
  // Calls waiting for a slot, not counting those running; 0: past max_running a call is refused.
  size_t max_queued = 1024;
  size_t keep_finished = 1000;  // finished records kept for wait/output, oldest evicted first
  std::string state_dir;        // empty: no crash-recovery files
  // Cell ids are "<id_prefix>-<our pid>-<n>": the cgroup sweeper finds a dead owner by that pid.
  std::string id_prefix = "d";
  // Be the subreaper and reaper of every child (the daemon, corral mcp). Off when another
  // component owns reaping (corral init --serve), which then hands cell leaders over through
  // ReapIfLeader.
  bool reap_orphans = true;
  int prebuilt_namespaces = 4;  // isolated cells skip creating net/IPC/UTS namespaces (0.55 ms)
};

// Whether a cell's record stays after it ended (readable by wait/output until evicted), or goes
// once its done callback and waiters have run (the caller took the result from them).
enum class Retention { kKeep, kDropWhenDone };

// Why a call was refused, in words for the caller, and which JSON-RPC code fits.
struct Refusal {
  enum Kind { kOverloaded, kNotAllowed, kNotFound, kBadInput } kind;
  std::string message;
};

class Supervisor {
 public:
  using DoneCallback = std::function<void(const CellResult&)>;

  static Result<std::unique_ptr<Supervisor>> Create(EventLoop* loop, SupervisorOptions options);
  ~Supervisor();

  // Opens a cell for `caller` (or queues it while max_running cells run). `on_done` runs once
  // with the result. Returns the cell id, or why it was refused.
  std::variant<std::string, Refusal> Start(const Caller& caller, CellSpec spec,
                                           DoneCallback on_done = nullptr,
                                           Retention retention = Retention::kKeep);
  // Calls `on_done` when cell `id` is done (at once if it is). Refusal if unknown / not yours.
  // *waiter (if given) names the registration for Unwait(), 0 when it already ran.
  std::optional<Refusal> Wait(const Caller& caller, const std::string& id, DoneCallback on_done,
                              uint64_t* waiter = nullptr);
  // Drops a registration of Wait() that is no longer wanted (the caller's wait timed out).
  void Unwait(const std::string& id, uint64_t waiter);
  // Ends a cell (queued: dropped; running: TERM, grace, KILL). With sig > 0: forward sig only.
  std::optional<Refusal> Kill(const Caller& caller, const std::string& id,
                              const std::string& reason, int sig = 0);

  struct OutputChunk {
    std::string data;
    uint64_t offset = 0, next_offset = 0, total_bytes = 0;
    uint64_t kept_bytes = 0;  // all the bytes kept of the stream (total_bytes less the cap's cut)
    bool truncated = false, done = false;
    std::string state;  // as Listing::state
  };
  std::variant<OutputChunk, Refusal> Output(const Caller& caller, const std::string& id,
                                            bool stderr_stream, uint64_t offset,
                                            uint64_t max_bytes);

  struct Listing {
    std::string id;
    std::vector<std::string> argv;
    std::string state;     // queued | running | exited | timed_out | ...
    pid_t pid = 0;         // the leader's, while it runs
    pid_t leader_pid = 0;  // the leader's, kept after the end (0: never spawned)
    uid_t owner = 0;
    double age_s = 0;
    uint64_t stdout_bytes = 0, stderr_bytes = 0;  // produced so far
    bool kept = true;                             // Retention::kKeep
    std::shared_ptr<const CellResult> result;     // once done
  };
  std::vector<Listing> List(const Caller& caller) const;
  std::optional<Listing> Find(const Caller& caller, const std::string& id) const;

  // Ends every cell (reason "shutdown") and calls `then` once all are done.
  void Shutdown(std::function<void()> then);

  // For `corral init --serve`, whose InitProcess reaps every child: if pid is the leader of one
  // of our cells, reaps it through the cell's pidfd and returns true.
  bool ReapIfLeader(pid_t pid);

  const SupervisorOptions& options() const { return options_; }
  // Counters for stats and metrics.
  SupervisorStats stats() const;
  size_t running() const { return host_->running(); }
  size_t queued() const { return queue_.size(); }
  size_t max_running() const { return options_.max_running; }
  bool shutting_down() const { return shutting_down_; }
  const std::map<std::string, uint64_t>& finished_by_state() const { return by_state_; }
  int recovered_killed() const { return recovered_killed_; }
  // Hook for metrics: every finished cell, with the time its spawn took.
  std::function<void(const CellResult&)> on_cell_done;

 private:
  struct Record {
    std::string id;
    uid_t owner = 0;
    std::vector<std::string> argv;
    Retention retention = Retention::kKeep;
    Cell* cell = nullptr;                      // while running
    pid_t leader_pid = 0;                      // once spawned
    std::optional<CellSpec> queued_spec;       // while queued
    std::shared_ptr<const CellResult> result;  // once done
    std::map<uint64_t, DoneCallback> waiters;
    int64_t created_ns = 0;
  };

  Supervisor(EventLoop* loop, SupervisorOptions options)
      : loop_(loop), options_(std::move(options)) {}
  Status Recover();
  std::optional<Refusal> Admit() const;
  void Launch(Record* rec, CellSpec spec);
  void OnDone(const std::string& id, const CellResult& result);
  void StartQueued();
  Record* Lookup(const Caller& caller, const std::string& id, Refusal* why);
  const Record* Lookup(const Caller& caller, const std::string& id, Refusal* why) const;
  bool NeedsStateFiles() const;
  void WriteStateFile(const Record& rec, pid_t pid);
  void RemoveStateFile(const std::string& id);

  EventLoop* loop_;
  SupervisorOptions options_;
  std::unique_ptr<CellHost> host_;
  std::map<std::string, std::unique_ptr<Record>> records_;
  std::deque<std::string> queue_;     // ids waiting for a slot, FIFO
  std::deque<std::string> finished_;  // ids done, oldest first, for retention
  std::map<std::string, uint64_t> by_state_;
  uint64_t seq_ = 0;
  uint64_t waiter_seq_ = 0;
  int recovered_killed_ = 0;
  bool shutting_down_ = false;
  // The host files Admit reads for every cell, opened once (a pread at offset 0 reads them
  // afresh): 4 opens and closes of /proc and cgroup files a cell otherwise.
  struct AdmissionFiles {
    UniqueFd loadavg, pid_max, pids_max, pids_current;
  };
  mutable AdmissionFiles admission_files_;
  std::function<void()> after_shutdown_;
};

}  // namespace corral
