// The cgroup backends (cgroup2, and cgroup1 with or without a cgroup2 beside it). One class:
// a cell is a set of same-named directories, one per hierarchy in use, and each operation reads
// from whichever hierarchy can answer it best:
//   membership, kill, "tree gone": cgroup2 when there is one (cgroup.procs, cgroup.kill,
//                                  cgroup.events), else the v1 pids directory
//   limits and stats:              cgroup2 controller files in cgroup2 mode, v1 files in cgroup1
// Directories are created per cell and removed when it closes; the v1 pids.peak counter cannot be
// reset, so a fresh directory is the only way to measure a cell's own peak.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <cstring>
#include <sstream>

#include "cell/containment.h"

namespace corral {
namespace {

// "key value" lines (cgroup.events, memory.events, cpu.stat, memory.oom_control, pids.events).
std::optional<uint64_t> KeyedValue(const std::string& text, std::string_view key) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    std::string_view line(text.data() + pos, eol - pos);
    if (line.size() > key.size() && line.substr(0, key.size()) == key &&
        line[key.size()] == ' ') {
      std::string_view v = line.substr(key.size() + 1);
      uint64_t out = 0;
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
      if (ec == std::errc()) return out;
      return std::nullopt;
    }
    pos = eol + 1;
  }
  return std::nullopt;
}

std::optional<uint64_t> ReadNumber(const std::string& path) {
  auto r = ReadSmallFile(path, 256);
  if (!r.ok()) return std::nullopt;
  uint64_t v = 0;
  const std::string& s = r.value();
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc()) return std::nullopt;
  return v;
}

std::optional<uint64_t> ReadKeyed(const std::string& path, std::string_view key) {
  auto r = ReadSmallFile(path, 16 * 1024);
  if (!r.ok()) return std::nullopt;
  return KeyedValue(r.value(), key);
}

bool FileExists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

class CgroupCell : public Containment {
 public:
  CgroupCell(const ContainmentConfig& config, const std::string& id) : mode_(config.mode) {
    if (!config.v2_root.empty()) v2_ = config.v2_root + "/" + id;
    if (mode_ == ContainmentMode::kCgroup1) {
      pids_ = config.v1_pids_root + "/" + id;
      if (!config.v1_memory_root.empty()) memory_ = config.v1_memory_root + "/" + id;
      if (!config.v1_cpuacct_root.empty()) cpuacct_ = config.v1_cpuacct_root + "/" + id;
    }
    v2_enabled_ = config.v2_enabled;
  }
  ~CgroupCell() override {
    if (!released_) Release();
  }

