// corral doctor: what this host offers and what corral will use, with the reason.
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "cell/cgroup_pool.h"
#include "cell/containment.h"
#include "cell/spawn.h"
#include "cli/commands.h"
#include "sys/fd.h"
#include "sys/pidfd.h"

namespace corral::cli {

void PrintIsolationSupport();  // doctor_isolation.cc

namespace {

std::string Join(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : " ") + x;
  return s.empty() ? "(none)" : s;
}

const char* YesNo(bool b) { return b ? "yes" : "no"; }

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

int Doctor(int argc, char** argv) {
  if (argc > 1 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
    std::puts(
        "usage: corral doctor\n\nPrints what this host supports (cgroup hierarchies and "
        "controllers, pidfd, clone3,\nsubreaper, pid_max) and which containment mode corral "
        "picks, and why.");
    return 0;
  }
  struct utsname u;
  uname(&u);
  std::printf("kernel            %s %s\n", u.release, u.machine);
  std::printf("running as        uid %d%s\n", getuid(), getuid() == 0 ? " (root)" : "");

  HostCgroups h = DetectHostCgroups();
  std::printf("cgroup2           %s%s\n", h.v2_mount.empty() ? "not mounted" : h.v2_mount.c_str(),
              h.v2_hybrid ? " (hybrid: beside v1 hierarchies)" : "");
  if (!h.v2_mount.empty()) {
    std::printf("  controllers     %s\n", Join(h.v2_controllers).c_str());
    std::printf("  cgroup.kill     %s\n",
                YesNo(access((h.v2_mount + "/cgroup.kill").c_str(), F_OK) == 0 ||
                      access((h.v2_mount + "/cgroup.subtree_control").c_str(), F_OK) == 0));
  }
  std::printf("cgroup v1         pids %s, memory %s, cpuacct %s, freezer %s\n",
              h.v1_pids.empty() ? "-" : h.v1_pids.c_str(),
              h.v1_memory.empty() ? "-" : h.v1_memory.c_str(),
              h.v1_cpuacct.empty() ? "-" : h.v1_cpuacct.c_str(),
              h.v1_freezer.empty() ? "-" : h.v1_freezer.c_str());

  auto self = PidfdOpen(getpid());
  std::printf("pidfd             %s\n", self.ok()
                                            ? "yes (pidfd_open, pidfd_send_signal, waitid P_PIDFD)"
                                            : self.error().message().c_str());
  long clone3 = syscall(435, nullptr, 0);  // EINVAL/EFAULT: exists; ENOSYS: missing
  std::printf("clone3            %s\n", (clone3 < 0 && errno == ENOSYS) ? "no" : "yes");
  std::printf("close_range       %s\n",
              (syscall(SYS_close_range, ~0U, ~0U, 0) < 0 && errno == ENOSYS) ? "no" : "yes");
  int was = 0;
  prctl(PR_GET_CHILD_SUBREAPER, &was);
  bool subreaper = prctl(PR_SET_CHILD_SUBREAPER, 1) == 0;
  prctl(PR_SET_CHILD_SUBREAPER, was);
  std::printf("subreaper         %s\n", YesNo(subreaper));
  auto pid_max = ReadSmallFile("/proc/sys/kernel/pid_max");
  std::printf("pid_max           %s\n", pid_max.ok() ? Trim(pid_max.value()).c_str() : "?");

  auto config = ChooseContainment(std::nullopt);
  if (!config.ok()) {
    std::printf("\ncorral will use   pgroup (%s)\n", config.error().message().c_str());
    return 0;
  }
  const ContainmentConfig& c = config.value();
  std::printf("\ncorral will use   %s: %s\n", ContainmentModeName(c.mode), c.why.c_str());
  switch (c.mode) {
    case ContainmentMode::kCgroup2:
      std::printf("  cells under     %s\n", c.v2_root.c_str());
      std::printf(
          "  limits          --pids %s, --memory %s, --cpu (time budget) yes\n",
          YesNo(std::find(c.v2_enabled.begin(), c.v2_enabled.end(), "pids") != c.v2_enabled.end()),
          YesNo(std::find(c.v2_enabled.begin(), c.v2_enabled.end(), "memory") !=
                c.v2_enabled.end()));
      break;
    case ContainmentMode::kCgroup1:
      std::printf("  cells under     %s%s%s\n", c.v1_pids_root.c_str(),
                  c.v1_memory_root.empty() ? "" : (", " + c.v1_memory_root).c_str(),
                  c.v2_root.empty() ? "" : (", " + c.v2_root).c_str());
      std::printf("  limits          --pids yes, --memory %s, --cpu (time budget) yes\n",
                  YesNo(!c.v1_memory_root.empty()));
      break;
    case ContainmentMode::kPgroup:
      std::printf(
          "  limits          --pids no, --memory no, --cpu per process (RLIMIT_CPU)\n"
          "  note            orphans are found through the subreaper and /proc; a process "
          "that calls setsid\n                  and clears its environment cannot be "
          "attributed when several cells run\n");
      break;
  }
  const char* pool_off = CgroupPool::WhyOff(c);
  if (pool_off == nullptr) {
    std::printf(
        "  cell pool       %s/pool/0..%d: reusable empty cgroups for cells without "
        "--memory/--pids\n                  (%d kept at rest, the rest while their owner "
        "runs more cells at once)\n",
        c.v2_root.c_str(), kPoolSlots - 1, kKeptSlots);
  } else if (c.mode != ContainmentMode::kPgroup) {
    std::printf("  cell pool       off (%s): every cell creates and removes its directories\n",
                pool_off);
  }
  std::printf("spawn             %s\n", SpawnMechanism());
  PrintIsolationSupport();
  return 0;
}

}  // namespace corral::cli
