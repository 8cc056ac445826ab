// corral-bench: the cell engine against its baselines, measured side by side in one invocation
// (the machines are noisy, so every figure is a ratio to a baseline run in the same rounds; (a)
// and (b) alternate the variants in small batches and print the median batch).
//
//   (a) spawn:  in-process cell API (own cgroup, stdout/stderr capture, setsid, close_range) vs
//               a bare posix_spawn + waitpid loop on /bin/true (glibc posix_spawn is vfork-style)
//   (b) cli:    `corral run -- /bin/true` vs `timeout 30 /bin/true` and `tini -s -- /bin/true`
//   (c) kill:   tree gone for a 100-process tree (half setsid) via a cell, vs bare cgroup.kill +
//               `populated 0`, vs killpg (which leaves every setsid'd process alive)
//
// Usage: corral-bench [--rounds R] [--per-round N] [--trees T] PAYLOAD CORRAL
//   (c) kills T trees per row (default 25: one tree is a single sample of a few ms, and the noise
//   here is of that order)
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "cell/cell.h"
#include "cell/result_json.h"
#include "sys/clock.h"
#include "sys/proc.h"

extern char** environ;
using namespace corral;

namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

pid_t SpawnPlain(const std::vector<std::string>& args, bool own_group = false) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  if (own_group) {
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
  }
  int rc = posix_spawn(&pid, argv[0], &fa, &attr, argv.data(), environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  return rc == 0 ? pid : -1;
}

void RunPlain(const std::vector<std::string>& args) {
  pid_t pid = SpawnPlain(args);
  int st;
  if (pid > 0) waitpid(pid, &st, 0);
}

// Runs the variants in turn, `batch` calls each, until each has made n calls, and appends each
// batch's mean ms per call to that variant's samples; tables print the median sample. Small
// interleaved batches and a median keep a burst of load on the shared VM (other engineers'
// builds) from landing on one variant only or from skewing a whole round.
void TimeInterleaved(int n, int batch, const std::vector<std::function<void()>>& calls,
                     std::vector<std::vector<double>*> samples) {
  for (int done = 0; done < n; done += batch) {
    int k = std::min(batch, n - done);
    for (size_t v = 0; v < calls.size(); ++v) {
      int64_t t0 = MonotonicNs();
      for (int i = 0; i < k; ++i) calls[v]();
      samples[v]->push_back(static_cast<double>(MonotonicNs() - t0) / 1e6 / k);
    }
  }
}

struct Row {
  std::string name;
  std::vector<double> ms;
};

void PrintTable(const char* title, const std::vector<Row>& rows, size_t baseline) {
  std::printf("\n%s\n| %-44s | %10s | %8s |\n|%s|%s|%s|\n", title, "what", "ms/call", "ratio",
              std::string(46, '-').c_str(), std::string(12, '-').c_str(),
              std::string(10, '-').c_str());
  double base = Median(rows[baseline].ms);
  for (const Row& r : rows) {
    double m = Median(r.ms);
    std::printf("| %-44s | %10.3f | %7.2fx |\n", r.name.c_str(), m, m / base);
  }
}

bool Exists(const char* path) { return access(path, X_OK) == 0; }

// --- (c) tree kill ---------------------------------------------------------------------------

// Reaps every child (we are subreaper: orphans of the trees come back to us).
void ReapAll() {
  while (waitpid(-1, nullptr, WNOHANG) > 0) {
  }
}

int CountLines(const std::string& path) {
  auto r = ReadSmallFile(path, 1 << 20);
  if (!r.ok()) return -1;
  return static_cast<int>(std::count(r->begin(), r->end(), '\n'));
}

void WaitForMembers(const std::string& procs, int want) {
  int64_t deadline = MonotonicNs() + 10 * kNsPerSec;
  while (CountLines(procs) < want && MonotonicNs() < deadline) usleep(2000);
}

