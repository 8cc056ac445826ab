// corral scan: host process health in one pass over /proc (see scan/host_scan.h for what is
// read and why it never blocks). Three ways to run it:
//   corral scan [--json]           one report; the exit status says whether anything is over a
//                                  threshold, for cron jobs and health checks
//   corral scan --watch 2s         a live view refreshed like top (with --json: one object per
//                                  line, for piping)
//   corral scan --serve ADDR:PORT  a Prometheus exporter of the host gauges without the daemon;
//                                  the scan runs on its own thread every --interval, never per
//                                  scrape, and the HTTP server runs on the event loop
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <string>
#include <thread>

#include "api/http_server.h"
#include "api/metrics.h"
#include "api/metrics_scan.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "scan/host_scan.h"
#include "scan/report_json.h"
#include "sys/event_loop.h"
#include "sys/signal_fd.h"

namespace corral::cli {

namespace {

constexpr int kExitOverThreshold = 1;

const char kHelp[] =
    R"(usage: corral scan [--json] [--watch DUR] [--serve ADDR:PORT] [--top N] [THRESHOLDS]

Looks at every process on the host in one cheap pass over /proc and reports the damage that
unmanaged children do, before it takes the host down:

  zombies by parent   <defunct> processes grouped by the parent that never waits for them,
                      with its command line, the count, the oldest one's age and what to do.
                      A zombie whose parent is itself a zombie is listed as a chain, with the
                      live ancestor that must reap it.
  D state             processes in uninterruptible sleep (usually stuck I/O: NFS, FUSE, a
                      frozen cgroup, a dead device), with the kernel function they wait in
                      (wchan) and for how long. They ignore SIGKILL until the kernel lets go.
  fd pressure         processes whose open fds reach a share of their soft RLIMIT_NOFILE.
  pids                tasks in use against kernel.pid_max, and every pids-limited cgroup
                      (cgroup v1 pids hierarchy and cgroup2 pids.max), fullest first.
  gpu                 per-device memory and the processes holding it (NVML, loaded at run
                      time; no library = "no GPU"), flagging memory held by processes that are
                      dead or zombies.
  skipped             what was deliberately not read: the scan never reads the memory of a
                      D-state process (cmdline would hang the scanner with it).

options:
  --json              print one JSON object (zombies_by_parent, zombie_chains, dstate,
                      fd_pressure, pids, gpu, skipped, findings, ...)
  --watch DUR         refresh every DUR (e.g. 2s) like top until interrupted; with --json,
                      print one object per line instead
  --serve ADDR:PORT   serve the host gauges on http://ADDR:PORT/metrics (Prometheus text
                      format) until SIGINT/SIGTERM. ADDR defaults to 127.0.0.1 (":9464");
                      port 0 picks a free port. The bound address is printed on stderr.
  --interval DUR      how often --serve rescans (default 5s)
  --top N             entries kept per list and per labelled metric (default 20)
  --threads           also check every thread's state (finds a D-state thread of a
                      multi-threaded process; costs one read per thread)
  --fd-min N          only compare processes with at least N open fds to their limit
                      (default 32; the check reads /proc/PID/limits for those only)
  --no-gpu            do not query NVML
  --nvml-library PATH load this NVML library instead of libnvidia-ml.so.1 (also:
                      $CORRAL_NVML_LIBRARY)

thresholds (what counts as a finding):
  --zombies N         a parent holding N or more zombie children (default 5)
  --dstate DUR        a process in D state for DUR or longer (default 30s)
  --fd-ratio R        open fds >= R * soft RLIMIT_NOFILE (default 0.8)
  --pid-ratio R       PIDs in use >= R * pid_max, or >= R * a cgroup's pids.max (default 0.8)
  --gpu-orphaned B    GPU memory held by dead/zombie processes >= B bytes (K, M, G; default 1)

exit status:
  0    nothing over a threshold
  1    something over a threshold (the report's "findings" say what)
  125  corral could not scan (bad option, /proc unreadable, address in use)
With --watch and --serve, the exit status is 0 when interrupted.

DUR is 500ms, 30s, 2m, 1h or plain seconds. Examples:
  corral scan                          # what is wrong on this host right now
  corral scan --json | jq .zombies_by_parent
  corral scan --zombies 50 --dstate 5m || page-someone   # from cron
  corral scan --watch 2s
  corral scan --serve 127.0.0.1:9464   # then scrape it; alert rules in deploy/prometheus/
)";

// Each parser stores into *out and says whether the text was one of its values.
bool ParseSeconds(const std::string& s, double* out) {
  auto ns = ParseDurationNs(s);
  if (ns) *out = static_cast<double>(*ns) / 1e9;
  return ns.has_value();
}

