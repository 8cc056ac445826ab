// corral daemon: one supervisor that serves cells to every local client over a Unix socket,
// exports Prometheus metrics on loopback, and scans the host on its own cadence.
//
// main, in order: parse flags; block signals before any thread exists (so the signalfd sees
// them); choose containment; recover what a crashed predecessor left; listen; start the metrics
// endpoint and the scan thread; run the loop until SIGTERM/SIGINT; then stop accepting, cancel
// every cell, wait for them, remove the socket, exit 0.
#include <signal.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>

#include "api/daemon_metrics.h"
#include "api/http_server.h"
#include "api/methods/methods.h"
#include "api/metrics.h"
#include "api/metrics_scan.h"
#include "api/socket_path.h"
#include "api/task_metrics.h"
#include "api/unix_server.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "scan/host_scan.h"
#include "scan/report_json.h"
#include "supervisor/supervisor.h"
#include "supervisor/task_queue.h"
#include "sys/signal_fd.h"

namespace corral::cli {
namespace {

constexpr const char* kHelp = R"(usage: corral daemon [OPTIONS]

Serves cells to local clients (corral exec/start/wait/ps/kill/logs, the Python client, MCP)
over a Unix socket, as their parent and reaper: commands run with the caller's own uid, gid and
groups (from SO_PEERCRED), and a client that disconnects during `run` cancels its cell.

  --socket PATH        default /run/corral/corral.sock (root), $XDG_RUNTIME_DIR/corral.sock
  --socket-group GROUP who may connect (socket mode 0660); default: the daemon's group
  --metrics ADDR:PORT  Prometheus /metrics (default 127.0.0.1:9464; "off" to disable)
  --state-dir DIR      crash-recovery records (default /var/lib/corral for root)
  --max-running N      cells running at once (default 64); more wait in a queue
  --max-queued N       calls allowed to wait (default 1024); past it: -32001 overloaded
  --scan-interval DUR  host scan cadence for the host metrics (default 5s; 0: off)
  --containment MODE   cgroup2 | cgroup1 | pgroup (default: the best this host offers)
  --queue KIND         the durable task queue: sqlite (default: STATE-DIR/tasks.db), or a
                       PostgreSQL conninfo (postgres://USER@HOST:PORT/DB) shared by many daemons
  --lease DUR          PostgreSQL: a claimed task's lease, renewed every third (default 30s)
  --queue-parallel N   queued tasks running at once, all groups (default: 2 per CPU, at least
                       4; 0: only --max-running); per group: `corral group set G --parallel N`
  --retain DUR         remove finished tasks, their attempts and output files DUR after they
                       ended (e.g. 7d, at least 1s; default: keep them); on PostgreSQL any
                       daemon with it prunes the shared rows, each unlinks only its own files

SIGTERM or SIGINT: stop accepting, cancel every cell, reap, remove the socket, exit 0.
After a crash (even SIGKILL) the next start tears down the cells the previous one left.
)";

std::string DefaultStateDir() {
  if (geteuid() == 0) return "/var/lib/corral";
  const char* xdg = getenv("XDG_STATE_HOME");
  if (xdg != nullptr && xdg[0] == '/') return std::string(xdg) + "/corral";
  const char* home = getenv("HOME");
  return std::string(home != nullptr ? home : "/tmp") + "/.local/state/corral";
}

int Fail(const std::string& what) {
  std::fprintf(stderr, "corral daemon: %s\n", what.c_str());
  return kExitCorralError;
}

}  // namespace

int Daemon(int argc, char** argv) {
  std::string socket_path = DefaultSocketPath(), socket_group, metrics_addr = "127.0.0.1:9464";
  std::string state_dir = DefaultStateDir(), containment, queue_kind = "sqlite";
  SupervisorOptions opts;
  int64_t scan_interval_ns = 5 * kNsPerSec;
  int64_t lease_ms = 30000;
  int64_t queue_parallel = DefaultQueueParallel();
  int64_t retain_ms = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i], v;
    auto value = [&](std::string* out) {
      if (size_t eq = a.find('='); eq != std::string::npos) {
        *out = a.substr(eq + 1);
        a = a.substr(0, eq);
        return true;
      }
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    auto count = [&](size_t* out) {
      auto n = ParseInteger(v, 0, INT64_MAX);
      if (n) *out = static_cast<size_t>(*n);
      return n.has_value();
    };
    if (a == "-h" || a == "--help") {
      std::fputs(kHelp, stdout);
      return 0;
    }
    std::string name = a.substr(0, a.find('='));
    if (name != "--socket" && name != "--socket-group" && name != "--metrics" &&
        name != "--state-dir" && name != "--max-running" && name != "--max-queued" &&
        name != "--scan-interval" && name != "--containment" && name != "--queue" &&
        name != "--lease" && name != "--queue-parallel" && name != "--retain") {
      return Fail("unknown option " + a + " (see `corral daemon --help`)");
    }
    if (!value(&v)) return Fail(a + " needs a value");
    if (a == "--socket")
      socket_path = v;
    else if (a == "--socket-group")
      socket_group = v;
    else if (a == "--metrics")
      metrics_addr = v;
    else if (a == "--state-dir")
      state_dir = v;
    else if (a == "--containment")
      containment = v;
    else if (a == "--queue")
      queue_kind = v;
    else if (a == "--lease") {
      auto d = ParseDurationNs(v);
      if (!d || *d < kNsPerSec) return Fail("--lease: '" + v + "' is not a duration of 1s or more");
      lease_ms = *d / kNsPerMs;
    } else if (a == "--retain") {
      auto d = ParseDurationNs(v);
      if (!d || *d < kNsPerSec)
        return Fail("--retain: '" + v + "' is not a duration of 1s or more");
      retain_ms = *d / kNsPerMs;
    } else if (a == "--queue-parallel") {
      size_t n = 0;
      if (!count(&n)) return Fail("--queue-parallel: '" + v + "' is not a number");
      queue_parallel = static_cast<int64_t>(n);
    } else if (a == "--max-running") {
      if (!count(&opts.max_running) || opts.max_running == 0)
        return Fail("--max-running: '" + v + "' is not a positive number");
    } else if (a == "--max-queued") {
      if (!count(&opts.max_queued)) return Fail("--max-queued: '" + v + "' is not a number");
    } else if (a == "--scan-interval") {
      auto d = ParseDurationNs(v);
      if (!d) return Fail("--scan-interval: '" + v + "' is not a duration");
      scan_interval_ns = *d;
    }
  }

