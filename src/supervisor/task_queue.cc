// The durable task queue: SQLite schema, group commit, dispatch, outcomes, recovery. The header
// explains the mechanism and its guarantees; comments here say why where it is not obvious.
#include "supervisor/task_queue.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "supervisor/durable_sync.h"
#include "supervisor/queue_store_common.h"
#include "supervisor/queue_store_pg.h"
#include "sys/clock.h"
#include "sys/pidfd.h"
#include "sys/proc.h"

namespace corral {
namespace {

constexpr int64_t kRefusedRetryNs = 500 * kNsPerMs;  // Supervisor said "overloaded": try later

int64_t NowMs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

using queue::TaskId;

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
class TaskQueue::Db {
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

std::optional<int64_t> TaskQueue::ParseId(const std::string& id) {
  if (id.size() < 3 || id.compare(0, 2, "t-") != 0) return std::nullopt;
  int64_t n = 0;
  for (size_t i = 2; i < id.size(); ++i) {
    if (id[i] < '0' || id[i] > '9' || n > (INT64_MAX - 9) / 10) return std::nullopt;
    n = n * 10 + (id[i] - '0');
  }
  return n > 0 ? std::optional<int64_t>(n) : std::nullopt;
}

bool TaskQueue::ValidGroup(const std::string& g) {
  if (g.empty() || g.size() > 64) return false;
  return std::all_of(g.begin(), g.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
  });
}

int64_t DefaultQueueParallel() {
  // Short tasks run best a few per CPU: more only queue up in the kernel's run queue and each
  // cell past the pool of reusable cgroups costs directories of its own (cell/cgroup_pool.h).
  cpu_set_t set;
  int cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
  return std::max<int64_t>(4, 2 * static_cast<int64_t>(cpus));
}

TaskQueue::TaskQueue(EventLoop* loop, Supervisor* sup, TaskQueueOptions options,
                     SpecBuilder builder)
    : loop_(loop), sup_(sup), options_(std::move(options)), builder_(std::move(builder)) {
  for (const char* s : queue::kStates) counts_[s] = 0;
}

TaskQueue::~TaskQueue() {
  if (flush_timer_ != 0) loop_->CancelTimer(flush_timer_);
  if (retry_dispatch_timer_ != 0) loop_->CancelTimer(retry_dispatch_timer_);
  if (prune_timer_ != 0) loop_->CancelTimer(prune_timer_);
  for (auto& [id, p] : pending_) {
    if (p->backoff_timer != 0) loop_->CancelTimer(p->backoff_timer);
  }
  for (auto& [id, token] : blocker_tokens_) loop_->Remove(token);
  if (sync_token_ != 0) loop_->Remove(sync_token_);
  after_commit_.clear();  // nobody is left to answer
  durable_waiters_.clear();
  if (in_tx_) Commit();
  if (sync_) {
    if (Status st = sync_->SyncNow(); !st.ok()) Fatal(st.error().message());
  }
}

Result<std::unique_ptr<TaskQueue>> TaskQueue::Open(EventLoop* loop, Supervisor* sup,
                                                   TaskQueueOptions options, SpecBuilder builder) {
  std::unique_ptr<TaskQueue> q(new TaskQueue(loop, sup, std::move(options), std::move(builder)));
  if (!q->options_.postgres.empty()) {
    ASSIGN_OR_RETURN(q->pg_, PgTaskQueue::Open(loop, sup, q.get(), q->options_, q->builder_));
    q->recovered_crashed_ = q->pg_->recovered_crashed();
    return q;
  }
  TRY(q->Init());
  TRY(q->Recover());
  if (q->sync_) {
    // Tasks re-queued by the recovery are durable before anything acts on them.
    TRY(q->sync_->SyncNow());
    q->durable_seq_ = q->commit_seq_;
  }
  TRY(q->LoadPending());
  q->ScheduleFlush();
  if (q->options_.retention_ms > 0) q->Prune();
  return q;
}

Status TaskQueue::Init() {
  const std::string& dir = options_.state_dir;
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
        [](void* q, sqlite3*, const char*, int frames) {
          static_cast<TaskQueue*>(q)->wal_frames_ = frames;
          return SQLITE_OK;
        },
        this);
    ASSIGN_OR_RETURN(sync_token_,
                     loop_->Add(sync_->event_fd(), EPOLLIN, [this](uint32_t) { OnSynced(); }));
  } else {
    std::fprintf(stderr, "corral daemon: task queue: %s; every commit fsyncs on the loop\n",
                 sync.error().message().c_str());
  }
  auto& g = db_->Q("SELECT name, parallel FROM groups");
  while (g.Step()) limits_[g.Text(0)] = g.Int(1);
  auto& c = db_->Q("SELECT state, count(*) FROM tasks GROUP BY state");
  while (c.Step()) counts_[c.Text(0)] = c.Int(1);
  return Ok();
}

