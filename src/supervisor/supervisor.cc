#include "supervisor/supervisor.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include "sys/clock.h"
#include "sys/proc.h"

namespace corral {
namespace {

constexpr double kPidHeadroom = 0.9;  // refuse new cells past 90 % of a pid limit
constexpr double kFdHeadroom = 0.9;
constexpr size_t kFdsPerCell = 6;  // pidfd, 2 pipes, cgroup dir + cgroup.events, client socket

std::optional<uint64_t> ParseU64Prefix(const std::string& text) {
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc()) return std::nullopt;
  return v;
}

std::optional<uint64_t> ReadU64(const std::string& path) {
  auto r = ReadSmallFile(path, 64);
  if (!r.ok()) return std::nullopt;
  return ParseU64Prefix(r.value());
}

// Reads a one-line /proc or cgroup file kept open in *fd (opened on first use).
std::optional<std::string> ReadKept(UniqueFd* fd, const std::string& path) {
  if (!*fd) fd->reset(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  char buf[256];
  auto text = ReadOnce(fd->get(), buf, sizeof buf);
  if (!text || text->empty()) return std::nullopt;
  return std::string(*text);
}

}  // namespace

Result<std::unique_ptr<Supervisor>> Supervisor::Create(EventLoop* loop, SupervisorOptions options) {
  std::unique_ptr<Supervisor> s(new Supervisor(loop, std::move(options)));
  // Many cells at once need many fds (about 7 each): take all the kernel allows us; root may
  // raise the hard limit itself, up to fs.nr_open. Cells get the soft limit we were started with
  // back (and the raised hard limit, for a command that asks for more).
  HostOptions host;
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    struct rlimit raised = rl;
    auto nr_open = ReadU64("/proc/sys/fs/nr_open");
    if (geteuid() == 0 && nr_open && raised.rlim_max < *nr_open) raised.rlim_max = *nr_open;
    raised.rlim_cur = raised.rlim_max;
    // Without CAP_SYS_RESOURCE (root in many containers) the hard limit stays; the soft goes up.
    if (setrlimit(RLIMIT_NOFILE, &raised) != 0) {
      raised = rlimit{rl.rlim_max, rl.rlim_max};
      if (setrlimit(RLIMIT_NOFILE, &raised) != 0) raised = rl;
    }
    if (raised.rlim_cur != rl.rlim_cur) host.cell_nofile = rlimit{rl.rlim_cur, raised.rlim_max};
  }
  TRY(s->Recover());
  host.containment = s->options_.containment;
  host.reap_orphans = s->options_.reap_orphans;
  host.prebuilt_namespaces = s->options_.prebuilt_namespaces;
  host.default_signals = true;  // cells do not inherit what the daemon's starter ignored
  ASSIGN_OR_RETURN(s->host_, CellHost::Create(loop, host));  // also sweeps dead owners' cgroups
  return s;
}

Supervisor::~Supervisor() = default;

// Tears down what a previous daemon left running (it died without cleaning up: SIGKILL, OOM).
Status Supervisor::Recover() {
  if (options_.state_dir.empty()) return Ok();
  std::string dir = options_.state_dir + "/cells";
  for (const std::string& d : {options_.state_dir, dir}) {
    if (mkdir(d.c_str(), 0700) != 0 && errno != EEXIST) {
      return Error::FromErrno("mkdir", d).Wrap("state dir (--state-dir)");
    }
  }
  DIR* dp = opendir(dir.c_str());
  if (dp == nullptr) return Error::FromErrno("opendir", dir);
  std::vector<std::string> stale;
  std::vector<std::string> dead_prefixes;
  while (dirent* e = readdir(dp)) {
    if (e->d_name[0] == '.') continue;
    std::string id = e->d_name;  // <prefix>-<daemon pid>-<n>
    size_t dash = id.find('-');
    if (dash == std::string::npos) continue;
    pid_t owner = static_cast<pid_t>(std::strtol(id.c_str() + dash + 1, nullptr, 10));
    if (owner > 0 && owner != getpid() && (kill(owner, 0) == 0 || errno == EPERM)) continue;
    stale.push_back(id);
    std::string prefix = id.substr(0, dash + 1) + std::to_string(owner) + "-";
    if (std::find(dead_prefixes.begin(), dead_prefixes.end(), prefix) == dead_prefixes.end()) {
      dead_prefixes.push_back(prefix);
    }
  }
  closedir(dp);
  for (const std::string& id : stale) {
    // "<pid> <starttime>": kill the leader only if it is still the same process.
    auto text = ReadSmallFile(dir + "/" + id, 128);
    if (text.ok()) {
      std::vector<std::string_view> f = SplitFields(text.value());
      uint64_t pid = 0, start = 0;
      if (f.size() < 2 || !ParseU64(f[0], &pid) || !ParseU64(f[1], &start)) pid = 0;
      auto st = pid > 0 ? ReadProcStat(static_cast<pid_t>(pid)) : std::nullopt;
      if (st && st->starttime_ticks == start && kill(pid, SIGKILL) == 0) ++recovered_killed_;
    }
    unlink((dir + "/" + id).c_str());
  }
  // The rest of those trees (pgroup backend: no cgroup holds them) carry the dead daemon's
  // cell ids in their environment.
  if (!dead_prefixes.empty() && options_.containment.mode == ContainmentMode::kPgroup) {
    for (pid_t pid : ListPids()) {
      auto st = ReadProcStat(pid);
      if (!st || st->state == 'Z' || st->state == 'D') continue;
      auto cell = ReadEnvironVar(pid, "CORRAL_CELL");
      if (!cell) continue;
      for (const std::string& prefix : dead_prefixes) {
        if (cell->rfind(prefix, 0) == 0 && kill(pid, SIGKILL) == 0) ++recovered_killed_;
      }
    }
  }
  return Ok();
}

