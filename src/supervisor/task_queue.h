// The durable task queue (DESIGN.md, "Task queue"; docs/queue.md): tasks submitted to the daemon
// are kept in SQLite (WAL) in the state dir (tasks.db) and dispatched into the Supervisor's cells
// under per-group concurrency limits, priority first, then FIFO, below the Supervisor's own
// --max-running. Each run of a task is an attempt row with its outcome and its cell's identity.
//
// Mechanism:
// - Every state change is committed before it is acted on or acknowledged. Writes go into one
//   open transaction; a zero-delay loop timer commits it (group commit: every submit, end and
//   identity of one loop turn share one commit) and the WAL is fdatasynced by a helper thread
//   (durable_sync.h) while the loop goes on; only after that sync do the actions that depend on
//   the commit run (answers to callers, waiters, the cells of "attempt N running" rows). Answers
//   that only read (tasks, task, task_output, groups) also wait for the sync of what they read.
//   A commit survives power loss, not just SIGKILL, as with synchronous=FULL (the fallback where
//   the WAL file cannot be opened).
// - Only tasks that are not finished live in memory (ready sets per group, ordered by
//   (-priority, id)); finished ones are read back from the database when asked for.
// - An attempt's identity is the Supervisor's cell id plus the leader's (pid, starttime) and the
//   daemon's pid, never a bare PID: a PID alone may name another process by the time anyone looks.
// - Output: the cell captures stdout/stderr (capped at max_output_bytes per stream); at the end of
//   the attempt they are written to tasks/t-N.A.stdout and .stderr in the state dir (a stream
//   with no bytes gets no file).
//
// Crash detection that is never wrong: one daemon at a time owns the queue (an flock on
// tasks.db.lock). So at Open() every attempt still `running` belongs to a daemon that died. Open()
// must run after Supervisor::Create, whose recovery and sweeper have already killed that daemon's
// cells; it marks those attempts `crashed` and re-queues their tasks while attempts remain. A
// leader that is somehow still alive (same pid and starttime) is SIGKILLed through a pidfd, and its
// task is held back until that pidfd reports the exit, so a task never runs twice at once.
//
// Outcomes: exit 0 -> succeeded; exit != 0, failed to start, memory or CPU limit -> failed;
// timeout -> timed_out; killed by a signal from outside -> crashed; `cancel` -> cancelled. failed,
// timed_out and crashed are retried after backoff_s * 2^(n-1) (at most 1 h) while attempts remain.
// An attempt ended by the daemon's own shutdown does not count: its task goes back to the queue.
//
// Not thread-safe: every call comes from the loop's thread.
#pragma once

#include <sys/types.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "supervisor/queue_store_common.h"
#include "supervisor/supervisor.h"
#include "sys/event_loop.h"
#include "sys/fd.h"

struct sqlite3;

namespace corral {

class PgTaskQueue;
class DurableSync;

struct TaskQueueOptions {
  std::string state_dir;  // holds tasks.db, tasks.db.lock and tasks/ (attempt output)
  // Not empty: a libpq conninfo (postgres://...); the queue lives there, shared with other
  // daemons (queue_store_pg.h), and every call below is forwarded to PgTaskQueue.
  std::string postgres;
  int64_t lease_ms = 30000;  // PostgreSQL: how long a claim lasts without a heartbeat
  // Tasks of this daemon running at once, all groups together (below the daemon's own
  // --max-running); 0: no cap of the queue's own.
  int64_t parallel = 0;
  // Finished tasks, their attempts and output files are removed this long after they ended;
  // 0: kept until removed by hand. On PostgreSQL each daemon removes only its own output files
  // (queue_store_pg.h).
  int64_t retention_ms = 0;
};

// The default of `corral daemon --queue-parallel`: 2 per CPU this process may use, at least 4.
int64_t DefaultQueueParallel();

// What `submit` asks for. spec_json holds the cell params of `run` (argv/shell, cwd, env,
// timeout_s, limits, ...); it is turned into a CellSpec at each dispatch by the SpecBuilder, with
// the owner's identity.
struct TaskSubmission {
  Caller owner;
  std::vector<std::string> argv;
  std::string spec_json;
  std::string group = "default";
  int64_t priority = 0;
  std::string key;  // empty: none; else (owner, key) is unique and a repeat returns the same task
  int64_t retries = 0;
  int64_t backoff_ms = 1000;
};

class TaskQueue {
 public:
  using Json = nlohmann::json;
  // Answer to a caller: a JSON object, or why not.
  using Reply = std::function<void(std::variant<Json, Refusal>)>;

  // Opens (creates) tasks.db, takes the queue's lock, recovers a dead daemon's attempts.
  static Result<std::unique_ptr<TaskQueue>> Open(EventLoop* loop, Supervisor* sup,
                                                 TaskQueueOptions options, SpecBuilder builder);
  // Commits whatever is pending (the loop may have stopped before the flush timer ran).
  ~TaskQueue();