Status TaskQueue::Recover() {
  int64_t now = NowMs();
  Tx();
  struct Stale {
    int64_t task, n, pid, starttime;
  };
  std::vector<Stale> stale;
  auto& q = db_->Q(
      "SELECT task_id, n, leader_pid, leader_starttime FROM attempts "
      "WHERE state = 'running'");
  while (q.Step()) stale.push_back({q.Int(0), q.Int(1), q.Null(2) ? 0 : q.Int(2), q.Int(3)});
  for (const Stale& s : stale) {
    db_->Q("UPDATE attempts SET state = 'crashed', reason = 'daemon_died', ended_ms = ?1 "
           "WHERE task_id = ?2 AND n = ?3")
        .Bind(1, now)
        .Bind(2, s.task)
        .Bind(3, s.n)
        .Run();
    ++recovered_crashed_;
    // The Supervisor's recovery has killed the dead daemon's cells; a leader that is still the
    // same process (pid and starttime) is killed again and waited for before its task reruns.
    auto st = s.pid > 0 ? ReadProcStat(static_cast<pid_t>(s.pid)) : std::nullopt;
    if (!st || static_cast<int64_t>(st->starttime_ticks) != s.starttime || st->state == 'Z')
      continue;
    auto fd = PidfdOpen(static_cast<pid_t>(s.pid));
    if (!fd.ok()) continue;                                // ESRCH: gone meanwhile
    auto again = ReadProcStat(static_cast<pid_t>(s.pid));  // the pidfd now pins the process
    if (!again || static_cast<int64_t>(again->starttime_ticks) != s.starttime) continue;
    (void)PidfdSendSignal(fd->get(), SIGKILL);
    blockers_[s.task] = std::move(fd).value();
  }
  std::vector<std::pair<int64_t, std::string>> moved;
  auto& t = db_->Q(
      "SELECT id, CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'crashed' "
      "END FROM tasks WHERE state = 'running'");
  while (t.Step()) moved.emplace_back(t.Int(0), t.Text(1));
  for (const auto& [id, to] : moved) {
    db_->Q("UPDATE tasks SET state = ?1, not_before_ms = ?2, updated_ms = ?2 WHERE id = ?3")
        .Bind(1, to)
        .Bind(2, now)
        .Bind(3, id)
        .Run();
    SetTaskState(id, "running", to);
  }
  if (!Commit()) return Error::Msg("task queue: commit of the recovery failed");
  return Ok();
}

Status TaskQueue::LoadPending() {
  auto& q = db_->Q(
      "SELECT id, owner_uid, owner_gid, grp, priority, spec, attempts, max_attempts,"
      " backoff_ms, not_before_ms FROM tasks WHERE state = 'queued' ORDER BY id");
  int64_t now_ms = NowMs();
  std::vector<Pending*> loaded;
  while (q.Step()) {
    auto p = std::make_unique<Pending>();
    p->id = q.Int(0);
    p->owner.uid = static_cast<uid_t>(q.Int(1));
    p->owner.gid = static_cast<gid_t>(q.Int(2));
    p->group = q.Text(3);
    p->priority = q.Int(4);
    p->spec_json = q.Text(5);
    p->attempts = q.Int(6);
    p->max_attempts = q.Int(7);
    p->backoff_ms = q.Int(8);
    p->state = "queued";
    int64_t not_before = q.Int(9);
    Pending* raw = p.get();
    pending_.emplace(p->id, std::move(p));
    if (auto b = blockers_.find(raw->id); b != blockers_.end()) {
      raw->blocked = true;
      int64_t id = raw->id;
      auto token = loop_->Add(b->second.get(), EPOLLIN, [this, id](uint32_t) {
        loop_->Remove(blocker_tokens_[id]);
        blocker_tokens_.erase(id);
        blockers_.erase(id);
        auto it = pending_.find(id);
        if (it == pending_.end()) return;
        it->second->blocked = false;
        MakeReady(it->second.get());
        ScheduleFlush();
      });
      if (token.ok()) {
        blocker_tokens_[id] = token.value();
        continue;
      }
      raw->blocked = false;
    }
    if (not_before > now_ms) {
      int64_t id = raw->id;
      raw->backoff_timer =
          loop_->AddTimer(MonotonicNs() + (not_before - now_ms) * kNsPerMs, [this, id] {
            auto it = pending_.find(id);
            if (it == pending_.end()) return;
            it->second->backoff_timer = 0;
            MakeReady(it->second.get());
            ScheduleFlush();
          });
    } else {
      MakeReady(raw);
    }
  }
  return Ok();
}

void TaskQueue::Tx() {
  if (in_tx_) return;
  db_->MustExec("BEGIN IMMEDIATE");
  in_tx_ = true;
}

void TaskQueue::AfterCommit(std::function<void()> fn) { after_commit_.push_back(std::move(fn)); }

bool TaskQueue::Commit() {
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
  return true;
}

void TaskQueue::WhenDurable(std::function<void()> fn) {
  if (pg_) return fn();  // PostgreSQL commits before it answers
  if (in_tx_) {
    // The read saw this open transaction's writes: it waits for their commit.
    AfterCommit(std::move(fn));
    ScheduleFlush();
    return;
  }
  durable_waiters_.emplace_back(commit_seq_, std::move(fn));
  if (durable_seq_ >= commit_seq_) RunDurable();
}

void TaskQueue::OnSynced() {
  std::string error;
  durable_seq_ = std::max(durable_seq_, sync_->Done(&error));
  if (!error.empty()) Fatal(error);
  RunDurable();
}

