// corral mcp: an MCP server on stdio whose tools run commands in cells of this process (no daemon).
// stdout carries only protocol messages; everything else goes to stderr. The server ends, with
// every cell torn down, when stdin closes (the host went away) or on SIGTERM/SIGINT/SIGHUP.
// The cells belong to a Supervisor made here with MCP's policy: --max-concurrent cells at most and
// none waiting (one more is a tool error), --keep-finished records kept, subreaper of them all.
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "api/mcp_server.h"
#include "cell/isolation.h"
#include "cli/commands.h"
#include "cli/containment_flag.h"
#include "cli/flags.h"
#include "supervisor/supervisor.h"
#include "sys/event_loop.h"
#include "sys/signal_fd.h"

namespace corral::cli {
namespace {

constexpr const char* kHelp = R"(usage: corral mcp [OPTIONS]

An MCP (Model Context Protocol) server on stdin/stdout. Every command a client runs through it
lives in a cell: its whole process tree is killed at its timeout, when the client cancels the
call, and when the server stops (stdin closed, SIGTERM, SIGINT, SIGHUP). Nothing it started
outlives it. No daemon needed.

Tools: run_command, start_command, read_output, wait_command, kill_command, list_commands.

  --default-timeout DUR  timeout of a call that gives no timeout_s (default 60s; 0: none)
  --max-timeout DUR      largest timeout_s a call may ask for (default: no maximum)
  --allow-cwd DIR        commands may only run in DIR or below it (repeatable; the first one
                         is the default cwd); default: any directory, default cwd the server's
  --max-concurrent N     at most N commands running at once; one more is a tool error
                         (default 16)
  --env-pass NAME        pass the server's variable NAME to commands (repeatable; replaces the
                         default set: PATH HOME USER LOGNAME SHELL LANG LC_ALL LC_CTYPE TERM TZ
                         TMPDIR); `--env-pass '*'` passes everything
  --max-output BYTES     output kept per stream, default and maximum of max_output_bytes
                         (default 1M)
  --grace DUR            SIGTERM -> SIGKILL on timeout, cancel and kill (default 2s)
  --kill-wait DUR        after SIGKILL, how long to wait before reporting stuck processes
                         (default 1s)
  --progress-interval DUR  progress notifications for calls that ask for them (default 1s)
  --keep-finished N      finished start_commands whose output and result stay readable
                         (default 64)
  --containment MODE     cgroup2 | cgroup1 | pgroup (default: the best this host offers)
  --isolate              run every command isolated: own PID/mount/net/IPC/UTS namespaces,
                         host read-only, private /tmp, no network, seccomp (docs/isolation.md)
  --profile NAME         isolate with a named profile: readonly | workspace | network
  --verbose              log each request to stderr

DUR: 500ms, 30s, 2m, 1h or plain seconds. BYTES: plain, or with K, M, G.

MCP host configuration (e.g. an "mcpServers" entry):
  {"mcpServers": {"corral": {"command": "corral", "args": ["mcp", "--max-timeout", "10m"]}}}
)";

void EnsureStdFds() {
  // A missing fd 0/1/2 must not be taken by one of our own pipes; /dev/null in its place.
  for (int fd = 0; fd < 3; ++fd) {
    if (fcntl(fd, F_GETFD) < 0) open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
  }
}

struct McpFlags {
  McpOptions options;
  SupervisorOptions supervisor = Defaults();
  std::string containment;
  bool help = false;

  static SupervisorOptions Defaults() {
    SupervisorOptions s;
    s.max_running = 16;
    s.max_queued = 0;  // a call past max_running is refused, never queued
    s.keep_finished = 64;
    s.id_prefix = "mcp";
    s.reap_orphans = true;      // we are the subreaper of every tree we start
    s.prebuilt_namespaces = 2;  // a session's isolated commands skip making namespaces
    return s;
  }
};

