// The task queue's SQLite store: schema, group commit, recovery, retention. The header explains
// the mechanism and its guarantees; comments here say why where it is not obvious.
#include "supervisor/sqlite_task_store.h"

#include <sqlite3.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>

#include "supervisor/durable_sync.h"
#include "supervisor/queue_store_common.h"

namespace corral {
namespace {

int64_t NowMs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// A write that cannot be made durable leaves memory and disk disagreeing about who runs what.
// Dying is the safe answer: the next start recovers from what the database holds.
[[noreturn]] void Fatal(const std::string& what) {
  std::fprintf(stderr,
               "corral daemon: task queue: %s; exiting so that the next start recovers "
               "from the database\n",
               what.c_str());
  std::fflush(stderr);
  _exit(70);
}

}  // namespace

// One connection, prepared statements cached by their SQL text's address (string literals).
class SqliteTaskStore::Db {
 public:
  class Stmt {
   public:
    Stmt(sqlite3* db, sqlite3_stmt* s) : db_(db), s_(s) {}
    ~Stmt() { sqlite3_finalize(s_); }
    Stmt& Bind(int i, int64_t v) {
      Check(sqlite3_bind_int64(s_, i, v));
      return *this;
    }
    Stmt& Bind(int i, const std::string& v) {
      Check(sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
      return *this;
    }
    Stmt& BindNull(int i) {
      Check(sqlite3_bind_null(s_, i));
      return *this;
    }
    Stmt& BindOpt(int i, const std::optional<int64_t>& v) { return v ? Bind(i, *v) : BindNull(i); }
    Stmt& BindOpt(int i, const std::optional<std::string>& v) {
      return v ? Bind(i, *v) : BindNull(i);
    }
    // true: a row is ready; false: done.
    bool Step() {
      int rc = sqlite3_step(s_);
      if (rc == SQLITE_ROW) return true;
      if (rc != SQLITE_DONE)
        Fatal(std::string("sqlite3_step `") + sqlite3_sql(s_) + "`: " + sqlite3_errmsg(db_));
      return false;
    }
    void Run() {
      while (Step()) {
      }
    }
    int64_t Int(int col) const { return sqlite3_column_int64(s_, col); }
    bool Null(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }
    std::string Text(int col) const {
      const unsigned char* t = sqlite3_column_text(s_, col);
      return t == nullptr
                 ? std::string()
                 : std::string(reinterpret_cast<const char*>(t), sqlite3_column_bytes(s_, col));
    }
    void Reset() {
      sqlite3_reset(s_);
      sqlite3_clear_bindings(s_);
    }

   private:
    void Check(int rc) {
      if (rc != SQLITE_OK) Fatal(std::string("sqlite3_bind: ") + sqlite3_errmsg(db_));
    }
    sqlite3* db_;
    sqlite3_stmt* s_;
  };

  ~Db() {
    stmts_.clear();
    if (db_ != nullptr) sqlite3_close(db_);
  }

  static Result<std::unique_ptr<Db>> Open(const std::string& path) {
    auto db = std::make_unique<Db>();
    int rc =
        sqlite3_open_v2(path.c_str(), &db->db_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
      return Error::Msg("sqlite3_open `" + path +
                        "`: " + (db->db_ ? sqlite3_errmsg(db->db_) : sqlite3_errstr(rc)));
    }
    return db;
  }

  Status Exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = std::string("sqlite3_exec `") + sql + "`: " + (err ? err : "?");
      sqlite3_free(err);
      return Error::Msg(msg);
    }
    return Ok();
  }
  void MustExec(const char* sql) {
    if (Status st = Exec(sql); !st.ok()) Fatal(st.error().message());
  }

