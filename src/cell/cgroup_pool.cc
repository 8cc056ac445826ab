// Cell cgroup directories and the pool of reusable ones (see cgroup_pool.h for the protocol).
#include "cell/cgroup_pool.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace corral {
namespace {

// "key value" lines (cgroup.events, memory.events, cpu.stat, memory.oom_control, pids.events).
std::optional<uint64_t> KeyedValue(std::string_view text, std::string_view key) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == ' ') {
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

// Every file read here is a few lines long: one pread into a stack buffer.
std::optional<std::string_view> ReadSmall(int fd, char (&buf)[512]) {
  return ReadOnce(fd, buf, sizeof buf);
}

std::optional<uint64_t> ReadNumberFd(int fd) {
  char buf[512];
  auto text = ReadSmall(fd, buf);
  if (!text) return std::nullopt;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(text->data(), text->data() + text->size(), v);
  if (ec != std::errc()) return std::nullopt;
  return v;
}

std::optional<uint64_t> ReadKeyedFd(int fd, std::string_view key) {
  char buf[512];
  auto text = ReadSmall(fd, buf);
  if (!text) return std::nullopt;
  return KeyedValue(*text, key);
}

// Files that older kernels or some hierarchies lack (pids.peak before 6.1, cgroup.kill before
// 5.14): an invalid fd, and the reader says "unknown".
UniqueFd OpenOptionalAt(int dirfd, const char* name, int flags) {
  return UniqueFd(openat(dirfd, name, flags | O_CLOEXEC));
}

// A counter file of a v1 directory: where its fd goes (nullptr: not wanted), its name, its mode.
struct V1File {
  UniqueFd* fd;
  const char* name;
  int flags;
};

// Opens the `tasks` file of v1 directory `dir` ("": hierarchy not used) into *tasks, the child's
// way in (join_fds), and `files`, those missing on this kernel as invalid fds.
Status OpenV1(const std::string& dir, UniqueFd* tasks, std::initializer_list<V1File> files) {
  if (dir.empty()) return Ok();
  ASSIGN_OR_RETURN(UniqueFd d, OpenFile(dir, O_PATH | O_DIRECTORY));
  ASSIGN_OR_RETURN(*tasks, OpenAt(d.get(), "tasks", O_WRONLY));
  for (const V1File& f : files) {
    if (f.fd != nullptr) *f.fd = OpenOptionalAt(d.get(), f.name, f.flags);
  }
  return Ok();
}

Status MakeDirOrParent(const std::string& dir) {
  if (mkdir(dir.c_str(), 0755) == 0 || errno == EEXIST) return Ok();
  if (errno == ENOENT) {  // "pool/3" before "pool" exists
    std::string parent = dir.substr(0, dir.rfind('/'));
    if (mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST) {
      return Error::FromErrno("mkdir", parent);
    }
    if (mkdir(dir.c_str(), 0755) == 0 || errno == EEXIST) return Ok();
  }
  return Error::FromErrno("mkdir", dir);
}

bool RemoveDir(const std::string& dir) {
  return dir.empty() || rmdir(dir.c_str()) == 0 || errno == ENOENT;
}

// Memory a cgroup v1 memcg may still show as used after its last process left without that
// being anyone's page cache: the per-CPU charge batch (MEMCG_CHARGE_BATCH, 64 pages) on each CPU,
// and kernel objects of the last cells still charged (slab pages, RCU-freed). A fresh memcg's
// first charge takes a batch too, so its peak is off by one batch per CPU; a reused slot may be
// off by two. Allowing one batch only made /bin/true-sized cells recreate the memcg every fourth
// time (rmdir + mkdir + opens: 1.18-1.21x the spawn floor against 1.14-1.15x with two).
uint64_t MemoryReuseLimit() {
  static const uint64_t limit = [] {
    // The CPUs this process (and so every cell it spawns) may run on: one syscall, where
    // sysconf(_SC_NPROCESSORS_ONLN) opens and parses a sysfs file.
    cpu_set_t set;
    int cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    return 2 * static_cast<uint64_t>(cpus > 0 ? cpus : 1) * 64 *
           static_cast<uint64_t>(getpagesize());
  }();
  return limit;
}

}  // namespace

// --- CgroupDirs ------------------------------------------------------------------------------

