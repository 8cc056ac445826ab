// The task queue's store on SQLite (docs/queue.md, "Durability"): STATE-DIR/tasks.db in WAL mode,
// one daemon at a time (an flock on tasks.db.lock), so the queue keeps its ready sets in memory
// (task_store.h, LocalTaskStore).
//
// Mechanism:
// - Group commit: every write of a loop turn goes into one open transaction (BEGIN IMMEDIATE on
//   the first write); Commit() ends it. The WAL is then fdatasynced by a helper thread
//   (durable_sync.h) while the loop goes on, and only after that sync do the actions queued with
//   WhenDurable run (answers to callers, the cells of "attempt N running" rows). A commit survives
//   power loss, not just SIGKILL, as with synchronous=FULL -- the fallback where the WAL file
//   cannot be opened, under which every COMMIT fsyncs on the loop.
// - Checkpoints run on the sync thread too, through a connection of its own, once the WAL holds
//   DurableSync::kCheckpointFrames; SQLite's automatic one, which would run inside a COMMIT on the
//   loop, is off (the WAL hook replaces it).
// - Statements are prepared once and cached by their SQL text's address; every cached statement
//   is reset before COMMIT, since one left on a row keeps a read transaction open and SQLite's
//   checkpoint then gives up silently (the WAL grew without end).
// - A write that fails (disk full) ends the daemon (exit 70) rather than let memory and disk
//   disagree; the next start recovers from the database.
//
// Not thread-safe: every call comes from the loop's thread (the sync thread has its own
// connection).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "supervisor/task_store.h"
#include "sys/event_loop.h"
#include "sys/fd.h"

namespace corral {

class DurableSync;

class SqliteTaskStore : public LocalTaskStore {
 public:
  // Creates STATE/tasks.db and STATE/tasks/ if needed and takes STATE/tasks.db.lock.
  static Result<std::unique_ptr<SqliteTaskStore>> Open(EventLoop* loop,
                                                       const std::string& state_dir);
  // Commits what is pending and syncs it; actions still waiting are dropped (nobody is left).
  ~SqliteTaskStore() override;

  // Durability: writes gather in the turn's transaction, synced off the loop after Commit().
  void Commit() override;
  bool Uncommitted() const override { return in_tx_; }
  void WhenDurable(std::function<void()> fn) override;

  // Start-up: commits and syncs on the caller's thread before it returns.
  Result<std::vector<StaleAttempt>> RecoverDeadDaemon() override;
  std::vector<TaskRow> Queued() override;

  // Writes: in the open transaction (BEGIN IMMEDIATE on the first); none fails but by ending
  // the process.
  Result<std::pair<int64_t, bool>> Insert(const NewTask& t) override;
  void BeginAttempt(int64_t id, int64_t n) override;
  void RecordIdentities(const std::vector<CellIdentity>& started) override;
  void AbandonAttempt(int64_t id, int64_t n) override;
  bool EndAttempt(const AttemptEnd& end) override;  // always true
  Result<std::string> Cancel(int64_t id) override;  // "running": never flagged, left to the queue
  Result<std::string> Requeue(int64_t id) override;
  Status SetGroupLimit(const std::string& group, int64_t parallel) override;
  Pruned Prune(int64_t retention_ms) override;

  // Reads: on the same connection, so they see the open transaction's writes (answers built
  // from them go out through WhenDurable).
  Result<std::optional<std::pair<uid_t, std::string>>> Head(int64_t id) override;
  std::optional<TaskRow> Task(int64_t id) override;
  std::vector<AttemptRow> Attempts(int64_t id) override;
  std::optional<AttemptRow> Attempt(int64_t id, int64_t n) override;
  int64_t LatestAttempt(int64_t id) override;
  std::vector<int64_t> List(const std::string& state, const std::string& group, int64_t uid,
                            int64_t limit) override;
  std::map<std::string, int64_t> CountByState(int64_t uid) override;
  Result<std::map<std::string, int64_t>> GroupLimits() override;

  class Db;  // the connection and its cached statements (sqlite_task_store.cc)

 private:
  explicit SqliteTaskStore(EventLoop* loop);
  Status Init(const std::string& dir);
  void Tx();  // opens the turn's transaction if none is
  void OnSynced();
  void RunDurable();  // the actions whose commit is durable now

  EventLoop* loop_;
  std::unique_ptr<Db> db_;
  UniqueFd lock_fd_;
  bool in_tx_ = false;
  std::vector<std::function<void()>> after_commit_;  // wait for the open transaction's commit
  std::unique_ptr<DurableSync> sync_;  // null: synchronous=FULL, durable when COMMIT returns
  EventLoop::Token sync_token_ = 0;
  uint64_t commit_seq_ = 0, durable_seq_ = 0;
  int wal_frames_ = 0;  // frames in the WAL after the last commit (sqlite3_wal_hook)
  std::deque<std::pair<uint64_t, std::function<void()>>> durable_waiters_;  // (commit, action)
};

}  // namespace corral