void TaskQueue::RunDurable() {
  // In order: an action may commit again and queue more, which wait for their own sync.
  while (!durable_waiters_.empty() && durable_waiters_.front().first <= durable_seq_) {
    std::function<void()> fn = std::move(durable_waiters_.front().second);
    durable_waiters_.pop_front();
    fn();
  }
}

void TaskQueue::ScheduleFlush() {
  if (flush_timer_ != 0) return;
  // Dispatch first: its "attempt running" rows then share one commit (one fsync) with the ends
  // and submits of this turn.
  flush_timer_ = loop_->AddTimer(MonotonicNs(), [this] {
    flush_timer_ = 0;
    Dispatch();
    Commit();
  });
}

void TaskQueue::Prune() {
  prune_timer_ = 0;
  int64_t cutoff = NowMs() - options_.retention_ms;
  struct Gone {
    int64_t id;
    std::string state;
  };
  std::vector<Gone> gone;
  auto& q = db_->Q(
      "SELECT id, state FROM tasks WHERE state IN ('succeeded', 'failed', 'timed_out', 'crashed',"
      " 'cancelled') AND updated_ms < ?1 ORDER BY updated_ms LIMIT ?2");
  q.Bind(1, cutoff).Bind(2, queue::kPruneBatch);
  while (q.Step()) gone.push_back({q.Int(0), q.Text(1)});
  if (!gone.empty()) {
    std::vector<std::string> files;
    Tx();
    for (const Gone& g : gone) {
      auto& a = db_->Q("SELECT stdout_path, stderr_path FROM attempts WHERE task_id = ?1");
      a.Bind(1, g.id);
      while (a.Step()) {
        for (int col : {0, 1}) {
          if (!a.Null(col) && !a.Text(col).empty()) files.push_back(a.Text(col));
        }
      }
      db_->Q("DELETE FROM attempts WHERE task_id = ?1").Bind(1, g.id).Run();
      db_->Q("DELETE FROM tasks WHERE id = ?1").Bind(1, g.id).Run();
      if (--counts_[g.state] >= 0 && on_count) on_count(g.state, counts_[g.state]);
    }
    // The files go once the rows are durably gone: a crash in between leaves files, not rows
    // pointing at nothing.
    AfterCommit([dir = options_.state_dir, files = std::move(files)] {
      queue::RemoveOutputFiles(dir, files);
    });
    ScheduleFlush();
  }
  int64_t next_ms = queue::NextPruneMs(options_.retention_ms, static_cast<int64_t>(gone.size()));
  prune_timer_ = loop_->AddTimer(MonotonicNs() + next_ms * kNsPerMs, [this] { Prune(); });
}

void TaskQueue::MakeReady(Pending* p) {
  p->ready_ns = MonotonicNs();
  ready_[p->group].emplace(-p->priority, p->id);
}

void TaskQueue::Unready(Pending* p) {
  auto it = ready_.find(p->group);
  if (it != ready_.end()) it->second.erase({-p->priority, p->id});
}

void TaskQueue::Dispatch() {
  if (dispatching_ || sup_->shutting_down() || retry_dispatch_timer_ != 0) return;
  dispatching_ = true;
  // Pick, below the Supervisor's cap (so that every cell starts at once, none waits in its
  // queue), the best ready task of every group that has room: highest priority, then oldest.
  std::vector<int64_t> chosen;
  size_t busy = sup_->running() + sup_->queued() + static_cast<size_t>(starting_);
  int64_t ours = 0;  // this queue's tasks running (or starting), every group
  for (const auto& [group, n] : running_in_group_) ours += n;
  while (
      busy + chosen.size() < sup_->max_running() &&
      (options_.parallel <= 0 || ours + static_cast<int64_t>(chosen.size()) < options_.parallel)) {
    const std::pair<int64_t, int64_t>* best = nullptr;
    std::string best_group;
    for (auto& [group, set] : ready_) {
      if (set.empty()) continue;
      auto lim = limits_.find(group);
      if (lim != limits_.end() && lim->second > 0 && running_in_group_[group] >= lim->second) {
        continue;
      }
      if (best == nullptr || *set.begin() < *best) {
        best = &*set.begin();
        best_group = group;
      }
    }
    if (best == nullptr) break;
    int64_t id = best->second;
    ready_[best_group].erase(ready_[best_group].begin());
    ++running_in_group_[best_group];
    chosen.push_back(id);
  }
  if (chosen.empty()) {
    dispatching_ = false;
    return;
  }
  // "Attempt N running" is durable before any of these cells exists.
  int64_t now = NowMs();
  Tx();
  for (int64_t id : chosen) {
    Pending* p = pending_.at(id).get();
    ++p->attempts;
    p->state = "running";
    p->attempt_started_ms = now;
    db_->Q("INSERT INTO attempts (task_id, n, state, started_ms, daemon_pid) "
           "VALUES (?1, ?2, 'running', ?3, ?4)")
        .Bind(1, id)
        .Bind(2, p->attempts)
        .Bind(3, now)
        .Bind(4, getpid())
        .Run();
    db_->Q("UPDATE tasks SET state = 'running', attempts = ?1, updated_ms = ?2 WHERE id = ?3")
        .Bind(1, p->attempts)
        .Bind(2, now)
        .Bind(3, id)
        .Run();
    SetTaskState(id, "queued", "running");
  }
  starting_ += static_cast<int64_t>(chosen.size());
  AfterCommit([this, chosen = std::move(chosen)] {
    starting_ -= static_cast<int64_t>(chosen.size());
    for (int64_t id : chosen) {
      auto it = pending_.find(id);
      if (it != pending_.end() && it->second->state == "running" && it->second->cell_id.empty()) {
        StartAttempt(it->second.get());
      }
    }
    if (in_tx_) ScheduleFlush();  // the cells' identities
  });
  Commit();
  dispatching_ = false;
  if (in_tx_ || !after_commit_.empty()) ScheduleFlush();
}

