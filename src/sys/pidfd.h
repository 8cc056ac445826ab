// Process handles that cannot be fooled by PID reuse. A pidfd refers to one process for its whole
// life; signalling through it (pidfd_send_signal, Linux 5.1) can never hit a stranger that was
// given the same number after a reap, and waitid(P_PIDFD) (5.4) reaps exactly that process.
// pidfd_open (5.3) turns a PID we just learned into such a handle; the race that remains there
// (the PID dies and is reused between learning it and opening it) is closed by the callers that
// can close it, e.g. by reading cgroup membership right after.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <string>

#include "sys/error.h"
#include "sys/fd.h"

namespace corral {

// How a process ended, as waitid reports it.
class ExitStatus {
 public:
  static ExitStatus Exited(int code) { return ExitStatus(code, 0); }
  static ExitStatus Signaled(int sig) { return ExitStatus(-1, sig); }
  ExitStatus() = default;

  bool exited() const { return signal_ == 0; }
  int code() const { return code_; }      // valid when exited()
  int signal() const { return signal_; }  // valid when !exited()
  // The shell's and coreutils' convention: the code, or 128 + the signal number.
  int ShellCode() const { return exited() ? code_ : 128 + signal_; }
  std::string ToString() const;  // "exited 3", "killed by SIGKILL"

 private:
  ExitStatus(int code, int sig) : code_(code), signal_(sig) {}
  int code_ = 0;
  int signal_ = 0;
};

// "SIGKILL" for 9; "SIG42" for numbers without a name.
std::string SignalName(int sig);
// Accepts "TERM", "SIGTERM" or "15"; -1 when unknown.
int SignalFromName(const std::string& name);

Result<UniqueFd> PidfdOpen(pid_t pid);
Status PidfdSendSignal(int pidfd, int sig);

struct Reaped {
  pid_t pid = 0;  // 0: nothing was ready (WNOHANG)
  ExitStatus status;
  struct rusage usage {};
};
// waitid(P_PIDFD, WEXITED | flags) with the kernel's rusage out-parameter, which glibc's wrapper
// hides. ECHILD means it was already reaped.
Result<Reaped> WaitPidfd(int pidfd, int flags);
// waitid(P_ALL, WEXITED | WNOHANG): one reap of any child, pid 0 when none is ready; ECHILD when
// the process has no children left at all. `usage` is not filled in.
Result<Reaped> ReapAny();

}  // namespace corral
