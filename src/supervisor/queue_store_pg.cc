// The task queue on PostgreSQL: schema, claim, heartbeat, reclaim, outcomes. The header explains
// the mechanism and its hazards; comments here say why where it is not obvious. Every statement
// is sent alone through PQexecParams (autocommit): a statement is its own transaction, so the
// multi-row changes (claim, end, reclaim) are single statements with data-modifying CTEs.
#include "supervisor/queue_store_pg.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <unordered_map>

#include "supervisor/libpq_api.h"
#include "supervisor/queue_store_common.h"
#include "sys/clock.h"
#include "sys/pidfd.h"
#include "sys/proc.h"

namespace corral {
namespace {
// Set before the first connection (LoadLibPq succeeded), constant afterwards.
const LibPqApi* g_pq = nullptr;
const LibPqApi* pq() { return g_pq; }
}  // namespace

namespace {

constexpr int64_t kTickNs = 100 * kNsPerMs;
constexpr int64_t kRefusedRetryNs = 500 * kNsPerMs;
constexpr int64_t kMaxClaim = 64;
// Without --retain, gone files (other daemons pruned our tasks) are drained as if the retention
// were this: every 5 s.
constexpr int64_t kDrainOnlyMs = 50 * 1000;
// Milliseconds of the database's clock: leases compare against one clock, whatever the hosts' say.
#define NOW_MS "(extract(epoch from clock_timestamp()) * 1000)::bigint"

using queue::TaskId;

// The conninfo as it may be shown in a message: a password in it (URI user:PASSWORD@ or
// password=...) becomes "***".
std::string Redacted(std::string c) {
  if (size_t scheme = c.find("://"); scheme != std::string::npos) {
    size_t at = c.find('@', scheme + 3), colon = c.find(':', scheme + 3);
    if (at != std::string::npos && colon != std::string::npos && colon < at) {
      c.replace(colon + 1, at - colon - 1, "***");
    }
  }
  for (size_t p = c.find("password="); p != std::string::npos; p = c.find("password=", p + 1)) {
    size_t end = c.find_first_of(" &", p);
    c.replace(p + 9, (end == std::string::npos ? c.size() : end) - p - 9, "***");
  }
  return c;
}

using Param = std::optional<std::string>;
Param P(int64_t v) { return std::to_string(v); }
Param P(const std::string& v) { return v; }
Param Null() { return std::nullopt; }

// `s` as an element of a PostgreSQL array literal: quoted, with " and \ escaped.
std::string ArrayText(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\';
    out += ch;
  }
  return out + "\"";
}

}  // namespace

// A result: rows of text values. ok() false: the statement failed (message in error()).
class PgRes {
 public:
  explicit PgRes(PGresult* r) : r_(r) {}
  PgRes(PgRes&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
  ~PgRes() {
    if (r_ != nullptr) pq()->PQclear(r_);
  }
  bool ok() const {
    auto s = pq()->PQresultStatus(r_);
    return s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK;
  }
  // No result: the connection is down (see Conn::Exec).
  std::string error() const {
    return r_ ? pq()->PQresultErrorMessage(r_) : "not connected to PostgreSQL\n";
  }
  int rows() const { return pq()->PQntuples(r_); }
  bool Null(int row, int col) const { return pq()->PQgetisnull(r_, row, col) != 0; }
  std::string Text(int row, int col) const { return pq()->PQgetvalue(r_, row, col); }
  int64_t Int(int row, int col) const {
    return std::strtoll(pq()->PQgetvalue(r_, row, col), nullptr, 10);
  }
  bool Bool(int row, int col) const { return pq()->PQgetvalue(r_, row, col)[0] == 't'; }

 private:
  PGresult* r_;
};

class PgTaskQueue::Conn {
 public:
  ~Conn() {
    if (c_ != nullptr) pq()->PQfinish(c_);
  }
  // Defaults that bound how long a dead or silent server can stall the loop (connect: 5 s; an
  // unanswered query: ~11 s of keepalives; unacknowledged data: 10 s), and no JIT: the claim's
  // estimated cost passes jit_above_cost once the queue holds some thousands of tasks, and every
  // claim then spent ~15 ms compiling a plan that runs in 1 ms (at 10,000 queued tasks, a third
  // of the throughput). Custom plans for the prepared statements (see Exec): the claim's best
  // plan depends on its parameters, and a generic one cost a single daemon a sixth of its
  // throughput. The conninfo's own values win: it is expanded after them (its `options` replace
  // this one).
  static Result<std::unique_ptr<Conn>> Open(const std::string& conninfo) {
    const char* keys[] = {"connect_timeout",
                          "keepalives_idle",
                          "keepalives_interval",
                          "keepalives_count",
                          "tcp_user_timeout",
                          "options",
                          "dbname",
                          nullptr};
    const char* values[] = {"5",
                            "5",
                            "2",
                            "3",
                            "10000",
                            "-c jit=off -c plan_cache_mode=force_custom_plan",
                            conninfo.c_str(),
                            nullptr};
    std::string why;
    if ((g_pq = LoadLibPq(&why)) == nullptr) return Error::Msg("--queue postgres: " + why);
    auto c = std::make_unique<Conn>();
    c->c_ = pq()->PQconnectdbParams(keys, values, /*expand_dbname=*/1);
    if (c->c_ == nullptr || pq()->PQstatus(c->c_) != CONNECTION_OK) {
      std::string msg = c->c_ ? pq()->PQerrorMessage(c->c_) : "out of memory";
      while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
      return Error::Msg("--queue: cannot connect to PostgreSQL '" + Redacted(conninfo) +
                        "': " + msg);
    }
    return c;
  }
  // One statement, one round trip. Each distinct statement is prepared once per connection (the
  // server then skips parsing and planning it: the claim's CTEs cost more to plan than to run);
  // a statement that cannot be prepared is sent as is. A broken connection is reset
  // (reconnected, blocking) at most once a second -- its prepared statements die with it; in
  // between, statements fail at once without touching the network.
  PgRes Exec(const char* sql, const std::vector<Param>& params = {}) {
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const Param& p : params) values.push_back(p ? p->c_str() : nullptr);
    if (pq()->PQstatus(c_) != CONNECTION_OK) {
      if (MonotonicNs() - last_reset_ns_ < kNsPerSec) return PgRes(nullptr);
      last_reset_ns_ = MonotonicNs();
      pq()->PQreset(c_);
      prepared_.clear();
      if (pq()->PQstatus(c_) != CONNECTION_OK) return PgRes(nullptr);
      std::fprintf(stderr, "corral daemon: task queue: reconnected to PostgreSQL\n");
    }
    int n = static_cast<int>(values.size());
    auto it = prepared_.find(sql);
    if (it == prepared_.end()) {
      std::string name = "corral_" + std::to_string(prepared_.size());
      PgRes made(pq()->PQprepare(c_, name.c_str(), sql, n, nullptr));
      if (!made.ok())
        return PgRes(pq()->PQexecParams(c_, sql, n, nullptr, values.data(), nullptr, nullptr, 0));
      it = prepared_.emplace(sql, std::move(name)).first;
    }
    return PgRes(
        pq()->PQexecPrepared(c_, it->second.c_str(), n, values.data(), nullptr, nullptr, 0));
  }
  // Several statements without parameters (the schema): PQexecParams takes one at a time.
  PgRes Script(const char* sql) { return PgRes(pq()->PQexec(c_, sql)); }