// A v2 cgroup with a 100-process tree in it; returns the cgroup path.
std::string MakeTreeCgroup(const std::string& v2root, const std::string& payload, int n,
                           pid_t* leader, const std::vector<std::string>& v1_dirs = {}) {
  std::string dir = v2root + "/bench-" + std::to_string(getpid());
  mkdir(dir.c_str(), 0755);
  // The leader waits 50 ms before forking, time for us to move it into the cgroup.
  *leader = SpawnPlain(
      {payload, "sleep", "0.05", "+", "tree", std::to_string(n), "60", "+", "sleep", "60"},
      /*own_group=*/true);
  (void)WriteFileString(dir + "/cgroup.procs", std::to_string(*leader));
  for (const std::string& d : v1_dirs) {
    (void)WriteFileString(d + "/cgroup.procs", std::to_string(*leader));
  }
  WaitForMembers(dir + "/cgroup.procs", n + 1);
  return dir;
}

// `v1_roots`: v1 hierarchies (pids, memory) the tree also joins, as a cgroup1 cell's tree does:
// then every exit also uncharges a non-root memcg and pids counter, kernel work a tree in the
// v2 directory alone does not pay.
double BareCgroupKill(const std::string& v2root, const std::string& payload, int n,
                      const std::vector<std::string>& v1_roots = {}) {
  pid_t leader;
  std::vector<std::string> v1_dirs;
  for (const std::string& root : v1_roots) {
    if (root.empty()) continue;
    v1_dirs.push_back(root + "/bench-" + std::to_string(getpid()));
    mkdir(v1_dirs.back().c_str(), 0755);
  }
  std::string dir = MakeTreeCgroup(v2root, payload, n, &leader, v1_dirs);
  auto events = OpenFile(dir + "/cgroup.events", O_RDONLY);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLPRI;
  epoll_ctl(ep, EPOLL_CTL_ADD, events->get(), &ev);
  int64_t t0 = MonotonicNs();
  (void)WriteFileString(dir + "/cgroup.kill", "1");
  for (;;) {
    auto text = ReadFd(events->get());
    if (text.ok() && text->find("populated 0") != std::string::npos) break;
    epoll_wait(ep, &ev, 1, 100);
  }
  double ms = static_cast<double>(MonotonicNs() - t0) / 1e6;
  close(ep);
  ReapAll();
  rmdir(dir.c_str());
  for (const std::string& d : v1_dirs) rmdir(d.c_str());
  return ms;
}

// killpg on the leader's group; returns ms until the leader's group is gone, and how many
// processes of the tree were still alive afterwards (escapees), which are then cleaned up.
double KillpgTree(const std::string& v2root, const std::string& payload, int n, int* escaped) {
  pid_t leader;
  std::string dir = MakeTreeCgroup(v2root, payload, n, &leader);
  int64_t t0 = MonotonicNs();
  kill(-leader, SIGKILL);  // the leader heads its own process group
  waitpid(leader, nullptr, 0);
  double ms = static_cast<double>(MonotonicNs() - t0) / 1e6;
  usleep(100000);
  *escaped = CountLines(dir + "/cgroup.procs");
  (void)WriteFileString(dir + "/cgroup.kill", "1");
  int64_t deadline = MonotonicNs() + 5 * kNsPerSec;
  while (CountLines(dir + "/cgroup.procs") > 0 && MonotonicNs() < deadline) usleep(2000);
  ReapAll();
  rmdir(dir.c_str());
  return ms;
}