  Status Prepare(const Limits& limits) {
    for (const std::string* dir : {&v2_, &pids_, &memory_, &cpuacct_}) {
      if (dir->empty()) continue;
      if (mkdir(dir->c_str(), 0755) != 0) {
        // A directory left by an earlier owner of the same name: reuse it if it is empty.
        if (errno != EEXIST) return Error::FromErrno("mkdir", *dir).Wrap("create cell cgroup");
      }
      created_.push_back(*dir);
    }
    if (!v2_.empty()) {
      ASSIGN_OR_RETURN(v2_dir_, OpenFile(v2_, O_RDONLY | O_DIRECTORY));
      ASSIGN_OR_RETURN(events_, OpenFile(v2_ + "/cgroup.events", O_RDONLY));
    }
    for (const std::string* dir : {&pids_, &memory_, &cpuacct_}) {
      if (dir->empty()) continue;
      ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(*dir + "/cgroup.procs", O_WRONLY));
      join_.push_back(std::move(fd));
    }
    return ApplyLimits(limits);
  }

  ContainmentMode mode() const override { return mode_; }
  int clone_into_fd() const override { return v2_dir_.get(); }
  std::vector<int> join_fds() const override {
    std::vector<int> out;
    for (const UniqueFd& fd : join_) out.push_back(fd.get());
    return out;
  }

  std::vector<pid_t> Members() override {
    std::vector<pid_t> out;
    auto procs = ReadSmallFile(MembershipDir() + "/cgroup.procs", 4 << 20);
    if (!procs.ok()) return out;
    const std::string& s = procs.value();
    const char* p = s.data();
    const char* end = s.data() + s.size();
    while (p < end) {
      pid_t pid = 0;
      auto [next, ec] = std::from_chars(p, end, pid);
      if (ec != std::errc()) break;
      out.push_back(pid);
      p = next;
      while (p < end && (*p == '\n' || *p == ' ')) ++p;
    }
    return out;
  }

  void SignalAll(int sig) override {
    for (pid_t pid : Members()) kill(pid, sig);
  }

  void KillAll() override {
    if (!v2_.empty() && WriteFileString(v2_ + "/cgroup.kill", "1").ok()) return;
    // No cgroup.kill (v1 only, or Linux < 5.14): signal every member; the teardown polls and
    // calls again until the tree is gone, which catches children forked in between.
    SignalAll(SIGKILL);
  }

  bool Populated() override {
    if (events_) {
      auto text = ReadFd(events_.get(), 256);
      if (text.ok()) return KeyedValue(text.value(), "populated").value_or(1) != 0;
    }
    if (!pids_.empty()) return ReadNumber(pids_ + "/pids.current").value_or(1) != 0;
    return !Members().empty();
  }

  int populated_event_fd() const override { return events_.get(); }

  std::optional<double> CpuSecondsUsed() override {
    if (!v2_.empty()) {
      auto usec = ReadKeyed(v2_ + "/cpu.stat", "usage_usec");
      if (usec) return static_cast<double>(*usec) / 1e6;
    }
    if (!cpuacct_.empty()) {
      auto ns = ReadNumber(cpuacct_ + "/cpuacct.usage");
      if (ns) return static_cast<double>(*ns) / 1e9;
    }
    return std::nullopt;
  }

  CellStats ReadStats() override {
    CellStats st;
    if (mode_ == ContainmentMode::kCgroup2) {
      if (auto v = ReadNumber(v2_ + "/memory.peak")) st.peak_memory_bytes = v;
      if (auto v = ReadNumber(v2_ + "/pids.peak")) st.pids_peak = v;
      st.oom_kills = ReadKeyed(v2_ + "/memory.events", "oom_kill").value_or(0);
      st.pids_max_hits = ReadKeyed(v2_ + "/pids.events", "max").value_or(0);
    } else {
      if (!memory_.empty()) {
        if (auto v = ReadNumber(memory_ + "/memory.max_usage_in_bytes")) st.peak_memory_bytes = v;
        st.oom_kills = ReadKeyed(memory_ + "/memory.oom_control", "oom_kill").value_or(0);
      }
      if (auto v = ReadNumber(pids_ + "/pids.peak")) st.pids_peak = v;
      st.pids_max_hits = ReadKeyed(pids_ + "/pids.events", "max").value_or(0);
    }
    if (!v2_.empty()) {
      auto text = ReadSmallFile(v2_ + "/cpu.stat");
      if (text.ok()) {
        if (auto u = KeyedValue(text.value(), "user_usec")) st.cpu_user_s = *u / 1e6;
        if (auto s = KeyedValue(text.value(), "system_usec")) st.cpu_system_s = *s / 1e6;
      }
    } else if (!cpuacct_.empty()) {
      auto text = ReadSmallFile(cpuacct_ + "/cpuacct.stat");
      double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
      if (text.ok()) {
        if (auto u = KeyedValue(text.value(), "user")) st.cpu_user_s = *u / hz;
        if (auto s = KeyedValue(text.value(), "system")) st.cpu_system_s = *s / hz;
      }
    }
    return st;
  }

  bool Release() override {
    released_ = true;
    v2_dir_.reset();
    events_.reset();
    join_.clear();
    bool all = true;
    for (const std::string& dir : created_) {
      if (rmdir(dir.c_str()) != 0 && errno != ENOENT) all = false;
    }
    if (all) created_.clear();
    return all;
  }

 private:
  const std::string& MembershipDir() const { return v2_.empty() ? pids_ : v2_; }

  bool V2Has(const char* controller) const {
    for (const std::string& c : v2_enabled_) {
      if (c == controller) return true;
    }
    return false;
  }

  Status ApplyLimits(const Limits& limits) {
    if (limits.pids != 0) {
      std::string v = std::to_string(limits.pids);
      if (mode_ == ContainmentMode::kCgroup2) {
        if (!V2Has("pids")) return MissingController("--pids", "pids");
        TRY(WriteFileString(v2_ + "/pids.max", v));
      } else {
        TRY(WriteFileString(pids_ + "/pids.max", v));
      }
    }
    if (limits.memory_bytes != 0) {
      std::string v = std::to_string(limits.memory_bytes);
      if (mode_ == ContainmentMode::kCgroup2) {
        if (!V2Has("memory")) return MissingController("--memory", "memory");
        TRY(WriteFileString(v2_ + "/memory.max", v));
        // Without this a limited cell pages out to swap instead of meeting its limit.
        if (FileExists(v2_ + "/memory.swap.max")) (void)WriteFileString(v2_ + "/memory.swap.max", "0");
      } else {
        if (memory_.empty()) return MissingController("--memory", "memory (v1)");
        TRY(WriteFileString(memory_ + "/memory.limit_in_bytes", v));
        if (FileExists(memory_ + "/memory.memsw.limit_in_bytes")) {
          (void)WriteFileString(memory_ + "/memory.memsw.limit_in_bytes", v);
        }
      }
    }
    return Ok();
  }

  Error MissingController(const char* option, const char* controller) const {
    return Error::Msg(std::string(option) + " needs the " + controller +
                          " controller, which corral's cgroup does not have here (" +
                          ContainmentModeName(mode_) +
                          "); on hybrid hosts try --containment cgroup1, see `corral doctor`",
                      ENOTSUP);
  }

  ContainmentMode mode_;
  std::string v2_, pids_, memory_, cpuacct_;  // this cell's directories; empty: not used
  std::vector<std::string> v2_enabled_;
  std::vector<std::string> created_;
  UniqueFd v2_dir_, events_;
  std::vector<UniqueFd> join_;
  bool released_ = false;
};

}  // namespace

std::unique_ptr<Containment> MakeCgroupContainment(const ContainmentConfig& config,
                                                   const std::string& cell_id) {
  return std::make_unique<CgroupCell>(config, cell_id);
}

Status PrepareCgroupCell(Containment* c, const Limits& limits) {
  return static_cast<CgroupCell*>(c)->Prepare(limits);
}

}  // namespace corral