 private:
  PGconn* c_ = nullptr;
  int64_t last_reset_ns_ = 0;
  std::unordered_map<std::string, std::string> prepared_;  // statement text -> its name
};

PgTaskQueue::PgTaskQueue(EventLoop* loop, Supervisor* sup, TaskQueue* owner,
                         TaskQueueOptions options, SpecBuilder builder)
    : loop_(loop),
      sup_(sup),
      owner_(owner),
      options_(std::move(options)),
      builder_(std::move(builder)) {}

PgTaskQueue::~PgTaskQueue() {
  for (EventLoop::Token t :
       {dispatch_timer_, tick_timer_, heartbeat_timer_, reclaim_timer_, prune_timer_}) {
    if (t != 0) loop_->CancelTimer(t);
  }
}

Result<std::unique_ptr<PgTaskQueue>> PgTaskQueue::Open(EventLoop* loop, Supervisor* sup,
                                                       TaskQueue* owner, TaskQueueOptions options,
                                                       SpecBuilder builder) {
  std::unique_ptr<PgTaskQueue> q(
      new PgTaskQueue(loop, sup, owner, std::move(options), std::move(builder)));
  TRY(q->Init());
  q->Reclaim();
  q->Heartbeat();
  q->Tick();
  q->Prune();
  return q;
}

Status PgTaskQueue::Init() {
  const std::string& dir = options_.state_dir;
  // One daemon per state dir: its cells, its output files and its daemon id prefix are its own.
  ASSIGN_OR_RETURN(lock_fd_, queue::LockStateDir(dir, "tasks.pg.lock"));
  ASSIGN_OR_RETURN(db_, Conn::Open(options_.postgres));
  char host[256] = "?";
  gethostname(host, sizeof host - 1);
  daemon_prefix_ = std::string(host) + ":" + dir + ":";
  daemon_id_ = daemon_prefix_ + std::to_string(getpid());
  // Two daemons starting at once would race on CREATE ... IF NOT EXISTS: serialize them. And once
  // the schema exists, touch no DDL at all: even a no-op CREATE INDEX IF NOT EXISTS takes a
  // ShareLock on its table, which deadlocks against another daemon's claim in flight.
  PgRes schema = db_->Script(
      "BEGIN; SELECT pg_advisory_xact_lock(7215201);"
      "DO $$ BEGIN IF to_regclass('groups') IS NULL THEN "
      "CREATE TABLE IF NOT EXISTS tasks ("
      " id BIGSERIAL PRIMARY KEY, owner_uid BIGINT NOT NULL, owner_gid BIGINT NOT NULL,"
      " argv TEXT NOT NULL, spec TEXT NOT NULL, grp TEXT NOT NULL, priority BIGINT NOT NULL,"
      " key TEXT, state TEXT NOT NULL, attempts BIGINT NOT NULL, max_attempts BIGINT NOT NULL,"
      " backoff_ms BIGINT NOT NULL, not_before_ms BIGINT NOT NULL, created_ms BIGINT NOT NULL,"
      " updated_ms BIGINT NOT NULL, cancel_requested BOOLEAN NOT NULL DEFAULT false,"
      " UNIQUE(owner_uid, key));"
      "CREATE INDEX IF NOT EXISTS tasks_ready ON tasks(priority DESC, id) WHERE state = 'queued';"
      "CREATE INDEX IF NOT EXISTS tasks_state ON tasks(state);"
      "CREATE TABLE IF NOT EXISTS attempts ("
      " task_id BIGINT NOT NULL REFERENCES tasks(id), n BIGINT NOT NULL, state TEXT NOT NULL,"
      " started_ms BIGINT NOT NULL, ended_ms BIGINT, exit_code BIGINT, signal TEXT, reason TEXT,"
      " error TEXT, daemon_pid BIGINT NOT NULL, daemon_id TEXT NOT NULL, lease_until_ms BIGINT,"
      " cell_id TEXT, leader_pid BIGINT, leader_starttime BIGINT, stdout_path TEXT,"
      " stderr_path TEXT, stdout_bytes BIGINT, stderr_bytes BIGINT, stdout_truncated BIGINT,"
      " stderr_truncated BIGINT, PRIMARY KEY(task_id, n));"
      "CREATE INDEX IF NOT EXISTS attempts_running ON attempts(daemon_id) WHERE state = 'running';"
      "CREATE TABLE IF NOT EXISTS groups (name TEXT PRIMARY KEY, parallel BIGINT NOT NULL);"
      // --retain's scan: finished tasks by end (a task enters it once, when it finishes).
      "CREATE INDEX IF NOT EXISTS tasks_ended ON tasks(updated_ms)"
      " WHERE state NOT IN ('queued', 'running');"
      "END IF;"
      // Added with --retain: a database made before gets it here, once (a new table locks none
      // of the others). Its scan then goes without tasks_ended, which is only an index.
      "IF to_regclass('gone_files') IS NULL THEN "
      "CREATE TABLE gone_files (id BIGSERIAL PRIMARY KEY, owner TEXT NOT NULL, path TEXT NOT NULL);"
      "CREATE INDEX gone_files_owner ON gone_files(owner);"
      "END IF; END $$;"
      "COMMIT;");
  if (!schema.ok()) return Error::Msg("--queue: creating the schema failed: " + schema.error());
  // Our previous incarnation (same host and state dir: we hold its flock) is dead, and
  // Supervisor::Create has torn down its cells: its attempts are crashed now, not at lease expiry.
  PgRes mine = db_->Exec(
      "WITH d AS (UPDATE attempts SET state = 'crashed', reason = 'daemon_died', ended_ms = " NOW_MS
      " WHERE state = 'running' AND left(daemon_id, length($1)) = $1 RETURNING task_id, n)"
      " UPDATE tasks t SET state = CASE WHEN t.cancel_requested THEN 'cancelled'"
      " WHEN t.attempts < t.max_attempts THEN 'queued' ELSE 'crashed' END,"
      " not_before_ms = " NOW_MS ", updated_ms = " NOW_MS
      " FROM d WHERE t.id = d.task_id AND t.attempts = d.n AND t.state = 'running' RETURNING t.id",
      {P(daemon_prefix_)});
  if (!mine.ok()) return Error::Msg("--queue: recovery failed: " + mine.error());
  recovered_crashed_ = mine.rows();
  return Ok();
}

