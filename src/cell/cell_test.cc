// Behaviour tests of the in-process cell API, run once per containment backend this host can
// run (cgroup1 and cgroup2 here; pure cgroup2 hosts run cgroup2 with limits). Every test drives
// real processes (build/corral-payload) and ends by checking that nothing of its tree is alive.
#include "cell/cell.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "cell/cgroup_pool.h"
#include "cell/result_json.h"
#include "cell/spawn.h"
#include "sys/pidfd.h"
#include "sys/proc.h"
#include "sys/signal_fd.h"

namespace corral {
namespace {

const char* kPayload = CORRAL_PAYLOAD;

std::vector<pid_t> ProcsWithEnv(const std::string& needle) {
  std::vector<pid_t> out;
  for (pid_t pid : ListPids()) {
    auto st = ReadProcStat(pid);
    if (!st || st->state == 'Z') continue;
    auto env = ReadSmallFile("/proc/" + std::to_string(pid) + "/environ", 1 << 20);
    if (env.ok() && env->find(needle) != std::string::npos) out.push_back(pid);
  }
  return out;
}

int CountOpenFds() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n - 1;  // the DIR's own fd
}

// A v1 freezer cgroup of the test's own: a process frozen in it is in D state and ignores SIGKILL,
// as one stuck in the kernel does, until it is thawed. Thawed and removed when it goes.
class Freezer {
 public:
  explicit Freezer(const std::string& name)
      : dir_("/sys/fs/cgroup/freezer/" + name + "-" + std::to_string(getpid())),
        made_(mkdir(dir_.c_str(), 0755) == 0) {}
  ~Freezer() {
    if (!made_) return;
    Thaw();
    for (int i = 0; i < 200 && rmdir(dir_.c_str()) != 0; ++i) usleep(10000);
  }
  bool made() const { return made_; }
  bool Freeze(pid_t pid) {
    return WriteFileString(dir_ + "/cgroup.procs", std::to_string(pid)).ok() &&
           WriteFileString(dir_ + "/freezer.state", "FROZEN").ok();
  }
  bool Thaw() { return WriteFileString(dir_ + "/freezer.state", "THAWED").ok(); }

 private:
  std::string dir_;
  bool made_;
};

class CellTest : public ::testing::TestWithParam<ContainmentMode> {
 protected:
  void SetUp() override {
    auto config = ChooseContainment(GetParam());
    if (!config.ok()) GTEST_SKIP() << "backend unavailable here: " << config.error().message();
    config_ = config.value();
    auto loop = EventLoop::Create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(loop).value();
    HostOptions opts;
    opts.containment = config_;
    opts.reap_orphans = true;
    auto host = CellHost::Create(loop_.get(), opts);
    ASSERT_TRUE(host.ok()) << host.error().message();
    host_ = std::move(host).value();
    marker_ = "CORRAL_TEST_MARK=" + std::to_string(getpid()) + "-" +
              ::testing::UnitTest::GetInstance()->current_test_info()->name();
    for (char& c : marker_) {
      if (c == '/') c = '_';
    }
  }

  void TearDown() override {
    if (!host_) return;
    // Nothing of the test's trees may be alive, and every child must have been reaped.
    auto left = ProcsWithEnv(marker_);
    for (pid_t pid : left) kill(pid, SIGKILL);
    EXPECT_TRUE(left.empty()) << left.size() << " processes left behind";
    host_->ReapChildren();
    host_.reset();
  }

  CellSpec Spec(std::vector<std::string> args) {
    CellSpec s;
    s.id = "t-" + std::to_string(getpid()) + "-" + std::to_string(++seq_);
    s.argv = {kPayload};
    for (auto& a : args) s.argv.push_back(a);
    size_t eq = marker_.find('=');
    s.env.emplace_back(marker_.substr(0, eq), marker_.substr(eq + 1));
    s.grace_ns = 300 * kNsPerMs;
    s.kill_wait_ns = 500 * kNsPerMs;
    return s;
  }

