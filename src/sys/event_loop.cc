#include "sys/event_loop.h"

#include <sys/epoll.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "sys/clock.h"

namespace corral {

Result<std::unique_ptr<EventLoop>> EventLoop::Create() {
  int fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) return Error::FromErrno("epoll_create1");
  return std::unique_ptr<EventLoop>(new EventLoop(UniqueFd(fd)));
}

Result<EventLoop::Token> EventLoop::Add(int fd, uint32_t events, FdCallback cb) {
  Token token = next_token_++;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = token;
  if (::epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    return Error::FromErrno("epoll_ctl(ADD)", "fd " + std::to_string(fd));
  }
  fds_.emplace(token, Watch{fd, std::make_shared<FdCallback>(std::move(cb))});
  return token;
}

Status EventLoop::Modify(Token token, uint32_t events) {
  auto it = fds_.find(token);
  if (it == fds_.end()) return Error::Msg("epoll modify: unknown token", ENOENT);
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = token;
  if (::epoll_ctl(epfd_.get(), EPOLL_CTL_MOD, it->second.fd, &ev) != 0) {
    return Error::FromErrno("epoll_ctl(MOD)", "fd " + std::to_string(it->second.fd));
  }
  return Ok();
}

void EventLoop::Remove(Token token) {
  auto it = fds_.find(token);
  if (it == fds_.end()) return;
  // EPOLL_CTL_DEL can only fail here if the caller closed the fd first, which also removed it.
  ::epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, it->second.fd, nullptr);
  fds_.erase(it);
  removed_in_batch_.insert(token);
}

EventLoop::Token EventLoop::AddTimer(int64_t deadline_ns, TimerCallback cb) {
  Token token = next_token_++;
  auto it = timers_.emplace(deadline_ns, token);
  timer_cbs_.emplace(token, std::make_pair(it, std::move(cb)));
  return token;
}

void EventLoop::CancelTimer(Token token) {
  auto it = timer_cbs_.find(token);
  if (it == timer_cbs_.end()) return;
  timers_.erase(it->second.first);
  timer_cbs_.erase(it);
}

void EventLoop::RunDueTimers() {
  int64_t now = MonotonicNs();
  while (!timers_.empty() && timers_.begin()->first <= now) {
    Token token = timers_.begin()->second;
    auto it = timer_cbs_.find(token);
    TimerCallback cb = std::move(it->second.second);
    timers_.erase(timers_.begin());
    timer_cbs_.erase(it);
    cb();
  }
}

Status EventLoop::RunOnce(int64_t max_wait_ns) {
  int64_t wait_ns = max_wait_ns;
  if (!timers_.empty()) {
    int64_t until = timers_.begin()->first - MonotonicNs();
    if (until < 0) until = 0;
    if (wait_ns < 0 || until < wait_ns) wait_ns = until;
  }
  epoll_event events[64];
  int n;
  static bool have_pwait2 = true;
  if (have_pwait2) {
    timespec ts{};
    timespec* tsp = nullptr;
    if (wait_ns >= 0) {
      ts.tv_sec = wait_ns / kNsPerSec;
      ts.tv_nsec = wait_ns % kNsPerSec;
      tsp = &ts;
    }
    n = ::epoll_pwait2(epfd_.get(), events, 64, tsp, nullptr);
    if (n < 0 && errno == ENOSYS) {
      have_pwait2 = false;
      return Ok();
    }
  } else {
    int ms = wait_ns < 0 ? -1 : static_cast<int>((wait_ns + kNsPerMs - 1) / kNsPerMs);
    n = ::epoll_wait(epfd_.get(), events, 64, ms);
  }
  if (n < 0) {
    if (errno == EINTR) return Ok();
    return Error::FromErrno("epoll_wait");
  }
  removed_in_batch_.clear();
  for (int i = 0; i < n; ++i) {
    Token token = events[i].data.u64;
    auto it = fds_.find(token);
    if (it == fds_.end()) {
      if (removed_in_batch_.count(token) != 0) continue;  // stale: removed earlier in this batch
      std::fprintf(stderr, "corral: internal error: epoll event for unknown token %llu\n",
                   static_cast<unsigned long long>(token));
      std::abort();
    }
    std::shared_ptr<FdCallback> cb = it->second.cb;
    (*cb)(events[i].events);
  }
  removed_in_batch_.clear();
  RunDueTimers();
  return Ok();
}

Status EventLoop::Run(const std::function<bool()>& done) {
  stopped_ = false;
  while (!stopped_) {
    if (done && done()) break;
    TRY(RunOnce());
  }
  return Ok();
}

}  // namespace corral
