// Where the task queue keeps its rows (docs/queue.md, "Stores"): the seam between the queue's
// policy (task_queue.h: ready sets, groups, backoff, waiters, counts, outcomes, cells) and its
// storage. A store only keeps rows and leases; it never starts, kills or judges a cell.
//
// Two kinds, because of who else writes:
// - LocalTaskStore (SQLite, sqlite_task_store.h): this daemon is the only writer (an flock says
//   so). The queue loads the queued tasks once and keeps the ready sets itself; it picks what runs
//   and tells the store (BeginAttempt).
// - SharedTaskStore (PostgreSQL, pg_task_store.h): daemons on many hosts write the same rows, so
//   no daemon can hold the ready set in memory. The queue asks the store to Claim up to N tasks,
//   and the store picks them in SQL in the order the queue's policy defines (kClaimOrder below:
//   highest priority, then oldest; never before not_before_ms; a group at its limit is skipped),
//   atomically across daemons. Leases make a claim expire with its daemon: the queue renews them
//   (RenewLeases) and reclaims expired ones (ReclaimExpired); what to do about a lost lease
//   (kill the cell) is the queue's.
//
// Durability: every write is committed before anything acts on it. A store either commits each
// statement before it returns (PostgreSQL) or gathers the writes of one loop turn into one
// transaction that Commit() ends and a helper thread syncs (SQLite); WhenDurable runs an action
// once every write made so far is on disk. A store that cannot write durably (SQLite: disk full)
// ends the process rather than let memory and disk disagree; one that may come back (PostgreSQL)
// returns errors, which the queue turns into refusals.
//
// Not thread-safe: every call comes from the loop's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "supervisor/supervisor.h"
#include "sys/error.h"