void TaskQueue::StartAttempt(Pending* p) {
  int64_t id = p->id, n = p->attempts;
  if (on_attempt_started)
    on_attempt_started(static_cast<double>(MonotonicNs() - p->ready_ns) / 1e9);
  auto cell = queue::AttemptCell(builder_, p->spec_json, p->owner, id, n);
  if (auto* failed = std::get_if<CellResult>(&cell)) return OnAttemptDone(id, n, *failed);
  CellSpec spec = std::move(std::get<CellSpec>(cell));
  auto started = sup_->Start(p->owner, std::move(spec),
                             [this, id, n](const CellResult& r) { OnAttemptDone(id, n, r); });
  if (auto* refusal = std::get_if<Refusal>(&started)) {
    // Not an attempt: the cell never existed. Back to the queue, dispatch again a bit later.
    Tx();
    db_->Q("DELETE FROM attempts WHERE task_id = ?1 AND n = ?2").Bind(1, id).Bind(2, n).Run();
    db_->Q("UPDATE tasks SET state = 'queued', attempts = ?1, updated_ms = ?2 WHERE id = ?3")
        .Bind(1, n - 1)
        .Bind(2, NowMs())
        .Bind(3, id)
        .Run();
    SetTaskState(id, "running", "queued");
    p->attempts = n - 1;
    p->state = "queued";
    --running_in_group_[p->group];
    MakeReady(p);
    if (retry_dispatch_timer_ == 0 && !sup_->shutting_down()) {
      std::fprintf(stderr, "corral daemon: task queue: %s: %s; retrying\n", TaskId(id).c_str(),
                   refusal->message.c_str());
      retry_dispatch_timer_ = loop_->AddTimer(MonotonicNs() + kRefusedRetryNs, [this] {
        retry_dispatch_timer_ = 0;
        ScheduleFlush();
      });
    }
    ScheduleFlush();
    return;
  }
  p->cell_id = std::get<std::string>(started);
  pid_t pid = 0;
  if (auto l = sup_->Find(Caller::System(), p->cell_id)) pid = l->pid;
  auto st = pid > 0 ? ReadProcStat(pid) : std::nullopt;
  Tx();
  db_->Q("UPDATE attempts SET cell_id = ?1, leader_pid = ?2, leader_starttime = ?3 "
         "WHERE task_id = ?4 AND n = ?5")
      .Bind(1, p->cell_id)
      .BindOpt(2, pid > 0 ? std::optional<int64_t>(pid) : std::nullopt)
      .BindOpt(3, st ? std::optional<int64_t>(st->starttime_ticks) : std::nullopt)
      .Bind(4, id)
      .Bind(5, n)
      .Run();
  // No flush of its own: the identity rides with the next commit (at the latest the attempt's
  // end). Lost in a crash, it costs nothing: the Supervisor's own records tear the cell down.
}