  // A spec that runs argv instead of the payload.
  CellSpec Command(std::vector<std::string> argv) {
    CellSpec s = Spec({});
    s.argv = std::move(argv);
    return s;
  }

  CellResult Run(CellSpec s) { return RunCellSync(host_.get(), std::move(s)); }

  // Runs s with its leader frozen right after the spawn: it cannot die until thawed.
  CellResult RunFrozen(CellSpec s, Freezer* freezer, pid_t* leader) {
    CellResult result;
    bool done = false;
    Cell* cell = host_->Start(std::move(s), [&](const CellResult& r) {
      result = r;
      done = true;
    });
    *leader = cell->leader_pid();
    EXPECT_TRUE(freezer->Freeze(*leader));
    while (!done && loop_->RunOnce().ok()) {
    }
    EXPECT_TRUE(done);
    return result;
  }

  // The quarantine lets its processes go (within 5 s) once they can die.
  void ExpectQuarantineEmpties() {
    int64_t deadline = MonotonicNs() + 5 * kNsPerSec;
    while (host_->quarantined_processes() != 0 && MonotonicNs() < deadline) {
      ASSERT_TRUE(loop_->RunOnce(50 * kNsPerMs).ok());
    }
    EXPECT_EQ(host_->quarantined_processes(), 0u);
  }

  // Another owner in this process, as the next `corral run` would be: its own loop, host, pool
  // and locks. host is null if it could not be made.
  struct Owner {
    std::unique_ptr<EventLoop> loop;
    std::unique_ptr<CellHost> host;  // destroyed before its loop
  };
  Owner NewOwner() {
    Owner o;
    auto config = ChooseContainment(GetParam());
    auto loop = EventLoop::Create();
    if (!config.ok() || !loop.ok()) return o;
    o.loop = std::move(loop).value();
    HostOptions opts;
    opts.containment = config.value();
    auto host = CellHost::Create(o.loop.get(), opts);
    if (host.ok()) o.host = std::move(host).value();
    return o;
  }
  bool IsCgroup() const { return config_.mode != ContainmentMode::kPgroup; }
  // Cells without limits run in slots of the host's pool of reusable cgroups.
  bool Pooled() const { return CgroupPool::WhyOff(config_) == nullptr; }
  // The sweep a new owner in this process does (with a pool of its own); how many it killed.
  int SweepAsNewOwner() const {
    std::unique_ptr<CgroupPool> pool = CgroupPool::ForConfig(config_);
    return (pool ? pool->Sweep() : 0) + SweepOrphanedCells(config_);
  }
  bool HasLimits() const {
    return config_.mode == ContainmentMode::kCgroup1 || !config_.v2_enabled.empty();
  }

