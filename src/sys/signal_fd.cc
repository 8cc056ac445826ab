#include "sys/signal_fd.h"

#include <sys/signalfd.h>
#include <unistd.h>

namespace corral {

sigset_t MakeSigset(std::initializer_list<int> signals) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : signals) sigaddset(&set, s);
  return set;
}

Status BlockSignals(const sigset_t& set, sigset_t* old) {
  int rc = ::pthread_sigmask(SIG_BLOCK, &set, old);
  if (rc != 0) return Error::FromErrno(rc, "pthread_sigmask");
  return Ok();
}

Result<SignalFd> SignalFd::Create(const sigset_t& set) {
  int fd = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (fd < 0) return Error::FromErrno("signalfd");
  return SignalFd(UniqueFd(fd));
}

Result<int> SignalFd::Read(pid_t* sender) {
  signalfd_siginfo info;
  for (;;) {
    ssize_t n = ::read(fd_.get(), &info, sizeof info);
    if (n == static_cast<ssize_t>(sizeof info)) break;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return 0;
    return Error::FromErrno("read(signalfd)");
  }
  if (sender != nullptr) *sender = static_cast<pid_t>(info.ssi_pid);
  return static_cast<int>(info.ssi_signo);
}

}  // namespace corral