namespace corral {

// The claim order of the queue's policy, for stores that pick in SQL.
inline constexpr const char* kClaimOrder = "priority DESC, id";

struct TaskRow {
  int64_t id = 0;
  Caller owner;  // uid, gid
  std::string argv_json, spec_json, group;
  int64_t priority = 0;
  std::optional<std::string> key;
  std::string state;
  int64_t attempts = 0, max_attempts = 1, backoff_ms = 0;
  int64_t not_before_ms = 0, created_ms = 0, updated_ms = 0;  // wall clock (a shared store's)
};

struct AttemptRow {
  int64_t n = 0;
  std::string state;
  int64_t started_ms = 0;
  std::optional<int64_t> ended_ms, exit_code;
  std::optional<std::string> signal, reason, error;
  int64_t daemon_pid = 0;
  std::optional<std::string> daemon_id;  // shared stores: host:state-dir:pid of its daemon
  bool files_here = true;  // its output files are in this daemon's state dir (else: another host)
  std::optional<std::string> cell_id;
  std::optional<int64_t> leader_pid, leader_starttime;
  std::optional<std::string> stdout_path, stderr_path;
  std::optional<int64_t> stdout_bytes, stderr_bytes;
  std::optional<bool> stdout_truncated, stderr_truncated;
};

// The columns of TaskRow and AttemptRow (without daemon_id), in the order Read*Row reads them.
#define CORRAL_TASK_COLUMNS                                                                  \
  "id, owner_uid, owner_gid, argv, spec, grp, priority, key, state, attempts, max_attempts," \
  " backoff_ms, not_before_ms, created_ms, updated_ms"
#define CORRAL_ATTEMPT_COLUMNS                                                             \
  "n, state, started_ms, daemon_pid, ended_ms, exit_code, leader_pid, leader_starttime,"   \
  " stdout_bytes, stderr_bytes, signal, reason, error, cell_id, stdout_path, stderr_path," \
  " stdout_truncated, stderr_truncated"

// Decodes a row of CORRAL_TASK_COLUMNS from column `c` on; `r` gives Int(col), Text(col) and
// Null(col) (a statement, or one row of a result).
template <class Row>
TaskRow ReadTaskRow(const Row& r, int c = 0) {
  TaskRow t;
  t.id = r.Int(c);
  t.owner.uid = static_cast<uid_t>(r.Int(c + 1));
  t.owner.gid = static_cast<gid_t>(r.Int(c + 2));
  t.argv_json = r.Text(c + 3);
  t.spec_json = r.Text(c + 4);
  t.group = r.Text(c + 5);
  t.priority = r.Int(c + 6);
  if (!r.Null(c + 7)) t.key = r.Text(c + 7);
  t.state = r.Text(c + 8);
  t.attempts = r.Int(c + 9);
  t.max_attempts = r.Int(c + 10);
  t.backoff_ms = r.Int(c + 11);
  t.not_before_ms = r.Int(c + 12);
  t.created_ms = r.Int(c + 13);
  t.updated_ms = r.Int(c + 14);
  return t;
}

template <class Row>
AttemptRow ReadAttemptRow(const Row& r, int c = 0) {
  AttemptRow a;
  a.n = r.Int(c);
  a.state = r.Text(c + 1);
  a.started_ms = r.Int(c + 2);
  a.daemon_pid = r.Int(c + 3);
  int col = c + 4;
  for (auto f :
       {&AttemptRow::ended_ms, &AttemptRow::exit_code, &AttemptRow::leader_pid,
        &AttemptRow::leader_starttime, &AttemptRow::stdout_bytes, &AttemptRow::stderr_bytes}) {
    if (!r.Null(col)) a.*f = r.Int(col);
    ++col;
  }
  for (auto f : {&AttemptRow::signal, &AttemptRow::reason, &AttemptRow::error, &AttemptRow::cell_id,
                 &AttemptRow::stdout_path, &AttemptRow::stderr_path}) {
    if (!r.Null(col)) a.*f = r.Text(col);
    ++col;
  }
  for (auto f : {&AttemptRow::stdout_truncated, &AttemptRow::stderr_truncated}) {
    if (!r.Null(col)) a.*f = r.Int(col) != 0;
    ++col;
  }
  return a;
}

struct NewTask {
  Caller owner;
  std::string argv_json, spec_json, group;
  int64_t priority = 0;
  std::string key;  // "": none
  int64_t max_attempts = 1, backoff_ms = 0;
};

// An attempt's end and what becomes of its task, written together.
struct AttemptEnd {
  int64_t id = 0, n = 0;
  std::string attempt_state;  // succeeded | failed | timed_out | crashed | cancelled
  const CellResult* result = nullptr;
  std::string stdout_path, stderr_path;  // "": no file
  std::string task_state;                // queued (again) or a final state
  int64_t attempts = 0;                  // the task's count of attempts from now on
  int64_t delay_ms = 0;                  // queued: not before now + this
};

// Where an attempt's cell runs, recorded once its cell started. 0: unknown (no leader yet).
struct CellIdentity {
  int64_t id = 0, n = 0;
  std::string cell;
  int64_t pid = 0, starttime = 0;
};

// An attempt left `running` by a dead incarnation of this daemon; the store has marked it
// crashed and re-queued its task while attempts remain. Leader 0: unknown.
struct StaleAttempt {
  int64_t task = 0, n = 0, leader_pid = 0, leader_starttime = 0;
};

// What one turn of retention removed: the states of the tasks deleted (for the counts), the
// output files of this daemon to unlink once that is durable, and how many things the turn took
// (a full batch: look again soon).
struct Pruned {
  std::vector<std::string> states;
  std::vector<std::string> files;
  int64_t taken = 0;
};

class TaskStore {
 public:
  virtual ~TaskStore() = default;