template <typename T>
bool ParseCount(const std::string& s, int64_t min, int64_t max, T* out) {
  auto n = ParseInteger(s, min, max);
  if (n) *out = static_cast<T>(*n);
  return n.has_value();
}

bool ParseSize(const std::string& s, uint64_t* out) {
  auto b = ParseBytes(s);
  if (b) *out = *b;
  return b.has_value();
}

bool ParseRatio(const std::string& s, double* out) {
  auto v = ParseNonNegative(s);
  if (v) *out = *v;
  return v.has_value();
}

std::string Age(double s) {
  char buf[32];
  if (s < 120) {
    std::snprintf(buf, sizeof buf, "%.0fs", s);
  } else if (s < 7200) {
    std::snprintf(buf, sizeof buf, "%.0fm", s / 60);
  } else if (s < 172800) {
    std::snprintf(buf, sizeof buf, "%.1fh", s / 3600);
  } else {
    std::snprintf(buf, sizeof buf, "%.1fd", s / 86400);
  }
  return buf;
}

std::string Bytes(uint64_t b) {
  char buf[32];
  if (b >= (1ULL << 30)) {
    std::snprintf(buf, sizeof buf, "%.1fG", static_cast<double>(b) / (1ULL << 30));
  } else if (b >= (1ULL << 20)) {
    std::snprintf(buf, sizeof buf, "%.1fM", static_cast<double>(b) / (1ULL << 20));
  } else {
    std::snprintf(buf, sizeof buf, "%lluB", static_cast<unsigned long long>(b));
  }
  return buf;
}

std::string Clip(const std::string& s, size_t n) {
  std::string out;
  for (char c : s) out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
  return out.size() <= n ? out : out.substr(0, n - 3) + "...";
}

void PrintText(const scan::ScanReport& r, FILE* out) {
  char when[64];
  time_t t = static_cast<time_t>(r.timestamp_s);
  struct tm tm;
  localtime_r(&t, &tm);
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
  double pct =
      r.pids.max ? 100.0 * static_cast<double>(r.pids.used) / static_cast<double>(r.pids.max) : 0;
  std::fprintf(out, "corral scan  %s  %llu processes scanned in %.1f ms\n", when,
               static_cast<unsigned long long>(r.processes), r.duration_s * 1000);
  std::fprintf(out, "pids: %llu of pid_max %llu in use (%.0f%%), %llu zombies, %llu in D state\n\n",
               static_cast<unsigned long long>(r.pids.used),
               static_cast<unsigned long long>(r.pids.max), pct,
               static_cast<unsigned long long>(r.zombies),
               static_cast<unsigned long long>(r.dstate_total));
  if (!r.zombies_by_parent.empty()) {
    std::fprintf(out, "ZOMBIES BY PARENT\n  %-8s %-16s %8s %8s  %s\n", "PID", "COMM", "ZOMBIES",
                 "OLDEST", "CMDLINE");
    for (const auto& z : r.zombies_by_parent) {
      std::fprintf(out, "  %-8d %-16s %8d %8s  %s\n", z.pid, Clip(z.comm, 16).c_str(), z.zombies,
                   Age(z.oldest_s).c_str(), Clip(z.cmdline, 60).c_str());
    }
    std::fprintf(out, "  -> %s\n", r.zombies_by_parent.front().advice.c_str());
    for (const auto& c : r.zombie_chains) {
      std::fprintf(out, "  chain: zombie %d (%s) holds %d zombies; %d (%s) must reap it\n", c.pid,
                   Clip(c.comm, 16).c_str(), c.zombies, c.reaper, Clip(c.reaper_comm, 16).c_str());
    }
    std::fputc('\n', out);
  }
  if (!r.dstate.empty()) {
    std::fprintf(out, "D STATE (uninterruptible; SIGKILL waits until the kernel lets go)\n");
    std::fprintf(out, "  %-8s %-16s %-28s %8s\n", "PID", "COMM", "WCHAN", "SINCE");
    for (const auto& d : r.dstate) {
      std::fprintf(out, "  %-8d %-16s %-28s %8s\n", d.tid, Clip(d.comm, 16).c_str(),
                   Clip(d.wchan.empty() ? "-" : d.wchan, 28).c_str(), Age(d.since_s).c_str());
    }
    std::fputc('\n', out);
  }
  if (!r.fd_pressure.empty()) {
    std::fprintf(out, "FD PRESSURE\n  %-8s %-16s %8s %8s\n", "PID", "COMM", "OPEN", "LIMIT");
    for (const auto& f : r.fd_pressure) {
      std::fprintf(out, "  %-8d %-16s %8llu %8llu\n", f.pid, Clip(f.comm, 16).c_str(),
                   static_cast<unsigned long long>(f.open_fds),
                   static_cast<unsigned long long>(f.soft_limit));
    }
    std::fputc('\n', out);
  }
  if (!r.pids.cgroups.empty()) {
    std::fprintf(out, "PIDS-LIMITED CGROUPS\n  %8s %8s  %s\n", "CURRENT", "MAX", "CGROUP");
    for (const auto& c : r.pids.cgroups) {
      std::fprintf(out, "  %8llu %8llu  %s:%s\n", static_cast<unsigned long long>(c.current),
                   static_cast<unsigned long long>(c.max), c.hierarchy.c_str(),
                   Clip(c.path, 80).c_str());
    }
    std::fputc('\n', out);
  }
  std::fprintf(out, "GPU: %s\n", r.gpu.status.c_str());
  for (const auto& d : r.gpu.devices) {
    std::fprintf(out, "  gpu %d %s: %s of %s used, %s orphaned\n", d.index, d.name.c_str(),
                 Bytes(d.used_bytes).c_str(), Bytes(d.total_bytes).c_str(),
                 Bytes(d.orphaned_bytes).c_str());
    for (const auto& p : d.processes) {
      std::fprintf(out, "    pid %-8u %-10s %-16s %s\n", p.pid, p.state.c_str(),
                   Clip(p.comm, 16).c_str(), Bytes(p.used_bytes).c_str());
    }
  }
  if (!r.skipped.empty()) {
    std::fprintf(out, "\nSKIPPED (not read because it could block)\n");
    for (const auto& s : r.skipped) {
      std::fprintf(out, "  %s%s: %s (%s)\n",
                   s.pid ? ("pid " + std::to_string(s.pid) + " ").c_str() : "",
                   Clip(s.comm, 16).c_str(), s.what.c_str(), s.why.c_str());
    }
  }
  std::fputc('\n', out);
  if (r.findings.empty()) {
    std::fprintf(out, "nothing over a threshold\n");
  } else {
    std::fprintf(out, "OVER A THRESHOLD\n");
    for (const auto& f : r.findings) std::fprintf(out, "  %s\n", f.c_str());
  }
}