CgroupDirs::CgroupDirs(const ContainmentConfig& config, const std::string& name)
    : mode_(config.mode) {
  if (!config.v2_root.empty()) v2_ = config.v2_root + "/" + name;
  if (mode_ == ContainmentMode::kCgroup1) {
    pids_ = config.v1_pids_root + "/" + name;
    if (!config.v1_memory_root.empty()) memory_ = config.v1_memory_root + "/" + name;
    if (!config.v1_cpuacct_root.empty()) cpuacct_ = config.v1_cpuacct_root + "/" + name;
  }
}

// v1 hierarchies are joined through `tasks`, not `cgroup.procs`: the child is one thread, and
// moving the writer's own thread skips the global cgroup_threadgroup_rwsem, whose write side
// waits for an RCU grace period when no migration happened lately (measured here: writes 20 ms
// apart to cgroup.procs took 1-16 ms in 12-35 % of cases; to `tasks`, never over 50 us).
std::vector<int> CgroupDirs::join_fds(bool v2) const {
  std::vector<int> out;
  if (v2 && v2_procs_) out.push_back(v2_procs_.get());
  for (const UniqueFd* fd : {&pids_procs_, &memory_procs_, &cpuacct_procs_}) {
    if (fd->valid()) out.push_back(fd->get());
  }
  return out;
}

Status CgroupDirs::Make() {
  for (const std::string* dir : {&v2_, &pids_, &memory_, &cpuacct_}) {
    if (dir->empty()) continue;
    if (auto st = MakeDirOrParent(*dir); !st.ok()) return st.error().Wrap("create cell cgroup");
  }
  return Ok();
}

Status CgroupDirs::Open(bool join_v2) {
  // Files are opened relative to their directory: one path component to walk, not eight.
  if (!v2_.empty()) {
    if (!v2_dir_) {
      ASSIGN_OR_RETURN(v2_dir_, OpenFile(v2_, O_RDONLY | O_DIRECTORY));
    }
    int d = v2_dir_.get();
    ASSIGN_OR_RETURN(events_, OpenAt(d, "cgroup.events", O_RDONLY));
    if (join_v2) {
      ASSIGN_OR_RETURN(v2_procs_, OpenAt(d, "cgroup.procs", O_WRONLY));
    }
    TRY(OpenV2Stats());
  }
  TRY(OpenPids());
  TRY(OpenMemory());
  return OpenCpuacct();
}

Status CgroupDirs::OpenV2Stats() {
  if (!v2_dir_) return Ok();
  int d = v2_dir_.get();
  cpu_stat_ = OpenOptionalAt(d, "cpu.stat", O_RDONLY);
  if (mode_ == ContainmentMode::kCgroup2) {
    memory_peak_ = OpenOptionalAt(d, "memory.peak", O_RDONLY);
    memory_events_ = OpenOptionalAt(d, "memory.events", O_RDONLY);
    pids_peak_ = OpenOptionalAt(d, "pids.peak", O_RDONLY);
    pids_events_ = OpenOptionalAt(d, "pids.events", O_RDONLY);
  }
  return Ok();
}

void CgroupDirs::CloseUntilNeeded() {
  for (UniqueFd* fd : {&v2_procs_, &cpu_stat_, &pids_procs_, &pids_peak_, &pids_events_,
                       &memory_procs_, &memory_peak_, &memory_usage_, &memory_events_,
                       &cpuacct_procs_, &cpuacct_stat_, &cpuacct_usage_}) {
    fd->reset();
  }
  stats_closed_ = true;
}

void CgroupDirs::EnsureStats() {
  if (!stats_closed_) return;
  stats_closed_ = false;
  // Best effort: a counter that cannot be opened reads as unknown, as a missing file does.
  (void)OpenV2Stats();
  (void)OpenPids();
  (void)OpenMemory();
  (void)OpenCpuacct();
}

Status CgroupDirs::OpenPids() {
  return OpenV1(pids_, &pids_procs_,
                {{&pids_peak_, "pids.peak", O_RDONLY},
                 {&pids_events_, "pids.events", O_RDONLY},
                 // Only where no cgroup.events can say "populated".
                 {events_ ? nullptr : &pids_current_, "pids.current", O_RDONLY}});
}

Status CgroupDirs::OpenMemory() {
  return OpenV1(memory_, &memory_procs_,
                {{&memory_peak_, "memory.max_usage_in_bytes", O_RDWR},
                 {&memory_usage_, "memory.usage_in_bytes", O_RDONLY},
                 {&memory_events_, "memory.oom_control", O_RDONLY}});
}