void TaskQueue::OnAttemptDone(int64_t id, int64_t n, const CellResult& r) {
  auto it = pending_.find(id);
  if (it == pending_.end() || it->second->attempts != n) return;
  Pending* p = it->second.get();
  --running_in_group_[p->group];
  p->cell_id.clear();
  bool shutdown = r.state == CellState::kCancelled && r.reason == "shutdown";
  std::string outcome = queue::AttemptOutcome(r, p->cancel_requested);
  // Output first (files), then the row that points at them.
  std::string out_path, err_path;
  queue::WriteAttemptOutput(options_.state_dir, id, n, r, &out_path, &err_path);
  int64_t now = NowMs();
  Tx();
  auto& u = db_->Q(
      "UPDATE attempts SET state = ?1, ended_ms = ?2, exit_code = ?3, signal = ?4,"
      " reason = ?5, error = ?6, stdout_path = ?7, stderr_path = ?8,"
      " stdout_bytes = ?9, stderr_bytes = ?10, stdout_truncated = ?11,"
      " stderr_truncated = ?12 WHERE task_id = ?13 AND n = ?14");
  u.Bind(1, shutdown ? std::string("crashed") : outcome).Bind(2, now);
  u.BindOpt(3, r.exit_code ? std::optional<int64_t>(*r.exit_code) : std::nullopt);
  if (r.signal)
    u.Bind(4, SignalName(*r.signal));
  else
    u.BindNull(4);
  if (!r.reason.empty())
    u.Bind(5, r.reason);
  else
    u.BindNull(5);
  if (!r.error.empty())
    u.Bind(6, r.error);
  else
    u.BindNull(6);
  if (!out_path.empty())
    u.Bind(7, out_path);
  else
    u.BindNull(7);
  if (!err_path.empty())
    u.Bind(8, err_path);
  else
    u.BindNull(8);
  u.Bind(9, static_cast<int64_t>(r.stdout_bytes)).Bind(10, static_cast<int64_t>(r.stderr_bytes));
  u.Bind(11, r.stdout_truncated ? 1 : 0).Bind(12, r.stderr_truncated ? 1 : 0);
  u.Bind(13, id).Bind(14, n).Run();
  if (on_attempt_done && r.state != CellState::kFailedToStart) on_attempt_done(r.duration_s);

  if (shutdown && !p->cancel_requested) {
    // The daemon is stopping: not the task's fault, so the attempt does not count.
    p->attempts = n - 1;
    p->state = "queued";
    db_->Q("UPDATE tasks SET state = 'queued', attempts = ?1, not_before_ms = ?2, updated_ms = ?2"
           " WHERE id = ?3")
        .Bind(1, p->attempts)
        .Bind(2, now)
        .Bind(3, id)
        .Run();
    SetTaskState(id, "running", "queued");
    MakeReady(p);
  } else if (outcome == "succeeded" || outcome == "cancelled" || p->attempts >= p->max_attempts) {
    Finish(p, outcome);  // p is gone now
  } else {
    int64_t delay = queue::RetryDelayMs(p->backoff_ms, n);
    p->state = "queued";
    db_->Q("UPDATE tasks SET state = 'queued', not_before_ms = ?1, updated_ms = ?2 WHERE id = ?3")
        .Bind(1, now + delay)
        .Bind(2, now)
        .Bind(3, id)
        .Run();
    SetTaskState(id, "running", "queued");
    if (delay <= 0) {
      MakeReady(p);
    } else {
      p->backoff_timer = loop_->AddTimer(MonotonicNs() + delay * kNsPerMs, [this, id] {
        auto it2 = pending_.find(id);
        if (it2 == pending_.end()) return;
        it2->second->backoff_timer = 0;
        MakeReady(it2->second.get());
        ScheduleFlush();
      });
    }
  }
  ScheduleFlush();
}

void TaskQueue::Finish(Pending* p, const std::string& state) {
  int64_t id = p->id;
  db_->Q("UPDATE tasks SET state = ?1, updated_ms = ?2 WHERE id = ?3")
      .Bind(1, state)
      .Bind(2, NowMs())
      .Bind(3, id)
      .Run();
  SetTaskState(id, p->state, state);
  std::vector<Reply> replies = std::move(p->cancel_replies);
  if (p->backoff_timer != 0) loop_->CancelTimer(p->backoff_timer);
  Unready(p);
  if (auto t = blocker_tokens_.find(id); t != blocker_tokens_.end()) {
    loop_->Remove(t->second);
    blocker_tokens_.erase(t);
    blockers_.erase(id);
  }
  pending_.erase(id);
  AfterCommit([this, id, replies = std::move(replies)] {
    for (const Reply& r : replies) r(TaskJson(id, false));
    NotifyWaiters(id);
  });
}

void TaskQueue::SetTaskState(int64_t, const std::string& from, const std::string& to) {
  if (!from.empty()) --counts_[from];
  ++counts_[to];
  if (on_count) {
    if (!from.empty()) on_count(from, counts_[from]);
    on_count(to, counts_[to]);
  }
}

void TaskQueue::NotifyWaiters(int64_t id) {
  auto it = waiters_.find(id);
  if (it == waiters_.end()) return;
  auto ws = std::move(it->second);
  waiters_.erase(it);
  Json t = TaskJson(id, true);
  for (auto& [n, w] : ws) w(t);
}

