// corral run: one command in a cell, no daemon. Streams the tree's output (or prints one result
// object with --json) and returns when the whole tree is gone or quarantined.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "cell/cell.h"
#include "cell/result_json.h"
#include "cli/commands.h"
#include "cli/containment_flag.h"
#include "cli/flags.h"
#include "sys/event_loop.h"
#include "sys/signal_fd.h"

namespace corral::cli {
namespace {

constexpr const char* kHelp = R"(usage: corral run [OPTIONS] -- CMD [ARG...]
       corral run [OPTIONS] --shell 'STRING'

Runs CMD in a cell: its whole process tree is contained, time-limited, killed as a whole when
the command ends or times out, reaped, and measured. No daemon needed.

  --timeout DUR      end the tree after DUR (SIGTERM, then SIGKILL after --grace); exit 124
  --grace DUR        time between SIGTERM and SIGKILL (default 2s)
  --kill-wait DUR    how long to wait for the tree to vanish after SIGKILL before reporting
                     processes stuck in D state and returning anyway (default 1s)
  --memory BYTES     memory limit for the whole tree (cgroup); exceeding it OOM-kills
  --pids N           at most N processes in the tree at once (cgroup): fork bombs stay inside
  --cpu DUR          CPU time budget for the whole tree
  --max-output BYTES with --json, keep at most BYTES per stream (default 1M); the rest is
                     counted and dropped, never buffered
  --cwd DIR          working directory
  --env K=V          set a variable (repeatable)
  --clear-env        start from an empty environment (then add --env)
  --stdin FILE       read stdin from FILE (default: corral's own stdin)
  --shell 'STRING'   run STRING with /bin/sh -c
  --json             capture output and print one result object (state, exit_code, signal,
                     duration, output, peak memory, CPU, pids, leftover processes, ...)
  --containment MODE cgroup2 | cgroup1 | pgroup (default: the best this host offers; see
                     `corral doctor`)

Isolation (docs/isolation.md; any of these turns it on):
  --isolate          own PID, mount, IPC, UTS and network namespaces; the host's files read-only;
                     private /tmp and /dev/shm; fresh /proc; no capabilities, no new privileges;
                     seccomp deny-list (ptrace, mount, bpf, kexec, modules, ...); Landlock
  --profile NAME     readonly | workspace (cwd writable) | network (workspace + host network),
                     or one of /etc/corral/profiles.json ($CORRAL_PROFILES)
  --rw PATH          writable inside the cell (repeatable; "." is the cell's cwd)
  --ro PATH          read-only again, e.g. a .git inside a --rw path (repeatable)
  --hide PATH        covered by an empty directory or /dev/null (repeatable)
  --net none|host    loopback only (default when isolated) or the host's network
  --no-seccomp, --no-landlock   leave out that part
A part this host cannot give fails the call with exit 125 and says how to enable it.

DUR: 500ms, 30s, 2m, 1h or plain seconds. BYTES: plain, or with K, M, G (powers of 1024).
Processes still alive when CMD exits are killed at once (for commands that must outlive the
call, use the daemon's `corral start`).

Exit status (as coreutils timeout): CMD's own status; 124 timed out; 125 corral failed (bad
option, cannot create the cell); 126 CMD found but not executable; 127 CMD not found;
128+N CMD killed by signal N.

Examples:
  corral run --timeout 30s -- make test
  corral run --json --timeout 5s --memory 512M -- python3 tool.py
  corral run --pids 100 --shell 'curl -s example.com | wc -c'
  corral run --profile workspace --timeout 5m -- make test
)";

void EnsureStdFds() {
  // A child must find 0, 1, 2 open, and our pipes must not land on them.
  for (int fd = 0; fd < 3; ++fd) {
    if (fcntl(fd, F_GETFD) < 0) open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
  }
}

void ReportStuck(const CellResult& r) {
  std::fprintf(stderr,
               "corral: %zu process(es) of the tree survived SIGKILL (stuck in the kernel); "
               "they will be reaped when the kernel releases them:\n",
               r.stuck.size());
  for (const StuckProcess& p : r.stuck) {
    std::fprintf(stderr, "  pid %d (%s) state %c wchan %s%s\n", p.pid, p.comm.c_str(), p.state,
                 p.wchan.empty() ? "?" : p.wchan.c_str(),
                 p.holds_output ? " - holds the command's output open" : "");
  }
}

}  // namespace

int Run(int argc, char** argv) {
  CellFlags flags;
  flags.spec.stdin_mode = StdinMode::kInherit;
  if (auto err = ParseCellFlags(argc, argv, /*allow_containment=*/true, &flags)) {
    std::fprintf(stderr, "corral run: %s\n(see `corral run --help`)\n", err->c_str());
    return kExitCorralError;
  }
  if (flags.help) {
    std::fputs(kHelp, stdout);
    return 0;
  }
  CellSpec& spec = flags.spec;
  spec.id = "run-" + std::to_string(getpid()) + "-1";
  spec.output = flags.json ? OutputMode::kCapture : OutputMode::kStream;
  if (flags.json && spec.stdin_mode == StdinMode::kInherit) spec.stdin_mode = StdinMode::kInherit;

  EnsureStdFds();
  // Signals are read from a signalfd, never handled asynchronously. SIGPIPE stays blocked so a
  // closed pipe is an EPIPE; children get an empty mask back before exec.
  sigset_t forwarded = MakeSigset({SIGINT, SIGTERM, SIGHUP, SIGQUIT});
  sigset_t blocked = MakeSigset({SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE});
  if (!BlockSignals(blocked).ok()) return kExitCorralError;

  auto config = ContainmentFromFlag("run", flags.containment);
  if (!config) return kExitCorralError;
  auto loop = EventLoop::Create();
  if (!loop.ok()) {
    std::fprintf(stderr, "corral run: %s\n", loop.error().message().c_str());
    return kExitCorralError;
  }
  HostOptions options;
  options.containment = std::move(config).value();
  options.reap_orphans = true;  // we are the subreaper of the whole tree
  options.single_cell = true;
  auto host = CellHost::Create(loop->get(), std::move(options));
  if (!host.ok()) {
    std::fprintf(stderr, "corral run: %s\n", host.error().message().c_str());
    return kExitCorralError;
  }

  CellResult result;
  bool done = false;
  Cell* cell = (*host)->Start(std::move(spec), [&](const CellResult& r) {
    result = r;
    done = true;
  });

  auto sigfd = SignalFd::Create(forwarded);
  if (sigfd.ok()) {
    (void)(*loop)->Add(sigfd->fd(), EPOLLIN, [&](uint32_t) {
      while (int sig = sigfd->Read().value_or(0)) {
        if (!done) cell->ForwardSignal(sig);
      }
    });
  }
  while (!done) {
    if (auto st = (*loop)->RunOnce(); !st.ok()) {
      std::fprintf(stderr, "corral run: %s\n", st.error().message().c_str());
      return kExitCorralError;
    }
  }

  if (flags.json) {
    std::string out = DumpJson(ResultToJson(result));
    out += '\n';
    (void)!write(1, out.data(), out.size());
  } else if (result.state == CellState::kFailedToStart) {
    std::fprintf(stderr, "corral run: %s\n", result.error.c_str());
  }
  if (!result.stuck.empty()) ReportStuck(result);
  return result.ShellExitCode();
}

}  // namespace corral::cli
