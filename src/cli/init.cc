// `corral init [opts] -- CMD [ARG...]`: PID 1 for containers, or a subreaper anywhere. The logic
// lives in supervisor/init_process; this file parses flags, explains them, and runs the loop.
// Flags are read by hand (no getopt state, no allocation beyond the options) to keep start-up
// lean: every container start pays for it.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "api/daemon_metrics.h"
#include "api/http_server.h"
#include "api/methods/methods.h"
#include "api/unix_server.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "supervisor/init_process.h"
#include "sys/event_loop.h"
#include "sys/pidfd.h"

namespace corral::cli {

namespace {

constexpr char kHelp[] =
    "usage: corral init [-g] [-v] [--orphans wait|term|kill] [--grace DUR] [-e CODE]...\n"
    "                   [-r SIG:SIG]... -- CMD [ARG...]\n"
    "\n"
    "Runs CMD as the one child of a proper init: the PID 1 of a container, or, anywhere else, a\n"
    "child subreaper (PR_SET_CHILD_SUBREAPER) that adopts the orphans of CMD's tree.\n"
    "\n"
    "What it does:\n"
    "  - reaps every zombie it inherits as soon as it appears (signalfd + waitid, no polling);\n"
    "  - forwards every signal it can catch, except SIGCHLD, to CMD (with -g: to CMD's whole\n"
    "    process group). CMD runs in a new session of its own and takes the terminal, so Ctrl-C\n"
    "    and job control behave as without corral init;\n"
    "  - SIGTSTP/SIGTTIN/SIGTTOU are forwarded as SIGSTOP (the kernel ignores them in CMD's\n"
    "    orphaned process group), then corral init stops itself so your shell sees the job stop;\n"
    "  - when CMD exits, the processes it left behind are handled per --orphans, all are reaped,\n"
    "    and corral init exits with CMD's code (128+N if signal N killed it).\n"
    "\n"
    "options:\n"
    "  -g, --group          forward signals to CMD's process group, not only to CMD (a shell\n"
    "                       script and the commands it runs all get the SIGTERM)\n"
    "  -v, --verbose        log every reap, forwarded signal and orphan kill to stderr\n"
    "  --orphans POLICY     what to do with processes left when CMD exits:\n"
    "                         term  SIGTERM, wait --grace, then SIGKILL (default)\n"
    "                         kill  SIGKILL at once\n"
    "                         wait  wait until they exit on their own (a SIGTERM, SIGINT,\n"
    "                               SIGHUP or SIGQUIT to corral init then switches to term)\n"
    "  --grace DUR          time between SIGTERM and SIGKILL for --orphans term (default 2s);\n"
    "                       DUR is 500ms, 30s, 2m, 1h or plain seconds\n"
    "  -e CODE              report CMD's exit code CODE as 0 (repeatable; e.g. -e 143 for a JVM\n"
    "                       that exits 143 on SIGTERM), as tini's -e\n"
    "  -r, --rewrite S:R    forward signal S as R, 0 drops it (names or numbers, repeatable),\n"
    "                       as dumb-init's --rewrite; e.g. -r TERM:QUIT\n"
    "  -s                   accepted for tini compatibility: corral init is always a subreaper\n"
    "  --serve SOCKET       also serve the daemon's protocol on SOCKET (mode 0660): the agent in\n"
    "                       the container runs commands as cells (corral exec/start/..., the\n"
    "                       Python client) without a second process; cells end with CMD\n"
    "  --metrics ADDR:PORT  with --serve: Prometheus /metrics on ADDR:PORT (default: off)\n"
    "\n"
    "exit: CMD's code; 128+N if CMD was killed by signal N; 125 corral init's own error;\n"
    "126 CMD found but not executable; 127 CMD not found.\n"
    "\n"
    "Containers: ENTRYPOINT [\"/usr/local/bin/corral\", \"init\", \"--\"] and CMD as usual.\n"
    "fds other than 0-2 are passed to CMD as they are (socket activation, LISTEN_FDS).\n"
    "See docs/init.md for how it compares with tini and dumb-init.\n";

int Usage(const char* why) {
  std::fprintf(stderr, "corral init: %s (see `corral init --help`)\n", why);
  return kExitCorralError;
}

// "TERM:QUIT", "15:3", "SIGTERM:0".
bool ParseRewrite(const char* s, InitOptions* opts) {
  const char* colon = std::strchr(s, ':');
  if (colon == nullptr) return false;
  int from = SignalFromName(std::string(s, colon));
  std::string to_name(colon + 1);
  int to = to_name == "0" ? 0 : SignalFromName(to_name);
  if (from <= 0 || from == SIGKILL || from == SIGSTOP || from == SIGCHLD || to < 0) return false;
  opts->rewrite[from] = to;
  return true;
}

// The in-process daemon of `--serve`: a Supervisor on init's loop (init keeps the reaping), the
// protocol on `socket`, metrics on `metrics_addr` if given. Returns an error sentence.
std::optional<std::string> StartServing(EventLoop* loop, const std::string& socket,
                                        const std::string& metrics_addr,
                                        std::unique_ptr<Supervisor>* sup,
                                        std::unique_ptr<UnixServer>* server,
                                        std::unique_ptr<metrics::Registry>* registry,
                                        std::unique_ptr<api::DaemonMetrics>* dm,
                                        std::unique_ptr<api::HttpServer>* http) {
  auto config = ChooseContainment(std::nullopt);
  if (!config.ok()) return config.error().message();
  SupervisorOptions opts;
  opts.containment = config.value();
  opts.reap_orphans = false;
  auto s = Supervisor::Create(loop, opts);
  if (!s.ok()) return s.error().message();
  *sup = std::move(s).value();
  UnixServer::Options so;
  so.path = socket;
  auto srv = UnixServer::Start(loop, so);
  if (!srv.ok()) return srv.error().message();
  *server = std::move(srv).value();
  api::RegisterMethods(server->get(), sup->get(), loop);
  *registry = std::make_unique<metrics::Registry>();
  *dm = std::make_unique<api::DaemonMetrics>(registry->get(), sup->get(), loop);
  if (!metrics_addr.empty()) {
    auto h = api::HttpServer::Create(loop, metrics_addr);
    if (!h.ok()) return "--metrics " + metrics_addr + ": " + h.error().message();
    *http = std::move(h).value();
    api::ServeMetrics(http->get(), registry->get());
  }
  return std::nullopt;
}

}  // namespace

int Init(int argc, char** argv) {
  InitOptions opts;
  std::string serve_socket, metrics_addr;
  int i = 1;
  for (; i < argc; ++i) {
    const char* a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (std::strcmp(a, "--") == 0) {
      ++i;
      break;
    }
    if (a[0] != '-') break;  // CMD without `--`, as tini allows
    if (std::strcmp(a, "-h") == 0 || std::strcmp(a, "--help") == 0) {
      std::fputs(kHelp, stdout);
      return 0;
    } else if (std::strcmp(a, "-g") == 0 || std::strcmp(a, "--group") == 0) {
      opts.group = true;
    } else if (std::strcmp(a, "-v") == 0 || std::strcmp(a, "--verbose") == 0) {
      opts.verbose = true;
    } else if (std::strcmp(a, "-s") == 0) {
      // Always a subreaper; nothing to do.
    } else if (std::strcmp(a, "--orphans") == 0) {
      const char* v = value();
      if (v == nullptr) return Usage("--orphans needs wait, term or kill");
      if (std::strcmp(v, "wait") == 0) {
        opts.orphans = OrphanPolicy::kWait;
      } else if (std::strcmp(v, "term") == 0) {
        opts.orphans = OrphanPolicy::kTerm;
      } else if (std::strcmp(v, "kill") == 0) {
        opts.orphans = OrphanPolicy::kKill;
      } else {
        return Usage("--orphans takes wait, term or kill");
      }
    } else if (std::strcmp(a, "--grace") == 0) {
      const char* v = value();
      auto grace = v == nullptr ? std::nullopt : ParseDurationNs(v);
      if (!grace) return Usage("--grace takes a duration such as 500ms, 2s or 1m");
      opts.grace_ns = *grace;
    } else if (std::strcmp(a, "-e") == 0) {
      const char* v = value();
      auto code = v == nullptr ? std::nullopt : ParseInteger(v, 0, 255);
      if (!code) return Usage("-e takes an exit code 0-255");
      opts.exit_zero.push_back(static_cast<int>(*code));
    } else if (std::strcmp(a, "-r") == 0 || std::strcmp(a, "--rewrite") == 0) {
      const char* v = value();
      if (v == nullptr || !ParseRewrite(v, &opts)) {
        return Usage("--rewrite takes FROM:TO signals, e.g. TERM:QUIT or 15:3 (TO 0 drops it)");
      }
    } else if (std::strcmp(a, "--serve") == 0) {
      const char* v = value();
      if (v == nullptr || v[0] == '\0' || v[0] == '-') return Usage("--serve needs a socket path");
      serve_socket = v;
    } else if (std::strcmp(a, "--metrics") == 0) {
      const char* v = value();
      if (v == nullptr) return Usage("--metrics needs ADDR:PORT");
      metrics_addr = v;
    } else {
      std::fprintf(stderr, "corral init: unknown option '%s' (see `corral init --help`)\n", a);
      return kExitCorralError;
    }
  }
  if (i >= argc) return Usage("no command given: corral init [opts] -- CMD [ARG...]");
  opts.argv = argv + i;
  DefaultRewrites(&opts);

  auto loop = EventLoop::Create();
  if (!loop.ok()) {
    std::fprintf(stderr, "corral init: %s\n", loop.error().message().c_str());
    return kExitCorralError;
  }
  // --serve: cells share init's loop; init stays the one reaper and hands cell leaders back.
  std::unique_ptr<Supervisor> sup;
  if (!serve_socket.empty()) {
    opts.reap_hook = [&sup](pid_t pid) { return sup && sup->ReapIfLeader(pid); };
  }
  auto init = InitProcess::Start(**loop, opts);
  if (!init.ok()) {
    const Error& e = init.error();
    std::fprintf(stderr, "corral init: %s\n", e.message().c_str());
    // Spawn names a failed exec "exec `CMD`: ..."; as tini: 127 not found, 126 otherwise.
    if (e.message().rfind("exec ", 0) == 0) return e.code() == ENOENT ? 127 : 126;
    return kExitCorralError;
  }
  std::unique_ptr<UnixServer> server;
  std::unique_ptr<metrics::Registry> registry;
  std::unique_ptr<api::DaemonMetrics> daemon_metrics;
  std::unique_ptr<api::HttpServer> http;
  if (!serve_socket.empty()) {
    if (auto err = StartServing(loop->get(), serve_socket, metrics_addr, &sup, &server, &registry,
                                &daemon_metrics, &http)) {
      std::fprintf(stderr, "corral init: --serve: %s\n", err->c_str());
      return kExitCorralError;  // the child is still ours: InitProcess's destructor ends it
    }
  }
  // One loop for everything: signals, reaping, the orphan grace timer, --serve's sockets.
  bool serving_stopped = false;
  Status st = (*loop)->Run([&] {
    if (server && !serving_stopped && (*init)->child_pid() < 0) {
      // CMD is gone: the container is ending; its cells end with it.
      serving_stopped = true;
      server->StopAccepting();
      sup->Shutdown([] {});
    }
    return (*init)->finished();
  });
  if (server) server->Shutdown();
  if (!st.ok()) {
    std::fprintf(stderr, "corral init: %s\n", st.error().message().c_str());
    return kExitCorralError;
  }
  return (*init)->exit_code();
}

}  // namespace corral::cli