  ContainmentConfig config_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<CellHost> host_;
  std::string marker_;
  int seq_ = 0;
};

TEST_P(CellTest, ExitCodeIsReported) {
  CellResult r = Run(Spec({"exit", "7"}));
  EXPECT_EQ(r.state, CellState::kExited);
  ASSERT_TRUE(r.exit_code.has_value());
  EXPECT_EQ(*r.exit_code, 7);
  EXPECT_EQ(r.ShellExitCode(), 7);
  EXPECT_EQ(r.containment, ContainmentModeName(config_.mode));
}

TEST_P(CellTest, DeathBySignalIsKilledWith128PlusN) {
  CellResult r = Run(Spec({"kill-self", "9"}));
  EXPECT_EQ(r.state, CellState::kKilled);
  EXPECT_FALSE(r.exit_code.has_value());
  ASSERT_TRUE(r.signal.has_value());
  EXPECT_EQ(*r.signal, SIGKILL);
  EXPECT_EQ(r.ShellExitCode(), 137);
  EXPECT_EQ(r.reason, "signal");
}

TEST_P(CellTest, MissingBinaryExits127) {
  CellSpec s = Command({"/nonexistent/corral-binary"});
  CellResult r = Run(s);
  EXPECT_EQ(r.state, CellState::kFailedToStart);
  EXPECT_EQ(r.ShellExitCode(), 127);
  EXPECT_NE(r.error.find("No such file"), std::string::npos) << r.error;
}

TEST_P(CellTest, NonExecutableExits126) {
  CellSpec s = Command({"/etc/hostname"});
  CellResult r = Run(s);
  EXPECT_EQ(r.state, CellState::kFailedToStart);
  EXPECT_EQ(r.ShellExitCode(), 126);
}

TEST_P(CellTest, BadWorkingDirectoryIsASetUpFailure125) {
  CellSpec s = Spec({"print-cwd"});
  s.cwd = "/nonexistent/dir";
  CellResult r = Run(s);
  EXPECT_EQ(r.state, CellState::kFailedToStart);
  EXPECT_EQ(r.ShellExitCode(), 125);
  EXPECT_NE(r.error.find("chdir `/nonexistent/dir`"), std::string::npos) << r.error;
}

TEST_P(CellTest, TimeoutKillsSetsidAndDoubleForkedGrandchildren) {
  CellSpec s = Spec({"setsid-escape", "60", "+", "fork-orphans", "3", "60", "+", "sleep", "60"});
  s.timeout_ns = 300 * kNsPerMs;
  CellResult r = Run(s);
  EXPECT_EQ(r.state, CellState::kTimedOut);
  EXPECT_EQ(r.reason, "timeout");
  EXPECT_EQ(r.ShellExitCode(), 124);
  EXPECT_TRUE(ProcsWithEnv(marker_).empty());
  EXPECT_LT(r.duration_s, 2.0);
}

TEST_P(CellTest, LeftoversAreKilledWhenTheLeaderExits) {
  CellResult r =
      Run(Spec({"setsid-escape", "60", "+", "fork-orphans", "2", "60", "+", "exit", "0"}));
  EXPECT_EQ(r.state, CellState::kExited);
  EXPECT_EQ(*r.exit_code, 0);
  EXPECT_EQ(r.leftover_killed, 3);
  EXPECT_TRUE(ProcsWithEnv(marker_).empty());
}

TEST_P(CellTest, ChildIgnoringSigtermIsKilledAfterGrace) {
  CellSpec s = Spec({"ignore-sigterm", "60"});
  s.timeout_ns = 200 * kNsPerMs;
  s.grace_ns = 400 * kNsPerMs;
  CellResult r = Run(s);
  EXPECT_EQ(r.state, CellState::kTimedOut);
  ASSERT_TRUE(r.signal.has_value());
  EXPECT_EQ(*r.signal, SIGKILL);
  EXPECT_GE(r.duration_s, 0.55);
  EXPECT_LT(r.duration_s, 2.0);
}

TEST_P(CellTest, ChildInheritsNoFdButStdio) {
  int leak = open("/dev/null", O_RDONLY);  // deliberately without O_CLOEXEC
  ASSERT_GE(leak, 3);
  CellResult r = Run(Spec({"list-fds"}));
  close(leak);
  EXPECT_EQ(r.stdout_data, "0 1 2\n");
}

TEST_P(CellTest, OutputFloodIsCappedInConstantMemory) {
  CellSpec s = Spec({"flood-stdout", std::to_string(64 << 20)});
  s.max_output_bytes = 1 << 20;
  CellResult r = Run(s);
  EXPECT_EQ(r.state, CellState::kExited);
  EXPECT_EQ(r.stdout_bytes, 64u << 20);
  EXPECT_EQ(r.stdout_data.size(), 1u << 20);
  EXPECT_TRUE(r.stdout_truncated);
  EXPECT_FALSE(r.stderr_truncated);
}

TEST_P(CellTest, StdinBytesEnvAndCwdReachTheCommand) {
  CellSpec s = Spec({"cat"});
  s.stdin_mode = StdinMode::kBytes;
  s.stdin_data = std::string(300000, 'a');  // more than a pipe holds
  EXPECT_EQ(Run(s).stdout_data, s.stdin_data);

  CellSpec e = Spec({"print-env", "FOO"});
  e.env.emplace_back("FOO", "bar baz");
  EXPECT_EQ(Run(e).stdout_data, "bar baz\n");

  CellSpec c = Spec({"print-env", "HOME"});
  c.clear_env = true;
  EXPECT_EQ(Run(c).stdout_data, "<unset>\n");

  CellSpec d = Spec({"print-cwd"});
  d.cwd = "/tmp";
  EXPECT_EQ(Run(d).stdout_data, "/tmp\n");
}

TEST_P(CellTest, ForkBombStaysUnderPidsLimit) {
  if (!HasLimits()) GTEST_SKIP() << "no pids controller in this backend here";
  CellSpec s = Spec({"fork-bomb"});
  s.limits.pids = 20;
  s.timeout_ns = 5 * kNsPerSec;
  CellResult r = Run(s);
  EXPECT_EQ(r.state, CellState::kExited) << DumpJson(ResultToJson(r));
  ASSERT_TRUE(r.pids_peak.has_value());
  EXPECT_LE(*r.pids_peak, 20u);
  EXPECT_EQ(r.stdout_data, "19\n");  // 19 children + the leader
  EXPECT_NE(std::find(r.limits_hit.begin(), r.limits_hit.end(), "pids"), r.limits_hit.end());
  EXPECT_EQ(r.leftover_killed, 19);
}

TEST_P(CellTest, MemoryHogIsStoppedByMemoryLimit) {
  if (!HasLimits()) GTEST_SKIP() << "no memory controller in this backend here";
  CellSpec s = Spec({"memhog", std::to_string(256 << 20)});
  s.limits.memory_bytes = 32 << 20;
  s.timeout_ns = 20 * kNsPerSec;
  CellResult r = Run(s);
  EXPECT_EQ(r.state, CellState::kKilled) << DumpJson(ResultToJson(r));
  EXPECT_EQ(r.reason, "memory_limit");
  ASSERT_TRUE(r.peak_memory_bytes.has_value());
  EXPECT_LE(*r.peak_memory_bytes, 33u << 20);
}

TEST_P(CellTest, CpuBudgetEndsASpinningTree) {
  CellSpec s = Spec({"spin", "30"});
  s.limits.cpu_s = 0.5;
  s.timeout_ns = 20 * kNsPerSec;
  CellResult r = Run(s);
  EXPECT_EQ(r.state, CellState::kKilled) << DumpJson(ResultToJson(r));
  EXPECT_EQ(r.reason, "cpu_limit");
  EXPECT_LT(r.duration_s, 3.0);
}

TEST_P(CellTest, MeasuresCpuAndMemory) {
  CellResult r = Run(Spec({"spin", "0.3"}));
  ASSERT_TRUE(r.cpu_user_s.has_value());
  EXPECT_GT(*r.cpu_user_s + r.cpu_system_s.value_or(0), 0.15);
  EXPECT_TRUE(r.peak_memory_bytes.has_value());
  if (IsCgroup()) {
    EXPECT_TRUE(r.pids_peak.has_value() || config_.mode == ContainmentMode::kCgroup2);
  }
}

// A process frozen by the v1 freezer is in D state and ignores SIGKILL: the call must return
// within timeout + grace + kill_wait anyway, report it stuck, and reap it once it is thawed.
TEST_P(CellTest, StuckProcessDoesNotBlockAndIsReapedAfterThaw) {
  Freezer freezer("corral-test");
  if (!freezer.made()) GTEST_SKIP() << "no writable v1 freezer";

  CellSpec s = Spec({"sleep", "60"});
  s.timeout_ns = 300 * kNsPerMs;
  s.grace_ns = 100 * kNsPerMs;
  s.kill_wait_ns = 300 * kNsPerMs;
  int64_t start = MonotonicNs();
  pid_t leader = -1;
  CellResult result = RunFrozen(s, &freezer, &leader);
  double took = static_cast<double>(MonotonicNs() - start) / 1e9;
  EXPECT_LT(took, 1.5);
  EXPECT_EQ(result.state, CellState::kTimedOut);
  ASSERT_EQ(result.stuck.size(), 1u) << DumpJson(ResultToJson(result));
  EXPECT_FALSE(result.stuck[0].wchan.empty());
  EXPECT_EQ(host_->quarantined_processes(), 1u);

  ASSERT_TRUE(freezer.Thaw());
  ExpectQuarantineEmpties();
}

TEST_P(CellTest, ThousandsOfSequentialRunsLeakNothing) {
  // A first cell opens the files of a pool slot, which stay open for reuse (bounded: at most
  // kPoolSlots slots a process); from then on the count must stay flat.
  ASSERT_EQ(Run(Spec({"exit", "0"})).state, CellState::kExited);
  int fds_before = CountOpenFds();
  const int n = GetParam() == ContainmentMode::kCgroup1 ? 10000 : 1000;
  for (int i = 0; i < n; ++i) {
    CellSpec s = Spec({"exit", "0"});
    CellResult r = Run(s);
    ASSERT_EQ(r.state, CellState::kExited) << r.error;
  }
  EXPECT_EQ(CountOpenFds(), fds_before);
  // No cell directory of ours remains.
  for (const std::string& root : {config_.v2_root, config_.v1_pids_root, config_.v1_memory_root}) {
    if (root.empty()) continue;
    DIR* d = opendir(root.c_str());
    ASSERT_NE(d, nullptr);
    std::string prefix = "t-" + std::to_string(getpid()) + "-";
    while (dirent* e = readdir(d)) {
      EXPECT_NE(std::string(e->d_name).rfind(prefix, 0), 0u)
          << "left: " << root << "/" << e->d_name;
    }
    closedir(d);
  }
}

// --- the pool of reusable cell cgroups (cgroup_pool.h) -----------------------------------------

// "0::/corral/pool/3\n" -> "/corral/pool/3": the cgroup2 path a process reports for itself.
std::string V2PathIn(const std::string& proc_self_cgroup) {
  size_t at = proc_self_cgroup.find("0::");
  if (at == std::string::npos) return "";
  size_t end = proc_self_cgroup.find('\n', at);
  size_t len = end == std::string::npos ? std::string::npos : end - at - 3;
  return proc_self_cgroup.substr(at + 3, len);
}

std::string V2PathOf(pid_t pid) {
  auto text = ReadSmallFile("/proc/" + std::to_string(pid) + "/cgroup");
  return text.ok() ? V2PathIn(text.value()) : "";
}

TEST_P(CellTest, ReusedSlotReportsThisCellsOwnPeaksAndCpu) {
  if (!Pooled()) GTEST_SKIP() << "no cgroup pool in this backend here";
  // A: a 30-process tree, 64 MiB touched and CPU spent, ended by a timeout (cgroup.kill).
  CellSpec a = Command({"/bin/sh", "-c",
                        std::string("cat /proc/self/cgroup; ") + kPayload +
                            " spin 0.3 + tree 30 5 + memhog " + std::to_string(64 << 20)});
  a.timeout_ns = 2 * kNsPerSec;
  a.grace_ns = 0;
  CellResult ra = Run(a);
  EXPECT_EQ(ra.state, CellState::kTimedOut) << DumpJson(ResultToJson(ra));
  std::string slot = V2PathIn(ra.stdout_data);
  ASSERT_NE(slot.find("/pool/"), std::string::npos) << ra.stdout_data;
  ASSERT_TRUE(ra.cpu_user_s.has_value());
  EXPECT_GT(*ra.cpu_user_s + ra.cpu_system_s.value_or(0), 0.2);
  if (config_.mode == ContainmentMode::kCgroup1) {
    ASSERT_TRUE(ra.peak_memory_bytes && ra.pids_peak) << DumpJson(ResultToJson(ra));
    EXPECT_GE(*ra.peak_memory_bytes, 64u << 20);
    EXPECT_GE(*ra.pids_peak, 31u);
  }

  // B, in the same slot (a slot cgroup.kill was written to: it must still take children): only
  // its own one process, its own little memory and CPU.
  CellSpec b = Command({"/bin/cat", "/proc/self/cgroup"});
  CellResult rb = Run(b);
  ASSERT_EQ(rb.state, CellState::kExited) << DumpJson(ResultToJson(rb));
  EXPECT_EQ(V2PathIn(rb.stdout_data), slot);
  ASSERT_TRUE(rb.cpu_user_s.has_value());
  EXPECT_LT(*rb.cpu_user_s + rb.cpu_system_s.value_or(0), 0.1);
  if (config_.mode == ContainmentMode::kCgroup1) {
    ASSERT_TRUE(rb.peak_memory_bytes && rb.pids_peak) << DumpJson(ResultToJson(rb));
    EXPECT_LT(*rb.peak_memory_bytes, 8u << 20);
    EXPECT_EQ(*rb.pids_peak, 1u);
    EXPECT_TRUE(rb.limits_hit.empty());
  }
}

TEST_P(CellTest, CellsWithLimitsNeverUseThePool) {
  if (!Pooled() || config_.mode != ContainmentMode::kCgroup1) {
    GTEST_SKIP() << "needs the pool and v1 limits";
  }
  CellSpec s = Command({"/bin/cat", "/proc/self/cgroup"});
  s.limits.pids = 50;
  CellResult r = Run(s);
  ASSERT_EQ(r.state, CellState::kExited) << DumpJson(ResultToJson(r));
  EXPECT_NE(V2PathIn(r.stdout_data).find("/" + s.id), std::string::npos) << r.stdout_data;
  // And the next unlimited cell gets a slot whose pids.max is the default.
  CellSpec t = Command({"/bin/sh", "-c",
                        "cat /proc/self/cgroup; cat /sys/fs/cgroup/pids$(grep :pids: "
                        "/proc/self/cgroup | cut -d: -f3)/pids.max"});
  CellResult rt = Run(t);
  EXPECT_NE(rt.stdout_data.find("/pool/"), std::string::npos) << rt.stdout_data;
  EXPECT_NE(rt.stdout_data.find("\nmax\n"), std::string::npos) << rt.stdout_data;
}

// A slot whose tree is stuck (v1 freezer: D state) stays with the quarantined cell: the next
// cells get other slots, and it is handed out again only once it is empty.
TEST_P(CellTest, SlotWithAStuckProcessIsNotReused) {
  if (!Pooled()) GTEST_SKIP() << "no cgroup pool in this backend here";
  Freezer freezer("corral-test-pool");
  if (!freezer.made()) GTEST_SKIP() << "no writable v1 freezer";

  CellSpec s = Spec({"sleep", "60"});
  s.timeout_ns = 200 * kNsPerMs;
  s.grace_ns = 0;
  s.kill_wait_ns = 200 * kNsPerMs;
  pid_t leader = -1;
  CellResult stuck = RunFrozen(s, &freezer, &leader);
  ASSERT_EQ(stuck.stuck.size(), 1u) << DumpJson(ResultToJson(stuck));
  std::string stuck_slot = V2PathOf(leader);  // frozen: still there, in its slot
  ASSERT_NE(stuck_slot.find("/pool/"), std::string::npos) << stuck_slot;

  for (int i = 0; i < 3; ++i) {
    CellSpec b = Command({"/bin/cat", "/proc/self/cgroup"});
    CellResult rb = Run(b);
    ASSERT_EQ(rb.state, CellState::kExited) << DumpJson(ResultToJson(rb));
    EXPECT_NE(V2PathIn(rb.stdout_data), stuck_slot);
  }

  ASSERT_TRUE(freezer.Thaw());
  ExpectQuarantineEmpties();
}

// A slot whose owner died (its lock went with it) with processes inside: the next owner's sweep
// kills them. A slot a live owner holds is never swept.
TEST_P(CellTest, DeadOwnersSlotIsSweptAndLiveOwnersSlotIsNot) {
  if (!Pooled()) GTEST_SKIP() << "no cgroup pool in this backend here";
  auto other = CgroupPool::ForConfig(config_);  // another owner: its own pool, its own locks
  std::unique_ptr<PoolSlot> slot = other->Claim();
  ASSERT_NE(slot, nullptr);
  // A process of that owner's tree, in the slot in every hierarchy, as a cell's would be.
  CellSpec s = Spec({"sleep", "60"});
  SpawnRequest req;
  req.path = kPayload;
  req.argv = s.argv;
  for (const auto& [k, v] : s.env) req.env.push_back(k + "=" + v);
  req.join_fds = slot->dirs.join_fds(/*v2=*/true);
  auto child = Spawn(req);
  ASSERT_TRUE(child.ok()) << child.error().message();
  EXPECT_EQ(V2PathOf(child->pid).find("/pool/" + std::to_string(slot->index)) != std::string::npos,
            true);

  // Its owner is alive (holds the lock): a sweep leaves the process alone.
  EXPECT_EQ(SweepAsNewOwner(), 0);
  EXPECT_EQ(kill(child->pid, 0), 0);

  // The owner dies: its lock goes with its fds. The next sweep kills the tree.
  other->Drop(std::move(slot), /*remove=*/false);
  other.reset();
  EXPECT_GE(SweepAsNewOwner(), 1);
  auto st = WaitPidfd(child->pidfd.get(), 0);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->status.signal(), SIGKILL);
}