  // Before any thread: the loop reads these from signalfds; SIGPIPE is an EPIPE, never a death.
  sigset_t shutdown_set = MakeSigset({SIGTERM, SIGINT});
  if (!BlockSignals(MakeSigset({SIGTERM, SIGINT, SIGCHLD, SIGPIPE, SIGHUP})).ok()) {
    return Fail("cannot block signals");
  }

  std::optional<ContainmentMode> forced;
  if (!containment.empty()) {
    forced = ParseContainmentMode(containment);
    if (!forced)
      return Fail("--containment: '" + containment + "' is not cgroup2, cgroup1 or pgroup");
  }
  auto config = ChooseContainment(forced);
  if (!config.ok()) return Fail(config.error().message());
  opts.containment = config.value();
  opts.state_dir = state_dir;

  auto loop_or = EventLoop::Create();
  if (!loop_or.ok()) return Fail(loop_or.error().message());
  EventLoop* loop = loop_or->get();

  // Tears down a crashed predecessor's cells before serving anyone.
  auto sup_or = Supervisor::Create(loop, opts);
  if (!sup_or.ok()) return Fail(sup_or.error().message());
  Supervisor* sup = sup_or->get();

  // After the Supervisor's recovery: a dead daemon's running attempts become crashed, re-queued.
  TaskQueueOptions queue_opts;
  queue_opts.state_dir = state_dir;
  queue_opts.lease_ms = lease_ms;
  queue_opts.parallel = queue_parallel;
  queue_opts.retention_ms = retain_ms;
  if (queue_kind.rfind("postgres://", 0) == 0 || queue_kind.rfind("postgresql://", 0) == 0 ||
      queue_kind.find('=') != std::string::npos) {
    queue_opts.postgres = queue_kind;  // a libpq conninfo: URI or key=value pairs
  } else if (queue_kind != "sqlite") {
    return Fail("--queue: '" + queue_kind +
                "' is neither sqlite nor a PostgreSQL conninfo "
                "(postgres://USER@HOST:PORT/DB or 'host=... dbname=...')");
  }
  auto queue_or = TaskQueue::Open(loop, sup, queue_opts);
  if (!queue_or.ok()) return Fail(queue_or.error().message());
  TaskQueue* queue = queue_or->get();

