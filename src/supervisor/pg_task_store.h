// The task queue's store on PostgreSQL (docs/queue.md, "PostgreSQL"): `corral daemon --queue
// postgres://...`. Many daemons on many hosts share one database; each runs the tasks it claims
// in its own cells (task_store.h, SharedTaskStore).
//
// Mechanism:
// - Claim: one statement (so one transaction, one round trip) picks queued tasks in the queue's
//   order (kClaimOrder) with `SELECT ... FOR UPDATE SKIP LOCKED`, marks them running, and inserts
//   their attempts `running` with this daemon's id and a lease expiry (database clock, so hosts'
//   clocks may differ). The queue starts the cells only after it returns: "attempt N running" is
//   durable before any cell exists. Where a group has a limit, claims of all daemons are
//   serialized by a transaction-scoped advisory lock and take one task per statement, so that
//   each sees the others' running rows.
// - Leases: RenewLeases (the queue calls it every lease/3) renews this daemon's running attempts
//   in one UPDATE ... RETURNING; an attempt missing from the answer was reclaimed by another
//   daemon, a failed renewal loses them all -- the queue then kills those cells at once, since
//   another daemon may run the task after the lease expires; no task runs twice at once as long as
//   a cell dies within the lease's remaining 2/3 (its grace included). ReclaimExpired (every
//   lease/2, any daemon) marks attempts whose lease expired `crashed` (reason `lease_expired`) and
//   re-queues their tasks while attempts remain. Ends are recorded only while the attempt is still
//   this daemon's (EndAttempt false otherwise).
// - Recovery: cells stay local; a dead daemon's cells are torn down by its own state dir's sweeper
//   on restart, and that restart marks its previous incarnation's attempts crashed at once (same
//   host and state dir, held by the flock, so no live daemon owns them).
// - Retention: each turn one statement deletes at most 500 finished tasks ended (database clock)
//   more than the retention ago, with their attempts, picked `FOR UPDATE SKIP LOCKED`: daemons
//   pruning at once take disjoint rows, each task goes once. Output files are on the host, in the
//   state dir, of the daemon that ran the attempt, and a daemon unlinks only files of its own
//   state dir. So the prune statement also hands the file names of other daemons' attempts to
//   their owners through the `gone_files` table (owner: the daemon id up to its pid, i.e. host and
//   state dir, which outlives a restart); each daemon drains its own rows there (500 a turn,
//   deleted as it reads them) and unlinks its own files. Either way a file is unlinked only after
//   the statement that deleted its row committed: a crash in between leaves a file, never a row
//   pointing at nothing. A daemon that never comes back leaves its names in `gone_files`.
// - Every call to libpq is blocking and made from the loop's thread (no threads): each is one
//   statement, one round trip, in autocommit (so WhenDurable runs at once), meant for loopback or a
//   LAN. A database far away or stalled stalls the daemon's loop; conninfo's connect_timeout /
//   keepalives / tcp_user_timeout bound that. A broken connection is reset at most once a second.
//
// Not thread-safe: every call comes from the loop's thread.
#pragma once

#include <memory>
#include <string>

#include "supervisor/task_store.h"
#include "sys/fd.h"

namespace corral {

class PgRes;  // a libpq result (pg_task_store.cc)

class PgTaskStore : public SharedTaskStore {
 public:
  // Takes STATE/tasks.pg.lock, connects, creates the schema if needed. lease_ms: how long a claim
  // lasts without a renewal.
  static Result<std::unique_ptr<PgTaskStore>> Open(const std::string& conninfo,
                                                   const std::string& state_dir, int64_t lease_ms);
  ~PgTaskStore() override;

  // Every statement commits alone (autocommit) before it returns: nothing waits for a commit.
  void Commit() override {}
  bool Uncommitted() const override { return false; }
  void WhenDurable(std::function<void()> fn) override { fn(); }

  // Claims and leases: this daemon's attempts carry its id (host:state-dir:pid) and a lease on
  // the database's clock.
  Result<std::vector<Claimed>> Claim(int64_t max, bool one_at_a_time) override;
  void RecordIdentities(const std::vector<CellIdentity>& started) override;  // one statement
  void AbandonAttempt(int64_t id, int64_t n) override;
  bool EndAttempt(const AttemptEnd& end) override;  // only while the attempt is still ours
  Result<std::map<int64_t, Lease>> RenewLeases() override;
  void ReclaimExpired() override;
  Result<std::vector<StaleAttempt>> RecoverDeadDaemon() override;  // same host and state dir

  // Tasks of every daemon. An unreachable database makes these fail (errors name it) or read
  // as empty.
  Result<std::pair<int64_t, bool>> Insert(const NewTask& t) override;  // ON CONFLICT: the key's
  Result<std::string> Cancel(int64_t id) override;  // one running elsewhere: flagged
  Result<std::string> Requeue(int64_t id) override;
  Status SetGroupLimit(const std::string& group, int64_t parallel) override;
  Result<std::map<std::string, int64_t>> GroupLimits() override;
  std::map<std::string, std::pair<int64_t, int64_t>> GroupCounts() override;
  Result<std::optional<std::pair<uid_t, std::string>>> Head(int64_t id) override;
  std::vector<int64_t> Finished(const std::vector<int64_t>& ids) override;
  std::optional<TaskRow> Task(int64_t id) override;
  std::vector<AttemptRow> Attempts(int64_t id) override;  // files_here: ran by this daemon's dir
  std::optional<AttemptRow> Attempt(int64_t id, int64_t n) override;
  int64_t LatestAttempt(int64_t id) override;
  std::vector<int64_t> List(const std::string& state, const std::string& group, int64_t uid,
                            int64_t limit) override;
  std::map<std::string, int64_t> CountByState(int64_t uid) override;
  // Any daemon deletes rows; only the daemon that ran an attempt unlinks its files.
  Pruned Prune(int64_t retention_ms) override;

  class Conn;  // libpq connection and results (pg_task_store.cc)

 private:
  PgTaskStore(const std::string& state_dir, int64_t lease_ms);
  Status Init(const std::string& conninfo);
  AttemptRow ReadAttempt(const PgRes& a, int row) const;

  std::string state_dir_;
  int64_t lease_ms_;
  std::unique_ptr<Conn> db_;
  UniqueFd lock_fd_;
  std::string daemon_id_, daemon_prefix_;
  bool claim_failing_ = false;  // logged once per outage
  bool prune_failing_ = false;  // likewise
};

}  // namespace corral