void TaskQueue::Submit(TaskSubmission sub, Reply reply) {
  if (pg_) return pg_->Submit(std::move(sub), std::move(reply));
  if (!ValidGroup(sub.group)) {
    return reply(Refusal{Refusal::kBadInput, "params.group: '" + sub.group +
                                                 "' is not a group name (1 to 64 of A-Z a-z 0-9 "
                                                 "_ - .)"});
  }
  if (sup_->shutting_down()) {
    return reply(Refusal{Refusal::kOverloaded, "the daemon is shutting down"});
  }
  if (!sub.key.empty()) {
    auto& q = db_->Q("SELECT id FROM tasks WHERE owner_uid = ?1 AND key = ?2");
    q.Bind(1, static_cast<int64_t>(sub.owner.uid)).Bind(2, sub.key);
    if (q.Step()) {
      int64_t id = q.Int(0);
      // Possibly inserted in this very transaction: answer once it is committed.
      AfterCommit([reply, id] { reply(Json{{"id", TaskId(id)}, {"existing", true}}); });
      ScheduleFlush();
      return;
    }
  }
  int64_t now = NowMs();
  Tx();
  auto& ins = db_->Q(
      "INSERT INTO tasks (owner_uid, owner_gid, argv, spec, grp, priority, key,"
      " state, attempts, max_attempts, backoff_ms, not_before_ms, created_ms,"
      " updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', 0, ?8, ?9, ?10,"
      " ?10, ?10)");
  ins.Bind(1, static_cast<int64_t>(sub.owner.uid)).Bind(2, static_cast<int64_t>(sub.owner.gid));
  ins.Bind(3, Json(sub.argv).dump()).Bind(4, sub.spec_json).Bind(5, sub.group);
  ins.Bind(6, sub.priority);
  if (sub.key.empty())
    ins.BindNull(7);
  else
    ins.Bind(7, sub.key);
  ins.Bind(8, sub.retries + 1).Bind(9, sub.backoff_ms).Bind(10, now).Run();
  int64_t id = db_->LastId();
  auto p = std::make_unique<Pending>();
  p->id = id;
  p->owner = sub.owner;
  p->group = sub.group;
  p->priority = sub.priority;
  p->spec_json = std::move(sub.spec_json);
  p->max_attempts = sub.retries + 1;
  p->backoff_ms = sub.backoff_ms;
  p->state = "queued";
  SetTaskState(id, "", "queued");
  MakeReady(p.get());
  pending_.emplace(id, std::move(p));
  AfterCommit([reply, id] { reply(Json{{"id", TaskId(id)}, {"existing", false}}); });
  ScheduleFlush();
}

TaskQueue::Pending* TaskQueue::Owned(const Caller& caller, const std::string& id, Refusal* why) {
  auto n = ParseId(id);
  if (n) {
    auto it = pending_.find(*n);
    if (it != pending_.end() && (caller.root() || it->second->owner.uid == caller.uid)) {
      return it->second.get();
    }
  }
  *why = Refusal{Refusal::kNotFound, "no task '" + id + "' (see `corral tasks`)"};
  return nullptr;
}

// A task that is not pending: is it there and the caller's? *state gets its state.
bool TaskQueue::OwnsFinished(const Caller& caller, int64_t id, std::string* state, Refusal* why) {
  auto& q = db_->Q("SELECT owner_uid, state FROM tasks WHERE id = ?1");
  q.Bind(1, id);
  if (q.Step() && (caller.root() || static_cast<uid_t>(q.Int(0)) == caller.uid)) {
    *state = q.Text(1);
    return true;
  }
  *why = Refusal{Refusal::kNotFound, "no task '" + TaskId(id) + "' (see `corral tasks`)"};
  return false;
}

TaskQueue::Json TaskQueue::TaskJson(int64_t id, bool with_attempts) {
  auto& q = db_->Q(
      "SELECT owner_uid, argv, grp, priority, key, state, attempts, max_attempts,"
      " backoff_ms, not_before_ms, created_ms, updated_ms FROM tasks WHERE id = ?1");
  q.Bind(1, id);
  if (!q.Step()) return Json{{"id", TaskId(id)}, {"state", "unknown"}};
  Json t = {{"id", TaskId(id)},
            {"uid", q.Int(0)},
            {"argv", Json::parse(q.Text(1), nullptr, false)},
            {"group", q.Text(2)},
            {"priority", q.Int(3)},
            {"key", q.Null(4) ? Json(nullptr) : Json(q.Text(4))},
            {"state", q.Text(5)},
            {"attempts", q.Int(6)},
            {"max_attempts", q.Int(7)},
            {"retries", q.Int(7) - 1},
            {"backoff_s", static_cast<double>(q.Int(8)) / 1000},
            {"not_before", static_cast<double>(q.Int(9)) / 1000},
            {"created", static_cast<double>(q.Int(10)) / 1000},
            {"updated", static_cast<double>(q.Int(11)) / 1000}};
  auto& a = db_->Q(
      "SELECT n, state, started_ms, ended_ms, exit_code, signal, reason, error,"
      " daemon_pid, cell_id, leader_pid, leader_starttime, stdout_path, stderr_path,"
      " stdout_bytes, stderr_bytes, stdout_truncated, stderr_truncated"
      " FROM attempts WHERE task_id = ?1 ORDER BY n");
  a.Bind(1, id);
  Json attempts = Json::array();
  Json last;
  auto opt_int = [&a](int col) { return a.Null(col) ? Json(nullptr) : Json(a.Int(col)); };
  auto opt_text = [&a](int col) { return a.Null(col) ? Json(nullptr) : Json(a.Text(col)); };
  while (a.Step()) {
    Json at = {{"n", a.Int(0)},
               {"state", a.Text(1)},
               {"started", static_cast<double>(a.Int(2)) / 1000},
               {"ended", a.Null(3) ? Json(nullptr) : Json(static_cast<double>(a.Int(3)) / 1000)},
               {"exit_code", opt_int(4)},
               {"signal", opt_text(5)},
               {"reason", opt_text(6)},
               {"error", opt_text(7)},
               {"cell",
                {{"daemon_pid", a.Int(8)},
                 {"id", opt_text(9)},
                 {"leader_pid", opt_int(10)},
                 {"leader_starttime", opt_int(11)}}},
               {"stdout_path", opt_text(12)},
               {"stderr_path", opt_text(13)},
               {"stdout_bytes", opt_int(14)},
               {"stderr_bytes", opt_int(15)},
               {"stdout_truncated", a.Null(16) ? Json(nullptr) : Json(a.Int(16) != 0)},
               {"stderr_truncated", a.Null(17) ? Json(nullptr) : Json(a.Int(17) != 0)}};
    if (!a.Null(3)) at["duration_s"] = static_cast<double>(a.Int(3) - a.Int(2)) / 1000;
    last = at;
    if (with_attempts) attempts.push_back(std::move(at));
  }
  queue::AddLastAttempt(&t, last, with_attempts ? &attempts : nullptr);
  return t;
}

