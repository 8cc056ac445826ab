// Host detection, choice of backend, preparation of corral's cgroup roots, and the sweeper.
#include "cell/containment.h"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "sys/proc.h"

namespace corral {

std::unique_ptr<Containment> MakeCgroupContainment(const ContainmentConfig& config,
                                                   CgroupPool* pool, const std::string& cell_id);
Status PrepareCgroupCell(Containment* c, const Limits& limits);
std::unique_ptr<Containment> MakePgroupContainment(const std::string& cell_id, bool single_cell);

const char* ContainmentModeName(ContainmentMode m) {
  switch (m) {
    case ContainmentMode::kCgroup2: return "cgroup2";
    case ContainmentMode::kCgroup1: return "cgroup1";
    case ContainmentMode::kPgroup: return "pgroup";
  }
  return "pgroup";
}

std::optional<ContainmentMode> ParseContainmentMode(const std::string& s) {
  if (s == "cgroup2") return ContainmentMode::kCgroup2;
  if (s == "cgroup1") return ContainmentMode::kCgroup1;
  if (s == "pgroup") return ContainmentMode::kPgroup;
  return std::nullopt;
}

HostCgroups DetectHostCgroups() {
  HostCgroups h;
  auto mounts = ReadSmallFile("/proc/self/mounts", 1 << 20);
  if (!mounts.ok()) return h;
  bool any_v1 = false;
  for (std::string_view line : SplitFields(mounts.value(), "\n")) {
    std::vector<std::string_view> f = SplitFields(line, " ");  // dev dir type opts ...
    if (f.size() < 4) continue;
    std::string dir(f[1]);
    if (f[2] == "cgroup2") {
      if (h.v2_mount.empty()) h.v2_mount = dir;
    } else if (f[2] == "cgroup") {
      any_v1 = true;
      for (std::string_view opt : SplitFields(f[3], ",")) {
        if (opt == "pids") h.v1_pids = dir;
        if (opt == "memory") h.v1_memory = dir;
        if (opt == "cpuacct") h.v1_cpuacct = dir;
        if (opt == "freezer") h.v1_freezer = dir;
      }
    }
  }
  h.v2_hybrid = !h.v2_mount.empty() && any_v1;
  if (!h.v2_mount.empty()) {
    auto ctl = ReadSmallFile(h.v2_mount + "/cgroup.controllers");
    if (ctl.ok()) {
      for (std::string_view name : SplitFields(ctl.value())) h.v2_controllers.emplace_back(name);
    }
  }
  return h;
}

namespace {

bool Has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// Creates corral's root directory in a hierarchy, or checks that an existing one (made by root,
// say) is ours to create cells in: EEXIST alone says nothing about permission.
Status MakeDir(const std::string& path) {
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return Error::FromErrno("mkdir", path);
  if (access(path.c_str(), W_OK) != 0) return Error::FromErrno("access(W_OK)", path);
  return Ok();
}

// corral's directory `name` in the hierarchy mounted at `mount`, made ready (MakeDir).
Result<std::string> MakeRoot(const std::string& mount, const std::string& name) {
  std::string root = mount + "/" + name;
  TRY(MakeDir(root));
  return root;
}

// The same for a part a mode can do without: "" where that hierarchy is absent or not ours.
std::string OptionalRoot(const std::string& mount, const std::string& name) {
  if (mount.empty()) return "";
  auto root = MakeRoot(mount, name);
  return root.ok() ? std::move(root).value() : "";
}

// Enables each controller in `want` for the children of `dir`; returns those now enabled.
std::vector<std::string> EnableControllers(const std::string& dir,
                                           const std::vector<std::string>& want) {
  std::vector<std::string> enabled;
  for (const std::string& c : want) {
    // One write per controller so that one refusal does not cost the others.
    if (WriteFileString(dir + "/cgroup.subtree_control", "+" + c).ok()) enabled.push_back(c);
  }
  return enabled;
}

Result<ContainmentConfig> SetUpCgroup2(const HostCgroups& h, const std::string& name) {
  if (h.v2_mount.empty()) return Error::Msg("no cgroup2 hierarchy is mounted", ENOENT);
  auto root = MakeRoot(h.v2_mount, name);
  if (!root.ok()) {
    return root.error().Wrap("cgroup2 at " + h.v2_mount +
                             " is not writable (run as root, or give corral a delegated subtree)");
  }
  ContainmentConfig c;
  c.mode = ContainmentMode::kCgroup2;
  c.v2_root = std::move(root).value();
  std::vector<std::string> want;
  for (const char* ctl : {"pids", "memory", "cpu"}) {
    if (Has(h.v2_controllers, ctl)) want.emplace_back(ctl);
  }
  if (!want.empty()) {
    std::vector<std::string> at_mount = EnableControllers(h.v2_mount, want);
    c.v2_enabled = EnableControllers(c.v2_root, at_mount);
  }
  c.why =
      "cgroup2 at " + h.v2_mount +
      (c.v2_enabled.empty() ? std::string(" (no controllers: no limits)") : " with controllers");
  for (const std::string& e : c.v2_enabled) c.why += " " + e;
  return c;
}

Result<ContainmentConfig> SetUpCgroup1(const HostCgroups& h, const std::string& name) {
  if (h.v1_pids.empty()) return Error::Msg("no cgroup v1 pids hierarchy is mounted", ENOENT);
  auto root = MakeRoot(h.v1_pids, name);
  if (!root.ok()) return root.error().Wrap("cgroup v1 pids hierarchy is not writable");
  ContainmentConfig c;
  c.mode = ContainmentMode::kCgroup1;
  c.v1_pids_root = std::move(root).value();
  c.v1_memory_root = OptionalRoot(h.v1_memory, name);
  c.v2_root = OptionalRoot(h.v2_mount, name);
  // cpuacct only where no cgroup2 directory gives cpu.stat.
  if (c.v2_root.empty()) c.v1_cpuacct_root = OptionalRoot(h.v1_cpuacct, name);
  c.why = "cgroup v1 pids" + std::string(c.v1_memory_root.empty() ? "" : " + memory") +
          (c.v2_root.empty() ? std::string(" (kill by signal loop)")
                             : " with cgroup2 at " + h.v2_mount + " for cgroup.kill/events");
  return c;
}

ContainmentConfig SetUpPgroup(const std::string& why) {
  ContainmentConfig c;
  c.mode = ContainmentMode::kPgroup;
  c.why = why;
  return c;
}

}  // namespace

namespace {

// Every `corral run` starts by choosing; on the common hybrid layout (systemd's: v1 controllers
// at /sys/fs/cgroup/<name>, cgroup2 at /sys/fs/cgroup/unified) whose corral roots already exist,
// three access() calls give the same answer as parsing /proc/self/mounts, reading
// cgroup.controllers and three mkdirs. Anything else (first run, other layouts, pure cgroup2,
// forced cgroup2) takes the full detection below.
std::optional<ContainmentConfig> HybridFastPath(const std::string& name) {
  const std::string base = "/sys/fs/cgroup/";
  ContainmentConfig c;
  c.mode = ContainmentMode::kCgroup1;
  c.v1_pids_root = base + "pids/" + name;
  c.v1_memory_root = base + "memory/" + name;
  c.v2_root = base + "unified/" + name;
  // Files only a pids / memory / non-root cgroup2 directory has: controller and root confirmed.
  if (access((c.v1_pids_root + "/pids.max").c_str(), W_OK) != 0 ||
      access((c.v1_memory_root + "/memory.limit_in_bytes").c_str(), W_OK) != 0 ||
      access((c.v2_root + "/cgroup.events").c_str(), R_OK) != 0) {
    return std::nullopt;
  }
  c.why = "cgroup v1 pids + memory with cgroup2 at " + base + "unified for cgroup.kill/events";
  return c;
}

}  // namespace

Result<ContainmentConfig> ChooseContainment(std::optional<ContainmentMode> forced,
                                            const std::string& cgroup_root) {
  if (!forced || *forced == ContainmentMode::kCgroup1) {
    if (auto c = HybridFastPath(cgroup_root)) return *c;
  }
  HostCgroups h = DetectHostCgroups();
  if (forced) {
    switch (*forced) {
      case ContainmentMode::kCgroup2: return SetUpCgroup2(h, cgroup_root);
      case ContainmentMode::kCgroup1: return SetUpCgroup1(h, cgroup_root);
      case ContainmentMode::kPgroup: return SetUpPgroup("forced with --containment pgroup");
    }
  }
  std::string why;
  bool v2_full = !h.v2_mount.empty() && !h.v2_hybrid && Has(h.v2_controllers, "pids") &&
                 Has(h.v2_controllers, "memory");
  if (v2_full) {
    auto c = SetUpCgroup2(h, cgroup_root);
    if (c.ok()) return c;
    why += c.error().message() + "; ";
  }
  if (!h.v1_pids.empty()) {
    auto c = SetUpCgroup1(h, cgroup_root);
    if (c.ok()) return c;
    why += c.error().message() + "; ";
  }
  if (!h.v2_mount.empty() && !v2_full) {
    auto c = SetUpCgroup2(h, cgroup_root);
    if (c.ok()) return c;
    why += c.error().message() + "; ";
  }
  if (why.empty()) why = "no cgroup hierarchy is mounted; ";
  return SetUpPgroup(why + "falling back to process groups + subreaper");
}

namespace {

// "run-4242-7" -> 4242; 0 when the name does not carry an owner.
pid_t OwnerOf(const char* name) {
  const char* dash = std::strchr(name, '-');
  if (dash == nullptr) return 0;
  long pid = std::strtol(dash + 1, nullptr, 10);
  return pid > 0 ? static_cast<pid_t>(pid) : 0;
}

std::vector<std::string> DeadOwnersCells(const std::string& root) {
  std::vector<std::string> out;
  if (root.empty()) return out;
  // kernfs gives a directory 2 + (number of subdirectories) links: most of the time the only
  // subdirectory is the pool's (or none), and the readdir is not needed.
  struct stat st;
  if (stat(root.c_str(), &st) != 0) return out;
  if (st.st_nlink <= 2) return out;
  if (st.st_nlink == 3 && access((root + "/pool").c_str(), F_OK) == 0) return out;
  DIR* d = opendir(root.c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    if (e->d_type != DT_DIR || e->d_name[0] == '.') continue;
    // "<kind>-<pid>-<n>.<pid namespace>": a PID from another namespace says nothing here.
    const char* dot = std::strrchr(e->d_name, '.');
    if (dot == nullptr || PidNamespaceTag() != dot + 1) continue;
    pid_t owner = OwnerOf(e->d_name);
    if (owner <= 0 || owner == getpid()) continue;
    if (kill(owner, 0) == 0 || errno == EPERM) continue;  // owner alive
    out.emplace_back(e->d_name);
  }
  closedir(d);
  return out;
}

int KillProcsIn(const std::string& dir) {
  auto procs = ReadSmallFile(dir + "/cgroup.procs", 1 << 20);
  if (!procs.ok()) return 0;
  int n = 0;
  for (std::string_view field : SplitFields(procs.value())) {
    uint64_t pid = 0;
    if (ParseU64(field, &pid) && kill(static_cast<pid_t>(pid), SIGKILL) == 0) ++n;
  }
  return n;
}

}  // namespace

int SweepOrphanedCells(const ContainmentConfig& config) {
  int killed = 0;
  for (const std::string* root :
       {&config.v2_root, &config.v1_pids_root, &config.v1_memory_root, &config.v1_cpuacct_root}) {
    for (const std::string& name : DeadOwnersCells(*root)) {
      std::string dir = *root + "/" + name;
      if (root == &config.v2_root) (void)WriteFileString(dir + "/cgroup.kill", "1");
      killed += KillProcsIn(dir);
      rmdir(dir.c_str());  // EBUSY while the killed (or stuck) processes are still inside
    }
  }
  return killed;
}

Result<std::unique_ptr<Containment>> MakeContainment(const ContainmentConfig& config,
                                                     CgroupPool* pool, const std::string& cell_id,
                                                     const Limits& limits, bool single_cell) {
  if (config.mode == ContainmentMode::kPgroup) {
    if (limits.memory_bytes != 0 || limits.pids != 0) {
      return Error::Msg(std::string(limits.memory_bytes != 0 ? "--memory" : "--pids") +
                            " needs a cgroup (this host gives corral none: " + config.why +
                            "); run as root on a host with cgroups, or drop the limit",
                        ENOTSUP);
    }
    return MakePgroupContainment(cell_id, single_cell);
  }
  std::unique_ptr<Containment> c = MakeCgroupContainment(config, pool, cell_id);
  TRY(PrepareCgroupCell(c.get(), limits));
  return c;
}

}  // namespace corral
