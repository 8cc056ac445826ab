// A single-threaded epoll loop with deadline timers. Every fd-driven piece of the program (pidfds
// for child exit, pipes for output, a signalfd for SIGCHLD and shutdown, cgroup.events for "tree
// empty", sockets) registers a callback here and nothing else blocks.
//
// Timers are kept in an ordered map and the wait itself carries the nearest deadline with
// nanosecond precision (epoll_pwait2, Linux 5.11), so a timer costs no fd and no extra syscall;
// where epoll_pwait2 is missing (ENOSYS) the wait falls back to epoll_wait rounded up to whole ms.
//
// Hazards handled here:
// - An event for a registration removed earlier in the same batch is stale and skipped; a token
//   never registered at all is an internal error and aborts.
// - Callbacks may add and remove registrations and timers freely, including their own.
// - EINTR from the wait just continues.
#pragma once

#include <sys/epoll.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <unordered_map>
#include <unordered_set>

#include "sys/error.h"
#include "sys/fd.h"

namespace corral {

class EventLoop {
 public:
  using FdCallback = std::function<void(uint32_t events)>;
  using TimerCallback = std::function<void()>;
  using Token = uint64_t;  // 0 is never a valid token

  static Result<std::unique_ptr<EventLoop>> Create();

  // Watches fd (which the caller keeps open until Remove) for `events` (EPOLLIN, EPOLLPRI, ...).
  Result<Token> Add(int fd, uint32_t events, FdCallback cb);
  Status Modify(Token token, uint32_t events);
  // Stops watching; safe to call from inside any callback, also the token's own.
  void Remove(Token token);

  // Calls cb once at CLOCK_MONOTONIC time deadline_ns (see clock.h).
  Token AddTimer(int64_t deadline_ns, TimerCallback cb);
  void CancelTimer(Token token);

  // Waits for events (at most until max_wait_ns from now; -1 forever) and dispatches them and
  // all due timers. Returns after one batch.
  Status RunOnce(int64_t max_wait_ns = -1);
  // Runs batches until Stop() or until `done` returns true (checked after each batch).
  Status Run(const std::function<bool()>& done = nullptr);
  void Stop() { stopped_ = true; }

  size_t watched_fds() const { return fds_.size(); }
  size_t pending_timers() const { return timers_.size(); }

 private:
  explicit EventLoop(UniqueFd epfd) : epfd_(std::move(epfd)) {}
  void RunDueTimers();

  struct Watch {
    int fd;
    std::shared_ptr<FdCallback> cb;  // shared so a callback survives its own Remove()
  };
  UniqueFd epfd_;
  Token next_token_ = 1;
  std::unordered_map<Token, Watch> fds_;
  std::unordered_set<Token> removed_in_batch_;
  std::multimap<int64_t, Token> timers_;
  std::unordered_map<Token, std::pair<std::multimap<int64_t, Token>::iterator, TimerCallback>>
      timer_cbs_;
  bool stopped_ = false;
};

}  // namespace corral