// The exporter: HTTP on the event loop; the scan on its own thread every `interval_s`.
int Serve(scan::HostScanner* scanner, const std::string& address, double interval_s) {
  // Block the shutdown signals before any thread exists, so only the signalfd sees them.
  sigset_t set = MakeSigset({SIGINT, SIGTERM});
  if (auto st = BlockSignals(set); !st.ok()) {
    std::fprintf(stderr, "corral scan: %s\n", st.error().message().c_str());
    return kExitCorralError;
  }
  auto loop = EventLoop::Create();
  if (!loop.ok()) {
    std::fprintf(stderr, "corral scan: %s\n", loop.error().message().c_str());
    return kExitCorralError;
  }
  metrics::Registry registry;
  api::HostMetrics host(&registry, scanner->options().top);
  // First scan before listening, so the very first scrape has data.
  if (auto r = scanner->Scan(); r.ok()) {
    host.Export(r.value());
  } else {
    std::fprintf(stderr, "corral scan: %s\n", r.error().message().c_str());
    return kExitCorralError;
  }
  auto server = api::HttpServer::Create(loop->get(), address);
  if (!server.ok()) {
    std::fprintf(stderr, "corral scan: serve metrics: %s\n", server.error().message().c_str());
    return kExitCorralError;
  }
  api::ServeMetrics(server->get(), &registry);
  auto sfd = SignalFd::Create(set);
  if (!sfd.ok()) {
    std::fprintf(stderr, "corral scan: %s\n", sfd.error().message().c_str());
    return kExitCorralError;
  }
  bool stop = false;
  auto tok = (*loop)->Add(sfd->fd(), EPOLLIN, [&](uint32_t) {
    while (true) {
      auto sig = sfd->Read();
      if (!sig.ok() || sig.value() == 0) break;
      stop = true;
    }
  });
  if (!tok.ok()) {
    std::fprintf(stderr, "corral scan: %s\n", tok.error().message().c_str());
    return kExitCorralError;
  }
  std::fprintf(stderr, "corral scan: serving metrics on http://%s/metrics (scan every %gs)\n",
               (*server)->bound_address().c_str(), interval_s);
  std::fflush(stderr);

  std::mutex mu;
  std::condition_variable cv;
  bool quit = false;
  std::thread scanner_thread([&] {
    std::unique_lock<std::mutex> lock(mu);
    while (!cv.wait_for(lock, std::chrono::duration<double>(interval_s), [&] { return quit; })) {
      lock.unlock();
      auto r = scanner->Scan();
      if (r.ok()) {
        host.Export(r.value());
      } else {
        host.CountError();
      }
      lock.lock();
    }
  });
  Status st = (*loop)->Run([&] { return stop; });
  {
    std::lock_guard<std::mutex> lock(mu);
    quit = true;
  }
  cv.notify_all();
  scanner_thread.join();
  if (!st.ok()) {
    std::fprintf(stderr, "corral scan: %s\n", st.error().message().c_str());
    return kExitCorralError;
  }
  return 0;
}

}  // namespace