void PgTaskQueue::ScheduleDispatch() {
  if (dispatch_timer_ != 0) return;
  dispatch_timer_ = loop_->AddTimer(MonotonicNs(), [this] {
    dispatch_timer_ = 0;
    Dispatch();
  });
}

void PgTaskQueue::LoadLimits() {
  PgRes g = db_->Exec("SELECT name, parallel FROM groups");
  if (!g.ok()) return;
  limits_.clear();
  for (int i = 0; i < g.rows(); ++i) limits_[g.Text(i, 0)] = g.Int(i, 1);
}

void PgTaskQueue::Tick() {
  tick_timer_ = loop_->AddTimer(MonotonicNs() + kTickNs, [this] { Tick(); });
  // Another daemon's `group set` reaches this one within a second (it picks the claim's mode).
  if (++ticks_ % 10 == 1) LoadLimits();
  Dispatch();
  if (waiters_.empty()) return;
  std::string ids = "{";
  for (const auto& [id, ws] : waiters_) ids += (ids.size() > 1 ? "," : "") + std::to_string(id);
  ids += "}";
  // Finished, or gone already (another daemon's --retain may prune it before this tick looks).
  PgRes r = db_->Exec(
      "SELECT w FROM unnest($1::bigint[]) w WHERE NOT EXISTS (SELECT 1 FROM tasks"
      " WHERE id = w AND state IN ('queued', 'running'))",
      {P(ids)});
  if (!r.ok()) return;
  for (int i = 0; i < r.rows(); ++i) NotifyWaiters(r.Int(i, 0));
}

void PgTaskQueue::Dispatch() {
  if (dispatching_ || sup_->shutting_down() || MonotonicNs() < refused_until_ns_) return;
  size_t busy = sup_->running() + sup_->queued();
  if (busy >= sup_->max_running()) return;
  int64_t want = std::min<int64_t>(kMaxClaim, static_cast<int64_t>(sup_->max_running() - busy));
  if (options_.parallel > 0) {
    want = std::min<int64_t>(want, options_.parallel - static_cast<int64_t>(running_.size()));
    if (want <= 0) return;
  }
  // Group limits count committed running rows. Where a limit exists, claims of all daemons are
  // serialized by a transaction-scoped advisory lock and take one task per statement, so that
  // each claim sees the others' (2 more round trips per claim; none without limits).
  bool limited = std::any_of(limits_.begin(), limits_.end(), [](auto& l) { return l.second > 0; });
  dispatching_ = true;
  std::vector<int64_t> claimed;
  if (limited) {
    PgRes begin = db_->Exec("BEGIN");
    PgRes lock = db_->Exec("SELECT pg_advisory_xact_lock(7215202)");
    if (!begin.ok() || !lock.ok()) {
      if (!claim_failing_) {
        std::fprintf(stderr, "corral daemon: task queue: claim failed: %s",
                     (begin.ok() ? lock : begin).error().c_str());
      }
      claim_failing_ = true;
      (void)db_->Exec("ROLLBACK");
      dispatching_ = false;
      return;
    }
  }
  bool failed = false;
  for (int64_t round = 0; round < (limited ? want : 1); ++round) {
    PgRes r = db_->Exec(
        "WITH c AS (SELECT id FROM tasks WHERE state = 'queued' AND not_before_ms <= " NOW_MS
        " AND grp NOT IN (SELECT g.name FROM groups g WHERE g.parallel > 0 AND g.parallel <="
        " (SELECT count(*) FROM tasks r WHERE r.state = 'running' AND r.grp = g.name))"
        " ORDER BY priority DESC, id LIMIT $1 FOR UPDATE SKIP LOCKED),"
        " u AS (UPDATE tasks t SET state = 'running', attempts = t.attempts + 1,"
        " updated_ms = " NOW_MS
        " FROM c WHERE t.id = c.id RETURNING t.id, t.owner_uid,"
        " t.owner_gid, t.grp, t.spec, t.attempts, t.max_attempts, t.backoff_ms,"
        " " NOW_MS
        " - t.not_before_ms AS waited_ms),"
        " i AS (INSERT INTO attempts (task_id, n, state, started_ms, daemon_pid, daemon_id,"
        " lease_until_ms) SELECT id, attempts, 'running', " NOW_MS ", $2, $3, " NOW_MS
        " + $4 FROM u) SELECT * FROM u ORDER BY id",
        {P(limited ? 1 : want), P(static_cast<int64_t>(getpid())), P(daemon_id_),
         P(options_.lease_ms)});
    if (!r.ok()) {
      if (!claim_failing_) {
        std::fprintf(stderr, "corral daemon: task queue: claim failed: %s", r.error().c_str());
      }
      claim_failing_ = true;
      failed = true;
      break;
    }
    if (claim_failing_) {
      std::fprintf(stderr, "corral daemon: task queue: claims work again\n");
      claim_failing_ = false;
    }
    for (int i = 0; i < r.rows(); ++i) {
      auto run = std::make_unique<Running>();
      run->id = r.Int(i, 0);
      run->owner.uid = static_cast<uid_t>(r.Int(i, 1));
      run->owner.gid = static_cast<gid_t>(r.Int(i, 2));
      run->group = r.Text(i, 3);
      run->spec_json = r.Text(i, 4);
      run->n = r.Int(i, 5);
      run->max_attempts = r.Int(i, 6);
      run->backoff_ms = r.Int(i, 7);
      run->waited_ms = std::max<int64_t>(0, r.Int(i, 8));
      run->claimed_ns = MonotonicNs();
      claimed.push_back(run->id);
      running_[run->id] = std::move(run);
    }
    if (r.rows() == 0) break;
  }
  // A failed statement aborts the whole transaction (and its COMMIT then rolls back): none of
  // its claims is durable, so none of their cells may start.
  if (limited && (failed || !db_->Exec("COMMIT").ok())) {
    // The claims are not durable: forget them, start no cell (the rows were rolled back).
    (void)db_->Exec("ROLLBACK");
    for (int64_t id : claimed) running_.erase(id);
    claimed.clear();
  }
  std::vector<CellIdentity> started;
  for (int64_t id : claimed) StartAttempt(id, &started);
  RecordIdentities(started);
  dispatching_ = false;
}