// Slots that another owner wrote cgroup.kill to and could not remove (it crashed): Linux 6.18
// kills a child cloned into such a cgroup at birth. The spawn must notice, clone again joining
// through cgroup.procs, and the cell run as if nothing happened, in a pool slot.
TEST_P(CellTest, SlotsKilledByACrashedOwnerStillTakeCells) {
  if (!Pooled()) GTEST_SKIP() << "no cgroup pool in this backend here";
  auto other = CgroupPool::ForConfig(config_);
  std::vector<std::unique_ptr<PoolSlot>> slots;
  while (auto slot = other->Claim()) slots.push_back(std::move(slot));
  ASSERT_FALSE(slots.empty());
  for (auto& slot : slots) {
    EXPECT_TRUE(slot->dirs.Kill());  // an empty cgroup: only its kill sequence changes
    other->Drop(std::move(slot), /*remove=*/false);
  }
  other.reset();
  // A new owner (as the next `corral run` would be) takes them.
  Owner mine = NewOwner();
  ASSERT_NE(mine.host, nullptr);
  for (int i = 0; i < 3; ++i) {
    CellSpec s = Command({"/bin/cat", "/proc/self/cgroup"});
    CellResult r = RunCellSync(mine.host.get(), s);
    ASSERT_EQ(r.state, CellState::kExited) << DumpJson(ResultToJson(r));
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_NE(V2PathIn(r.stdout_data).find("/pool/"), std::string::npos) << r.stdout_data;
  }
}