Status CgroupDirs::OpenCpuacct() {
  return OpenV1(
      cpuacct_, &cpuacct_procs_,
      {{&cpuacct_stat_, "cpuacct.stat", O_RDONLY}, {&cpuacct_usage_, "cpuacct.usage", O_RDONLY}});
}

bool CgroupDirs::Remove() {
  // v2 last: in a pool slot it is the anchor whose lock keeps other claimers out meanwhile.
  bool all = RemoveDir(pids_) & RemoveDir(memory_) & RemoveDir(cpuacct_) & RemoveDir(v2_);
  if (all) {
    // Only now: a cell that could not be removed (stuck) still needs kill and events.
    for (UniqueFd* fd :
         {&v2_dir_, &v2_procs_, &events_, &kill_, &cpu_stat_, &pids_procs_, &pids_peak_,
          &pids_events_, &pids_current_, &memory_procs_, &memory_peak_, &memory_usage_,
          &memory_events_, &cpuacct_procs_, &cpuacct_stat_, &cpuacct_usage_}) {
      fd->reset();
    }
  }
  return all;
}

Status CgroupDirs::RecreatePids() {
  if (pids_.empty()) return Ok();
  for (UniqueFd* fd : {&pids_procs_, &pids_peak_, &pids_events_, &pids_current_}) fd->reset();
  if (rmdir(pids_.c_str()) != 0 && errno != ENOENT) return Error::FromErrno("rmdir", pids_);
  TRY(MakeDirOrParent(pids_));
  return OpenPids();
}

Status CgroupDirs::RecreateMemory() {
  if (memory_.empty()) return Ok();
  for (UniqueFd* fd : {&memory_procs_, &memory_peak_, &memory_usage_, &memory_events_}) {
    fd->reset();
  }
  if (rmdir(memory_.c_str()) != 0 && errno != ENOENT) return Error::FromErrno("rmdir", memory_);
  TRY(MakeDirOrParent(memory_));
  return OpenMemory();
}

bool CgroupDirs::Populated() {
  if (events_) {
    if (auto v = ReadKeyedFd(events_.get(), "populated")) return *v != 0;
  }
  if (pids_current_) {
    if (auto v = ReadNumberFd(pids_current_.get())) return *v != 0;
  }
  return !Members().empty();
}

