// Group commit with the fsync off the event loop, for the SQLite task queue.
//
// Why. With synchronous=FULL every COMMIT fsyncs the WAL on the loop's thread: about 0.26 ms on
// this VM's disk, once per loop turn, during which no cell exit, no client and no dispatch is
// served (DESIGN.md: nothing blocks the loop). Instead the queue commits with
// synchronous=NORMAL (no fsync in COMMIT; SQLite still syncs around its checkpoints) and this
// helper thread fdatasyncs the WAL file; the loop runs what waits on a commit (answers, cell
// starts) only once a sync that began after that commit has finished. Commits made while one
// sync runs are covered together by the next: the classic group commit, without a stalled loop.
//
// The guarantee is the one synchronous=FULL gives: a transaction whose COMMIT returned before an
// fdatasync of the WAL began is on disk when that fdatasync returns (the WAL's frames and header
// are plain writes to that file; fdatasync on any fd of it flushes them all).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "sys/error.h"
#include "sys/fd.h"

namespace corral {

class DurableSync {
 public:
  // `wal_path`: the database's -wal file, which exists while a WAL connection is open.
  static Result<std::unique_ptr<DurableSync>> Start(const std::string& wal_path);
  ~DurableSync();
  DurableSync(const DurableSync&) = delete;
  DurableSync& operator=(const DurableSync&) = delete;

  // Asks for everything committed up to now (`seq`, the caller's commit count) to be made durable.
  void Request(uint64_t seq);
  // Readable when a sync has finished; read with Done().
  int event_fd() const { return event_.get(); }
  // Drains the event fd; returns the highest seq known durable. A failed fdatasync is fatal to
  // the caller (the disk refused: memory and disk would disagree), reported through *error.
  uint64_t Done(std::string* error);
  // Synchronously, on the caller's thread: for start-up and shutdown.
  Status SyncNow();

 private:
  DurableSync(UniqueFd wal, UniqueFd event) : wal_(std::move(wal)), event_(std::move(event)) {}
  void Run();

  UniqueFd wal_, event_;
  std::mutex mu_;
  std::condition_variable wake_;
  uint64_t requested_ = 0, done_ = 0;
  std::string error_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace corral
