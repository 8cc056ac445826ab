// The task queue's PostgreSQL store: schema, claim, leases, reclaim, retention. The header
// explains the mechanism and its hazards; comments here say why where it is not obvious. Every
// statement is sent alone through PQexecParams (autocommit): a statement is its own transaction,
// so the multi-row changes (claim, end, reclaim) are single statements with data-modifying CTEs.
#include "supervisor/pg_task_store.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <unordered_map>

#include "supervisor/libpq_api.h"
#include "supervisor/queue_store_common.h"
#include "sys/clock.h"

namespace corral {
namespace {
// Set before the first connection (LoadLibPq succeeded), constant afterwards.
const LibPqApi* g_pq = nullptr;
const LibPqApi* pq() { return g_pq; }
}  // namespace

namespace {

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

class PgTaskStore::Conn {
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

Status PgTaskStore::Init(const std::string& conninfo) {
  const std::string& dir = state_dir_;
  // One daemon per state dir: its cells, its output files and its daemon id prefix are its own.
  ASSIGN_OR_RETURN(lock_fd_, queue::LockStateDir(dir, "tasks.pg.lock"));
  ASSIGN_OR_RETURN(db_, Conn::Open(conninfo));
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
  if (!schema.ok()) return Error::Msg("--queue: creating the schema failed: " + schema.error());
  return Ok();
}

namespace {

// One row of a result, as ReadTaskRow and ReadAttemptRow read it.
struct PgRow {
  const PgRes& r;
  int i;
  int64_t Int(int c) const { return r.Int(i, c); }
  std::string Text(int c) const { return r.Text(i, c); }
  bool Null(int c) const { return r.Null(i, c); }
};

std::string Trimmed(std::string e) {
  while (!e.empty() && (e.back() == '\n' || e.back() == ' ')) e.pop_back();
  return e;
}

// The statement that marks the running attempts matching `where` crashed with `reason`, and
// re-queues their tasks while attempts remain (cancelled if a cancel was asked for); it returns
// (task, n, leader pid, leader starttime) per task it moved.
std::string CrashSql(const char* reason, const std::string& where) {
  return std::string("WITH d AS (UPDATE attempts SET state = 'crashed', reason = '") + reason +
         "', ended_ms = " NOW_MS " WHERE state = 'running' AND " + where +
         " RETURNING task_id, n, coalesce(leader_pid, 0) AS pid,"
         " coalesce(leader_starttime, 0) AS st)"
         " UPDATE tasks t SET state = CASE WHEN t.cancel_requested THEN 'cancelled'"
         " WHEN t.attempts < t.max_attempts THEN 'queued' ELSE 'crashed' END,"
         " not_before_ms = " NOW_MS ", updated_ms = " NOW_MS
         " FROM d WHERE t.id = d.task_id AND t.attempts = d.n AND t.state = 'running'"
         " RETURNING t.id, d.n, d.pid, d.st";
}

Error DbError(const std::string& what, const PgRes& r) {
  return Error::Msg(what + Trimmed(r.error()));
}

}  // namespace

PgTaskStore::PgTaskStore(const std::string& state_dir, int64_t lease_ms)
    : state_dir_(state_dir), lease_ms_(lease_ms) {}

PgTaskStore::~PgTaskStore() = default;

Result<std::unique_ptr<PgTaskStore>> PgTaskStore::Open(const std::string& conninfo,
                                                       const std::string& state_dir,
                                                       int64_t lease_ms) {
  std::unique_ptr<PgTaskStore> s(new PgTaskStore(state_dir, lease_ms));
  TRY(s->Init(conninfo));
  return s;
}

Result<std::vector<StaleAttempt>> PgTaskStore::RecoverDeadDaemon() {
  // Our previous incarnation (same host and state dir: we hold its flock) is dead, and
  // Supervisor::Create has torn down its cells: its attempts are crashed now, not at lease expiry.
  static const std::string sql = CrashSql("daemon_died", "left(daemon_id, length($1)) = $1");
  PgRes mine = db_->Exec(sql.c_str(), {P(daemon_prefix_)});
  if (!mine.ok()) return DbError("--queue: recovery failed: ", mine);
  std::vector<StaleAttempt> out;
  for (int i = 0; i < mine.rows(); ++i) {
    out.push_back({mine.Int(i, 0), mine.Int(i, 1), mine.Int(i, 2), mine.Int(i, 3)});
  }
  return out;
}

Result<std::vector<SharedTaskStore::Claimed>> PgTaskStore::Claim(int64_t max, bool one_at_a_time) {
  auto failed = [this](const PgRes& r) {
    if (!claim_failing_) {
      std::fprintf(stderr, "corral daemon: task queue: claim failed: %s", r.error().c_str());
    }
    claim_failing_ = true;
    return DbError("claim: ", r);
  };
  if (one_at_a_time) {
    PgRes begin = db_->Exec("BEGIN");
    PgRes lock = db_->Exec("SELECT pg_advisory_xact_lock(7215202)");
    if (!begin.ok() || !lock.ok()) {
      (void)db_->Exec("ROLLBACK");
      return failed(begin.ok() ? lock : begin);
    }
  }
  std::vector<Claimed> claimed;
  for (int64_t round = 0; round < (one_at_a_time ? max : 1); ++round) {
    PgRes r = db_->Exec(
        "WITH c AS (SELECT id FROM tasks WHERE state = 'queued' AND not_before_ms <= " NOW_MS
        " AND grp NOT IN (SELECT g.name FROM groups g WHERE g.parallel > 0 AND g.parallel <="
        " (SELECT count(*) FROM tasks r WHERE r.state = 'running' AND r.grp = g.name))"
        " ORDER BY priority DESC, id LIMIT $1 FOR UPDATE SKIP LOCKED),"
        " u AS (UPDATE tasks t SET state = 'running', attempts = t.attempts + 1,"
        " updated_ms = " NOW_MS " FROM c WHERE t.id = c.id RETURNING t.*, " NOW_MS
        " - t.not_before_ms AS waited_ms),"
        " i AS (INSERT INTO attempts (task_id, n, state, started_ms, daemon_pid, daemon_id,"
        " lease_until_ms) SELECT id, attempts, 'running', " NOW_MS ", $2, $3, " NOW_MS
        " + $4 FROM u) SELECT " CORRAL_TASK_COLUMNS ", waited_ms FROM u ORDER BY id",
        {P(one_at_a_time ? 1 : max), P(static_cast<int64_t>(getpid())), P(daemon_id_),
         P(lease_ms_)});
    if (!r.ok()) {
      // A failed statement aborts the whole transaction (and its COMMIT then rolls back): none
      // of its claims is durable, so none of their cells may start.
      if (one_at_a_time) (void)db_->Exec("ROLLBACK");
      return failed(r);
    }
    for (int i = 0; i < r.rows(); ++i) {
      claimed.push_back({ReadTaskRow(PgRow{r, i}), std::max<int64_t>(0, r.Int(i, 15))});
    }
    if (r.rows() == 0) break;
  }
  if (one_at_a_time) {
    if (PgRes c = db_->Exec("COMMIT"); !c.ok()) {
      (void)db_->Exec("ROLLBACK");
      return failed(c);
    }
  }
  if (claim_failing_) {
    std::fprintf(stderr, "corral daemon: task queue: claims work again\n");
    claim_failing_ = false;
  }
  return claimed;
}

// One statement for a whole claim's cells, not one per task: on a busy queue it was a third of
// the round trips (and of the commits) per task.
void PgTaskStore::RecordIdentities(const std::vector<CellIdentity>& started) {
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

void PgTaskStore::AbandonAttempt(int64_t id, int64_t n) {
  // If this fails, the unrenewed lease expires and the reclaim re-queues the task.
  (void)db_->Exec(
      "WITH d AS (DELETE FROM attempts WHERE task_id = $1 AND n = $2 AND daemon_id = $3"
      " AND state = 'running' RETURNING task_id) UPDATE tasks SET state = 'queued',"
      " attempts = $2 - 1, updated_ms = " NOW_MS " FROM d WHERE tasks.id = d.task_id",
      {P(id), P(n), P(daemon_id_)});
}

bool PgTaskStore::EndAttempt(const AttemptEnd& e) {
  const CellResult& r = *e.result;
  auto text = [](const std::string& s) { return s.empty() ? Null() : P(s); };
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
      {P(e.id), P(e.n), P(e.attempt_state),
       r.exit_code ? P(static_cast<int64_t>(*r.exit_code)) : Null(),
       r.signal ? P(SignalName(*r.signal)) : Null(), text(r.reason), text(r.error),
       text(e.stdout_path), text(e.stderr_path), P(static_cast<int64_t>(r.stdout_bytes)),
       P(static_cast<int64_t>(r.stderr_bytes)), P(r.stdout_truncated ? 1 : 0),
       P(r.stderr_truncated ? 1 : 0), P(daemon_id_), P(e.task_state), P(e.attempts),
       P(e.delay_ms)});
  if (!w.ok()) {
    // Unrecorded, the attempt stays `running` under this daemon's lease, which nobody renews
    // now that the cell is gone: after it expires, any daemon re-queues the task (at least once).
    std::fprintf(stderr, "corral daemon: task queue: recording the end of %s failed: %s",
                 TaskId(e.id).c_str(), w.error().c_str());
    return false;
  }
  if (w.rows() == 0) {
    std::fprintf(stderr,
                 "corral daemon: task queue: %s attempt %lld ended after its lease was lost\n",
                 TaskId(e.id).c_str(), static_cast<long long>(e.n));
    // No row names these files (the attempt is crashed, or pruned already): nothing would ever
    // remove them.
    queue::RemoveOutputFiles(state_dir_, {e.stdout_path, e.stderr_path});
  }
  return true;
}

Result<std::map<int64_t, SharedTaskStore::Lease>> PgTaskStore::RenewLeases() {
  PgRes r = db_->Exec("UPDATE attempts a SET lease_until_ms = " NOW_MS
                      " + $2 FROM tasks t"
                      " WHERE a.daemon_id = $1 AND a.state = 'running' AND t.id = a.task_id"
                      " RETURNING a.task_id, a.n, t.cancel_requested",
                      {P(daemon_id_), P(lease_ms_)});
  if (!r.ok()) return DbError("lease renewal failed: ", r);
  std::map<int64_t, Lease> renewed;
  for (int i = 0; i < r.rows(); ++i) renewed[r.Int(i, 0)] = {r.Int(i, 1), r.Bool(i, 2)};
  return renewed;
}

void PgTaskStore::ReclaimExpired() {
  static const std::string sql = CrashSql("lease_expired", "lease_until_ms < " NOW_MS);
  PgRes r = db_->Exec(sql.c_str());
  if (r.ok() && r.rows() > 0) {
    std::fprintf(stderr,
                 "corral daemon: task queue: %d attempts of other daemons' expired leases"
                 " marked crashed\n",
                 r.rows());
  }
}

Pruned PgTaskStore::Prune(int64_t retention_ms) {
  // Each statement commits on its own (autocommit) before any file it names is unlinked. Without
  // a retention no row is deleted, but the gone files are still drained: other daemons may prune
  // this daemon's tasks.
  Pruned out;
  std::string failure;
  if (retention_ms > 0) {
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
        {P(retention_ms), P(daemon_prefix_), P(queue::kPruneBatch)});
    if (!gone.ok()) failure = gone.error();
    for (int i = 0; gone.ok() && i < gone.rows(); ++i) {
      (gone.Bool(i, 0) ? out.files : out.states).push_back(gone.Text(i, 1));
    }
  }
  PgRes handed = db_->Exec(
      "DELETE FROM gone_files WHERE id IN (SELECT id FROM gone_files WHERE owner = $1"
      " LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING path",
      {P(daemon_prefix_), P(queue::kPruneBatch)});
  if (!handed.ok() && failure.empty()) failure = handed.error();
  for (int i = 0; handed.ok() && i < handed.rows(); ++i) out.files.push_back(handed.Text(i, 0));
  out.taken =
      std::max<int64_t>(static_cast<int64_t>(out.states.size()), handed.ok() ? handed.rows() : 0);
  if (!failure.empty() && !prune_failing_) {
    std::fprintf(stderr, "corral daemon: task queue: pruning finished tasks failed: %s",
                 failure.c_str());
  }
  prune_failing_ = !failure.empty();
  return out;
}

std::vector<int64_t> PgTaskStore::Finished(const std::vector<int64_t>& ids) {
  std::string list = "{";
  for (int64_t id : ids) list += (list.size() > 1 ? "," : "") + std::to_string(id);
  // Finished, or gone already (another daemon's retention may prune it before anyone looks).
  PgRes r = db_->Exec(
      "SELECT w FROM unnest($1::bigint[]) w WHERE NOT EXISTS (SELECT 1 FROM tasks"
      " WHERE id = w AND state IN ('queued', 'running'))",
      {P(list + "}")});
  std::vector<int64_t> out;
  for (int i = 0; r.ok() && i < r.rows(); ++i) out.push_back(r.Int(i, 0));
  return out;
}

Result<std::pair<int64_t, bool>> PgTaskStore::Insert(const NewTask& t) {
  PgRes r = db_->Exec(
      "INSERT INTO tasks (owner_uid, owner_gid, argv, spec, grp, priority, key, state, attempts,"
      " max_attempts, backoff_ms, not_before_ms, created_ms, updated_ms) VALUES ($1, $2, $3, $4,"
      " $5, $6, $7, 'queued', 0, $8, $9, " NOW_MS ", " NOW_MS ", " NOW_MS
      ") ON CONFLICT (owner_uid, key) DO NOTHING RETURNING id",
      {P(static_cast<int64_t>(t.owner.uid)), P(static_cast<int64_t>(t.owner.gid)), P(t.argv_json),
       P(t.spec_json), P(t.group), P(t.priority), t.key.empty() ? Null() : P(t.key),
       P(t.max_attempts), P(t.backoff_ms)});
  if (!r.ok()) return DbError("the task queue's database refused the task: ", r);
  if (r.rows() == 1) return std::make_pair(r.Int(0, 0), false);
  PgRes e = db_->Exec("SELECT id FROM tasks WHERE owner_uid = $1 AND key = $2",
                      {P(static_cast<int64_t>(t.owner.uid)), P(t.key)});
  if (!e.ok() || e.rows() != 1) return DbError("the task queue's database: ", e);
  return std::make_pair(e.Int(0, 0), true);
}

Result<std::optional<std::pair<uid_t, std::string>>> PgTaskStore::Head(int64_t id) {
  PgRes q = db_->Exec("SELECT owner_uid, state FROM tasks WHERE id = $1", {P(id)});
  if (!q.ok()) return DbError("the task queue's database cannot be reached: ", q);
  if (q.rows() != 1) return std::optional<std::pair<uid_t, std::string>>();
  return std::optional(std::make_pair(static_cast<uid_t>(q.Int(0, 0)), q.Text(0, 1)));
}

std::optional<TaskRow> PgTaskStore::Task(int64_t id) {
  PgRes q = db_->Exec("SELECT " CORRAL_TASK_COLUMNS " FROM tasks WHERE id = $1", {P(id)});
  if (!q.ok() || q.rows() != 1) return std::nullopt;
  return ReadTaskRow(PgRow{q, 0});
}

AttemptRow PgTaskStore::ReadAttempt(const PgRes& a, int row) const {
  AttemptRow at = ReadAttemptRow(PgRow{a, row});
  at.daemon_id = a.Text(row, 18);
  // Output files are on the host of the daemon that ran the attempt: only our own are read.
  at.files_here = at.daemon_id->rfind(daemon_prefix_, 0) == 0;
  return at;
}

std::vector<AttemptRow> PgTaskStore::Attempts(int64_t id) {
  PgRes a = db_->Exec("SELECT " CORRAL_ATTEMPT_COLUMNS
                      ", daemon_id FROM attempts WHERE task_id = $1 ORDER BY n",
                      {P(id)});
  std::vector<AttemptRow> out;
  for (int i = 0; a.ok() && i < a.rows(); ++i) out.push_back(ReadAttempt(a, i));
  return out;
}

std::optional<AttemptRow> PgTaskStore::Attempt(int64_t id, int64_t n) {
  PgRes a = db_->Exec("SELECT " CORRAL_ATTEMPT_COLUMNS
                      ", daemon_id FROM attempts WHERE task_id = $1 AND n = $2",
                      {P(id), P(n)});
  if (!a.ok() || a.rows() != 1) return std::nullopt;
  return ReadAttempt(a, 0);
}

int64_t PgTaskStore::LatestAttempt(int64_t id) {
  PgRes m = db_->Exec("SELECT coalesce(max(n), 0) FROM attempts WHERE task_id = $1", {P(id)});
  return m.ok() && m.rows() == 1 ? m.Int(0, 0) : 0;
}

std::vector<int64_t> PgTaskStore::List(const std::string& state, const std::string& group,
                                       int64_t uid, int64_t limit) {
  PgRes q = db_->Exec(
      "SELECT id FROM tasks WHERE ($1 = '' OR state = $1) AND ($2 = '' OR grp = $2)"
      " AND ($3::bigint < 0 OR owner_uid = $3::bigint) ORDER BY id DESC LIMIT $4",
      {P(state), P(group), P(uid), P(limit)});
  std::vector<int64_t> ids;
  for (int i = 0; q.ok() && i < q.rows(); ++i) ids.push_back(q.Int(i, 0));
  return ids;
}

std::map<std::string, int64_t> PgTaskStore::CountByState(int64_t uid) {
  PgRes c = db_->Exec(
      "SELECT state, count(*) FROM tasks WHERE ($1::bigint < 0 OR owner_uid = $1::bigint)"
      " GROUP BY state",
      {P(uid)});
  std::map<std::string, int64_t> out;
  for (int i = 0; c.ok() && i < c.rows(); ++i) out[c.Text(i, 0)] = c.Int(i, 1);
  return out;
}

Result<std::string> PgTaskStore::Cancel(int64_t id) {
  // Queued: cancelled at once. Running elsewhere: flagged; its daemon sees the flag at its next
  // renewal and kills the cell (or the reclaim, if that daemon is gone, says `cancelled`).
  PgRes r = db_->Exec("UPDATE tasks SET cancel_requested = true, updated_ms = " NOW_MS
                      ","
                      " state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END"
                      " WHERE id = $1 AND state IN ('queued', 'running') RETURNING state",
                      {P(id)});
  if (!r.ok()) return DbError("task queue database: ", r);
  return r.rows() == 0 ? std::string() : r.Text(0, 0);
}

Result<std::string> PgTaskStore::Requeue(int64_t id) {
  // The self-join gives the state before the update.
  PgRes r = db_->Exec(
      "UPDATE tasks t SET state = 'queued', max_attempts = t.attempts + 1,"
      " cancel_requested = false, not_before_ms = " NOW_MS ", updated_ms = " NOW_MS
      " FROM tasks o WHERE o.id = t.id AND t.id = $1 AND t.state NOT IN ('queued', 'running')"
      " RETURNING o.state",
      {P(id)});
  if (!r.ok()) return DbError("task queue database: ", r);
  return r.rows() == 0 ? std::string() : r.Text(0, 0);
}

Status PgTaskStore::SetGroupLimit(const std::string& group, int64_t parallel) {
  PgRes r = db_->Exec(
      "INSERT INTO groups (name, parallel) VALUES ($1, $2)"
      " ON CONFLICT (name) DO UPDATE SET parallel = excluded.parallel",
      {P(group), P(parallel)});
  if (!r.ok()) return DbError("task queue database: ", r);
  return Ok();
}

Result<std::map<std::string, int64_t>> PgTaskStore::GroupLimits() {
  PgRes g = db_->Exec("SELECT name, parallel FROM groups");
  if (!g.ok()) return DbError("task queue database: ", g);
  std::map<std::string, int64_t> out;
  for (int i = 0; i < g.rows(); ++i) out[g.Text(i, 0)] = g.Int(i, 1);
  return out;
}

std::map<std::string, std::pair<int64_t, int64_t>> PgTaskStore::GroupCounts() {
  std::map<std::string, std::pair<int64_t, int64_t>> out;
  PgRes r = db_->Exec(
      "SELECT grp, count(*) FILTER (WHERE state = 'running'), count(*) FILTER (WHERE state ="
      " 'queued') FROM tasks WHERE state IN ('queued', 'running') GROUP BY grp");
  for (int i = 0; r.ok() && i < r.rows(); ++i) out[r.Text(i, 0)] = {r.Int(i, 1), r.Int(i, 2)};
  return out;
}

}  // namespace corral
