// The cgroup backends (cgroup2, and cgroup1 with or without a cgroup2 beside it). One class:
// a cell is a set of same-named directories, one per hierarchy in use, and each operation reads
// from whichever hierarchy can answer it best:
//   membership, kill, "tree gone": cgroup2 when there is one (cgroup.procs, cgroup.kill,
//                                  cgroup.events), else the v1 pids directory
//   limits and stats:              cgroup2 controller files in cgroup2 mode, v1 files in cgroup1
// A cell without --memory / --pids takes a clean slot of the pool of reusable directories where
// there is one (cgroup_pool.h: that is where the exactness of reused counters is argued) and
// gives it back when its tree is gone; otherwise (limits, pool exhausted or off) it creates its
// own directories, named after the cell id, and removes them when it closes.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cell/cgroup_pool.h"
#include "cell/containment.h"
#include "sys/proc.h"

namespace corral {
namespace {

bool FileExists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

uint64_t Delta(std::optional<uint64_t> now, std::optional<uint64_t> base) {
  uint64_t n = now.value_or(0), b = base.value_or(0);
  return n > b ? n - b : 0;
}

class CgroupCell : public Containment {
 public:
  CgroupCell(const ContainmentConfig& config, CgroupPool* pool, const std::string& id)
      : mode_(config.mode), config_(config), pool_(pool), id_(id) {}
  ~CgroupCell() override {
    if (!released_) Release();
    // Still populated (stuck, and the owner is going away): the slot is let go with its
    // processes in it; the next claimer or sweeper kills them and skips it until it is empty.
    if (slot_) pool_->Drop(std::move(slot_), /*remove=*/false);
  }

  Status Prepare(const Limits& limits) {
    bool limited = limits.pids != 0 || limits.memory_bytes != 0;
    if (!limited && pool_ != nullptr) slot_ = pool_->Claim();
    if (slot_) return Ok();
    // The directory name carries our PID namespace: two daemons that are both PID 1 of their
    // containers never share a cell's cgroup, and the sweeper judges only owners it can see.
    own_ = std::make_unique<CgroupDirs>(config_, id_ + "." + PidNamespaceTag());
    TRY(own_->Make());
    TRY(own_->Open(/*join_v2=*/false));
    return ApplyLimits(limits);
  }

  ContainmentMode mode() const override { return mode_; }
  // A slot known to refuse CLONE_INTO_CGROUP is joined through cgroup.procs (cgroup_pool.h).
  int clone_into_fd() const override { return slot_ && slot_->killed ? -1 : dirs().v2_fd(); }
  std::vector<int> join_fds() const override {
    return dirs().join_fds(slot_ != nullptr && slot_->killed);
  }
  int cgroup_procs_fallback_fd() const override {
    return slot_ && !slot_->killed ? slot_->dirs.v2_procs_fd() : -1;
  }
  void OnCloneIntoRefused() override {
    if (slot_) slot_->killed = true;
  }
  void OnSpawned(pid_t leader) override {
    Containment::OnSpawned(leader);
    // A pool slot keeps its files for the next cell; a cell's own directories need few now.
    if (own_) own_->CloseUntilNeeded();
  }

  std::vector<pid_t> Members() override { return dirs().Members(); }

  void SignalAll(int sig) override {
    for (pid_t pid : Members()) kill(pid, sig);
  }

  void KillAll() override {
    // cgroup.kill on a slot: later children cloned into it would die at birth (cgroup_pool.h).
    if (dirs().Kill() && slot_) slot_->killed = true;
  }

  bool Populated() override { return dirs().Populated(); }

  int populated_event_fd() const override { return dirs().events_fd(); }

  std::optional<double> CpuSecondsUsed() override {
    // Once the tree is gone the figure cannot change: no second read.
    auto usec = final_ ? final_->cpu_usage_usec : dirs().CpuUsageUsec();
    if (!usec) return std::nullopt;
    return Cpu(usec, base().cpu_usage_usec);
  }