  // Marks the running attempts of this daemon's dead incarnation (same state dir: the flock
  // says it is dead) crashed, reason daemon_died, and re-queues their tasks while attempts remain.
  virtual Result<std::vector<StaleAttempt>> RecoverDeadDaemon() = 0;
  // {id, existing}: a new queued task, or the task (owner, key) named already.
  virtual Result<std::pair<int64_t, bool>> Insert(const NewTask& t) = 0;
  // (owner uid, state) of a task; nullopt: no such task.
  virtual Result<std::optional<std::pair<uid_t, std::string>>> Head(int64_t id) = 0;
  virtual std::optional<TaskRow> Task(int64_t id) = 0;
  virtual std::vector<AttemptRow> Attempts(int64_t id) = 0;  // by n
  virtual std::optional<AttemptRow> Attempt(int64_t id, int64_t n) = 0;
  virtual int64_t LatestAttempt(int64_t id) = 0;  // 0: none
  // Ids newest first. state, group "": any; uid -1: any owner.
  virtual std::vector<int64_t> List(const std::string& state, const std::string& group, int64_t uid,
                                    int64_t limit) = 0;
  virtual std::map<std::string, int64_t> CountByState(int64_t uid) = 0;  // uid -1: all
  // A queued task becomes cancelled: "cancelled". One running on another daemon is flagged for
  // it (shared stores): "running". A finished one is left alone: "".
  virtual Result<std::string> Cancel(int64_t id) = 0;
  // A finished task back to queued with one more attempt: its state before; "": not finished.
  virtual Result<std::string> Requeue(int64_t id) = 0;
  // The attempt that never had a cell (the Supervisor refused it) is forgotten: its task is
  // queued again, attempt n not counted.
  virtual void AbandonAttempt(int64_t id, int64_t n) = 0;
  virtual void RecordIdentities(const std::vector<CellIdentity>& started) = 0;
  // false: the end could not be written (a shared store out of reach; logged): the attempt stays
  // running under a lease nobody renews, so any daemon re-queues its task once that expires. An
  // attempt no longer this daemon's (its lease was lost) is left as it is, its files removed.
  virtual bool EndAttempt(const AttemptEnd& end) = 0;
  virtual Status SetGroupLimit(const std::string& group, int64_t parallel) = 0;
  virtual Result<std::map<std::string, int64_t>> GroupLimits() = 0;
  // One turn of retention: at most queue::kPruneBatch finished tasks ended retention_ms ago.
  // retention_ms 0: none (a shared store still drains file names other daemons handed it).
  virtual Pruned Prune(int64_t retention_ms) = 0;

  // The transaction of this turn's writes ends (no-op where each statement commits alone).
  virtual void Commit() = 0;
  virtual bool Uncommitted() const = 0;
  // fn runs once every write made so far is durable (at once when it is).
  virtual void WhenDurable(std::function<void()> fn) = 0;
};

class LocalTaskStore : public TaskStore {
 public:
  virtual std::vector<TaskRow> Queued() = 0;  // by id
  // Attempt n of task id is running (its cell starts once that is durable).
  virtual void BeginAttempt(int64_t id, int64_t n) = 0;
};

class SharedTaskStore : public TaskStore {
 public:
  struct Claimed {
    TaskRow task;  // attempts: the claimed attempt's n
    int64_t waited_ms = 0;
  };
  // Up to `max` ready tasks in kClaimOrder, running now with an attempt leased to this daemon.
  // one_at_a_time: a group has a limit; claims of all daemons are serialized and each takes one
  // task per statement, so that each sees the others' running rows.
  virtual Result<std::vector<Claimed>> Claim(int64_t max, bool one_at_a_time) = 0;
  struct Lease {
    int64_t n = 0;
    bool cancel_requested = false;  // through another daemon
  };
  // Renews this daemon's running attempts' leases: task -> what was renewed.
  virtual Result<std::map<int64_t, Lease>> RenewLeases() = 0;
  // Attempts (of any daemon) whose lease expired become crashed, their tasks re-queued.
  virtual void ReclaimExpired() = 0;
  // Of `ids`, those finished or gone.
  virtual std::vector<int64_t> Finished(const std::vector<int64_t>& ids) = 0;
  // group -> (running, queued), of every daemon.
  virtual std::map<std::string, std::pair<int64_t, int64_t>> GroupCounts() = 0;
};

}  // namespace corral