std::vector<pid_t> CgroupDirs::Members() {
  std::vector<pid_t> out;
  auto procs = ReadSmallFile((v2_.empty() ? pids_ : v2_) + "/cgroup.procs", 4 << 20);
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

bool CgroupDirs::Kill() {
  if (!kill_ && v2_dir_) kill_ = OpenOptionalAt(v2_dir_.get(), "cgroup.kill", O_WRONLY);
  if (kill_ && pwrite(kill_.get(), "1", 1, 0) == 1) return true;
  // No cgroup.kill (v1 only, or Linux < 5.14): signal every member; callers poll and call
  // again until the tree is gone, which catches children forked in between.
  for (pid_t pid : Members()) kill(pid, SIGKILL);
  return false;
}

CgroupCounters CgroupDirs::ReadCounters() {
  EnsureStats();
  CgroupCounters c;
  c.peak_memory_bytes = ReadNumberFd(memory_peak_.get());
  c.pids_peak = ReadNumberFd(pids_peak_.get());
  c.oom_kills = ReadKeyedFd(memory_events_.get(), "oom_kill").value_or(0);
  c.pids_max_hits = ReadKeyedFd(pids_events_.get(), "max").value_or(0);
  ReadCpu(&c);
  return c;
}

void CgroupDirs::ReadCpu(CgroupCounters* c) {
  EnsureStats();
  char buf[512];
  if (auto text = ReadSmall(cpu_stat_.get(), buf)) {
    c->cpu_usage_usec = KeyedValue(*text, "usage_usec");
    c->cpu_user_usec = KeyedValue(*text, "user_usec");
    c->cpu_system_usec = KeyedValue(*text, "system_usec");
  } else if (auto stat = ReadSmall(cpuacct_stat_.get(), buf)) {
    double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
    if (auto u = KeyedValue(*stat, "user")) c->cpu_user_usec = static_cast<uint64_t>(*u * 1e6 / hz);
    if (auto s = KeyedValue(*stat, "system")) {
      c->cpu_system_usec = static_cast<uint64_t>(*s * 1e6 / hz);
    }
    if (auto ns = ReadNumberFd(cpuacct_usage_.get())) c->cpu_usage_usec = *ns / 1000;
  }
}

std::optional<uint64_t> CgroupDirs::CpuUsageUsec() {
  EnsureStats();
  if (cpu_stat_) return ReadKeyedFd(cpu_stat_.get(), "usage_usec");
  if (auto ns = ReadNumberFd(cpuacct_usage_.get())) return *ns / 1000;
  return std::nullopt;
}

std::optional<uint64_t> CgroupDirs::PidsCurrent() { return ReadNumberFd(pids_current_.get()); }

std::optional<uint64_t> CgroupDirs::MemoryUsage() {
  EnsureStats();
  return ReadNumberFd(memory_usage_.get());
}

Status CgroupDirs::ResetMemoryPeak() {
  if (!memory_peak_) return Ok();
  if (pwrite(memory_peak_.get(), "0", 1, 0) != 1) {
    return Error::FromErrno("write", memory_ + "/memory.max_usage_in_bytes");
  }
  return Ok();
}

// --- the pool --------------------------------------------------------------------------------

PoolSlot::PoolSlot(const ContainmentConfig& config, int i)
    : index(i), dirs(config, "pool/" + std::to_string(i)) {}

const char* CgroupPool::WhyOff(const ContainmentConfig& config) {
  if (config.mode == ContainmentMode::kPgroup) return "no cgroups";
  if (config.v2_root.empty()) return "no cgroup2 directory to lock slots on";
  if (config.mode == ContainmentMode::kCgroup2 && !config.v2_enabled.empty()) {
    return "cgroup2 controllers: peaks cannot be reset exactly";
  }
  return nullptr;
}

std::unique_ptr<CgroupPool> CgroupPool::ForConfig(const ContainmentConfig& config) {
  if (WhyOff(config) != nullptr) return nullptr;
  return std::make_unique<CgroupPool>(config);
}

CgroupPool::CgroupPool(const ContainmentConfig& config) : config_(config) {}

CgroupPool::~CgroupPool() {
  for (std::unique_ptr<PoolSlot>& slot : free_) {
    if (slot->killed || slot->index >= kKeptSlots) slot->dirs.Remove();  // anchor last, locked
  }
}

std::unique_ptr<PoolSlot> CgroupPool::LockSlot(int i, bool create, int* killed, bool* exists) {
  auto slot = std::make_unique<PoolSlot>(config_, i);
  const std::string& anchor = slot->dirs.v2();
  int fd = open(anchor.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT && create) {
    if (!slot->dirs.Make().ok()) return nullptr;
    fd = open(anchor.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  }
  if (fd < 0) return nullptr;
  if (exists != nullptr) *exists = true;
  slot->dirs.set_v2_fd(UniqueFd(fd));
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) return nullptr;  // a live owner holds it
  // Locked, but perhaps a directory its last holder removed meanwhile: then it has no files.
  UniqueFd events(openat(fd, "cgroup.events", O_RDONLY | O_CLOEXEC));
  if (!events) return nullptr;
  // Processes in a slot nobody holds are a crashed owner's tree: they die now, and the slot is
  // skipped until it is empty (a stuck process keeps it out of use for as long as it lasts).
  if (ReadKeyedFd(events.get(), "populated").value_or(1) != 0) {
    std::vector<pid_t> members = slot->dirs.Members();
    slot->dirs.Kill();
    for (pid_t pid : members) kill(pid, SIGKILL);  // also where cgroup.kill is missing
    *killed += static_cast<int>(members.size());
    return nullptr;
  }
  return slot;
}

bool CgroupPool::Refresh(PoolSlot* slot) {
  CgroupDirs& d = slot->dirs;
  if (!slot->opened) {
    // Locked by LockSlot: open the slot's files (creating a missing v1 side: a holder that gave
    // the slot up may have removed it before the anchor).
    if (!d.Open(/*join_v2=*/true).ok() && (!d.Make().ok() || !d.Open(/*join_v2=*/true).ok())) {
      return false;
    }
    slot->opened = true;
    slot->counters_known = false;
  }
  if (!slot->counters_known) {
    if (d.Populated()) return false;
    slot->base = d.ReadCounters();
    slot->counters_known = true;
  }
  // pids.peak cannot be reset: reuse the directory only while a new cell's peak stays exact.
  if (slot->base.pids_peak.value_or(0) > 1) {
    if (!d.RecreatePids().ok()) return false;
    slot->base.pids_peak.reset();
    slot->base.pids_max_hits = 0;
  }
  if (auto used = d.MemoryUsage()) {
    if (*used > MemoryReuseLimit()) {
      // Page cache charged by the previous cell would count as this one's: fresh memcg.
      if (!d.RecreateMemory().ok()) return false;
      slot->base.oom_kills = 0;
    } else if (!d.ResetMemoryPeak().ok()) {
      return false;
    }
  }
  // The CPU time of the last cell's final exits may land after populated 0: read it again.
  d.ReadCpu(&slot->base);
  return true;
}

std::unique_ptr<PoolSlot> CgroupPool::Claim() {
  std::lock_guard<std::mutex> lock(mu_);
  while (!free_.empty()) {
    std::unique_ptr<PoolSlot> slot = std::move(free_.back());
    free_.pop_back();
    int i = slot->index;
    if (slot->killed) {
      // Its cgroup2 directory can no longer be cloned into: made afresh here, at the next claim,
      // not when the killed cell ended (that would delay its result by three rmdirs).
      bool removed = slot->dirs.Remove();
      slot.reset();  // unlocks; a claimer elsewhere may take the number first: then we skip it
      held_[i] = false;
      int killed = 0;
      if (removed) slot = LockSlot(i, /*create=*/true, &killed, nullptr);
      if (slot == nullptr) continue;
      held_[i] = true;
    }
    if (Refresh(slot.get())) return slot;
    held_[i] = false;  // not clean: let it go (unlocks), the next claimer checks it
  }
  bool hints[kPoolSlots];
  std::copy(std::begin(busy_hint_), std::end(busy_hint_), std::begin(hints));
  std::fill(std::begin(busy_hint_), std::end(busy_hint_), false);  // one Claim only
  for (int i = 0; i < kPoolSlots; ++i) {
    if (held_[i] || hints[i]) continue;
    int killed = 0;
    std::unique_ptr<PoolSlot> slot = LockSlot(i, /*create=*/true, &killed, nullptr);
    if (slot == nullptr) continue;
    if (!Refresh(slot.get())) continue;
    held_[i] = true;
    return slot;
  }
  return nullptr;
}

void CgroupPool::Return(std::unique_ptr<PoolSlot> slot) {
  std::lock_guard<std::mutex> lock(mu_);
  free_.push_back(std::move(slot));
}

void CgroupPool::Drop(std::unique_ptr<PoolSlot> slot, bool remove) {
  std::lock_guard<std::mutex> lock(mu_);
  if (remove) slot->dirs.Remove();  // anchor last: the slot is given up for good
  held_[slot->index] = false;
  slot.reset();  // closes the anchor: unlocks
}

size_t CgroupPool::ExtraFds() {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<size_t>(std::count(std::begin(held_), std::end(held_), true)) *
         kExtraFdsPerSlot;
}

int CgroupPool::Sweep() {
  std::lock_guard<std::mutex> lock(mu_);
  // kernfs gives a directory 2 + (number of subdirectories) links: no readdir needed.
  struct stat st;
  std::string pool_dir = config_.v2_root + "/pool";
  if (stat(pool_dir.c_str(), &st) != 0) return 0;
  int existing = static_cast<int>(st.st_nlink) - 2;
  if (existing > 1 && existing <= kKeptSlots) {
    // The parent's populated counts every slot: 0 means no slot holds a crashed owner's tree
    // (or a live owner's), and the slot-by-slot scan (6 system calls a slot) is not needed.
    // With overflow slots present, scan: a dead owner's must go even when empty.
    UniqueFd events(open((pool_dir + "/cgroup.events").c_str(), O_RDONLY | O_CLOEXEC));
    if (events && ReadKeyedFd(events.get(), "populated") == 0) return 0;
  }
  int killed = 0;
  for (int i = 0, seen = 0; i < kPoolSlots && seen < existing; ++i) {
    if (held_[i]) {
      ++seen;
      continue;
    }
    bool exists = false;
    std::unique_ptr<PoolSlot> slot = LockSlot(i, /*create=*/false, &killed, &exists);
    if (exists) ++seen;
    busy_hint_[i] = exists && slot == nullptr;
    if (slot != nullptr && i >= kKeptSlots) {
      slot->dirs.Remove();  // a dead owner's overflow slot, empty: not kept at rest
      continue;
    }
    // Keep one clean slot for this process's next cell: it saves locking it again.
    if (slot != nullptr && free_.empty()) {
      held_[i] = true;
      free_.push_back(std::move(slot));
    }
  }
  return killed;
}

}  // namespace corral