// The cgroup2 directory of pid ("0::/corral/pool/0" in /proc/PID/cgroup), under the mount that
// holds v2_root.
std::string V2Dir(const std::string& v2_root, pid_t pid) {
  std::string mount = v2_root.substr(0, v2_root.rfind('/'));
  auto text = ReadSmallFile("/proc/" + std::to_string(pid) + "/cgroup");
  if (!text.ok()) return "";
  size_t at = text->find("0::");
  if (at == std::string::npos) return "";
  size_t end = text->find('\n', at);
  return mount + text->substr(at + 3, end == std::string::npos ? std::string::npos : end - at - 3);
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 7, per_round = 200, trees = 25;
  std::vector<std::string> pos;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--cell-rate=", 0) == 0)
      pos.push_back(a);
    else if (a == "--rounds" && i + 1 < argc)
      rounds = std::atoi(argv[++i]);
    else if (a == "--per-round" && i + 1 < argc)
      per_round = std::atoi(argv[++i]);
    else if (a == "--trees" && i + 1 < argc)
      trees = std::atoi(argv[++i]);
    else
      pos.push_back(a);
  }
  if (pos.size() == 1 && pos[0].rfind("--cell-rate=", 0) == 0) {
    // Sequential in-process cells per second, for bench/daemon_bench.py's baseline.
    int n = std::atoi(pos[0].c_str() + 12);
    auto config = ChooseContainment(std::nullopt);
    auto loop = EventLoop::Create();
    HostOptions opts;
    opts.containment = config.value();
    auto host = CellHost::Create(loop->get(), opts);
    int64_t t0 = MonotonicNs();
    for (int i = 0; i < n; ++i) {
      CellSpec s;
      s.id = "bench-" + std::to_string(getpid()) + "-" + std::to_string(i);
      s.argv = {"/bin/true"};
      RunCellSync(host->get(), s);
    }
    std::printf("cells_per_s %.1f\n", n / (static_cast<double>(MonotonicNs() - t0) / 1e9));
    return 0;
  }
  if (pos.size() != 2) {
    std::fprintf(stderr,
                 "usage: corral-bench [--rounds R] [--per-round N] [--trees T] PAYLOAD CORRAL\n");
    return 2;
  }
  const std::string payload = pos[0], corral_bin = pos[1];
  prctl(PR_SET_CHILD_SUBREAPER, 1);

  auto config = ChooseContainment(std::nullopt);
  if (!config.ok()) return 1;
  auto loop = EventLoop::Create();
  HostOptions opts;
  opts.containment = config.value();
  opts.reap_orphans = false;
  auto host = CellHost::Create(loop->get(), opts);
  int seq = 0;
  auto cell_call = [&](OutputMode out) {
    CellSpec s;
    s.id = "bench-" + std::to_string(getpid()) + "-" + std::to_string(++seq);
    s.argv = {"/bin/true"};
    s.output = out;
    RunCellSync(host->get(), s);
  };
  auto pconfig = ChooseContainment(ContainmentMode::kPgroup);
  HostOptions popts;
  popts.containment = pconfig.value();
  popts.single_cell = true;  // as `corral run` uses it (the reaping itself stays with us)
  auto phost = CellHost::Create(loop->get(), popts);
  auto pgroup_call = [&] {
    CellSpec s;
    s.id = "bench-" + std::to_string(getpid()) + "-" + std::to_string(++seq);
    s.argv = {"/bin/true"};
    RunCellSync(phost->get(), s);
  };
  // On a hybrid host, also a cell in its cgroup2 directory alone (no v1 pids/memory joins, no
  // memcg charging): what a cell costs where cgroup2 has no controllers enabled.
  std::unique_ptr<CellHost> v2host;
  if (config->mode == ContainmentMode::kCgroup1 && !config->v2_root.empty()) {
    auto v2config = ChooseContainment(ContainmentMode::kCgroup2);
    HostOptions v2opts;
    if (v2config.ok()) v2opts.containment = v2config.value();
    v2opts.reap_orphans = false;
    auto h = v2config.ok() ? CellHost::Create(loop->get(), v2opts) : Error::Msg("no cgroup2");
    if (h.ok()) v2host = std::move(h).value();
  }
  auto v2_call = [&] {
    CellSpec s;
    s.id = "bench-" + std::to_string(getpid()) + "-" + std::to_string(++seq);
    s.argv = {"/bin/true"};
    RunCellSync(v2host.get(), s);
  };
  std::printf("host: containment %s (%s)\n", ContainmentModeName(config->mode),
              config->why.c_str());

  // (a) spawn
  std::vector<Row> a = {{"posix_spawn + waitpid /bin/true (floor)", {}},
                        {"cell API: own cgroup, capture, setsid, close_range", {}},
                        {"cell API, pgroup backend (no cgroup work)", {}}};
  std::vector<std::function<void()>> a_calls = {
      [] { RunPlain({"/bin/true"}); }, [&] { cell_call(OutputMode::kCapture); }, pgroup_call};
  if (v2host) {
    a.push_back({"cell API, cgroup2 directory only (no v1 joins)", {}});
    a_calls.push_back(v2_call);
  }
  std::vector<std::vector<double>*> a_samples;
  for (Row& row : a) a_samples.push_back(&row.ms);
  for (int r = 0; r < rounds; ++r) TimeInterleaved(per_round, 10, a_calls, a_samples);
  PrintTable("(a) per-call cost of a cell (median of interleaved batches of 10)", a, 0);

  // (b) cli
  std::vector<Row> b = {
      {"/bin/true (bare)", {}}, {"timeout 30 /bin/true", {}}, {"corral run -- /bin/true", {}}};
  bool tini = Exists("/usr/bin/tini");
  if (tini) b.push_back({"tini -s -- /bin/true", {}});
  int cli_n = std::max(20, per_round / 4);
  std::vector<std::function<void()>> cli = {[] { RunPlain({"/bin/true"}); },
                                            [] {
                                              RunPlain({"/usr/bin/timeout", "30", "/bin/true"});
                                            },
                                            [&] {
                                              RunPlain({corral_bin, "run", "--", "/bin/true"});
                                            }};
  if (tini) cli.push_back([] { RunPlain({"/usr/bin/tini", "-s", "--", "/bin/true"}); });
  std::vector<std::vector<double>*> cli_samples;
  for (Row& row : b) cli_samples.push_back(&row.ms);
  for (int r = 0; r < rounds; ++r) TimeInterleaved(cli_n, 5, cli, cli_samples);
  PrintTable("(b) command-line wrappers, median of interleaved batches of 5 (ratio to timeout)", b,
             1);

  // (c) tree kill
  if (config->v2_root.empty()) {
    std::printf("\n(c) skipped: needs a cgroup2 hierarchy for the bare cgroup.kill baseline\n");
    return 0;
  }
  const int n = 100;
  std::vector<Row> c = {{"bare cgroup.kill + populated 0 (floor)", {}},
                        {"cell: Cancel (grace 0) until tree gone", {}},
                        {"killpg(leader's group), SIGKILL", {}},
                        {"bare cgroup.kill, tree also in v1 pids+memory", {}}};
  int escaped_total = 0, cell_left = 0, kill_rounds = std::max(3, trees);
  for (int r = 0; r < kill_rounds; ++r) {
    c[0].ms.push_back(BareCgroupKill(config->v2_root, payload, n));
    CellSpec s;
    s.id = "bench-" + std::to_string(getpid()) + "-" + std::to_string(++seq);
    s.argv = {payload, "tree", std::to_string(n), "60", "+", "sleep", "60"};
    s.grace_ns = 0;
    bool done = false;
    int64_t t0 = 0;
    CellResult result;
    Cell* cell = (*host)->Start(s, [&](const CellResult& res) {
      done = true;
      result = res;
      cell_left += static_cast<int>(res.stuck.size());
    });
    // The cell's directory may be a pool slot: ask the kernel where the leader is.
    std::string procs = V2Dir(config->v2_root, cell->leader_pid()) + "/cgroup.procs";
    while (!done && CountLines(procs) < n + 1) (void)(*loop)->RunOnce(2 * kNsPerMs);
    if (done) {
      std::fprintf(stderr, "(c) the tree's cell ended before it was complete: %s\n",
                   DumpJson(ResultToJson(result)).c_str());
      return 1;
    }
    t0 = MonotonicNs();
    cell->Cancel("cancelled");
    while (!done) (void)(*loop)->RunOnce();
    c[1].ms.push_back(static_cast<double>(MonotonicNs() - t0) / 1e6);
    ReapAll();
    int escaped = 0;
    c[2].ms.push_back(KillpgTree(config->v2_root, payload, n, &escaped));
    // The same floor with the cell's cgroup membership (on cgroup1 hosts: + v1 pids, memory).
    c[3].ms.push_back(BareCgroupKill(config->v2_root, payload, n,
                                     {config->v1_pids_root, config->v1_memory_root}));
    escaped_total += escaped;
  }
  PrintTable("(c) tree gone, 100 processes, half of them setsid'd (ratio to bare cgroup.kill)", c,
             0);
  std::printf("escapees: cell %d, killpg %d per tree (of %d)\n", cell_left,
              escaped_total / kill_rounds, n);
  return 0;
}