  UnixServer::Options server_opts;
  server_opts.path = socket_path;
  if (!socket_group.empty()) {
    auto gid = ResolveGroup(socket_group);
    if (!gid.ok()) return Fail("--socket-group: " + gid.error().message());
    server_opts.group = gid.value();
  }
  auto server_or = UnixServer::Start(loop, server_opts);
  if (!server_or.ok()) return Fail(server_or.error().message());
  UnixServer* server = server_or->get();

  // Metrics: updated as things happen; /metrics only renders.
  metrics::Registry registry;
  api::DaemonMetrics daemon_metrics(&registry, sup, loop);
  api::RegisterTaskMetrics(&registry, queue);

  std::unique_ptr<api::HttpServer> http;
  if (metrics_addr != "off") {
    auto h = api::HttpServer::Create(loop, metrics_addr);
    if (!h.ok()) return Fail("--metrics " + metrics_addr + ": " + h.error().message());
    http = std::move(h).value();
    api::ServeMetrics(http.get(), &registry);
  }

  // The host scan runs on its own thread at its own cadence: its cost never lands on a call.
  std::mutex scan_mu;
  std::condition_variable scan_cv;
  bool scan_quit = false;
  nlohmann::json last_scan = {{"error", "no scan yet"}};
  api::HostMetrics host_metrics(&registry, 20);
  std::thread scan_thread;
  if (scan_interval_ns > 0) {
    scan_thread = std::thread([&] {
      scan::HostScanner scanner{scan::ScanOptions{}};
      pid_t self = getpid();
      std::unique_lock<std::mutex> lock(scan_mu);
      do {
        lock.unlock();
        auto r = scanner.Scan();
        if (r.ok()) {
          host_metrics.Export(r.value());
          int ours = 0;
          for (const auto& p : r->zombies_by_parent) {
            if (p.pid == self) ours = p.zombies;
          }
          daemon_metrics.SetUnreapedChildren(ours);
        } else {
          host_metrics.CountError();
        }
        nlohmann::json j =
            r.ok() ? scan::ReportToJson(r.value()) : nlohmann::json{{"error", r.error().message()}};
        lock.lock();
        last_scan = std::move(j);
      } while (!scan_cv.wait_for(lock, std::chrono::nanoseconds(scan_interval_ns),
                                 [&] { return scan_quit; }));
    });
  }

  api::RegisterMethods(server, sup, loop, queue, [&] {
    std::lock_guard<std::mutex> lock(scan_mu);
    return last_scan;
  });

  auto sigfd = SignalFd::Create(shutdown_set);
  if (!sigfd.ok()) return Fail(sigfd.error().message());
  bool stopping = false, stopped = false;
  auto sig_token = loop->Add(sigfd->fd(), EPOLLIN, [&](uint32_t) {
    while (sigfd->Read().value_or(0) != 0) {
      if (stopping) continue;
      stopping = true;
      server->StopAccepting();
      sup->Shutdown([&] { stopped = true; });
    }
  });
  if (!sig_token.ok()) return Fail(sig_token.error().message());

  std::fprintf(stderr, "corral daemon: serving on %s (containment %s; metrics %s; state %s)\n",
               socket_path.c_str(), ContainmentModeName(opts.containment.mode),
               http ? ("http://" + http->bound_address() + "/metrics").c_str() : "off",
               state_dir.c_str());
  if (queue->recovered_crashed() > 0) {
    std::fprintf(stderr, "corral daemon: %d task attempts of a previous daemon marked crashed\n",
                 queue->recovered_crashed());
  }
  if (sup->recovered_killed() > 0) {
    std::fprintf(stderr, "corral daemon: killed %d processes left by a previous daemon\n",
                 sup->recovered_killed());
  }

  Status st = loop->Run([&] { return stopped; });
  server->Shutdown();
  if (scan_thread.joinable()) {
    {
      std::lock_guard<std::mutex> lock(scan_mu);
      scan_quit = true;
    }
    scan_cv.notify_all();
    scan_thread.join();
  }
  if (!st.ok()) return Fail(st.error().message());
  return 0;
}

}  // namespace corral::cli