  // The cached statement for `sql` (a string literal), reset and unbound.
  Stmt& Q(const char* sql) {
    auto it = stmts_.find(sql);
    if (it == stmts_.end()) {
      sqlite3_stmt* s = nullptr;
      if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr) != SQLITE_OK) {
        Fatal(std::string("sqlite3_prepare `") + sql + "`: " + sqlite3_errmsg(db_));
      }
      it = stmts_.emplace(sql, std::make_unique<Stmt>(db_, s)).first;
    }
    it->second->Reset();
    return *it->second;
  }
  int64_t LastId() const { return sqlite3_last_insert_rowid(db_); }
  sqlite3* raw() const { return db_; }
  // Resets every cached statement. A statement stepped to a row and left there keeps the
  // connection in a read transaction, and SQLite's automatic checkpoint after a COMMIT then gives
  // up (SQLITE_LOCKED, silently): the WAL grew by every commit, 23 KiB a task, without end.
  void ResetAll() {
    for (auto& [sql, stmt] : stmts_) stmt->Reset();
  }

 private:
  sqlite3* db_ = nullptr;
  std::map<const char*, std::unique_ptr<Stmt>> stmts_;
};

// The sync thread's own connection, which moves the WAL's pages into the database file
// (durable_sync.h). Used on that thread only.
class WalCheckpointer {
 public:
  explicit WalCheckpointer(std::string path) : path_(std::move(path)) {}
  ~WalCheckpointer() {
    if (db_ != nullptr) sqlite3_close(db_);
  }
  void Run() {
    if (db_ == nullptr) {
      int rc = sqlite3_open_v2(path_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                               nullptr);
      // A first read opens the WAL (until then a checkpoint does nothing and says "ok").
      if (rc == SQLITE_OK) {
        rc = sqlite3_exec(db_, "PRAGMA schema_version", nullptr, nullptr, nullptr);
      }
      if (rc != SQLITE_OK) {
        Report(db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc));
        sqlite3_close(db_);
        db_ = nullptr;
        return;
      }
    }
    // PASSIVE: waits for nobody; SQLITE_BUSY only says another checkpoint is running.
    int rc = sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) Report(sqlite3_errmsg(db_));
  }

 private:
  void Report(const char* why) {
    if (reported_) return;  // once: the WAL then grows until the cause goes
    reported_ = true;
    std::fprintf(stderr, "corral daemon: task queue: checkpoint of %s failed: %s\n", path_.c_str(),
                 why);
  }
  std::string path_;
  sqlite3* db_ = nullptr;
  bool reported_ = false;
};

SqliteTaskStore::SqliteTaskStore(EventLoop* loop) : loop_(loop) {}

Result<std::unique_ptr<SqliteTaskStore>> SqliteTaskStore::Open(EventLoop* loop,
                                                               const std::string& state_dir) {
  std::unique_ptr<SqliteTaskStore> s(new SqliteTaskStore(loop));
  TRY(s->Init(state_dir));
  return s;
}

SqliteTaskStore::~SqliteTaskStore() {
  if (sync_token_ != 0) loop_->Remove(sync_token_);
  after_commit_.clear();  // nobody is left to answer
  durable_waiters_.clear();
  if (in_tx_) Commit();
  if (sync_) {
    if (Status st = sync_->SyncNow(); !st.ok()) Fatal(st.error().message());
  }
}