std::variant<TaskQueue::Json, Refusal> TaskQueue::List(const Caller& caller,
                                                       const std::string& state,
                                                       const std::string& group, int64_t limit) {
  if (pg_) return pg_->List(caller, state, group, limit);
  if (!state.empty() && counts_.count(state) == 0) {
    return Refusal{Refusal::kBadInput,
                   "params.state: '" + state +
                       "' is not a task state "
                       "(queued, running, succeeded, failed, timed_out, crashed, "
                       "cancelled)"};
  }
  if (!group.empty() && !ValidGroup(group)) {
    return Refusal{Refusal::kBadInput, "params.group: '" + group + "' is not a group name"};
  }
  auto& q = db_->Q(
      "SELECT id FROM tasks WHERE (?1 = '' OR state = ?1) AND (?2 = '' OR grp = ?2)"
      " AND (?3 < 0 OR owner_uid = ?3) ORDER BY id DESC LIMIT ?4");
  q.Bind(1, state).Bind(2, group).Bind(3, caller.root() ? -1 : static_cast<int64_t>(caller.uid));
  q.Bind(4, limit);
  std::vector<int64_t> ids;
  while (q.Step()) ids.push_back(q.Int(0));
  Json list = Json::array();
  for (int64_t id : ids) list.push_back(TaskJson(id, false));
  Json counts = Json::object();
  for (const auto& [s, n] : counts_) counts[s] = n;
  return Json{{"tasks", list}, {"counts", counts}};
}

std::variant<TaskQueue::Json, Refusal> TaskQueue::Get(const Caller& caller, const std::string& id) {
  if (pg_) return pg_->Get(caller, id);
  Refusal why;
  auto n = ParseId(id);
  std::string state;
  if (!n || (!Owned(caller, id, &why) && !OwnsFinished(caller, *n, &state, &why))) {
    return Refusal{Refusal::kNotFound, "no task '" + id + "' (see `corral tasks`)"};
  }
  return TaskJson(*n, true);
}

std::optional<Refusal> TaskQueue::Wait(const Caller& caller, const std::string& id,
                                       std::function<void(Json)> done, uint64_t* waiter) {
  if (pg_) return pg_->Wait(caller, id, std::move(done), waiter);
  Refusal why;
  auto n = ParseId(id);
  *waiter = 0;
  if (n && Owned(caller, id, &why)) {
    waiters_[*n].emplace(++waiter_seq_, std::move(done));
    *waiter = waiter_seq_;
    return std::nullopt;
  }
  std::string state;
  if (!n || !OwnsFinished(caller, *n, &state, &why)) {
    return Refusal{Refusal::kNotFound, "no task '" + id + "' (see `corral tasks`)"};
  }
  done(TaskJson(*n, true));
  return std::nullopt;
}

void TaskQueue::Unwait(const std::string& id, uint64_t waiter) {
  if (pg_) return pg_->Unwait(id, waiter);
  auto n = ParseId(id);
  if (!n) return;
  auto it = waiters_.find(*n);
  if (it == waiters_.end()) return;
  it->second.erase(waiter);
  if (it->second.empty()) waiters_.erase(it);
}

void TaskQueue::Cancel(const Caller& caller, const std::string& id, Reply reply) {
  if (pg_) return pg_->Cancel(caller, id, std::move(reply));
  Refusal why;
  Pending* p = Owned(caller, id, &why);
  if (p == nullptr) {
    std::string state;
    auto n = ParseId(id);
    if (n && OwnsFinished(caller, *n, &state, &why)) {
      return reply(Refusal{Refusal::kBadInput,
                           "task " + id + " already finished (" + state + "); nothing to cancel"});
    }
    return reply(why);
  }
  if (p->state == "running") {
    p->cancel_requested = true;
    p->cancel_replies.push_back(std::move(reply));
    // May end the attempt (and erase p) before it returns: p is not used after this.
    (void)sup_->Kill(Caller::System(), p->cell_id, "cancelled");
    return;
  }
  Tx();
  Finish(p, "cancelled");
  int64_t n = *ParseId(id);
  AfterCommit([this, reply, n] { reply(TaskJson(n, false)); });
  ScheduleFlush();
}