std::optional<std::string> ParseFlags(int argc, char** argv, McpFlags* f) {
  McpOptions& o = f->options;
  bool env_pass_given = false;
  for (int i = 1; i < argc; ++i) {
    const OptionArg opt = SplitOption(argv[i]);
    const std::string& arg = opt.name;
    std::string value = opt.inline_value.value_or("");
    if (!opt.inline_value && arg != "--help" && arg != "-h" && arg != "--verbose" &&
        arg != "--isolate") {
      if (i + 1 >= argc) return arg + " needs a value";
      value = argv[++i];
    }
    auto duration = [&](int64_t* out) -> std::optional<std::string> {
      auto d = ParseDurationNs(value);
      if (!d) return arg + ": '" + value + "' is not a duration (500ms, 30s, 2m, 1h)";
      *out = *d;
      return std::nullopt;
    };
    auto count = [&](size_t* out, size_t min) -> std::optional<std::string> {
      auto v = ParseInteger(value, static_cast<int64_t>(min), 1000000);
      if (!v) return arg + ": '" + value + "' is not a count of at least " + std::to_string(min);
      *out = static_cast<size_t>(*v);
      return std::nullopt;
    };
    std::optional<std::string> err;
    if (arg == "--help" || arg == "-h") {
      f->help = true;
    } else if (arg == "--verbose") {
      o.verbose = true;
    } else if (arg == "--isolate") {
      o.isolation.enabled = true;
    } else if (arg == "--profile") {
      auto profile = LoadProfile(value);
      if (!profile.ok()) {
        err = "--profile: " + profile.error().message();
      } else {
        o.isolation = profile.value();
        o.isolation.enabled = true;
      }
    } else if (arg == "--default-timeout") {
      err = duration(&o.default_timeout_ns);
    } else if (arg == "--max-timeout") {
      err = duration(&o.max_timeout_ns);
    } else if (arg == "--grace") {
      err = duration(&o.grace_ns);
    } else if (arg == "--kill-wait") {
      err = duration(&o.kill_wait_ns);
    } else if (arg == "--progress-interval") {
      err = duration(&o.progress_interval_ns);
      if (!err && o.progress_interval_ns < 10 * kNsPerMs) err = arg + " must be at least 10ms";
    } else if (arg == "--max-concurrent") {
      err = count(&f->supervisor.max_running, 1);
    } else if (arg == "--keep-finished") {
      err = count(&f->supervisor.keep_finished, 0);
    } else if (arg == "--max-output") {
      auto b = ParseBytes(value);
      if (!b)
        err = arg + ": '" + value + "' is not a byte count (1024, 64K, 1M, 1G)";
      else
        o.max_output_bytes = *b;
    } else if (arg == "--allow-cwd") {
      char resolved[PATH_MAX];
      if (realpath(value.c_str(), resolved) == nullptr) {
        err = "--allow-cwd `" + value + "`: " + std::strerror(errno);
      } else {
        o.allow_cwd.emplace_back(resolved);
      }
    } else if (arg == "--env-pass") {
      if (!env_pass_given) o.env_pass.clear();
      env_pass_given = true;
      if (value.empty() || value.find('=') != std::string::npos) {
        err = "--env-pass takes a variable name, not '" + value + "'";
      } else {
        o.env_pass.push_back(value);
      }
    } else if (arg == "--containment") {
      f->containment = value;
    } else {
      err = "unknown option " + arg;
    }
    if (err) return err;
  }
  if (o.max_timeout_ns > 0 &&
      (o.default_timeout_ns == 0 || o.default_timeout_ns > o.max_timeout_ns)) {
    o.default_timeout_ns = o.max_timeout_ns;  // the default never exceeds the maximum
  }
  return std::nullopt;
}

}  // namespace

int Mcp(int argc, char** argv) {
  McpFlags flags;
  if (auto err = ParseFlags(argc, argv, &flags)) {
    std::fprintf(stderr, "corral mcp: %s\n(see `corral mcp --help`)\n", err->c_str());
    return kExitCorralError;
  }
  if (flags.help) {
    std::fputs(kHelp, stdout);
    return 0;
  }

  EnsureStdFds();
  // Signals are read from a signalfd; SIGPIPE stays blocked so a host that went away is an EPIPE
  // on stdout, not our death. Children get an empty mask back before exec.
  sigset_t stop = MakeSigset({SIGINT, SIGTERM, SIGHUP});
  if (!BlockSignals(MakeSigset({SIGINT, SIGTERM, SIGHUP, SIGPIPE})).ok()) return kExitCorralError;

  // Pick the containment (cgroup2 > cgroup1 > pgroup); creating the supervisor below also sweeps
  // the cells that a crashed corral left behind.
  auto config = ContainmentFromFlag("mcp", flags.containment);
  if (!config) return kExitCorralError;

  // One loop for everything; one supervisor owns every cell.
  auto loop = EventLoop::Create();
  if (!loop.ok()) {
    std::fprintf(stderr, "corral mcp: %s\n", loop.error().message().c_str());
    return kExitCorralError;
  }
  flags.supervisor.containment = std::move(config).value();
  auto sup = Supervisor::Create(loop->get(), std::move(flags.supervisor));
  if (!sup.ok()) {
    std::fprintf(stderr, "corral mcp: %s\n", sup.error().message().c_str());
    return kExitCorralError;
  }

  // Serve stdin/stdout; shut down (tearing down every cell) on the stop signals.
  McpServer server(loop->get(), sup->get(), std::move(flags.options), STDIN_FILENO, STDOUT_FILENO);
  if (auto st = server.Start(); !st.ok()) {
    std::fprintf(stderr, "corral mcp: %s\n", st.error().message().c_str());
    return kExitCorralError;
  }
  auto sigfd = SignalFd::Create(stop);
  if (!sigfd.ok()) {
    std::fprintf(stderr, "corral mcp: %s\n", sigfd.error().message().c_str());
    return kExitCorralError;
  }
  auto sig_token = (*loop)->Add(sigfd->fd(), EPOLLIN, [&](uint32_t) {
    while (int sig = sigfd->Read().value_or(0)) {
      server.Shutdown(std::string("got SIG") + sigabbrev_np(sig));
    }
  });
  if (!sig_token.ok()) {
    std::fprintf(stderr, "corral mcp: %s\n", sig_token.error().message().c_str());
    return kExitCorralError;
  }
  if (auto st = (*loop)->Run([&] { return server.finished(); }); !st.ok()) {
    std::fprintf(stderr, "corral mcp: %s\n", st.error().message().c_str());
    return kExitCorralError;
  }
  (*loop)->Remove(*sig_token);
  return 0;
}

}  // namespace corral::cli