Status SqliteTaskStore::Init(const std::string& dir) {
  ASSIGN_OR_RETURN(lock_fd_, queue::LockStateDir(dir, "tasks.db.lock"));
  ASSIGN_OR_RETURN(db_, Db::Open(dir + "/tasks.db"));
  // WAL: readers never block the writer; FULL: each commit is fsynced before it counts.
  TRY(db_->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"));
  TRY(db_->Exec(
      "CREATE TABLE IF NOT EXISTS tasks ("
      " id INTEGER PRIMARY KEY AUTOINCREMENT, owner_uid INTEGER NOT NULL,"
      " owner_gid INTEGER NOT NULL, argv TEXT NOT NULL, spec TEXT NOT NULL, grp TEXT NOT NULL,"
      " priority INTEGER NOT NULL, key TEXT, state TEXT NOT NULL, attempts INTEGER NOT NULL,"
      " max_attempts INTEGER NOT NULL, backoff_ms INTEGER NOT NULL, not_before_ms INTEGER NOT "
      "NULL, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL, UNIQUE(owner_uid, key));"
      "CREATE INDEX IF NOT EXISTS tasks_state ON tasks(state);"
      "CREATE TABLE IF NOT EXISTS attempts ("
      " task_id INTEGER NOT NULL REFERENCES tasks(id), n INTEGER NOT NULL, state TEXT NOT NULL,"
      " started_ms INTEGER NOT NULL, ended_ms INTEGER, exit_code INTEGER, signal TEXT,"
      " reason TEXT, error TEXT, daemon_pid INTEGER NOT NULL, cell_id TEXT, leader_pid INTEGER,"
      " leader_starttime INTEGER, stdout_path TEXT, stderr_path TEXT, stdout_bytes INTEGER,"
      " stderr_bytes INTEGER, stdout_truncated INTEGER, stderr_truncated INTEGER,"
      " PRIMARY KEY(task_id, n));"
      "CREATE INDEX IF NOT EXISTS attempts_state ON attempts(state);"
      "CREATE TABLE IF NOT EXISTS groups (name TEXT PRIMARY KEY, parallel INTEGER NOT NULL);"));
  // The WAL is fsynced off the loop (durable_sync.h); where its file cannot be opened, every
  // COMMIT fsyncs instead (synchronous=FULL above).
  auto checkpointer = std::make_shared<WalCheckpointer>(dir + "/tasks.db");
  auto checkpoint = [checkpointer] { checkpointer->Run(); };
  if (auto sync = DurableSync::Start(dir + "/tasks.db-wal", checkpoint); sync.ok()) {
    TRY(db_->Exec("PRAGMA synchronous=NORMAL;"));
    sync_ = std::move(sync).value();
    // Counts the WAL's frames for the sync thread's checkpoints, and so also turns off SQLite's
    // own, which would run in a COMMIT on the loop.
    sqlite3_wal_hook(
        db_->raw(),
        [](void* s, sqlite3*, const char*, int frames) {
          static_cast<SqliteTaskStore*>(s)->wal_frames_ = frames;
          return SQLITE_OK;
        },
        this);
    ASSIGN_OR_RETURN(sync_token_,
                     loop_->Add(sync_->event_fd(), EPOLLIN, [this](uint32_t) { OnSynced(); }));
  } else {
    std::fprintf(stderr, "corral daemon: task queue: %s; every commit fsyncs on the loop\n",
                 sync.error().message().c_str());
  }
  return Ok();
}

Result<std::vector<StaleAttempt>> SqliteTaskStore::RecoverDeadDaemon() {
  int64_t now = NowMs();
  Tx();
  std::vector<StaleAttempt> stale;
  auto& q = db_->Q(
      "SELECT task_id, n, leader_pid, leader_starttime FROM attempts "
      "WHERE state = 'running'");
  while (q.Step()) stale.push_back({q.Int(0), q.Int(1), q.Null(2) ? 0 : q.Int(2), q.Int(3)});
  db_->Q("UPDATE attempts SET state = 'crashed', reason = 'daemon_died', ended_ms = ?1 "
         "WHERE state = 'running'")
      .Bind(1, now)
      .Run();
  db_->Q("UPDATE tasks SET state = CASE WHEN attempts < max_attempts THEN 'queued' ELSE "
         "'crashed' END, not_before_ms = ?1, updated_ms = ?1 WHERE state = 'running'")
      .Bind(1, now)
      .Run();
  // Tasks re-queued here are durable before anything acts on them.
  Commit();
  if (sync_) TRY(sync_->SyncNow());
  durable_seq_ = commit_seq_;
  RunDurable();
  return stale;
}

std::vector<TaskRow> SqliteTaskStore::Queued() {
  std::vector<TaskRow> out;
  auto& q = db_->Q("SELECT " CORRAL_TASK_COLUMNS " FROM tasks WHERE state = 'queued' ORDER BY id");
  while (q.Step()) out.push_back(ReadTaskRow(q));
  return out;
}

Result<std::pair<int64_t, bool>> SqliteTaskStore::Insert(const NewTask& t) {
  if (!t.key.empty()) {
    auto& q = db_->Q("SELECT id FROM tasks WHERE owner_uid = ?1 AND key = ?2");
    q.Bind(1, static_cast<int64_t>(t.owner.uid)).Bind(2, t.key);
    if (q.Step()) return std::make_pair(q.Int(0), true);
  }
  int64_t now = NowMs();
  Tx();
  auto& ins = db_->Q(
      "INSERT INTO tasks (owner_uid, owner_gid, argv, spec, grp, priority, key,"
      " state, attempts, max_attempts, backoff_ms, not_before_ms, created_ms,"
      " updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', 0, ?8, ?9, ?10,"
      " ?10, ?10)");
  ins.Bind(1, static_cast<int64_t>(t.owner.uid)).Bind(2, static_cast<int64_t>(t.owner.gid));
  ins.Bind(3, t.argv_json).Bind(4, t.spec_json).Bind(5, t.group).Bind(6, t.priority);
  if (t.key.empty())
    ins.BindNull(7);
  else
    ins.Bind(7, t.key);
  ins.Bind(8, t.max_attempts).Bind(9, t.backoff_ms).Bind(10, now).Run();
  return std::make_pair(db_->LastId(), false);
}

Result<std::optional<std::pair<uid_t, std::string>>> SqliteTaskStore::Head(int64_t id) {
  auto& q = db_->Q("SELECT owner_uid, state FROM tasks WHERE id = ?1");
  q.Bind(1, id);
  if (!q.Step()) return std::optional<std::pair<uid_t, std::string>>();
  return std::optional(std::make_pair(static_cast<uid_t>(q.Int(0)), q.Text(1)));
}

std::optional<TaskRow> SqliteTaskStore::Task(int64_t id) {
  auto& q = db_->Q("SELECT " CORRAL_TASK_COLUMNS " FROM tasks WHERE id = ?1");
  q.Bind(1, id);
  if (!q.Step()) return std::nullopt;
  return ReadTaskRow(q);
}

std::vector<AttemptRow> SqliteTaskStore::Attempts(int64_t id) {
  auto& q = db_->Q("SELECT " CORRAL_ATTEMPT_COLUMNS " FROM attempts WHERE task_id = ?1 ORDER BY n");
  q.Bind(1, id);
  std::vector<AttemptRow> out;
  while (q.Step()) out.push_back(ReadAttemptRow(q));
  return out;
}

std::optional<AttemptRow> SqliteTaskStore::Attempt(int64_t id, int64_t n) {
  auto& q = db_->Q("SELECT " CORRAL_ATTEMPT_COLUMNS " FROM attempts WHERE task_id = ?1 AND n = ?2");
  q.Bind(1, id).Bind(2, n);
  if (!q.Step()) return std::nullopt;
  return ReadAttemptRow(q);
}

int64_t SqliteTaskStore::LatestAttempt(int64_t id) {
  auto& m = db_->Q("SELECT coalesce(max(n), 0) FROM attempts WHERE task_id = ?1");
  m.Bind(1, id);
  return m.Step() ? m.Int(0) : 0;
}

std::vector<int64_t> SqliteTaskStore::List(const std::string& state, const std::string& group,
                                           int64_t uid, int64_t limit) {
  auto& q = db_->Q(
      "SELECT id FROM tasks WHERE (?1 = '' OR state = ?1) AND (?2 = '' OR grp = ?2)"
      " AND (?3 < 0 OR owner_uid = ?3) ORDER BY id DESC LIMIT ?4");
  q.Bind(1, state).Bind(2, group).Bind(3, uid).Bind(4, limit);
  std::vector<int64_t> ids;
  while (q.Step()) ids.push_back(q.Int(0));
  return ids;
}

std::map<std::string, int64_t> SqliteTaskStore::CountByState(int64_t uid) {
  auto& c =
      db_->Q("SELECT state, count(*) FROM tasks WHERE (?1 < 0 OR owner_uid = ?1) GROUP BY state");
  c.Bind(1, uid);
  std::map<std::string, int64_t> out;
  while (c.Step()) out[c.Text(0)] = c.Int(1);
  return out;
}

Result<std::string> SqliteTaskStore::Cancel(int64_t id) {
  auto& q = db_->Q("SELECT state FROM tasks WHERE id = ?1");
  q.Bind(1, id);
  std::string state = q.Step() ? q.Text(0) : "";
  if (state != "queued") return std::string(state == "running" ? "running" : "");
  Tx();
  db_->Q("UPDATE tasks SET state = 'cancelled', updated_ms = ?1 WHERE id = ?2")
      .Bind(1, NowMs())
      .Bind(2, id)
      .Run();
  return std::string("cancelled");
}

Result<std::string> SqliteTaskStore::Requeue(int64_t id) {
  auto& q = db_->Q("SELECT state FROM tasks WHERE id = ?1");
  q.Bind(1, id);
  std::string state = q.Step() ? q.Text(0) : "";
  if (state.empty() || state == "queued" || state == "running") return std::string();
  int64_t now = NowMs();
  Tx();
  db_->Q("UPDATE tasks SET state = 'queued', max_attempts = attempts + 1, not_before_ms = ?1,"
         " updated_ms = ?1 WHERE id = ?2")
      .Bind(1, now)
      .Bind(2, id)
      .Run();
  return state;
}

void SqliteTaskStore::BeginAttempt(int64_t id, int64_t n) {
  int64_t now = NowMs();
  Tx();
  db_->Q("INSERT INTO attempts (task_id, n, state, started_ms, daemon_pid) "
         "VALUES (?1, ?2, 'running', ?3, ?4)")
      .Bind(1, id)
      .Bind(2, n)
      .Bind(3, now)
      .Bind(4, getpid())
      .Run();
  db_->Q("UPDATE tasks SET state = 'running', attempts = ?1, updated_ms = ?2 WHERE id = ?3")
      .Bind(1, n)
      .Bind(2, now)
      .Bind(3, id)
      .Run();
}

void SqliteTaskStore::AbandonAttempt(int64_t id, int64_t n) {
  Tx();
  db_->Q("DELETE FROM attempts WHERE task_id = ?1 AND n = ?2").Bind(1, id).Bind(2, n).Run();
  db_->Q("UPDATE tasks SET state = 'queued', attempts = ?1, updated_ms = ?2 WHERE id = ?3")
      .Bind(1, n - 1)
      .Bind(2, NowMs())
      .Bind(3, id)
      .Run();
}

void SqliteTaskStore::RecordIdentities(const std::vector<CellIdentity>& started) {
  // No commit of its own: an identity rides with the next commit (at the latest the attempt's
  // end). Lost in a crash, it costs nothing: the Supervisor's own records tear the cell down.
  for (const CellIdentity& c : started) {
    Tx();
    db_->Q("UPDATE attempts SET cell_id = ?1, leader_pid = ?2, leader_starttime = ?3 "
           "WHERE task_id = ?4 AND n = ?5")
        .Bind(1, c.cell)
        .BindOpt(2, c.pid > 0 ? std::optional<int64_t>(c.pid) : std::nullopt)
        .BindOpt(3, c.starttime > 0 ? std::optional<int64_t>(c.starttime) : std::nullopt)
        .Bind(4, c.id)
        .Bind(5, c.n)
        .Run();
  }
}

bool SqliteTaskStore::EndAttempt(const AttemptEnd& e) {
  const CellResult& r = *e.result;
  auto text = [](const std::string& s) { return s.empty() ? std::nullopt : std::optional(s); };
  int64_t now = NowMs();
  Tx();
  auto& u = db_->Q(
      "UPDATE attempts SET state = ?1, ended_ms = ?2, exit_code = ?3, signal = ?4,"
      " reason = ?5, error = ?6, stdout_path = ?7, stderr_path = ?8,"
      " stdout_bytes = ?9, stderr_bytes = ?10, stdout_truncated = ?11,"
      " stderr_truncated = ?12 WHERE task_id = ?13 AND n = ?14");
  u.Bind(1, e.attempt_state).Bind(2, now);
  u.BindOpt(3, r.exit_code ? std::optional<int64_t>(*r.exit_code) : std::nullopt);
  u.BindOpt(4, r.signal ? std::optional(SignalName(*r.signal)) : std::nullopt);
  u.BindOpt(5, text(r.reason)).BindOpt(6, text(r.error));
  u.BindOpt(7, text(e.stdout_path)).BindOpt(8, text(e.stderr_path));
  u.Bind(9, static_cast<int64_t>(r.stdout_bytes)).Bind(10, static_cast<int64_t>(r.stderr_bytes));
  u.Bind(11, r.stdout_truncated ? 1 : 0).Bind(12, r.stderr_truncated ? 1 : 0);
  u.Bind(13, e.id).Bind(14, e.n).Run();
  // A finished task keeps its not_before (when its last attempt was due).
  db_->Q("UPDATE tasks SET state = ?1, attempts = ?2, not_before_ms = CASE WHEN ?1 = 'queued'"
         " THEN ?3 ELSE not_before_ms END, updated_ms = ?4 WHERE id = ?5")
      .Bind(1, e.task_state)
      .Bind(2, e.attempts)
      .Bind(3, now + e.delay_ms)
      .Bind(4, now)
      .Bind(5, e.id)
      .Run();
  return true;
}

Status SqliteTaskStore::SetGroupLimit(const std::string& group, int64_t parallel) {
  Tx();
  db_->Q("INSERT INTO groups (name, parallel) VALUES (?1, ?2) "
         "ON CONFLICT(name) DO UPDATE SET parallel = excluded.parallel")
      .Bind(1, group)
      .Bind(2, parallel)
      .Run();
  return Ok();
}

Result<std::map<std::string, int64_t>> SqliteTaskStore::GroupLimits() {
  std::map<std::string, int64_t> out;
  auto& g = db_->Q("SELECT name, parallel FROM groups");
  while (g.Step()) out[g.Text(0)] = g.Int(1);
  return out;
}

Pruned SqliteTaskStore::Prune(int64_t retention_ms) {
  Pruned out;
  if (retention_ms <= 0) return out;
  std::vector<int64_t> ids;
  auto& q = db_->Q(
      "SELECT id, state FROM tasks WHERE state IN ('succeeded', 'failed', 'timed_out', 'crashed',"
      " 'cancelled') AND updated_ms < ?1 ORDER BY updated_ms LIMIT ?2");
  q.Bind(1, NowMs() - retention_ms).Bind(2, queue::kPruneBatch);
  while (q.Step()) {
    ids.push_back(q.Int(0));
    out.states.push_back(q.Text(1));
  }
  out.taken = static_cast<int64_t>(ids.size());
  if (ids.empty()) return out;
  Tx();
  for (int64_t id : ids) {
    auto& a = db_->Q("SELECT stdout_path, stderr_path FROM attempts WHERE task_id = ?1");
    a.Bind(1, id);
    while (a.Step()) {
      for (int col : {0, 1}) {
        if (!a.Null(col) && !a.Text(col).empty()) out.files.push_back(a.Text(col));
      }
    }
    db_->Q("DELETE FROM attempts WHERE task_id = ?1").Bind(1, id).Run();
    db_->Q("DELETE FROM tasks WHERE id = ?1").Bind(1, id).Run();
  }
  return out;
}

void SqliteTaskStore::Tx() {
  if (in_tx_) return;
  db_->MustExec("BEGIN IMMEDIATE");
  in_tx_ = true;
}

void SqliteTaskStore::Commit() {
  if (in_tx_) {
    db_->ResetAll();
    db_->MustExec("COMMIT");
    in_tx_ = false;
    ++commit_seq_;
    if (!sync_) durable_seq_ = commit_seq_;  // synchronous=FULL: COMMIT fsynced
  }
  // The actions may open a new transaction (and queue more actions): take them first.
  std::vector<std::function<void()>> actions = std::move(after_commit_);
  after_commit_.clear();
  for (auto& fn : actions) durable_waiters_.emplace_back(commit_seq_, std::move(fn));
  if (durable_seq_ < commit_seq_) {
    sync_->Request(commit_seq_, wal_frames_);
  } else {
    RunDurable();
  }
}

void SqliteTaskStore::WhenDurable(std::function<void()> fn) {
  if (in_tx_) {
    // What the caller saw includes this open transaction's writes: wait for their commit.
    after_commit_.push_back(std::move(fn));
    return;
  }
  durable_waiters_.emplace_back(commit_seq_, std::move(fn));
  if (durable_seq_ >= commit_seq_) RunDurable();
}

void SqliteTaskStore::OnSynced() {
  std::string error;
  durable_seq_ = std::max(durable_seq_, sync_->Done(&error));
  if (!error.empty()) Fatal(error);
  RunDurable();
}

void SqliteTaskStore::RunDurable() {
  // In order: an action may commit again and queue more, which wait for their own sync.
  while (!durable_waiters_.empty() && durable_waiters_.front().first <= durable_seq_) {
    std::function<void()> fn = std::move(durable_waiters_.front().second);
    durable_waiters_.pop_front();
    fn();
  }
}

}  // namespace corral