// One statement for a whole claim's cells, not one per task: on a busy queue it was a third of
// the round trips (and of the commits) per task.
void PgTaskQueue::RecordIdentities(const std::vector<CellIdentity>& started) {
  if (started.empty()) return;
  std::string ids = "{", ns = "{", cells = "{", pids = "{", starts = "{";
  for (const CellIdentity& c : started) {
    const char* sep = ids.size() > 1 ? "," : "";
    ids += sep + std::to_string(c.id);
    ns += sep + std::to_string(c.n);
    cells += sep + ArrayText(c.cell);
    pids += sep + (c.pid > 0 ? std::to_string(c.pid) : "NULL");
    starts += sep + (c.starttime > 0 ? std::to_string(c.starttime) : "NULL");
  }
  // The identity is informative here (teardown is by this host's Supervisor records): a failure
  // to write it is not worth dying for.
  (void)db_->Exec(
      "UPDATE attempts a SET cell_id = v.cell, leader_pid = v.pid, leader_starttime = v.st"
      " FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[])"
      " AS v(task_id, n, cell, pid, st)"
      " WHERE a.task_id = v.task_id AND a.n = v.n AND a.daemon_id = $6",
      {P(ids + "}"), P(ns + "}"), P(cells + "}"), P(pids + "}"), P(starts + "}"), P(daemon_id_)});
}

void PgTaskQueue::StartAttempt(int64_t id, std::vector<CellIdentity>* started) {
  auto it = running_.find(id);
  if (it == running_.end()) return;
  Running* run = it->second.get();
  int64_t n = run->n;
  if (owner_->on_attempt_started) owner_->on_attempt_started(run->waited_ms / 1000.0);
  auto cell = queue::AttemptCell(builder_, run->spec_json, run->owner, id, n);
  if (auto* failed = std::get_if<CellResult>(&cell)) return OnAttemptDone(id, n, *failed);
  CellSpec spec = std::move(std::get<CellSpec>(cell));
  auto cell_or = sup_->Start(run->owner, std::move(spec),
                             [this, id, n](const CellResult& r) { OnAttemptDone(id, n, r); });
  if (auto* refusal = std::get_if<Refusal>(&cell_or)) {
    // Not an attempt: the cell never existed. Back to the queue for any daemon (if this fails,
    // the unrenewed lease expires and the reclaim re-queues it).
    (void)db_->Exec(
        "WITH d AS (DELETE FROM attempts WHERE task_id = $1 AND n = $2 AND daemon_id = $3"
        " AND state = 'running' RETURNING task_id) UPDATE tasks SET state = 'queued',"
        " attempts = $2 - 1, updated_ms = " NOW_MS " FROM d WHERE tasks.id = d.task_id",
        {P(id), P(n), P(daemon_id_)});
    running_.erase(id);
    std::fprintf(stderr, "corral daemon: task queue: %s: %s; retrying\n", TaskId(id).c_str(),
                 refusal->message.c_str());
    refused_until_ns_ = MonotonicNs() + kRefusedRetryNs;
    return;
  }
  run->cell_id = std::get<std::string>(cell_or);
  CellIdentity c{id, n, run->cell_id};
  if (auto l = sup_->Find(Caller::System(), run->cell_id)) c.pid = l->pid;
  if (auto st = c.pid > 0 ? ReadProcStat(static_cast<pid_t>(c.pid)) : std::nullopt) {
    c.starttime = static_cast<int64_t>(st->starttime_ticks);
  }
  started->push_back(std::move(c));
}

void PgTaskQueue::OnAttemptDone(int64_t id, int64_t n, const CellResult& r) {
  auto it = running_.find(id);
  if (it == running_.end() || it->second->n != n) return;
  std::unique_ptr<Running> run = std::move(it->second);
  running_.erase(it);
  if (run->lost) return;  // reclaimed (or unrenewable): another daemon owns the task now
  bool shutdown = r.state == CellState::kCancelled && r.reason == "shutdown";
  std::string outcome = queue::AttemptOutcome(r, run->cancel_requested);
  // Output first (files), then the row that points at them.
  std::string out_path, err_path;
  queue::WriteAttemptOutput(options_.state_dir, id, n, r, &out_path, &err_path);
  if (owner_->on_attempt_done && r.state != CellState::kFailedToStart) {
    owner_->on_attempt_done(r.duration_s);
  }
  std::string task_state;
  int64_t attempts = n, delay = 0;
  if (shutdown && !run->cancel_requested) {
    task_state = "queued";  // the daemon is stopping: not the task's fault, does not count
    attempts = n - 1;
  } else if (outcome == "succeeded" || outcome == "cancelled" || n >= run->max_attempts) {
    task_state = outcome;
  } else {
    task_state = "queued";
    delay = queue::RetryDelayMs(run->backoff_ms, n);
  }
  // Attempt and task in one statement (one transaction); only while the attempt is still ours.
  PgRes w = db_->Exec(
      "WITH a AS (UPDATE attempts SET state = $3, ended_ms = " NOW_MS
      ", exit_code = $4,"
      " signal = $5, reason = $6, error = $7, stdout_path = $8, stderr_path = $9,"
      " stdout_bytes = $10, stderr_bytes = $11, stdout_truncated = $12, stderr_truncated = $13"
      " WHERE task_id = $1 AND n = $2 AND daemon_id = $14 AND state = 'running'"
      " RETURNING task_id) UPDATE tasks t SET state = $15, attempts = $16,"
      " not_before_ms = " NOW_MS " + $17, updated_ms = " NOW_MS
      " FROM a WHERE t.id = a.task_id RETURNING t.id",
      {P(id), P(n), P(shutdown ? std::string("crashed") : outcome),
       r.exit_code ? P(static_cast<int64_t>(*r.exit_code)) : Null(),
       r.signal ? P(SignalName(*r.signal)) : Null(), r.reason.empty() ? Null() : P(r.reason),
       r.error.empty() ? Null() : P(r.error), out_path.empty() ? Null() : P(out_path),
       err_path.empty() ? Null() : P(err_path), P(static_cast<int64_t>(r.stdout_bytes)),
       P(static_cast<int64_t>(r.stderr_bytes)), P(r.stdout_truncated ? 1 : 0),
       P(r.stderr_truncated ? 1 : 0), P(daemon_id_), P(task_state), P(attempts), P(delay)});
  if (!w.ok()) {
    // Unrecorded, the attempt stays `running` under this daemon's lease, which nobody renews
    // now that the cell is gone: after it expires, any daemon re-queues the task (at least once).
    std::fprintf(stderr, "corral daemon: task queue: recording the end of %s failed: %s",
                 TaskId(id).c_str(), w.error().c_str());
    return;
  }
  if (w.rows() == 0) {
    std::fprintf(stderr,
                 "corral daemon: task queue: %s attempt %lld ended after its lease was lost\n",
                 TaskId(id).c_str(), static_cast<long long>(n));
    // No row names these files (the attempt is crashed, or pruned already): nothing would ever
    // remove them.
    queue::RemoveOutputFiles(options_.state_dir, {out_path, err_path});
  }
  for (const Reply& reply : run->cancel_replies) reply(TaskJson(id, false));
  if (task_state != "queued") NotifyWaiters(id);
  ScheduleDispatch();
}

