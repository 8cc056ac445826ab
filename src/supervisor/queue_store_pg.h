// The task queue on PostgreSQL (docs/queue.md, "PostgreSQL"): `corral daemon --queue
// postgres://...`. Many daemons on many hosts share one database; each runs the tasks it claims in
// its own cells. TaskQueue forwards every call here when its options name a conninfo.
//
// Mechanism:
// - Claim: one statement (so one transaction, one round trip) picks queued tasks with
//   `SELECT ... FOR UPDATE SKIP LOCKED`, marks them running, and inserts their attempts `running`
//   with this daemon's id and a lease expiry (database clock, so hosts' clocks may differ). Only
//   then are the cells started: "attempt N running" is durable before any cell exists.
// - Heartbeat: a loop timer (every lease/3) renews the leases of this daemon's running attempts in
//   one UPDATE ... RETURNING. An attempt missing from the answer was reclaimed by another daemon;
//   a failed renewal (lost database) loses them all. Either way the attempt's cell is killed at
//   once: another daemon may run the task after the lease expires, and no task runs twice at once
//   as long as a cell dies within the lease's remaining 2/3 (its grace included).
// - Reclaim: every daemon periodically marks attempts whose lease expired `crashed` (reason
//   `lease_expired`) and re-queues their tasks while attempts remain. Cells stay local: a dead
//   daemon's cells are torn down by its own state dir's sweeper on restart; that restart also
//   marks its previous incarnation's attempts crashed at once (same host and state dir, held by
//   the flock, so no live daemon owns them).
// - Retention (`--retain DUR`): every daemon prunes, each turn one statement that deletes at most
//   500 finished tasks ended (database clock) more than DUR ago, with their attempts, picked
//   `FOR UPDATE SKIP LOCKED`: daemons pruning at once take disjoint rows, each task goes once.
//   Output files are on the host, in the state dir, of the daemon that ran the attempt, and a
//   daemon unlinks only files of its own state dir. So the prune statement also hands the file
//   names of other daemons' attempts to their owners through the `gone_files` table (owner: the
//   daemon id up to its pid, i.e. host and state dir, which outlives a restart); each daemon
//   drains its own rows there (500 a turn, deleted as it reads them; with or without --retain of
//   its own, every 5 s then) and unlinks its own files.
//   Either way a file is unlinked only after the statement that deleted its row committed: a
//   crash in between leaves a file, never a row pointing at nothing. A daemon that never comes
//   back leaves its names in `gone_files`, as its files stay on its host.
// - Every call to libpq is blocking and made from the loop's thread (no threads): each is one
//   statement, one round trip, meant for loopback or a LAN. A database far away or stalled stalls
//   the daemon's loop; conninfo's connect_timeout / keepalives / tcp_user_timeout bound that.
// - Waiting: tasks run by other daemons are seen by polling (every 100 ms, one query for all
//   waited tasks); local ends answer at once.
//
// Not thread-safe: every call comes from the loop's thread.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "supervisor/task_queue.h"

struct pg_conn;

namespace corral {

class PgTaskQueue {
 public:
  using Json = TaskQueue::Json;
  using Reply = TaskQueue::Reply;

  static Result<std::unique_ptr<PgTaskQueue>> Open(EventLoop* loop, Supervisor* sup,
                                                   TaskQueue* owner, TaskQueueOptions options,
                                                   SpecBuilder builder);
  ~PgTaskQueue();

  void Submit(TaskSubmission sub, Reply reply);
  std::variant<Json, Refusal> List(const Caller& caller, const std::string& state,
                                   const std::string& group, int64_t limit);
  std::variant<Json, Refusal> Get(const Caller& caller, const std::string& id);
  std::optional<Refusal> Wait(const Caller& caller, const std::string& id,
                              std::function<void(Json)> done, uint64_t* waiter);
  void Unwait(const std::string& id, uint64_t waiter);
  void Cancel(const Caller& caller, const std::string& id, Reply reply);
  void Retry(const Caller& caller, const std::string& id, Reply reply);
  std::variant<Json, Refusal> Output(const Caller& caller, const std::string& id, int64_t attempt,
                                     bool stderr_stream, uint64_t offset, uint64_t max_bytes);
  void SetGroup(const Caller& caller, const std::string& group, int64_t parallel, Reply reply);
  Json Groups();
  int recovered_crashed() const { return recovered_crashed_; }

  class Conn;  // libpq connection and results (queue_store_pg.cc)

 private:
  struct Running {  // an attempt of this daemon whose cell exists or is starting
    int64_t id = 0, n = 0;
    Caller owner;
    std::string group, spec_json, cell_id;
    int64_t max_attempts = 1, backoff_ms = 0;
    int64_t claimed_ns = 0;
    int64_t waited_ms = 0;  // ready (database clock) to claimed: the wait-time metric
    bool lost = false;      // its lease is gone: another daemon may run it; record nothing
    bool cancel_requested = false;
    std::vector<Reply> cancel_replies;
  };

  PgTaskQueue(EventLoop* loop, Supervisor* sup, TaskQueue* owner, TaskQueueOptions options,
              SpecBuilder builder);
  Status Init();
  void ScheduleDispatch();
  void Dispatch();
  // Where an attempt's cell runs: written to its row after the cells of a claim started, all in
  // one statement. 0: unknown (a cell queued in the Supervisor has no leader yet).
  struct CellIdentity {
    int64_t id = 0, n = 0;
    std::string cell;
    int64_t pid = 0, starttime = 0;
  };
  void StartAttempt(int64_t id, std::vector<CellIdentity>* started);
  void RecordIdentities(const std::vector<CellIdentity>& started);
  void OnAttemptDone(int64_t id, int64_t n, const CellResult& r);
  void Tick();       // every 100 ms: dispatch, waiters of other daemons' tasks
  void Heartbeat();  // every lease/3
  void Reclaim();    // every lease/2: expired leases; counts
  void Prune();      // --retain: finished tasks past it, a bounded batch a turn; our gone files
  void LoadLimits();
  void LoseAttempt(Running* r, const char* why);
  void NotifyWaiters(int64_t id);
  std::optional<Refusal> Lookup(const Caller& caller, const std::string& id, int64_t* n,
                                std::string* state);
  Json TaskJson(int64_t id, bool with_attempts);

  EventLoop* loop_;
  Supervisor* sup_;
  TaskQueue* owner_;  // its counts and metric hooks
  TaskQueueOptions options_;
  SpecBuilder builder_;
  std::unique_ptr<Conn> db_;
  UniqueFd lock_fd_;
  std::string daemon_id_, daemon_prefix_;
  std::map<int64_t, std::unique_ptr<Running>> running_;
  std::map<std::string, int64_t> limits_;
  std::map<int64_t, std::map<uint64_t, std::function<void(Json)>>> waiters_;
  uint64_t waiter_seq_ = 0;
  int recovered_crashed_ = 0;
  EventLoop::Token dispatch_timer_ = 0, tick_timer_ = 0, heartbeat_timer_ = 0, reclaim_timer_ = 0,
                   prune_timer_ = 0;
  int64_t refused_until_ns_ = 0;
  uint64_t ticks_ = 0;
  bool dispatching_ = false;
  bool claim_failing_ = false;  // logged once per outage
  bool prune_failing_ = false;  // likewise
};

}  // namespace corral