int Scan(int argc, char** argv) {
  scan::ScanOptions opts;
  bool json = false;
  double watch_s = 0;
  std::string serve;
  double interval_s = 5;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    bool missing = false;
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) return !(missing = true);
      *out = argv[++i];
      return true;
    };
    std::string v;
    bool ok = true;
    const char* want = "";  // what the option takes, for the error
    if (a == "--help" || a == "-h") {
      std::fputs(kHelp, stdout);
      return 0;
    } else if (a == "--json") {
      json = true;
    } else if (a == "--watch") {
      want = "a duration above 0 (500ms, 2s, 1m)";
      ok = value(&v) && ParseSeconds(v, &watch_s) && watch_s > 0;
    } else if (a == "--serve") {
      ok = value(&serve);
    } else if (a == "--interval") {
      want = "a duration above 0 (500ms, 2s, 1m)";
      ok = value(&v) && ParseSeconds(v, &interval_s) && interval_s > 0;
    } else if (a == "--top") {
      want = "a whole number from 1 to 1000000";
      ok = value(&v) && ParseCount(v, 1, 1000000, &opts.top);
    } else if (a == "--threads") {
      opts.threads = true;
    } else if (a == "--fd-min") {
      want = "a whole number of fds";
      ok = value(&v) && ParseCount(v, 0, INT64_MAX, &opts.fd_min);
    } else if (a == "--no-gpu") {
      opts.gpu = false;
    } else if (a == "--nvml-library") {
      ok = value(&opts.nvml_library);
    } else if (a == "--zombies") {
      want = "a whole number of zombies, at least 1";
      ok = value(&v) && ParseCount(v, 1, INT32_MAX, &opts.thresholds.zombies_per_parent);
    } else if (a == "--dstate") {
      want = "a duration (500ms, 30s, 2m, 1h)";
      ok = value(&v) && ParseSeconds(v, &opts.thresholds.dstate_s);
    } else if (a == "--fd-ratio") {
      want = "a ratio such as 0.8";
      ok = value(&v) && ParseRatio(v, &opts.thresholds.fd_ratio);
    } else if (a == "--pid-ratio") {
      want = "a ratio such as 0.8";
      ok = value(&v) && ParseRatio(v, &opts.thresholds.pid_ratio);
    } else if (a == "--gpu-orphaned") {
      want = "a size in bytes (1, 512M, 2G)";
      ok = value(&v) && ParseSize(v, &opts.thresholds.gpu_orphaned_bytes);
    } else {
      std::fprintf(stderr, "corral scan: unknown option '%s' (see `corral scan --help`)\n",
                   a.c_str());
      return kExitCorralError;
    }
    if (!ok) {
      if (missing) {
        std::fprintf(stderr, "corral scan: %s needs a value (see `corral scan --help`)\n",
                     a.c_str());
      } else {
        std::fprintf(stderr, "corral scan: %s: '%s' is not %s (see `corral scan --help`)\n",
                     a.c_str(), v.c_str(), want);
      }
      return kExitCorralError;
    }
  }
  scan::HostScanner scanner(opts);
  if (!serve.empty()) return Serve(&scanner, serve, interval_s);

  const bool tty = isatty(STDOUT_FILENO) == 1;
  for (;;) {
    auto r = scanner.Scan();
    if (!r.ok()) {
      std::fprintf(stderr, "corral scan: %s\n", r.error().message().c_str());
      return kExitCorralError;
    }
    if (json) {
      std::string text = scan::ReportToJson(r.value()).dump(watch_s > 0 ? -1 : 2);
      std::fprintf(stdout, "%s\n", text.c_str());
    } else {
      if (watch_s > 0 && tty) std::fputs("\033[H\033[2J", stdout);  // home + clear, like top
      PrintText(r.value(), stdout);
      if (watch_s > 0 && !tty) std::fputs("\n", stdout);
    }
    std::fflush(stdout);
    if (watch_s <= 0) return r->findings.empty() ? 0 : kExitOverThreshold;
    std::this_thread::sleep_for(std::chrono::duration<double>(watch_s));
  }
}

}  // namespace corral::cli