void PgTaskQueue::LoseAttempt(Running* run, const char* why) {
  if (run->lost) return;
  run->lost = true;
  std::fprintf(stderr, "corral daemon: task queue: %s attempt %lld: %s; killing its cell\n",
               TaskId(run->id).c_str(), static_cast<long long>(run->n), why);
  if (!run->cell_id.empty()) (void)sup_->Kill(Caller::System(), run->cell_id, "lease_lost");
}

void PgTaskQueue::Heartbeat() {
  heartbeat_timer_ =
      loop_->AddTimer(MonotonicNs() + options_.lease_ms * kNsPerMs / 3, [this] { Heartbeat(); });
  if (running_.empty()) return;
  PgRes r = db_->Exec("UPDATE attempts a SET lease_until_ms = " NOW_MS
                      " + $2 FROM tasks t"
                      " WHERE a.daemon_id = $1 AND a.state = 'running' AND t.id = a.task_id"
                      " RETURNING a.task_id, a.n, t.cancel_requested",
                      {P(daemon_id_), P(options_.lease_ms)});
  std::map<int64_t, std::pair<int64_t, bool>> renewed;
  if (r.ok()) {
    for (int i = 0; i < r.rows(); ++i) renewed[r.Int(i, 0)] = {r.Int(i, 1), r.Bool(i, 2)};
  } else {
    std::fprintf(stderr, "corral daemon: task queue: lease renewal failed: %s", r.error().c_str());
  }
  // Kill may end an attempt (and erase it) before it returns: walk a copy of the ids.
  std::vector<int64_t> ids;
  for (const auto& [id, run] : running_) ids.push_back(id);
  for (int64_t id : ids) {
    auto it = running_.find(id);
    if (it == running_.end()) continue;
    Running* run = it->second.get();
    auto got = renewed.find(id);
    if (got == renewed.end() || got->second.first != run->n) {
      // Claimed after the UPDATE's snapshot? Then it is younger than a lease: keep it.
      if (r.ok() && MonotonicNs() - run->claimed_ns < options_.lease_ms * kNsPerMs / 3) continue;
      LoseAttempt(run, r.ok() ? "its lease was reclaimed by another daemon"
                              : "its lease could not be renewed");
    } else if (got->second.second && !run->cancel_requested && !run->cell_id.empty()) {
      run->cancel_requested = true;  // `cancel` through another daemon
      (void)sup_->Kill(Caller::System(), run->cell_id, "cancelled");
    }
  }
}

void PgTaskQueue::Reclaim() {
  reclaim_timer_ =
      loop_->AddTimer(MonotonicNs() + std::max<int64_t>(options_.lease_ms / 2, 200) * kNsPerMs,
                      [this] { Reclaim(); });
  PgRes r = db_->Exec(
      "WITH d AS (UPDATE attempts SET state = 'crashed', reason = 'lease_expired',"
      " ended_ms = " NOW_MS " WHERE state = 'running' AND lease_until_ms < " NOW_MS
      " RETURNING task_id, n) UPDATE tasks t SET state = CASE WHEN t.cancel_requested THEN"
      " 'cancelled' WHEN t.attempts < t.max_attempts THEN 'queued' ELSE 'crashed' END,"
      " not_before_ms = " NOW_MS ", updated_ms = " NOW_MS
      " FROM d WHERE t.id = d.task_id AND t.attempts = d.n AND t.state = 'running' RETURNING t.id");
  if (r.ok() && r.rows() > 0) {
    std::fprintf(stderr,
                 "corral daemon: task queue: %d attempts of other daemons' expired leases"
                 " marked crashed\n",
                 r.rows());
  }
  PgRes c = db_->Exec("SELECT state, count(*) FROM tasks GROUP BY state");
  if (c.ok()) {
    std::map<std::string, int64_t> now;
    for (const char* s : queue::kStates) now[s] = 0;
    for (int i = 0; i < c.rows(); ++i) now[c.Text(i, 0)] = c.Int(i, 1);
    for (const auto& [s, n] : now) {
      if (owner_->counts_[s] == n) continue;
      owner_->counts_[s] = n;
      if (owner_->on_count) owner_->on_count(s, n);
    }
  }
}