// A slot whose own cell was killed (cgroup.kill) must not be handed to the next process in that
// state: a one-shot `corral run` never claims again, so its owner removes it when it ends, and
// the next process gets a directory made afresh (a new kernfs inode), not one whose every clone
// dies at birth (regression: each later `corral run` paid a refused clone and a cgroup.procs join).
TEST_P(CellTest, ASlotKilledByItsOwnCellIsMadeAfreshWhenItsOwnerEnds) {
  if (!Pooled()) GTEST_SKIP() << "no cgroup pool in this backend here";
  Owner owner = NewOwner();
  ASSERT_NE(owner.host, nullptr);
  CellSpec s = Command(
      {"/bin/sh", "-c", std::string("cat /proc/self/cgroup; exec ") + kPayload + " sleep 30"});
  s.timeout_ns = 300 * kNsPerMs;
  s.grace_ns = 0;
  CellResult r = RunCellSync(owner.host.get(), s);
  ASSERT_EQ(r.state, CellState::kTimedOut) << DumpJson(ResultToJson(r));
  std::string rel = V2PathIn(r.stdout_data);
  ASSERT_NE(rel.find("/pool/"), std::string::npos) << r.stdout_data;
  std::string dir = config_.v2_root.substr(0, config_.v2_root.rfind('/')) + rel;
  struct stat before {};
  ASSERT_EQ(stat(dir.c_str(), &before), 0) << dir;
  owner.host.reset();  // the owner ends, as `corral run` does after its result: its pool goes
  struct stat after {};
  if (stat(dir.c_str(), &after) == 0) {
    EXPECT_NE(after.st_ino, before.st_ino) << dir << " is still the killed directory";
  } else {
    EXPECT_EQ(errno, ENOENT) << dir;
  }
}

