// Signals are blocked and read from a signalfd, so no signal handler ever runs program logic.
// Block them early (before any thread or child exists) with BlockSignals(); children unblock
// everything themselves before exec (see cell/spawn.cc).
#pragma once

#include <signal.h>

#include <initializer_list>

#include "sys/error.h"
#include "sys/fd.h"

namespace corral {

sigset_t MakeSigset(std::initializer_list<int> signals);
// Adds `set` to the calling thread's blocked mask; returns the previous mask in *old if given.
Status BlockSignals(const sigset_t& set, sigset_t* old = nullptr);

class SignalFd {
 public:
  static Result<SignalFd> Create(const sigset_t& set);  // non-blocking, CLOEXEC
  int fd() const { return fd_.get(); }
  // One pending signal's number, 0 when none is pending.
  Result<int> Read(pid_t* sender = nullptr);

 private:
  explicit SignalFd(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace corral