  // {"id": "t-N", "existing": bool} once the task is committed.
  void Submit(TaskSubmission sub, Reply reply);
  // Tasks of the caller (root: all), newest first. state/group: filters ("" = any).
  std::variant<Json, Refusal> List(const Caller& caller, const std::string& state,
                                   const std::string& group, int64_t limit);
  // One task with its attempts.
  std::variant<Json, Refusal> Get(const Caller& caller, const std::string& id);
  // Calls `done` with the task once it is finished (at once if it is). *waiter names the
  // registration for Unwait(); 0 when it already ran.
  std::optional<Refusal> Wait(const Caller& caller, const std::string& id,
                              std::function<void(Json)> done, uint64_t* waiter);
  void Unwait(const std::string& id, uint64_t waiter);
  // Queued: cancelled at once. Running: its cell is cancelled; answered once that is recorded.
  void Cancel(const Caller& caller, const std::string& id, Reply reply);
  // A finished task runs again: back to the queue with one more attempt.
  void Retry(const Caller& caller, const std::string& id, Reply reply);
  // An attempt's output: {data, offset, next_offset, total_bytes, truncated, done, attempt,
  // task_done}. attempt 0: the latest.
  std::variant<Json, Refusal> Output(const Caller& caller, const std::string& id, int64_t attempt,
                                     bool stderr_stream, uint64_t offset, uint64_t max_bytes);
  // parallel 0: no limit for the group.
  void SetGroup(const Caller& caller, const std::string& group, int64_t parallel, Reply reply);
  Json Groups();
  // Runs fn once everything read so far is durable (at once when it is): answers built from
  // reads go out through here, so nobody is told of a state a crash could still undo.
  void WhenDurable(std::function<void()> fn);

  // Tasks by state (every state present, 0 when none), for metrics.
  const std::map<std::string, int64_t>& counts() const { return counts_; }
  int recovered_crashed() const { return recovered_crashed_; }
  // Hooks for metrics: an attempt started after waiting wait_s; an attempt ran for run_s.
  std::function<void(double wait_s)> on_attempt_started;
  std::function<void(double run_s)> on_attempt_done;
  // Every change of counts() (state, new count).
  std::function<void(const std::string& state, int64_t n)> on_count;

  // Task ids are "t-<n>"; anything else is not a task.
  static std::optional<int64_t> ParseId(const std::string& id);
  static bool ValidGroup(const std::string& group);

 private:
  friend class PgTaskQueue;  // keeps counts_ and calls the hooks in PostgreSQL mode
  struct Pending {           // a task that is not finished
    int64_t id = 0;
    Caller owner;
    std::string group;
    int64_t priority = 0;
    std::string spec_json;
    int64_t attempts = 0;  // attempts that counted so far (the running one included)
    int64_t max_attempts = 1;
    int64_t backoff_ms = 0;
    std::string state;    // queued | running
    std::string cell_id;  // while running
    int64_t attempt_started_ms = 0;
    int64_t ready_ns = 0;  // when it became ready to run (wait-time metric)
    EventLoop::Token backoff_timer = 0;
    bool blocked = false;  // a dead daemon's leader of it is still exiting
    bool cancel_requested = false;
    std::vector<Reply> cancel_replies;
  };
  class Db;

  TaskQueue(EventLoop* loop, Supervisor* sup, TaskQueueOptions options, SpecBuilder builder);
  Status Init();
  Status Recover();
  Status LoadPending();

  // Transactions: Tx() opens one if none is; AfterCommit() queues what waits for it; Commit()
  // commits and runs those; ScheduleFlush() commits from a zero-delay timer, then dispatches.
  void Tx();
  void AfterCommit(std::function<void()> fn);
  bool Commit();
  void ScheduleFlush();
  void OnSynced();
  void Prune();       // removes finished tasks past the retention, a bounded batch a turn
  void RunDurable();  // the actions whose commit is durable now

  void MakeReady(Pending* p);
  void Unready(Pending* p);
  void Dispatch();
  void StartAttempt(Pending* p);
  void OnAttemptDone(int64_t id, int64_t n, const CellResult& r);
  void Finish(Pending* p, const std::string& state);  // a terminal state, in the open transaction
  void SetTaskState(int64_t id, const std::string& from, const std::string& to);
  void NotifyWaiters(int64_t id);
  Pending* Owned(const Caller& caller, const std::string& id, Refusal* why);
  bool OwnsFinished(const Caller& caller, int64_t id, std::string* state, Refusal* why);
  Json TaskJson(int64_t id, bool with_attempts);

  EventLoop* loop_;
  Supervisor* sup_;
  TaskQueueOptions options_;
  SpecBuilder builder_;
  std::unique_ptr<Db> db_;
  UniqueFd lock_fd_;
  std::map<int64_t, std::unique_ptr<Pending>> pending_;
  std::map<std::string, std::set<std::pair<int64_t, int64_t>>> ready_;  // group -> (-prio, id)
  std::map<std::string, int64_t> running_in_group_;
  std::map<std::string, int64_t> limits_;  // group -> parallel (absent or 0: none)
  std::map<int64_t, std::map<uint64_t, std::function<void(Json)>>> waiters_;
  std::map<int64_t, UniqueFd> blockers_;  // task -> pidfd of a dead daemon's leader
  std::map<int64_t, EventLoop::Token> blocker_tokens_;
  std::map<std::string, int64_t> counts_;
  std::vector<std::function<void()>> after_commit_;
  bool in_tx_ = false;
  std::unique_ptr<DurableSync> sync_;  // null: synchronous=FULL, durable when COMMIT returns
  EventLoop::Token sync_token_ = 0;
  uint64_t commit_seq_ = 0, durable_seq_ = 0;
  int wal_frames_ = 0;  // frames in the WAL after the last commit (sqlite3_wal_hook)
  std::deque<std::pair<uint64_t, std::function<void()>>> durable_waiters_;  // (commit, action)
  int64_t starting_ = 0;  // dispatched, waiting for their "running" rows to be durable
  EventLoop::Token flush_timer_ = 0;
  EventLoop::Token retry_dispatch_timer_ = 0;
  EventLoop::Token prune_timer_ = 0;
  uint64_t waiter_seq_ = 0;
  int recovered_crashed_ = 0;
  bool dispatching_ = false;
  std::unique_ptr<PgTaskQueue> pg_;  // set: the PostgreSQL backend answers every call
};

}  // namespace corral