// More cells at once than the kept slots: the extra ones take overflow slots (not directories of
// their own), which their owner keeps while it lives and removes when it ends; a crashed owner's
// are removed by the next sweep. At rest only the kept slots remain.
TEST_P(CellTest, OverflowSlotsServeABusyOwnerAndGoWithIt) {
  if (!Pooled()) GTEST_SKIP() << "no cgroup pool in this backend here";
  // Overflow slots of an owner that ends (Return, then its pool goes) and of one that "crashes"
  // (Drop without removing: only its locks go). Other corral processes on the host may hold
  // kept slots, so each owner claims two more than there are.
  for (bool crash : {false, true}) {
    auto other = CgroupPool::ForConfig(config_);
    std::vector<std::unique_ptr<PoolSlot>> slots;
    std::vector<std::pair<std::string, ino_t>> overflow;
    for (int i = 0; i < kKeptSlots + 2; ++i) {
      std::unique_ptr<PoolSlot> slot = other->Claim();
      ASSERT_NE(slot, nullptr) << "claim " << i;
      if (slot->index >= kKeptSlots) {
        struct stat st {};
        ASSERT_EQ(stat(slot->dirs.v2().c_str(), &st), 0);
        overflow.emplace_back(slot->dirs.v2(), st.st_ino);
      }
      slots.push_back(std::move(slot));
    }
    EXPECT_GE(overflow.size(), 2u);
    for (auto& slot : slots) {
      if (crash)
        other->Drop(std::move(slot), /*remove=*/false);
      else
        other->Return(std::move(slot));
    }
    other.reset();
    if (crash) SweepAsNewOwner();
    for (const auto& [dir, ino] : overflow) {
      struct stat st {};
      bool same = stat(dir.c_str(), &st) == 0 && st.st_ino == ino;
      EXPECT_FALSE(same) << dir
                         << (crash ? " outlived its crashed owner's next sweep"
                                   : " outlived its owner");
    }
  }

  // Cells: 8 at once all run in pool slots, none in directories of its own.
  constexpr int kCells = 8;
  std::vector<CellResult> results(kCells);
  int done = 0;
  for (int i = 0; i < kCells; ++i) {
    CellSpec s = Command(
        {"/bin/sh", "-c", std::string("cat /proc/self/cgroup; exec ") + kPayload + " sleep 0.3"});
    host_->Start(s, [&results, &done, i](const CellResult& r) {
      results[i] = r;
      ++done;
    });
  }
  while (done < kCells) ASSERT_TRUE(loop_->RunOnce().ok());
  for (const CellResult& r : results) {
    ASSERT_EQ(r.state, CellState::kExited) << DumpJson(ResultToJson(r));
    EXPECT_NE(V2PathIn(r.stdout_data).find("/pool/"), std::string::npos) << r.stdout_data;
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, CellTest,
                         ::testing::Values(ContainmentMode::kCgroup1, ContainmentMode::kCgroup2,
                                           ContainmentMode::kPgroup),
                         [](const auto& info) {
                           return std::string(ContainmentModeName(info.param));
                         });

}  // namespace
}  // namespace corral
