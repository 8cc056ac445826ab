// The host scan against a synthetic /proc (zombie chains, grouping, hostile names) and against
// the real one (a zombie child of this test is found under this process).
#include "scan/host_scan.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "api/metrics.h"
#include "api/metrics_scan.h"
#include "scan/report_json.h"

namespace corral::scan {
namespace {

namespace fs = std::filesystem;

class FakeProc {
 public:
  FakeProc() {
    char tmpl[] = "/tmp/corral-fakeproc-XXXXXX";
    root_ = mkdtemp(tmpl);
    fs::create_directories(root_ / "sys/kernel");
    Write("sys/kernel/pid_max", "32768\n");
    Write("sys/kernel/threads-max", "1000\n");
    Write("loadavg", "0.00 0.00 0.00 1/40 99\n");
  }
  ~FakeProc() { fs::remove_all(root_); }
  void Write(const std::string& rel, const std::string& text) {
    fs::create_directories((root_ / rel).parent_path());
    std::ofstream(root_ / rel) << text;
  }
  void Proc(int pid, const std::string& comm, char state, int ppid, uint64_t start = 100) {
    Write(std::to_string(pid) + "/stat",
          std::to_string(pid) + " (" + comm + ") " + state + " " + std::to_string(ppid) +
              " 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 " + std::to_string(start) + " 0 0\n");
    Write(std::to_string(pid) + "/cmdline", comm + std::string("\0--flag\0", 8));
  }
  std::string path() const { return root_; }

 private:
  fs::path root_;
};

ScanOptions Opts(const FakeProc& p) {
  ScanOptions o;
  o.proc = p.path();
  o.gpu = false;
  o.cgroups = false;
  o.thresholds.zombies_per_parent = 3;
  return o;
}

TEST(HostScanTest, GroupsZombiesByParentAndFindsChains) {
  FakeProc p;
  p.Proc(1, "init", 'S', 0);
  p.Proc(10, "dispatcher", 'S', 1);
  for (int i = 0; i < 4; ++i) p.Proc(100 + i, "worker", 'Z', 10, 50 + i);
  p.Proc(20, "dead parent", 'Z', 10);  // a zombie that has zombie children: a chain
  p.Proc(200, "grandchild", 'Z', 20);
  p.Proc(201, "grandchild", 'Z', 20);
  p.Proc(30, "ok) S 1 (", 'S', 1);  // hostile comm, not a zombie parent
  HostScanner s(Opts(p));
  auto r = s.Scan();
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->processes, 10u);
  EXPECT_EQ(r->zombies, 7u);
  ASSERT_EQ(r->zombies_by_parent.size(), 2u);
  const ZombieParent& top = r->zombies_by_parent[0];
  EXPECT_EQ(top.pid, 10);
  EXPECT_EQ(top.zombies, 5);  // 4 workers + the zombie parent itself
  EXPECT_EQ(top.comm, "dispatcher");
  EXPECT_EQ(top.cmdline, "dispatcher --flag");
  EXPECT_NE(top.advice.find("kill -CHLD 10"), std::string::npos);
  EXPECT_EQ(r->zombies_by_parent[1].pid, 20);
  EXPECT_EQ(r->zombies_by_parent[1].state, 'Z');
  ASSERT_EQ(r->zombie_chains.size(), 1u);
  EXPECT_EQ(r->zombie_chains[0].pid, 20);
  EXPECT_EQ(r->zombie_chains[0].reaper, 10);
  ASSERT_EQ(r->findings.size(), 1u);
  EXPECT_NE(r->findings[0].find("PID 10 (dispatcher) holds 5"), std::string::npos);
  EXPECT_EQ(r->pids.used, 40u);
  EXPECT_EQ(r->pids.max, 32768u);
  auto j = ReportToJson(r.value());
  EXPECT_EQ(j["zombies_by_parent"][0]["zombies"], 5);
  for (const char* k : {"zombies_by_parent", "dstate", "fd_pressure", "pids", "gpu", "skipped"}) {
    EXPECT_TRUE(j.contains(k)) << k;
  }
}

TEST(HostScanTest, DStateReadsOnlyWchanAndListsWhatItSkipped) {
  FakeProc p;
  p.Proc(1, "init", 'S', 0);
  p.Proc(50, "kubectl", 'D', 1);
  p.Write("50/wchan", "rpc_wait_bit_killable");
  p.Proc(51, "zparent", 'D', 1);
  p.Proc(52, "z", 'Z', 51);
  ScanOptions o = Opts(p);
  o.thresholds.dstate_s = 0;
  o.thresholds.zombies_per_parent = 100;
  HostScanner s(o);
  auto r = s.Scan();
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->dstate.size(), 2u);
  EXPECT_EQ(r->dstate_total, 2u);
  bool found = false;
  for (const auto& d : r->dstate) {
    if (d.pid == 50) {
      found = true;
      EXPECT_EQ(d.wchan, "rpc_wait_bit_killable");
    }
  }
  EXPECT_TRUE(found);
  // The D-state zombie parent's cmdline was not read.
  ASSERT_EQ(r->zombies_by_parent.size(), 1u);
  EXPECT_EQ(r->zombies_by_parent[0].cmdline, "");
  bool skipped = false;
  for (const auto& k : r->skipped) skipped = skipped || (k.pid == 51 && k.what == "cmdline");
  EXPECT_TRUE(skipped);
  EXPECT_EQ(r->findings.size(), 2u);
  // A second scan keeps the first-seen time, so durations grow.
  auto r2 = s.Scan();
  ASSERT_TRUE(r2.ok());
  EXPECT_GE(r2->dstate[0].since_s, 0);
}

