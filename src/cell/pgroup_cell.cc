// The pgroup backend, for hosts with no writable cgroups. The leader starts a new session (so its
// session id and process group id are its pid) and corral is PR_SET_CHILD_SUBREAPER, so every
// process of the tree stays corral's descendant even after its parent dies.
//
// Members are found by one walk of /proc: the leader and everything below it, plus the orphans
// corral adopted that belong to this cell. An adopted orphan is attributed by, in order: its
// session (the leader's, unless it called setsid), the CORRAL_CELL variable every cell's
// environment carries (read only for processes not in D state: /proc/PID/environ takes the
// target's mmap lock), or, for `corral run`, the fact that there is only one cell.
// Known limits, stated in `corral doctor`: a process that both setsid()s and clears its
// environment inside a daemon with several pgroup cells cannot be attributed; no memory or pids
// limits exist without cgroups.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <unordered_map>
#include <unordered_set>

#include "cell/containment.h"
#include "sys/proc.h"

namespace corral {
namespace {

class PgroupCell : public Containment {
 public:
  PgroupCell(const std::string& id, bool single_cell) : id_(id), single_cell_(single_cell) {}

  ContainmentMode mode() const override { return ContainmentMode::kPgroup; }

  std::vector<pid_t> Members() override {
    pid_t self = getpid();
    std::unordered_map<pid_t, std::vector<pid_t>> children;
    std::unordered_map<pid_t, ProcStat> stats;
    for (pid_t pid : ListPids()) {
      auto st = ReadProcStat(pid);
      if (!st) continue;
      children[st->ppid].push_back(pid);
      stats.emplace(pid, std::move(*st));
    }
    std::vector<pid_t> roots;
    if (stats.count(leader_) != 0 && stats[leader_].ppid == self) roots.push_back(leader_);
    for (pid_t pid : children[self]) {
      if (pid == leader_) continue;
      const ProcStat& st = stats[pid];
      bool ours = single_cell_ || st.session == leader_ ||
                  (st.state != 'D' && st.state != 'Z' && ReadEnvironVar(pid, "CORRAL_CELL") == id_);
      if (ours) roots.push_back(pid);
    }
    std::vector<pid_t> out;
    std::unordered_set<pid_t> seen;
    while (!roots.empty()) {
      pid_t pid = roots.back();
      roots.pop_back();
      if (!seen.insert(pid).second) continue;
      char state = stats[pid].state;
      if (state != 'Z' && state != 'X') out.push_back(pid);
      for (pid_t c : children[pid]) roots.push_back(c);
    }
    return out;
  }

  void SignalAll(int sig) override {
    // The group first (cheap, reaches members we have not found yet); it cannot name a stranger:
    // the kernel does not reuse a pid as a group id while any member of that group lives.
    if (leader_ > 0) kill(-leader_, sig);
    for (pid_t pid : Members()) kill(pid, sig);
  }

  void KillAll() override { SignalAll(SIGKILL); }
  bool Populated() override {
    // Fast path for `corral run`: a subreaper with no children left has no descendants left
    // either (every orphan of the tree would have become our child), so no /proc walk.
    if (single_cell_) {
      siginfo_t info;
      if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0 && errno == ECHILD) {
        return false;
      }
    }
    return !Members().empty();
  }
  CellStats ReadStats() override { return CellStats(); }
  bool Release() override { return true; }

 private:
  std::string id_;
  bool single_cell_;
};

}  // namespace

std::unique_ptr<Containment> MakePgroupContainment(const std::string& cell_id, bool single_cell) {
  return std::make_unique<PgroupCell>(cell_id, single_cell);
}

}  // namespace corral