std::optional<Refusal> Supervisor::Admit() const {
  if (shutting_down_) return Refusal{Refusal::kOverloaded, "the daemon is shutting down"};
  // /proc/loadavg's "running/total" counts every task, which is what pid_max limits.
  AdmissionFiles& f = admission_files_;
  auto loadavg = ReadKept(&f.loadavg, "/proc/loadavg");
  auto pid_max_text = ReadKept(&f.pid_max, "/proc/sys/kernel/pid_max");
  auto pid_max = pid_max_text ? ParseU64Prefix(*pid_max_text) : std::nullopt;
  if (loadavg && pid_max) {
    size_t slash = loadavg->find('/');
    uint64_t tasks =
        slash == std::string::npos ? 0 : std::strtoull(loadavg->c_str() + slash + 1, nullptr, 10);
    if (tasks > *pid_max * kPidHeadroom) {
      return Refusal{Refusal::kOverloaded, "host is near pid_max (" + std::to_string(tasks) +
                                               " of " + std::to_string(*pid_max) +
                                               " pids in use): refusing to start more"};
    }
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    size_t need = 64 + (running() + 1) * kFdsPerCell + host_->fds_held_by_pool();
    if (need > rl.rlim_cur * kFdHeadroom) {
      return Refusal{Refusal::kOverloaded, "the daemon is near its fd limit (RLIMIT_NOFILE " +
                                               std::to_string(rl.rlim_cur) +
                                               "): refusing to start more cells"};
    }
  }
  const std::string& pids_root = options_.containment.v1_pids_root;
  if (!pids_root.empty()) {
    auto max = ReadKept(&f.pids_max, pids_root + "/pids.max");
    if (max && max->rfind("max", 0) != 0) {
      uint64_t m = std::strtoull(max->c_str(), nullptr, 10);
      auto cur_text = ReadKept(&f.pids_current, pids_root + "/pids.current");
      uint64_t cur = cur_text ? ParseU64Prefix(*cur_text).value_or(0) : 0;
      if (cur > m * kPidHeadroom) {
        return Refusal{Refusal::kOverloaded, "corral's cell root is near its pids limit (" +
                                                 std::to_string(cur) + " of " + std::to_string(m) +
                                                 ")"};
      }
    }
  }
  return std::nullopt;
}

std::variant<std::string, Refusal> Supervisor::Start(const Caller& caller, CellSpec spec,
                                                     DoneCallback on_done, Retention retention) {
  if (auto no = Admit()) return *no;
  bool must_wait = running() >= options_.max_running;
  if (must_wait && queue_.size() >= options_.max_queued) {
    return Refusal{Refusal::kOverloaded, "overloaded: " + std::to_string(running()) +
                                             " cells running and " + std::to_string(queue_.size()) +
                                             " waiting (--max-queued); retry later"};
  }
  auto rec = std::make_unique<Record>();
  rec->id = options_.id_prefix + "-" + std::to_string(getpid()) + "-" + std::to_string(++seq_);
  rec->owner = caller.uid;
  rec->argv = spec.argv;
  rec->retention = retention;
  rec->created_ns = MonotonicNs();
  if (on_done) rec->waiters.emplace(++waiter_seq_, std::move(on_done));
  spec.id = rec->id;
  Record* r = rec.get();
  records_.emplace(r->id, std::move(rec));
  if (must_wait) {
    r->queued_spec = std::move(spec);
    queue_.push_back(r->id);
  } else {
    Launch(r, std::move(spec));
  }
  return r->id;
}