  CellStats ReadStats() override {
    CgroupCounters now = dirs().ReadCounters();
    const CgroupCounters& b = base();
    CellStats st;
    st.peak_memory_bytes = now.peak_memory_bytes;  // reset at claim (or a fresh directory)
    st.pids_peak = now.pids_peak;                  // exact: at most 1 at claim
    st.oom_kills = Delta(now.oom_kills, b.oom_kills);
    st.pids_max_hits = Delta(now.pids_max_hits, b.pids_max_hits);
    if (now.cpu_user_usec) st.cpu_user_s = Cpu(now.cpu_user_usec, b.cpu_user_usec);
    if (now.cpu_system_usec) st.cpu_system_s = Cpu(now.cpu_system_usec, b.cpu_system_usec);
    final_ = now;  // the tree is gone: these stay the slot's counters until the next claim
    return st;
  }

  bool Release() override {
    released_ = true;
    if (own_) return own_->Remove();
    if (!slot_) return true;
    if (slot_->dirs.Populated()) return false;  // stuck: the quarantine retries
    slot_->counters_known = final_.has_value();
    if (final_) slot_->base = *final_;
    pool_->Return(std::move(slot_));
    return true;
  }

 private:
  CgroupDirs& dirs() { return slot_ ? slot_->dirs : *own_; }
  const CgroupDirs& dirs() const { return slot_ ? slot_->dirs : *own_; }
  const CgroupCounters& base() const { return slot_ ? slot_->base : kZero; }
  static double Cpu(std::optional<uint64_t> now, std::optional<uint64_t> base) {
    return static_cast<double>(Delta(now, base)) / 1e6;
  }

  bool V2Has(const char* controller) const {
    for (const std::string& c : config_.v2_enabled) {
      if (c == controller) return true;
    }
    return false;
  }

  Status ApplyLimits(const Limits& limits) {
    const std::string& v2 = own_->v2();
    if (limits.pids != 0) {
      std::string v = std::to_string(limits.pids);
      if (mode_ == ContainmentMode::kCgroup2) {
        if (!V2Has("pids")) return MissingController("--pids", "pids");
        TRY(WriteFileString(v2 + "/pids.max", v));
      } else {
        TRY(WriteFileString(own_->pids() + "/pids.max", v));
      }
    }
    if (limits.memory_bytes != 0) {
      std::string v = std::to_string(limits.memory_bytes);
      if (mode_ == ContainmentMode::kCgroup2) {
        if (!V2Has("memory")) return MissingController("--memory", "memory");
        TRY(WriteFileString(v2 + "/memory.max", v));
        // Without this a limited cell pages out to swap instead of meeting its limit.
        if (FileExists(v2 + "/memory.swap.max"))
          (void)WriteFileString(v2 + "/memory.swap.max", "0");
      } else {
        const std::string& memory = own_->memory();
        if (memory.empty()) return MissingController("--memory", "memory (v1)");
        TRY(WriteFileString(memory + "/memory.limit_in_bytes", v));
        if (FileExists(memory + "/memory.memsw.limit_in_bytes")) {
          (void)WriteFileString(memory + "/memory.memsw.limit_in_bytes", v);
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

  static inline const CgroupCounters kZero{};

  ContainmentMode mode_;
  ContainmentConfig config_;
  CgroupPool* pool_;  // slots come from (and go back to) it; nullptr: no pool
  std::string id_;
  std::unique_ptr<PoolSlot> slot_;       // a pooled cell: the claimed slot (until given back)
  std::unique_ptr<CgroupDirs> own_;      // otherwise: this cell's own directories
  std::optional<CgroupCounters> final_;  // read once the tree is gone
  bool released_ = false;
};

}  // namespace

std::unique_ptr<Containment> MakeCgroupContainment(const ContainmentConfig& config,
                                                   CgroupPool* pool, const std::string& cell_id) {
  return std::make_unique<CgroupCell>(config, pool, cell_id);
}

Status PrepareCgroupCell(Containment* c, const Limits& limits) {
  return static_cast<CgroupCell*>(c)->Prepare(limits);
}

}  // namespace corral