void PgTaskQueue::Prune() {
  // See the header (Retention) for who deletes rows and who unlinks files. Each statement commits
  // on its own (autocommit) before any file it names is unlinked. A daemon without --retain
  // deletes no row but still drains its gone files: other daemons may prune its tasks.
  std::vector<std::string> files;
  std::string failure;
  int64_t removed = 0;
  bool retain = options_.retention_ms > 0;
  if (retain) {
    PgRes gone = db_->Exec(
        "WITH c AS (SELECT id FROM tasks WHERE state IN ('succeeded', 'failed', 'timed_out',"
        " 'crashed', 'cancelled') AND updated_ms < " NOW_MS
        " - $1 LIMIT $3 FOR UPDATE SKIP LOCKED),"
        " a AS (DELETE FROM attempts WHERE task_id IN (SELECT id FROM c)"
        " RETURNING regexp_replace(daemon_id, '[0-9]+$', '') AS owner, stdout_path, stderr_path),"
        " f AS (SELECT owner, p FROM a CROSS JOIN LATERAL (VALUES (stdout_path), (stderr_path))"
        " v(p) WHERE p <> ''),"
        " o AS (INSERT INTO gone_files (owner, path) SELECT owner, p FROM f WHERE owner <> $2),"
        " t AS (DELETE FROM tasks WHERE id IN (SELECT id FROM c) RETURNING state)"
        " SELECT true, p FROM f WHERE owner = $2 UNION ALL SELECT false, state FROM t",
        {P(options_.retention_ms), P(daemon_prefix_), P(queue::kPruneBatch)});
    if (!gone.ok()) failure = gone.error();
    for (int i = 0; gone.ok() && i < gone.rows(); ++i) {
      if (gone.Bool(i, 0)) {
        files.push_back(gone.Text(i, 1));
        continue;
      }
      ++removed;
      // Other daemons' counts catch up at their next Reclaim.
      int64_t& count = owner_->counts_[gone.Text(i, 1)];
      if (count > 0) --count;
      if (owner_->on_count) owner_->on_count(gone.Text(i, 1), count);
    }
  }
  PgRes handed = db_->Exec(
      "DELETE FROM gone_files WHERE id IN (SELECT id FROM gone_files WHERE owner = $1"
      " LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING path",
      {P(daemon_prefix_), P(queue::kPruneBatch)});
  if (!handed.ok() && failure.empty()) failure = handed.error();
  for (int i = 0; handed.ok() && i < handed.rows(); ++i) files.push_back(handed.Text(i, 0));
  removed = std::max<int64_t>(removed, handed.ok() ? handed.rows() : 0);
  queue::RemoveOutputFiles(options_.state_dir, files);
  if (!failure.empty() && !prune_failing_) {
    std::fprintf(stderr, "corral daemon: task queue: pruning finished tasks failed: %s",
                 failure.c_str());
  }
  prune_failing_ = !failure.empty();
  int64_t next_ms = queue::NextPruneMs(retain ? options_.retention_ms : kDrainOnlyMs, removed);
  prune_timer_ = loop_->AddTimer(MonotonicNs() + next_ms * kNsPerMs, [this] { Prune(); });
}

void PgTaskQueue::NotifyWaiters(int64_t id) {
  auto it = waiters_.find(id);
  if (it == waiters_.end()) return;
  auto ws = std::move(it->second);
  waiters_.erase(it);
  Json t = TaskJson(id, true);
  for (auto& [n, w] : ws) w(t);
}

void PgTaskQueue::Submit(TaskSubmission sub, Reply reply) {
  if (!TaskQueue::ValidGroup(sub.group)) {
    return reply(Refusal{Refusal::kBadInput, "params.group: '" + sub.group +
                                                 "' is not a group name (1 to 64 of A-Z a-z 0-9 "
                                                 "_ - .)"});
  }
  if (sup_->shutting_down()) {
    return reply(Refusal{Refusal::kOverloaded, "the daemon is shutting down"});
  }
  PgRes r = db_->Exec(
      "INSERT INTO tasks (owner_uid, owner_gid, argv, spec, grp, priority, key, state, attempts,"
      " max_attempts, backoff_ms, not_before_ms, created_ms, updated_ms) VALUES ($1, $2, $3, $4,"
      " $5, $6, $7, 'queued', 0, $8, $9, " NOW_MS ", " NOW_MS ", " NOW_MS
      ") ON CONFLICT (owner_uid, key) DO NOTHING RETURNING id",
      {P(static_cast<int64_t>(sub.owner.uid)), P(static_cast<int64_t>(sub.owner.gid)),
       P(Json(sub.argv).dump()), P(sub.spec_json), P(sub.group), P(sub.priority),
       sub.key.empty() ? Null() : P(sub.key), P(sub.retries + 1), P(sub.backoff_ms)});
  if (!r.ok()) {
    return reply(
        Refusal{Refusal::kOverloaded, "the task queue's database refused the task: " + r.error()});
  }
  if (r.rows() == 1) {
    ScheduleDispatch();
    return reply(Json{{"id", TaskId(r.Int(0, 0))}, {"existing", false}});
  }
  PgRes e = db_->Exec("SELECT id FROM tasks WHERE owner_uid = $1 AND key = $2",
                      {P(static_cast<int64_t>(sub.owner.uid)), P(sub.key)});
  if (!e.ok() || e.rows() != 1) {
    return reply(Refusal{Refusal::kOverloaded, "the task queue's database: " + e.error()});
  }
  reply(Json{{"id", TaskId(e.Int(0, 0))}, {"existing", true}});
}

// Task `id` (as the caller wrote it), if it is there and the caller's: *n and *state get its
// number and state. Otherwise why not: unknown, or the database could not be asked.
std::optional<Refusal> PgTaskQueue::Lookup(const Caller& caller, const std::string& id, int64_t* n,
                                           std::string* state) {
  Refusal unknown{Refusal::kNotFound, "no task '" + id + "' (see `corral tasks`)"};
  auto parsed = TaskQueue::ParseId(id);
  if (!parsed) return unknown;
  *n = *parsed;
  PgRes q = db_->Exec("SELECT owner_uid, state FROM tasks WHERE id = $1", {P(*n)});
  if (!q.ok()) {
    std::string e = q.error();
    while (!e.empty() && e.back() == '\n') e.pop_back();
    return Refusal{Refusal::kOverloaded, "the task queue's database cannot be reached: " + e};
  }
  if (q.rows() != 1 || (!caller.root() && static_cast<uid_t>(q.Int(0, 0)) != caller.uid)) {
    return unknown;
  }
  *state = q.Text(0, 1);
  return std::nullopt;
}

