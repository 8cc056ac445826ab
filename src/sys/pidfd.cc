#include "sys/pidfd.h"

#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace corral {

std::string ExitStatus::ToString() const {
  if (exited()) return "exited " + std::to_string(code_);
  return "killed by " + SignalName(signal_);
}

std::string SignalName(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  if (abbrev != nullptr) return std::string("SIG") + abbrev;
  if (sig >= SIGRTMIN && sig <= SIGRTMAX) return "SIGRTMIN+" + std::to_string(sig - SIGRTMIN);
  return "SIG" + std::to_string(sig);
}

int SignalFromName(const std::string& name) {
  if (name.empty()) return -1;
  if (name.find_first_not_of("0123456789") == std::string::npos) {
    int n = std::stoi(name);
    return (n > 0 && n < NSIG) ? n : -1;
  }
  std::string bare = name.rfind("SIG", 0) == 0 ? name.substr(3) : name;
  for (int s = 1; s < NSIG; ++s) {
    const char* a = sigabbrev_np(s);
    if (a != nullptr && bare == a) return s;
  }
  return -1;
}

Result<UniqueFd> PidfdOpen(pid_t pid) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return Error::FromErrno("pidfd_open", std::to_string(pid));
  return UniqueFd(fd);
}

Status PidfdSendSignal(int pidfd, int sig) {
  if (::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0) != 0) {
    return Error::FromErrno("pidfd_send_signal", SignalName(sig));
  }
  return Ok();
}

static Result<Reaped> DoWaitid(int idtype, int id, int flags, bool want_usage) {
  siginfo_t info;
  std::memset(&info, 0, sizeof info);
  Reaped r;
  for (;;) {
    // Without a rusage pointer the kernel skips collecting it: orphans are reaped by the
    // thousand and nobody reads theirs.
    long rc =
        ::syscall(SYS_waitid, idtype, id, &info, WEXITED | flags, want_usage ? &r.usage : nullptr);
    if (rc == 0) break;
    if (errno == EINTR) continue;
    return Error::FromErrno("waitid");
  }
  r.pid = info.si_pid;
  if (r.pid == 0) return r;
  if (info.si_code == CLD_EXITED) {
    r.status = ExitStatus::Exited(info.si_status);
  } else {
    r.status = ExitStatus::Signaled(info.si_status);
  }
  return r;
}

Result<Reaped> WaitPidfd(int pidfd, int flags) {
  return DoWaitid(P_PIDFD, pidfd, flags, /*want_usage=*/true);
}

Result<Reaped> ReapAny() { return DoWaitid(P_ALL, 0, WNOHANG, /*want_usage=*/false); }

}  // namespace corral