void TaskQueue::Retry(const Caller& caller, const std::string& id, Reply reply) {
  if (pg_) return pg_->Retry(caller, id, std::move(reply));
  Refusal why;
  if (Owned(caller, id, &why) != nullptr) {
    return reply(Refusal{Refusal::kBadInput, "task " + id +
                                                 " has not finished; nothing to retry "
                                                 "(cancel it first to start over)"});
  }
  auto n = ParseId(id);
  std::string state;
  if (!n || !OwnsFinished(caller, *n, &state, &why)) return reply(why);
  auto& q = db_->Q(
      "SELECT owner_uid, owner_gid, grp, priority, spec, attempts, backoff_ms "
      "FROM tasks WHERE id = ?1");
  q.Bind(1, *n);
  if (!q.Step()) return reply(why);
  auto p = std::make_unique<Pending>();
  p->id = *n;
  p->owner.uid = static_cast<uid_t>(q.Int(0));
  p->owner.gid = static_cast<gid_t>(q.Int(1));
  p->group = q.Text(2);
  p->priority = q.Int(3);
  p->spec_json = q.Text(4);
  p->attempts = q.Int(5);
  p->max_attempts = p->attempts + 1;
  p->backoff_ms = q.Int(6);
  p->state = "queued";
  int64_t now = NowMs();
  Tx();
  db_->Q("UPDATE tasks SET state = 'queued', max_attempts = ?1, not_before_ms = ?2,"
         " updated_ms = ?2 WHERE id = ?3")
      .Bind(1, p->max_attempts)
      .Bind(2, now)
      .Bind(3, *n)
      .Run();
  SetTaskState(*n, state, "queued");
  MakeReady(p.get());
  pending_.emplace(*n, std::move(p));
  int64_t tid = *n;
  AfterCommit([this, reply, tid] { reply(TaskJson(tid, false)); });
  ScheduleFlush();
}

std::variant<TaskQueue::Json, Refusal> TaskQueue::Output(const Caller& caller,
                                                         const std::string& id, int64_t attempt,
                                                         bool stderr_stream, uint64_t offset,
                                                         uint64_t max_bytes) {
  if (pg_) return pg_->Output(caller, id, attempt, stderr_stream, offset, max_bytes);
  Refusal why;
  auto n = ParseId(id);
  std::string state;
  Pending* p = n ? Owned(caller, id, &why) : nullptr;
  if (!n || (p == nullptr && !OwnsFinished(caller, *n, &state, &why))) {
    return Refusal{Refusal::kNotFound, "no task '" + id + "' (see `corral tasks`)"};
  }
  bool task_done = p == nullptr;
  if (attempt == 0) {
    auto& m = db_->Q("SELECT coalesce(max(n), 0) FROM attempts WHERE task_id = ?1");
    m.Bind(1, *n);
    attempt = m.Step() ? m.Int(0) : 0;
    if (attempt == 0) return queue::NoAttemptYet(task_done);
  }
  auto& q = db_->Q(
      "SELECT state, cell_id, stdout_path, stderr_path, stdout_bytes, stderr_bytes,"
      " stdout_truncated, stderr_truncated FROM attempts WHERE task_id = ?1 AND n = ?2");
  q.Bind(1, *n).Bind(2, attempt);
  if (!q.Step()) {
    return Refusal{Refusal::kBadInput, "task " + id + " has no attempt " + std::to_string(attempt)};
  }
  Json out = {{"attempt", attempt}, {"task_done", task_done}};
  if (q.Text(0) == "running") {
    std::string cell = q.Text(1);
    bool ours = p != nullptr && p->cell_id == cell;
    out.update(queue::RunningOutputPage(sup_, ours ? cell : "", stderr_stream, offset, max_bytes));
    return out;
  }
  int col = stderr_stream ? 3 : 2;
  out.update(queue::FinishedOutputPage(q.Text(col), q.Null(col + 2) ? 0 : q.Int(col + 2),
                                       !q.Null(col + 4) && q.Int(col + 4) != 0, offset, max_bytes));
  return out;
}

void TaskQueue::SetGroup(const Caller& caller, const std::string& group, int64_t parallel,
                         Reply reply) {
  if (pg_) return pg_->SetGroup(caller, group, parallel, std::move(reply));
  if (auto why = queue::CheckGroupSet(caller, group, ValidGroup(group))) return reply(*why);
  Tx();
  db_->Q("INSERT INTO groups (name, parallel) VALUES (?1, ?2) "
         "ON CONFLICT(name) DO UPDATE SET parallel = excluded.parallel")
      .Bind(1, group)
      .Bind(2, parallel)
      .Run();
  limits_[group] = parallel;
  AfterCommit([reply, group, parallel] { reply(Json{{"group", group}, {"parallel", parallel}}); });
  ScheduleFlush();
}

TaskQueue::Json TaskQueue::Groups() {
  if (pg_) return pg_->Groups();
  Json out = Json::array();
  std::set<std::string> names;
  for (const auto& [g, n] : limits_) names.insert(g);
  for (const auto& [g, n] : running_in_group_) names.insert(g);
  for (const auto& [g, s] : ready_) names.insert(g);
  for (const std::string& g : names) {
    auto lim = limits_.find(g);
    auto run = running_in_group_.find(g);
    auto rdy = ready_.find(g);
    out.push_back({{"group", g},
                   {"parallel", lim == limits_.end() ? 0 : lim->second},
                   {"running", run == running_in_group_.end() ? 0 : run->second},
                   {"ready", rdy == ready_.end() ? 0 : rdy->second.size()}});
  }
  return out;
}

}  // namespace corral
