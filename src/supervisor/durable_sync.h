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
//
// Checkpoints move too: SQLite's automatic one runs in the COMMIT that passes 1000 WAL frames,
// on the loop, with two fsyncs and the copying of pages (a twelfth of the queue's throughput
// here). Given a `checkpoint` function, this thread calls it after a sync once the caller
// reported that many frames; it checkpoints through a connection of its own, and the writer then
// reuses the WAL from its start.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "sys/error.h"
#include "sys/fd.h"

namespace corral {

class DurableSync {
 public:
  // `wal_path`: the database's -wal file, which exists while a WAL connection is open.
  // `checkpoint`: run on the helper thread after a sync once Request reported kCheckpointFrames.
  static constexpr int kCheckpointFrames = 1000;  // SQLite's own default
  static Result<std::unique_ptr<DurableSync>> Start(const std::string& wal_path,
                                                    std::function<void()> checkpoint = nullptr);
  ~DurableSync();
  DurableSync(const DurableSync&) = delete;
  DurableSync& operator=(const DurableSync&) = delete;

  // Asks for everything committed up to now (`seq`, the caller's commit count) to be made
  // durable; `wal_frames`: the frames now in the WAL (sqlite3_wal_hook's count).
  void Request(uint64_t seq, int wal_frames = 0);
  // Readable when a sync has finished; read with Done().
  int event_fd() const { return event_.get(); }
  // Drains the event fd; returns the highest seq known durable. A failed fdatasync is fatal to
  // the caller (the disk refused: memory and disk would disagree), reported through *error.
  uint64_t Done(std::string* error);
  // Synchronously, on the caller's thread: for start-up and shutdown.
  Status SyncNow();

 private:
  DurableSync(UniqueFd wal, UniqueFd event, std::function<void()> checkpoint)
      : wal_(std::move(wal)), event_(std::move(event)), checkpoint_(std::move(checkpoint)) {}
  void Run();

  UniqueFd wal_, event_;
  std::function<void()> checkpoint_;  // only ever called on thread_
  std::mutex mu_;
  std::condition_variable wake_;
  uint64_t requested_ = 0, done_ = 0;
  int wal_frames_ = 0;
  std::string error_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace corral
