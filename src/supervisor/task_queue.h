// The durable task queue (DESIGN.md, "Task queue"; docs/queue.md): tasks submitted to the daemon
// are kept in a store (task_store.h: SQLite in the state dir, or PostgreSQL shared by daemons) and
// dispatched into the Supervisor's cells under per-group concurrency limits, priority first, then
// FIFO, below the Supervisor's own --max-running. Each run of a task is an attempt row with its
// outcome and its cell's identity. This class is the policy; the store keeps rows and leases.
//
// Mechanism:
// - Every state change is committed before it is acted on or acknowledged: the store's writes of
//   one loop turn are committed by a zero-delay timer (after this turn's dispatch, so that its
//   "attempt running" rows share the commit), and what depends on them -- answers to callers,
//   waiters, the cells of "attempt N running" rows -- runs through the store's WhenDurable.
//   Answers that only read (tasks, task, task_output, groups) also wait for the sync of what they
//   read (WhenDurable below).
// - With a local store (SQLite) the tasks that are not finished live in memory (ready sets per
//   group, ordered by (-priority, id)), and this class picks what runs. With a shared store
//   (PostgreSQL) other daemons add and run tasks too: the store claims them in the same order
//   (kClaimOrder), this class keeps only the attempts it runs, renews their leases every lease/3,
//   kills a cell whose lease is lost, reclaims expired leases every lease/2, and polls every
//   100 ms for the ends of tasks waited on that other daemons run.
// - An attempt's identity is the Supervisor's cell id plus the leader's (pid, starttime) and the
//   daemon's pid, never a bare PID: a PID alone may name another process by the time anyone looks.
// - Output: the cell captures stdout/stderr (capped at max_output_bytes per stream); at the end of
//   the attempt they are written to tasks/t-N.A.stdout and .stderr in the state dir (a stream
//   with no bytes gets no file), before the row that names them.
//
// Crash detection that is never wrong: one daemon at a time owns a state dir (an flock), so at
// Open() every attempt still `running` under it belongs to a daemon that died. Open() must run
// after Supervisor::Create, whose recovery and sweeper have already killed that daemon's cells; it
// marks those attempts `crashed` and re-queues their tasks while attempts remain. A leader that is
// somehow still alive (same pid and starttime) is SIGKILLed through a pidfd, and (local store) its
// task is held back until that pidfd reports the exit, so a task never runs twice at once.
//
// Outcomes: exit 0 -> succeeded; exit != 0, failed to start, memory or CPU limit -> failed;
// timeout -> timed_out; killed by a signal from outside -> crashed; `cancel` -> cancelled. failed,
// timed_out and crashed are retried after backoff_s * 2^(n-1) (at most 1 h) while attempts remain.
// An attempt ended by the daemon's own shutdown does not count: its task goes back to the queue.
//
// Retention: finished tasks, their attempts and output files go retention_ms after they ended, a
// bounded batch a turn; the files only once the rows' removal is durable.
//
// Not thread-safe: every call comes from the loop's thread.
#pragma once

#include <sys/types.h>

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
#include "supervisor/task_store.h"
#include "sys/event_loop.h"
#include "sys/fd.h"

namespace corral {

struct TaskQueueOptions {
  std::string state_dir;  // holds tasks.db, tasks.db.lock and tasks/ (attempt output)
  // Not empty: a libpq conninfo (postgres://...); the queue lives there, shared with other
  // daemons (pg_task_store.h).
  std::string postgres;
  int64_t lease_ms = 30000;  // PostgreSQL: how long a claim lasts without a heartbeat
  // Tasks of this daemon running at once, all groups together (below the daemon's own
  // --max-running); 0: no cap of the queue's own.
  int64_t parallel = 0;
  // Finished tasks, their attempts and output files are removed this long after they ended;
  // 0: kept until removed by hand. On PostgreSQL each daemon removes only its own output files
  // (pg_task_store.h).
  int64_t retention_ms = 0;
};

// The default of `corral daemon --queue-parallel`: 2 per CPU this process may use, at least 4.
int64_t DefaultQueueParallel();

// What `submit` asks for. spec_json holds the cell params of `run` (argv/shell, cwd, env,
// timeout_s, limits, ...) as submitted; at each attempt it is built for the owner as a `run` of
// the same params would be (supervisor/cell_request.h).
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