void Supervisor::Launch(Record* rec, CellSpec spec) {
  std::string id = rec->id;
  rec->cell = host_->Start(std::move(spec), [this, id](const CellResult& r) { OnDone(id, r); });
  // The done callback may already have been queued (failed to start); it runs from the loop.
  if (rec->cell != nullptr && rec->cell->leader_pid() > 0) {
    rec->leader_pid = rec->cell->leader_pid();
    WriteStateFile(*rec, rec->leader_pid);
  }
}

void Supervisor::OnDone(const std::string& id, const CellResult& result) {
  RemoveStateFile(id);
  auto it = records_.find(id);
  if (it == records_.end()) return;
  Record* rec = it->second.get();
  rec->cell = nullptr;
  auto done = std::make_shared<const CellResult>(result);
  rec->result = done;
  ++by_state_[CellStateName(result.state)];
  if (on_cell_done) on_cell_done(result);
  std::map<uint64_t, DoneCallback> waiters = std::move(rec->waiters);
  rec->waiters.clear();
  // Waiters run while the record is still there (they may look it up), retention after them.
  bool keep = rec->retention == Retention::kKeep;
  for (auto& [n, w] : waiters) w(*done);
  if (keep) {
    finished_.push_back(id);
    while (finished_.size() > options_.keep_finished) {
      records_.erase(finished_.front());
      finished_.pop_front();
    }
  } else {
    records_.erase(id);
  }
  StartQueued();
  if (shutting_down_ && running() == 0 && queue_.empty() && after_shutdown_) {
    auto then = std::move(after_shutdown_);
    after_shutdown_ = nullptr;
    then();
  }
}

void Supervisor::StartQueued() {
  while (!queue_.empty() && running() < options_.max_running && !shutting_down_) {
    std::string id = queue_.front();
    queue_.pop_front();
    auto it = records_.find(id);
    if (it == records_.end() || !it->second->queued_spec) continue;
    CellSpec spec = std::move(*it->second->queued_spec);
    it->second->queued_spec.reset();
    Launch(it->second.get(), std::move(spec));
  }
}

Supervisor::Record* Supervisor::Lookup(const Caller& caller, const std::string& id, Refusal* why) {
  auto it = records_.find(id);
  // Another user's cell looks exactly like a missing one: ids are not secrets, but existence
  // should not be probeable either.
  if (it == records_.end() || (!caller.root() && it->second->owner != caller.uid)) {
    *why = Refusal{Refusal::kNotFound, "no cell '" + id + "' (see `corral ps`)"};
    return nullptr;
  }
  return it->second.get();
}

const Supervisor::Record* Supervisor::Lookup(const Caller& caller, const std::string& id,
                                             Refusal* why) const {
  return const_cast<Supervisor*>(this)->Lookup(caller, id, why);
}

std::optional<Refusal> Supervisor::Wait(const Caller& caller, const std::string& id,
                                        DoneCallback on_done, uint64_t* waiter) {
  Refusal why;
  Record* rec = Lookup(caller, id, &why);
  if (rec == nullptr) return why;
  if (waiter != nullptr) *waiter = 0;
  if (rec->result) {
    on_done(*rec->result);
  } else {
    rec->waiters.emplace(++waiter_seq_, std::move(on_done));
    if (waiter != nullptr) *waiter = waiter_seq_;
  }
  return std::nullopt;
}

void Supervisor::Unwait(const std::string& id, uint64_t waiter) {
  auto it = records_.find(id);
  if (it != records_.end()) it->second->waiters.erase(waiter);
}

std::optional<Refusal> Supervisor::Kill(const Caller& caller, const std::string& id,
                                        const std::string& reason, int sig) {
  Refusal why;
  Record* rec = Lookup(caller, id, &why);
  if (rec == nullptr) return why;
  if (rec->queued_spec) {
    // Never started: it ends here, as cancelled, without a process.
    queue_.erase(std::remove(queue_.begin(), queue_.end(), id), queue_.end());
    CellResult r;
    r.id = id;
    r.argv = rec->argv;
    r.state = CellState::kCancelled;
    r.reason = reason;
    rec->queued_spec.reset();
    OnDone(id, r);
    return std::nullopt;
  }
  if (rec->cell != nullptr) {
    if (sig > 0) {
      rec->cell->ForwardSignal(sig);
    } else {
      rec->cell->Cancel(reason);
    }
  }
  return std::nullopt;
}