PgTaskQueue::Json PgTaskQueue::TaskJson(int64_t id, bool with_attempts) {
  PgRes q = db_->Exec(
      "SELECT owner_uid, argv, grp, priority, key, state, attempts, max_attempts,"
      " backoff_ms, not_before_ms, created_ms, updated_ms FROM tasks WHERE id = $1",
      {P(id)});
  if (!q.ok() || q.rows() != 1) return Json{{"id", TaskId(id)}, {"state", "unknown"}};
  Json t = {{"id", TaskId(id)},
            {"uid", q.Int(0, 0)},
            {"argv", Json::parse(q.Text(0, 1), nullptr, false)},
            {"group", q.Text(0, 2)},
            {"priority", q.Int(0, 3)},
            {"key", q.Null(0, 4) ? Json(nullptr) : Json(q.Text(0, 4))},
            {"state", q.Text(0, 5)},
            {"attempts", q.Int(0, 6)},
            {"max_attempts", q.Int(0, 7)},
            {"retries", q.Int(0, 7) - 1},
            {"backoff_s", static_cast<double>(q.Int(0, 8)) / 1000},
            {"not_before", static_cast<double>(q.Int(0, 9)) / 1000},
            {"created", static_cast<double>(q.Int(0, 10)) / 1000},
            {"updated", static_cast<double>(q.Int(0, 11)) / 1000}};
  PgRes a = db_->Exec(
      "SELECT n, state, started_ms, ended_ms, exit_code, signal, reason, error,"
      " daemon_pid, cell_id, leader_pid, leader_starttime, stdout_path, stderr_path,"
      " stdout_bytes, stderr_bytes, stdout_truncated, stderr_truncated, daemon_id"
      " FROM attempts WHERE task_id = $1 ORDER BY n",
      {P(id)});
  Json attempts = Json::array();
  Json last;
  for (int i = 0; a.ok() && i < a.rows(); ++i) {
    auto opt_int = [&a, i](int col) {
      return a.Null(i, col) ? Json(nullptr) : Json(a.Int(i, col));
    };
    auto opt_text = [&a, i](int col) {
      return a.Null(i, col) ? Json(nullptr) : Json(a.Text(i, col));
    };
    auto opt_bool = [&a, i](int col) {
      return a.Null(i, col) ? Json(nullptr) : Json(a.Int(i, col) != 0);
    };
    Json at = {
        {"n", a.Int(i, 0)},
        {"state", a.Text(i, 1)},
        {"started", static_cast<double>(a.Int(i, 2)) / 1000},
        {"ended", a.Null(i, 3) ? Json(nullptr) : Json(static_cast<double>(a.Int(i, 3)) / 1000)},
        {"exit_code", opt_int(4)},
        {"signal", opt_text(5)},
        {"reason", opt_text(6)},
        {"error", opt_text(7)},
        {"cell",
         {{"daemon_pid", a.Int(i, 8)},
          {"daemon_id", a.Text(i, 18)},
          {"id", opt_text(9)},
          {"leader_pid", opt_int(10)},
          {"leader_starttime", opt_int(11)}}},
        {"stdout_path", opt_text(12)},
        {"stderr_path", opt_text(13)},
        {"stdout_bytes", opt_int(14)},
        {"stderr_bytes", opt_int(15)},
        {"stdout_truncated", opt_bool(16)},
        {"stderr_truncated", opt_bool(17)}};
    if (!a.Null(i, 3)) at["duration_s"] = static_cast<double>(a.Int(i, 3) - a.Int(i, 2)) / 1000;
    last = at;
    if (with_attempts) attempts.push_back(std::move(at));
  }
  queue::AddLastAttempt(&t, last, with_attempts ? &attempts : nullptr);
  return t;
}

std::variant<PgTaskQueue::Json, Refusal> PgTaskQueue::List(const Caller& caller,
                                                           const std::string& state,
                                                           const std::string& group,
                                                           int64_t limit) {
  if (!state.empty() && owner_->counts_.count(state) == 0) {
    return Refusal{Refusal::kBadInput,
                   "params.state: '" + state +
                       "' is not a task state "
                       "(queued, running, succeeded, failed, timed_out, crashed, "
                       "cancelled)"};
  }
  if (!group.empty() && !TaskQueue::ValidGroup(group)) {
    return Refusal{Refusal::kBadInput, "params.group: '" + group + "' is not a group name"};
  }
  PgRes q = db_->Exec(
      "SELECT id FROM tasks WHERE ($1 = '' OR state = $1) AND ($2 = '' OR grp = $2)"
      " AND ($3::bigint < 0 OR owner_uid = $3::bigint) ORDER BY id DESC LIMIT $4",
      {P(state), P(group), P(caller.root() ? -1 : static_cast<int64_t>(caller.uid)), P(limit)});
  Json list = Json::array();
  for (int i = 0; q.ok() && i < q.rows(); ++i) list.push_back(TaskJson(q.Int(i, 0), false));
  Json counts = Json::object();
  for (const char* s : queue::kStates) counts[s] = 0;
  PgRes c = db_->Exec(
      "SELECT state, count(*) FROM tasks WHERE ($1::bigint < 0 OR owner_uid = $1::bigint)"
      " GROUP BY state",
      {P(caller.root() ? -1 : static_cast<int64_t>(caller.uid))});
  for (int i = 0; c.ok() && i < c.rows(); ++i) counts[c.Text(i, 0)] = c.Int(i, 1);
  return Json{{"tasks", list}, {"counts", counts}};
}

std::variant<PgTaskQueue::Json, Refusal> PgTaskQueue::Get(const Caller& caller,
                                                          const std::string& id) {
  int64_t n = 0;
  std::string state;
  if (auto why = Lookup(caller, id, &n, &state)) return *why;
  return TaskJson(n, true);
}

std::optional<Refusal> PgTaskQueue::Wait(const Caller& caller, const std::string& id,
                                         std::function<void(Json)> done, uint64_t* waiter) {
  int64_t n = 0;
  std::string state;
  *waiter = 0;
  if (auto why = Lookup(caller, id, &n, &state)) return why;
  if (state == "queued" || state == "running") {
    waiters_[n].emplace(++waiter_seq_, std::move(done));
    *waiter = waiter_seq_;
    return std::nullopt;
  }
  done(TaskJson(n, true));
  return std::nullopt;
}

void PgTaskQueue::Unwait(const std::string& id, uint64_t waiter) {
  auto n = TaskQueue::ParseId(id);
  if (!n) return;
  auto it = waiters_.find(*n);
  if (it == waiters_.end()) return;
  it->second.erase(waiter);
  if (it->second.empty()) waiters_.erase(it);
}