  // Opens the store named by the options (creating it), takes the state dir's lock, recovers a
  // dead daemon's attempts.
  static Result<std::unique_ptr<TaskQueue>> Open(EventLoop* loop, Supervisor* sup,
                                                 TaskQueueOptions options);
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
  struct Active {  // a task this daemon holds: local store: not finished; shared: running here
    int64_t id = 0;
    Caller owner;
    std::string group;
    int64_t priority = 0;
    std::string spec_json;
    int64_t attempts = 0;  // attempts that counted so far (the running one included)
    int64_t max_attempts = 1;
    int64_t backoff_ms = 0;
    std::string state;     // queued | running
    std::string cell_id;   // while running
    int64_t ready_ns = 0;  // when it became ready to run (wait-time metric)
    EventLoop::Token backoff_timer = 0;
    bool cancel_requested = false;
    std::vector<Reply> cancel_replies;
    int64_t claimed_ns = 0;  // shared: when this daemon claimed it
    bool lost = false;       // shared: its lease is gone, another daemon may run it; record nothing
  };

  TaskQueue(EventLoop* loop, Supervisor* sup, TaskQueueOptions options);
  static std::unique_ptr<Active> Hold(TaskRow t, const char* state);
  Status Recover();
  void LoadQueued();  // local store

  void ScheduleFlush();  // a zero-delay timer: dispatch, then commit the turn's writes
  void Prune();          // a bounded batch of finished tasks past the retention, every turn
  void Tick();           // shared: every 100 ms: dispatch, group limits, other daemons' ends
  void Heartbeat();      // shared: every lease/3
  void Reclaim();        // shared: every lease/2: expired leases, counts

  void MakeReady(Active* p);
  void ReadyAfter(Active* p, int64_t delay_ms);
  void Dispatch();
  void DispatchLocal();
  void DispatchShared();
  void StartAttempt(Active* p, std::vector<CellIdentity>* started);
  void OnAttemptDone(int64_t id, int64_t n, const CellResult& r);
  // The task leaves this daemon's hands (finished, or a shared store's); `state` final: its
  // cancel replies and waiters are answered once that is durable.
  void Forget(Active* p, const std::string& state);
  void SetTaskState(const std::string& from, const std::string& to);
  void SetCount(const std::string& state, int64_t n);
  void NotifyWaiters(int64_t id);
  void LoseAttempt(Active* p, const char* why);
  // Task `id` if it is there and the caller's: its number and state. Else why not.
  std::optional<Refusal> Lookup(const Caller& caller, const std::string& id, int64_t* n,
                                std::string* state);
  Active* Held(int64_t id);  // nullptr: not in active_
  Json TaskJson(int64_t id, bool with_attempts);

  EventLoop* loop_;
  Supervisor* sup_;
  TaskQueueOptions options_;
  std::unique_ptr<TaskStore> store_;
  LocalTaskStore* local_ = nullptr;    // set: store_ is only ours, the ready sets are here
  SharedTaskStore* shared_ = nullptr;  // set: store_ is shared; it claims for us
  std::map<int64_t, std::unique_ptr<Active>> active_;
  std::map<std::string, std::set<std::pair<int64_t, int64_t>>> ready_;  // group -> (-prio, id)
  std::map<std::string, int64_t> running_in_group_;
  std::map<std::string, int64_t> limits_;  // group -> parallel (absent or 0: none)
  std::map<int64_t, std::map<uint64_t, std::function<void(Json)>>> waiters_;
  std::map<int64_t, UniqueFd> blockers_;  // task -> pidfd of a dead daemon's leader
  std::map<int64_t, EventLoop::Token> blocker_tokens_;
  std::map<std::string, int64_t> counts_;
  int64_t starting_ = 0;          // dispatched, waiting for their "running" rows to be durable
  int64_t refused_until_ns_ = 0;  // the Supervisor refused a cell: no dispatch until then
  EventLoop::Token flush_timer_ = 0, refused_timer_ = 0, prune_timer_ = 0, tick_timer_ = 0,
                   heartbeat_timer_ = 0, reclaim_timer_ = 0;
  uint64_t waiter_seq_ = 0, ticks_ = 0;
  int recovered_crashed_ = 0;
  bool dispatching_ = false;
};

}  // namespace corral
