// The baseline for bench/init_bench.sh: the least an event-driven reaper can do. SIGCHLD blocked
// and read from a signalfd, then waitid(P_ALL, WNOHANG) until nothing is ready; exits with the
// child's code once no child is left. No signal forwarding, no options, no error reporting.
// Usage: init_reaper [-s] CMD [ARG...]
//   -s  the child calls setsid() before exec, as corral init and dumb-init do (the child leads
//       its own session). With kernel.sched_autogroup_enabled=1 a new session is also a new
//       scheduling group, which changes how CPU is shared between the init and the child's tree
//       during an exit storm: this is the like-for-like baseline for an init that does so.
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char** argv) {
  int new_session = argc > 1 && argv[1][0] == '-' && argv[1][1] == 's' && argv[1][2] == 0;
  if (new_session) ++argv, --argc;
  if (argc < 2) return 125;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigprocmask(SIG_BLOCK, &set, NULL);
  int sfd = signalfd(-1, &set, SFD_CLOEXEC);
  if (getpid() != 1) prctl(PR_SET_CHILD_SUBREAPER, 1);
  pid_t child = fork();
  if (child == 0) {
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    if (new_session) setsid();
    execvp(argv[1], argv + 1);
    _exit(127);
  }
  int code = 0;
  for (;;) {
    for (;;) {
      siginfo_t si = {0};
      if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG) < 0) {
        if (errno == ECHILD) return code;
        if (errno == EINTR) continue;
        return 125;
      }
      if (si.si_pid == 0) break;
      if (si.si_pid == child) code = si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
    }
    struct signalfd_siginfo info;
    if (read(sfd, &info, sizeof info) < 0 && errno != EINTR) return 125;
  }
}