std::variant<Supervisor::OutputChunk, Refusal> Supervisor::Output(const Caller& caller,
                                                                  const std::string& id,
                                                                  bool stderr_stream,
                                                                  uint64_t offset,
                                                                  uint64_t max_bytes) {
  Refusal why;
  Record* rec = Lookup(caller, id, &why);
  if (rec == nullptr) return why;
  OutputChunk out;
  const std::string* data = nullptr;
  std::string empty;
  if (rec->result) {
    data = stderr_stream ? &rec->result->stderr_data : &rec->result->stdout_data;
    out.total_bytes = stderr_stream ? rec->result->stderr_bytes : rec->result->stdout_bytes;
    out.truncated = stderr_stream ? rec->result->stderr_truncated : rec->result->stdout_truncated;
    out.done = true;
    out.state = CellStateName(rec->result->state);
  } else if (rec->cell != nullptr) {
    const OutputStream& s = stderr_stream ? rec->cell->err() : rec->cell->out();
    data = &s.data;
    out.total_bytes = s.total;
    out.truncated = s.truncated;
    out.state = "running";
  } else {
    data = &empty;
    out.state = "queued";
  }
  out.kept_bytes = data->size();
  out.offset = std::min<uint64_t>(offset, data->size());
  uint64_t n = std::min<uint64_t>(max_bytes, data->size() - out.offset);
  out.data = data->substr(out.offset, n);
  out.next_offset = out.offset + n;
  return out;
}

std::vector<Supervisor::Listing> Supervisor::List(const Caller& caller) const {
  std::vector<Listing> out;
  for (const auto& [id, rec] : records_) {
    if (!caller.root() && rec->owner != caller.uid) continue;
    if (auto l = Find(caller, id)) out.push_back(std::move(*l));
  }
  return out;
}

std::optional<Supervisor::Listing> Supervisor::Find(const Caller& caller,
                                                    const std::string& id) const {
  Refusal why;
  const Record* rec = Lookup(caller, id, &why);
  if (rec == nullptr) return std::nullopt;
  Listing l;
  l.id = rec->id;
  l.argv = rec->argv;
  l.owner = rec->owner;
  l.leader_pid = rec->leader_pid;
  l.kept = rec->retention == Retention::kKeep;
  l.age_s = static_cast<double>(MonotonicNs() - rec->created_ns) / 1e9;
  if (rec->result) {
    l.state = CellStateName(rec->result->state);
    l.stdout_bytes = rec->result->stdout_bytes;
    l.stderr_bytes = rec->result->stderr_bytes;
    l.result = rec->result;
  } else if (rec->cell != nullptr) {
    l.state = "running";
    l.pid = rec->cell->leader_pid();
    l.stdout_bytes = rec->cell->out().total;
    l.stderr_bytes = rec->cell->err().total;
  } else {
    l.state = "queued";
  }
  return l;
}

void Supervisor::Shutdown(std::function<void()> then) {
  shutting_down_ = true;
  after_shutdown_ = std::move(then);
  std::vector<std::string> ids;
  for (const auto& [id, rec] : records_) {
    if (rec->cell != nullptr || rec->queued_spec) ids.push_back(id);
  }
  for (const std::string& id : ids) Kill(Caller::System(), id, "shutdown");
  if (running() == 0 && after_shutdown_) {
    auto cb = std::move(after_shutdown_);
    after_shutdown_ = nullptr;
    cb();
  }
}

bool Supervisor::ReapIfLeader(pid_t pid) { return host_->ReapIfLeader(pid); }

// Only the pgroup backend needs these files: a cgroup cell of a dead daemon is found and killed
// by the cgroup sweeper (a pool slot's lock died with its owner; a cell's own directory names its
// owner's pid), and a file created and unlinked per cell (with a /proc read) was a twentieth of
// a busy daemon's CPU.
bool Supervisor::NeedsStateFiles() const {
  return !options_.state_dir.empty() && options_.containment.mode == ContainmentMode::kPgroup;
}

void Supervisor::WriteStateFile(const Record& rec, pid_t pid) {
  if (!NeedsStateFiles()) return;
  auto st = ReadProcStat(pid);
  std::string text =
      std::to_string(pid) + " " + std::to_string(st ? st->starttime_ticks : 0) + "\n";
  (void)WriteFileStringCreate(options_.state_dir + "/cells/" + rec.id, text);
}

void Supervisor::RemoveStateFile(const std::string& id) {
  if (!NeedsStateFiles()) return;
  unlink((options_.state_dir + "/cells/" + id).c_str());
}

SupervisorStats Supervisor::stats() const {
  SupervisorStats s;
  s.running = running();
  s.queued = queued();
  s.max_running = options_.max_running;
  s.reaped_total = host_->reaped_total();
  s.leftover_killed_total = host_->leftover_killed_total();
  s.stuck_processes = host_->quarantined_processes();
  s.containment = ContainmentModeName(host_->containment().mode);
  s.recovered_killed = recovered_killed_;
  s.finished_by_state = by_state_;
  return s;
}

}  // namespace corral