void PgTaskQueue::Cancel(const Caller& caller, const std::string& id, Reply reply) {
  int64_t n = 0;
  std::string state;
  if (auto why = Lookup(caller, id, &n, &state)) return reply(*why);
  if (auto it = running_.find(n); it != running_.end() && !it->second->lost) {
    Running* run = it->second.get();
    run->cancel_requested = true;
    run->cancel_replies.push_back(std::move(reply));
    if (!run->cell_id.empty()) (void)sup_->Kill(Caller::System(), run->cell_id, "cancelled");
    return;
  }
  // Queued: cancelled at once. Running elsewhere: flagged; its daemon sees the flag at its next
  // heartbeat and kills the cell (or the reclaim, if that daemon is gone, says `cancelled`).
  PgRes r = db_->Exec("UPDATE tasks SET cancel_requested = true, updated_ms = " NOW_MS
                      ","
                      " state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END"
                      " WHERE id = $1 AND state IN ('queued', 'running') RETURNING state",
                      {P(n)});
  if (!r.ok()) return reply(Refusal{Refusal::kOverloaded, "task queue database: " + r.error()});
  if (r.rows() == 0) {
    return reply(Refusal{Refusal::kBadInput,
                         "task " + id + " already finished (" + state + "); nothing to cancel"});
  }
  if (r.Text(0, 0) == "cancelled") {
    NotifyWaiters(n);
    return reply(TaskJson(n, false));
  }
  int64_t tid = n;
  waiters_[tid].emplace(++waiter_seq_, [this, reply, tid](Json) { reply(TaskJson(tid, false)); });
}

void PgTaskQueue::Retry(const Caller& caller, const std::string& id, Reply reply) {
  int64_t n = 0;
  std::string state;
  if (auto why = Lookup(caller, id, &n, &state)) return reply(*why);
  PgRes r = db_->Exec(
      "UPDATE tasks SET state = 'queued', max_attempts = attempts + 1, cancel_requested = false,"
      " not_before_ms = " NOW_MS ", updated_ms = " NOW_MS
      " WHERE id = $1 AND state NOT IN ('queued', 'running') RETURNING id",
      {P(n)});
  if (!r.ok()) return reply(Refusal{Refusal::kOverloaded, "task queue database: " + r.error()});
  if (r.rows() == 0) {
    return reply(Refusal{Refusal::kBadInput, "task " + id +
                                                 " has not finished; nothing to retry "
                                                 "(cancel it first to start over)"});
  }
  ScheduleDispatch();
  reply(TaskJson(n, false));
}

std::variant<PgTaskQueue::Json, Refusal> PgTaskQueue::Output(const Caller& caller,
                                                             const std::string& id, int64_t attempt,
                                                             bool stderr_stream, uint64_t offset,
                                                             uint64_t max_bytes) {
  int64_t n = 0;
  std::string state;
  if (auto why = Lookup(caller, id, &n, &state)) return *why;
  bool task_done = state != "queued" && state != "running";
  if (attempt == 0) {
    PgRes m = db_->Exec("SELECT coalesce(max(n), 0) FROM attempts WHERE task_id = $1", {P(n)});
    attempt = m.ok() && m.rows() == 1 ? m.Int(0, 0) : 0;
    if (attempt == 0) return queue::NoAttemptYet(task_done);
  }
  PgRes q = db_->Exec(
      "SELECT state, cell_id, stdout_path, stderr_path, stdout_bytes, stderr_bytes,"
      " stdout_truncated, stderr_truncated, daemon_id FROM attempts WHERE task_id = $1 AND n = $2",
      {P(n), P(attempt)});
  if (!q.ok() || q.rows() != 1) {
    return Refusal{Refusal::kBadInput, "task " + id + " has no attempt " + std::to_string(attempt)};
  }
  Json out = {{"attempt", attempt}, {"task_done", task_done}};
  if (q.Text(0, 0) == "running") {
    auto run = running_.find(n);
    std::string cell = q.Text(0, 1);
    bool ours = run != running_.end() && run->second->cell_id == cell;
    out.update(queue::RunningOutputPage(sup_, ours ? cell : "", stderr_stream, offset, max_bytes));
    return out;
  }
  // The files live on the host whose daemon ran the attempt; elsewhere they read as empty.
  int col = stderr_stream ? 3 : 2;
  // Output files are on the host of the daemon that ran the attempt: read only our own.
  std::string path =
      q.Null(0, col) || q.Text(0, 8).rfind(daemon_prefix_, 0) != 0 ? std::string() : q.Text(0, col);
  out.update(queue::FinishedOutputPage(path, q.Null(0, col + 2) ? 0 : q.Int(0, col + 2),
                                       !q.Null(0, col + 4) && q.Int(0, col + 4) != 0, offset,
                                       max_bytes));
  return out;
}

void PgTaskQueue::SetGroup(const Caller& caller, const std::string& group, int64_t parallel,
                           Reply reply) {
  if (auto why = queue::CheckGroupSet(caller, group, TaskQueue::ValidGroup(group))) {
    return reply(*why);
  }
  PgRes r = db_->Exec(
      "INSERT INTO groups (name, parallel) VALUES ($1, $2)"
      " ON CONFLICT (name) DO UPDATE SET parallel = excluded.parallel",
      {P(group), P(parallel)});
  if (!r.ok()) return reply(Refusal{Refusal::kOverloaded, "task queue database: " + r.error()});
  limits_[group] = parallel;
  reply(Json{{"group", group}, {"parallel", parallel}});
}

PgTaskQueue::Json PgTaskQueue::Groups() {
  LoadLimits();
  std::map<std::string, std::pair<int64_t, int64_t>> seen;  // group -> (running, ready)
  PgRes r = db_->Exec(
      "SELECT grp, count(*) FILTER (WHERE state = 'running'), count(*) FILTER (WHERE state ="
      " 'queued') FROM tasks WHERE state IN ('queued', 'running') GROUP BY grp");
  for (int i = 0; r.ok() && i < r.rows(); ++i) seen[r.Text(i, 0)] = {r.Int(i, 1), r.Int(i, 2)};
  for (const auto& [g, n] : limits_) seen.emplace(g, std::make_pair(0, 0));
  Json out = Json::array();
  for (const auto& [g, rr] : seen) {
    auto lim = limits_.find(g);
    out.push_back({{"group", g},
                   {"parallel", lim == limits_.end() ? 0 : lim->second},
                   {"running", rr.first},
                   {"ready", rr.second}});
  }
  return out;
}

}  // namespace corral