TEST(HostScanTest, RealZombieChildOfThisProcessIsFound) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) _exit(0);
  siginfo_t si{};
  ASSERT_EQ(waitid(P_PID, static_cast<id_t>(pid), &si, WEXITED | WNOWAIT), 0);  // now a zombie
  ScanOptions o;
  o.gpu = false;
  HostScanner s(o);
  auto r = s.Scan();
  waitpid(pid, nullptr, 0);
  ASSERT_TRUE(r.ok()) << r.error().message();
  bool found = false;
  for (const auto& z : r->zombies_by_parent) {
    if (z.pid == getpid()) {
      found = true;
      EXPECT_GE(z.zombies, 1);
      EXPECT_FALSE(z.cmdline.empty());
    }
  }
  EXPECT_TRUE(found);
  EXPECT_GT(r->pids.max, 0u);
  EXPECT_GE(r->pids.used, r->processes);
}

TEST(HostScanTest, ExportedGaugesAreBoundedToTopN) {
  FakeProc p;
  p.Proc(1, "init", 'S', 0);
  for (int parent = 10; parent < 20; ++parent) {
    p.Proc(parent, "parent" + std::to_string(parent), 'S', 1);
    for (int k = 0; k <= parent - 10; ++k) p.Proc(parent * 100 + k, "z", 'Z', parent);
  }
  ScanOptions o = Opts(p);
  o.top = 3;
  HostScanner s(o);
  auto r = s.Scan();
  ASSERT_TRUE(r.ok());
  metrics::Registry reg;
  api::HostMetrics hm(&reg, 3);
  hm.Export(r.value());
  std::string text = reg.Render();
  EXPECT_NE(text.find("corral_host_zombies 55\n"), std::string::npos) << text;
  EXPECT_NE(text.find("corral_host_zombies_by_parent{pid=\"19\",comm=\"parent19\"} 10\n"),
            std::string::npos);
  EXPECT_EQ(text.find("pid=\"16\""), std::string::npos);  // not in the top 3
  size_t series = 0;
  for (size_t at = 0; (at = text.find("\ncorral_host_zombies_by_parent{", at)) != std::string::npos;
       ++at) {
    ++series;
  }
  EXPECT_EQ(series, 3u);
}

TEST(HostScanTest, UnreadableProcIsAnErrorThatNamesIt) {
  ScanOptions o;
  o.proc = "/nonexistent-proc";
  HostScanner s(o);
  auto r = s.Scan();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("/nonexistent-proc"), std::string::npos);
}

}  // namespace
}  // namespace corral::scan
