#include "cell/cell.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "cell/cgroup_pool.h"
#include "cell/spawn.h"
#include "sys/clock.h"
#include "sys/proc.h"
#include "sys/signal_fd.h"

extern char** environ;

namespace corral {
namespace {

constexpr int64_t kTreePollNs = 10 * kNsPerMs;  // "tree gone" poll where no event exists
constexpr int64_t kCpuPollNs = 100 * kNsPerMs;  // --cpu budget check
constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kMaxReadPerEvent = 1 << 20;  // fairness between cells on one loop

std::vector<std::string> BuildEnv(const CellSpec& spec) {
  std::vector<std::string> env;
  if (!spec.clear_env) {
    for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
  }
  auto set = [&env](const std::string& key, const std::string& value) {
    std::string prefix = key + "=";
    for (std::string& e : env) {
      if (e.compare(0, prefix.size(), prefix) == 0) {
        e = prefix + value;
        return;
      }
    }
    env.push_back(prefix + value);
  };
  for (const auto& [k, v] : spec.env) set(k, v);
  // Marks every process of the tree: the pgroup backend attributes adopted orphans by it, and a
  // command can tell it runs in a cell.
  set("CORRAL_CELL", spec.id);
  return env;
}

std::string EnvValue(const std::vector<std::string>& env, const std::string& key) {
  std::string prefix = key + "=";
  for (const std::string& e : env) {
    if (e.compare(0, prefix.size(), prefix) == 0) return e.substr(prefix.size());
  }
  return "";
}

// Does pid hold an fd on one of these pipe inodes? (reads only the fd symlinks; cannot block)
bool HoldsPipe(pid_t pid, const std::vector<ino_t>& inodes) {
  char dir[64];
  snprintf(dir, sizeof dir, "/proc/%d/fd", pid);
  for (int fd = 0; fd < 1024; ++fd) {
    char link[96];
    snprintf(link, sizeof link, "%s/%d", dir, fd);
    struct stat st;
    if (stat(link, &st) != 0) {
      if (errno == ENOENT && fd > 64) break;
      continue;
    }
    if (S_ISFIFO(st.st_mode) &&
        std::find(inodes.begin(), inodes.end(), st.st_ino) != inodes.end()) {
      return true;
    }
  }
  return false;
}

// Copies streamed output to our stdout/stderr. A reader that went away (EPIPE) just drops it:
// the tree still runs to its end under the caller's limits.
void Forward(int fd, const char* data, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, data, len);
    if (n > 0) {
      data += n;
      len -= static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      poll(&p, 1, 100);
    } else {
      return;
    }
  }
}

}  // namespace

Cell::Cell(CellHost* host, CellSpec spec, DoneCallback on_done)
    : host_(host), loop_(host->loop()), spec_(std::move(spec)), on_done_(std::move(on_done)) {}

Cell::~Cell() {
  for (EventLoop::Token t :
       {timeout_timer_, grace_timer_, kill_wait_timer_, poll_timer_, drain_timer_, cpu_timer_}) {
    if (t != 0) loop_->CancelTimer(t);
  }
  if (pidfd_token_ != 0) loop_->Remove(pidfd_token_);
  if (events_token_ != 0) loop_->Remove(events_token_);
  if (stdin_token_ != 0) loop_->Remove(stdin_token_);
  CloseOutput(&stdout_);
  CloseOutput(&stderr_);
}

void Cell::FailToStart(int exit_code, const std::string& error) {
  result_.state = CellState::kFailedToStart;
  result_.exit_code = exit_code;
  result_.error = error;
  phase_ = Phase::kDone;
  // Deliver from the loop like every other result, never from inside Start().
  drain_timer_ = loop_->AddTimer(MonotonicNs(), [this] {
    drain_timer_ = 0;
    Finish();
  });
}

Status Cell::SetUpStdio(int* in_fd, int* out_fd, int* err_fd, UniqueFd* in_keep) {
  switch (spec_.stdin_mode) {
    case StdinMode::kInherit: *in_fd = 0; break;
    case StdinMode::kNull: {
      ASSIGN_OR_RETURN(*in_fd, host_->DevNull());
      break;
    }
    case StdinMode::kFile: {
      auto f = OpenFile(spec_.stdin_data, O_RDONLY);
      if (!f.ok()) return f.error().Wrap("--stdin");
      *in_keep = std::move(f).value();
      *in_fd = in_keep->get();
      break;
    }
    case StdinMode::kBytes: {
      ASSIGN_OR_RETURN(Pipe p, MakePipe());
      *in_keep = std::move(p.read);
      *in_fd = in_keep->get();
      stdin_pipe_ = std::move(p.write);
      TRY(SetNonBlocking(stdin_pipe_.get(), true));
      break;
    }
  }
  // Our read ends never block the loop; the child's write ends must block (most programs do not
  // expect EAGAIN on stdout). F_SETFL of a fresh read end: no F_GETFL needed.
  ASSIGN_OR_RETURN(Pipe o, MakePipe());
  ASSIGN_OR_RETURN(Pipe e, MakePipe());
  for (int fd : {o.read.get(), e.read.get()}) {
    if (fcntl(fd, F_SETFL, O_NONBLOCK) != 0) return Error::FromErrno("fcntl(O_NONBLOCK)", "pipe");
  }
  stdout_.fd = std::move(o.read);
  stderr_.fd = std::move(e.read);
  if (spec_.output == OutputMode::kStream) {
    stdout_.forward_fd = 1;
    stderr_.forward_fd = 2;
  }
  *out_fd = o.write.release();
  *err_fd = e.write.release();
  return Ok();
}

void Cell::Launch() {
  start_ns_ = MonotonicNs();
  result_.id = spec_.id;
  result_.argv = spec_.argv;
  if (spec_.argv.empty()) return FailToStart(125, "no command given");

  auto c = MakeContainment(host_->containment(), host_->pool_.get(), spec_.id, spec_.limits,
                           host_->options_.single_cell);
  if (!c.ok()) return FailToStart(125, c.error().Wrap("create cell " + spec_.id).message());
  containment_ = std::move(c).value();
  result_.containment = ContainmentModeName(containment_->mode());

  SpawnRequest req;
  req.env = BuildEnv(spec_);
  // A bare name is searched for in PATH here (the child calls execve, which does not search).
  // A path is exec'd as given -- a relative one after the child's chdir -- and what is wrong with
  // it comes back from the child's execve (127 for ENOENT, else 126): a check here would cost a
  // stat and an access per cell, and could only guess for a child that runs as another user or
  // in its own mount namespace.
  if (spec_.argv[0].find('/') == std::string::npos) {
    auto resolved = ResolveExecutable(spec_.argv[0], EnvValue(req.env, "PATH"));
    if (!resolved.ok()) {
      int code = resolved.error().code() == ENOENT ? 127 : 126;
      return FailToStart(code, resolved.error().message());
    }
    req.path = std::move(resolved).value();
  } else {
    req.path = spec_.argv[0];
  }
  req.argv = spec_.argv;
  req.cwd = spec_.cwd;
  req.umask = spec_.umask;
  req.cgroup_dir_fd = containment_->clone_into_fd();
  req.cgroup_procs_fallback_fd = containment_->cgroup_procs_fallback_fd();
  req.join_fds = containment_->join_fds();
  req.cpu_limit_s =
      spec_.limits.cpu_s > 0 ? static_cast<unsigned long>(std::ceil(spec_.limits.cpu_s)) : 0;
  req.uid = spec_.uid;
  req.gid = spec_.gid;
  req.groups = spec_.groups;
  req.isolation = &spec_.isolation;
  req.default_signals = host_->ignored_signals_;
  if (host_->options_.cell_nofile) req.nofile = &*host_->options_.cell_nofile;
  NamespaceSet namespaces = host_->TakeNamespaces(spec_.isolation);  // the cell's after the spawn
  req.namespaces = &namespaces;

  UniqueFd stdin_keep;
  int out_fd = 1, err_fd = 2;
  if (auto st = SetUpStdio(&req.stdin_fd, &out_fd, &err_fd, &stdin_keep); !st.ok()) {
    return FailToStart(125, st.error().message());
  }
  // Our copies of the child's pipe ends are closed right after the spawn: only the tree may
  // hold them, so EOF means the tree let go.
  UniqueFd out_keep(out_fd);
  UniqueFd err_keep(err_fd);
  req.stdout_fd = out_fd;
  req.stderr_fd = err_fd;

  SpawnFailure why;
  auto spawned = Spawn(req, &why);
  if (!spawned.ok()) {
    int code = why.exec_failed ? (spawned.error().code() == ENOENT ? 127 : 126) : 125;
    return FailToStart(code, spawned.error().message());
  }
  if (spawned->clone_into_refused) containment_->OnCloneIntoRefused();
  leader_pid_ = spawned->pid;
  pidfd_ = std::move(spawned->pidfd);
  result_.spawn_s = static_cast<double>(MonotonicNs() - start_ns_) / 1e9;
  containment_->OnSpawned(leader_pid_);
  if (namespaces.valid()) {
    // Held so that its teardown runs on the pool's thread, not in the leader's exit.
    std::string ns = "/proc/" + std::to_string(leader_pid_) + "/ns/mnt";
    mnt_ns_.reset(open(ns.c_str(), O_RDONLY | O_CLOEXEC));
  }

  auto tok = loop_->Add(pidfd_.get(), EPOLLIN, [this](uint32_t) { OnLeaderReadable(); });
  if (tok.ok()) pidfd_token_ = tok.value();
  for (OutputStream* s : {&stdout_, &stderr_}) {
    if (!s->open()) continue;
    auto t = loop_->Add(s->fd.get(), EPOLLIN, [this, s](uint32_t) { OnOutput(s); });
    if (t.ok()) s->token = t.value();
  }
  if (stdin_pipe_) {
    OnStdinWritable();
  }
  if (spec_.timeout_ns > 0) {
    timeout_timer_ = loop_->AddTimer(start_ns_ + spec_.timeout_ns, [this] {
      timeout_timer_ = 0;
      OnTimeout();
    });
  }
  if (spec_.limits.cpu_s > 0 && containment_->CpuSecondsUsed()) {
    cpu_timer_ = loop_->AddTimer(start_ns_ + kCpuPollNs, [this] {
      cpu_timer_ = 0;
      CheckCpuBudget();
    });
  }
}

void Cell::OnStdinWritable() {
  const std::string& data = spec_.stdin_data;
  while (stdin_written_ < data.size()) {
    ssize_t n = write(stdin_pipe_.get(), data.data() + stdin_written_,
                      std::min<size_t>(data.size() - stdin_written_, kReadChunk));
    if (n > 0) {
      stdin_written_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      if (stdin_token_ == 0) {
        auto t = loop_->Add(stdin_pipe_.get(), EPOLLOUT, [this](uint32_t) { OnStdinWritable(); });
        if (t.ok()) stdin_token_ = t.value();
      }
      return;
    }
    break;  // EPIPE: the command does not read its input; that is its business
  }
  if (stdin_token_ != 0) loop_->Remove(stdin_token_);
  stdin_token_ = 0;
  stdin_pipe_.reset();  // EOF for the child
}

void Cell::OnOutput(OutputStream* s) {
  char scratch[kReadChunk];
  size_t budget = kMaxReadPerEvent;
  while (budget > 0) {
    ssize_t n = read(s->fd.get(), scratch, sizeof scratch);
    if (n > 0) {
      size_t got = static_cast<size_t>(n);
      s->total += got;
      budget -= std::min(budget, got);
      if (s->forward_fd >= 0) {
        Forward(s->forward_fd, scratch, got);
        continue;
      }
      size_t room = spec_.max_output_bytes > s->data.size()
                        ? static_cast<size_t>(spec_.max_output_bytes - s->data.size())
                        : 0;
      if (room > 0) s->data.append(scratch, std::min(room, got));
      if (got > room) s->truncated = true;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    CloseOutput(s);  // EOF (or an error, which we cannot do better with)
    MaybeFinish();
    return;
  }
}

void Cell::CloseOutput(OutputStream* s) {
  if (s->token != 0) loop_->Remove(s->token);
  s->token = 0;
  s->fd.reset();
}

bool Cell::TryReapLeader() {
  if (leader_reaped_) return true;
  auto r = WaitPidfd(pidfd_.get(), WNOHANG);
  if (r.ok() && r->pid == 0) return false;  // not yet
  leader_reaped_ = true;
  if (r.ok()) {
    leader_status_ = r->status;
    leader_usage_ = r->usage;
  } else {
    // ECHILD: something else in this process reaped our leader (a second reaping host, a stray
    // waitpid(-1)). Its status is lost; say so rather than spin on a readable pidfd.
    leader_lost_ = true;
  }
  if (pidfd_token_ != 0) loop_->Remove(pidfd_token_);
  pidfd_token_ = 0;
  return true;
}

void Cell::OnLeaderReadable() {
  if (leader_reaped_ || !TryReapLeader()) return;
  if (phase_ == Phase::kRunning || phase_ == Phase::kTerminating) {
    // Whatever the leader left behind dies now: a command that must outlive its call is what
    // `start` is for.
    if (containment_->Populated()) {
      leftover_killed_ = static_cast<int>(containment_->Members().size());
      StartKill();
      return;
    }
    tree_gone_ = true;
    phase_ = Phase::kDraining;
  }
  MaybeFinish();
}

void Cell::OnTimeout() {
  if (phase_ != Phase::kRunning) return;
  timed_out_ = true;
  StartTerminate();
}

void Cell::Cancel(const std::string& reason) {
  if (phase_ != Phase::kRunning && phase_ != Phase::kTerminating) return;
  if (!cancelled_) {
    cancelled_ = true;
    cancel_reason_ = reason;
  }
  if (phase_ == Phase::kRunning) StartTerminate();
}

void Cell::ForwardSignal(int sig) {
  if (phase_ != Phase::kRunning && phase_ != Phase::kTerminating) return;
  signalled_ = true;
  containment_->SignalAll(sig);
  if (phase_ == Phase::kRunning) {
    phase_ = Phase::kTerminating;
    grace_timer_ = loop_->AddTimer(MonotonicNs() + spec_.grace_ns, [this] {
      grace_timer_ = 0;
      StartKill();
    });
  }
}

void Cell::StartTerminate() {
  if (spec_.grace_ns <= 0) return StartKill();
  phase_ = Phase::kTerminating;
  containment_->SignalAll(SIGTERM);
  grace_timer_ = loop_->AddTimer(MonotonicNs() + spec_.grace_ns, [this] {
    grace_timer_ = 0;
    StartKill();
  });
}

void Cell::StartKill() {
  if (phase_ == Phase::kKilling || phase_ == Phase::kDraining || phase_ == Phase::kDone) return;
  phase_ = Phase::kKilling;
  if (grace_timer_ != 0) loop_->CancelTimer(grace_timer_);
  grace_timer_ = 0;
  containment_->KillAll();
  if (containment_->populated_event_fd() >= 0) {
    auto t = loop_->Add(containment_->populated_event_fd(), EPOLLPRI,
                        [this](uint32_t) { CheckTreeGone(); });
    if (t.ok()) events_token_ = t.value();
  }
  kill_wait_timer_ = loop_->AddTimer(MonotonicNs() + spec_.kill_wait_ns, [this] {
    kill_wait_timer_ = 0;
    OnKillWaitExpired();
  });
  CheckTreeGone();
}

void Cell::CheckTreeGone() {
  if (phase_ != Phase::kKilling) return;
  if (!containment_->Populated()) {
    tree_gone_ = true;
    phase_ = Phase::kDraining;
    if (events_token_ != 0) loop_->Remove(events_token_);
    events_token_ = 0;
    if (kill_wait_timer_ != 0) loop_->CancelTimer(kill_wait_timer_);
    kill_wait_timer_ = 0;
    if (poll_timer_ != 0) loop_->CancelTimer(poll_timer_);
    poll_timer_ = 0;
    // The pipes should reach EOF now; a holder outside the tree gets kill_wait, no more.
    drain_timer_ = loop_->AddTimer(MonotonicNs() + spec_.kill_wait_ns, [this] {
      drain_timer_ = 0;
      CloseOutput(&stdout_);
      CloseOutput(&stderr_);
      MaybeFinish();
    });
    // The leader's exit may still be on its way from the kernel; OnLeaderReadable finishes then.
    MaybeFinish();
    return;
  }
  // Backends without cgroup.kill re-signal each round: it catches children forked meanwhile.
  if (containment_->populated_event_fd() < 0) containment_->KillAll();
  if (poll_timer_ == 0) {
    poll_timer_ = loop_->AddTimer(MonotonicNs() + kTreePollNs, [this] {
      poll_timer_ = 0;
      CheckTreeGone();
    });
  }
}

void Cell::OnKillWaitExpired() {
  if (phase_ != Phase::kKilling) return;
  gave_up_ = true;
  CollectStuck();
  CloseOutput(&stdout_);
  CloseOutput(&stderr_);
  if (poll_timer_ != 0) loop_->CancelTimer(poll_timer_);
  poll_timer_ = 0;
  if (events_token_ != 0) loop_->Remove(events_token_);
  events_token_ = 0;
  // The leader may be among the stuck: then it cannot be reaped yet either.
  TryReapLeader();
  Finish();
}

void Cell::CollectStuck() {
  std::vector<ino_t> pipes;
  for (OutputStream* s : {&stdout_, &stderr_}) {
    struct stat st;
    if (s->open() && fstat(s->fd.get(), &st) == 0) pipes.push_back(st.st_ino);
  }
  for (pid_t pid : containment_->Members()) {
    StuckProcess p;
    p.pid = pid;
    if (auto st = ReadProcStat(pid)) {
      p.comm = st->comm;
      p.state = st->state;
    }
    p.wchan = ReadWchan(pid);
    p.holds_output = !pipes.empty() && HoldsPipe(pid, pipes);
    result_.stuck.push_back(std::move(p));
  }
}

void Cell::CheckCpuBudget() {
  if (phase_ != Phase::kRunning && phase_ != Phase::kTerminating) return;
  auto used = containment_->CpuSecondsUsed();
  if (used && *used >= spec_.limits.cpu_s) {
    cpu_exceeded_ = true;
    StartKill();
    return;
  }
  cpu_timer_ = loop_->AddTimer(MonotonicNs() + kCpuPollNs, [this] {
    cpu_timer_ = 0;
    CheckCpuBudget();
  });
}

void Cell::MaybeFinish() {
  if (done_ || phase_ == Phase::kDone) return;
  if (!leader_reaped_) return;
  if (!tree_gone_ && !gave_up_) return;
  if (stdout_.open() || stderr_.open()) return;
  Finish();
}

void Cell::Finish() {
  if (done_) return;
  done_ = true;
  CellResult& r = result_;
  if (r.state != CellState::kFailedToStart) {
    r.duration_s = static_cast<double>(MonotonicNs() - start_ns_) / 1e9;
    CellStats st = containment_->ReadStats();
    r.peak_memory_bytes = st.peak_memory_bytes;
    r.cpu_user_s = st.cpu_user_s;
    r.cpu_system_s = st.cpu_system_s;
    r.pids_peak = st.pids_peak;
    if (leader_reaped_) {
      if (!r.cpu_user_s) {  // pgroup: what the leader and the children it waited for used
        r.cpu_user_s = leader_usage_.ru_utime.tv_sec + leader_usage_.ru_utime.tv_usec / 1e6;
        r.cpu_system_s = leader_usage_.ru_stime.tv_sec + leader_usage_.ru_stime.tv_usec / 1e6;
      }
      if (!r.peak_memory_bytes && leader_usage_.ru_maxrss > 0) {
        r.peak_memory_bytes = static_cast<uint64_t>(leader_usage_.ru_maxrss) * 1024;
      }
      if (leader_lost_) {
        r.error = "the leader's exit status was taken by another waiter in this process";
      } else if (leader_status_.exited()) {
        r.exit_code = leader_status_.code();
      } else {
        r.signal = leader_status_.signal();
      }
    }
    if (st.oom_kills > 0) r.limits_hit.push_back("memory");
    if (st.pids_max_hits > 0) r.limits_hit.push_back("pids");
    // RLIMIT_CPU ends a process with SIGXCPU at the budget and SIGKILL a second later.
    double used = containment_->CpuSecondsUsed().value_or(r.cpu_user_s.value_or(0) +
                                                          r.cpu_system_s.value_or(0));
    bool rlimit_hit =
        spec_.limits.cpu_s > 0 && r.signal &&
        (*r.signal == SIGXCPU || (*r.signal == SIGKILL && used >= spec_.limits.cpu_s * 0.9));
    if (cpu_exceeded_ || rlimit_hit) {
      cpu_exceeded_ = true;
      r.limits_hit.push_back("cpu");
    }
    if (cancelled_) {
      r.state = CellState::kCancelled;
      r.reason = cancel_reason_;
    } else if (timed_out_) {
      r.state = CellState::kTimedOut;
      r.reason = "timeout";
    } else if (cpu_exceeded_) {
      r.state = CellState::kKilled;
      r.reason = "cpu_limit";
    } else if (r.signal || !leader_reaped_ || leader_lost_) {
      r.state = CellState::kKilled;
      r.reason = (st.oom_kills > 0 && r.signal && *r.signal == SIGKILL) ? "memory_limit" : "signal";
    } else {
      r.state = CellState::kExited;
    }
    r.leftover_killed = leftover_killed_;
    r.stdout_data = std::move(stdout_.data);
    r.stderr_data = std::move(stderr_.data);
    r.stdout_bytes = stdout_.total;
    r.stderr_bytes = stderr_.total;
    r.stdout_truncated = stdout_.truncated;
    r.stderr_truncated = stderr_.truncated;
  }
  phase_ = Phase::kDone;
  host_->CellDone(this);  // destroys this cell; nothing may touch members after it
}

// ---------------------------------------------------------------------------------------------

Result<int> CellHost::DevNull() {
  if (!dev_null_) {
    ASSIGN_OR_RETURN(dev_null_, OpenFile("/dev/null", O_RDONLY));
  }
  return dev_null_.get();
}

NamespaceSet CellHost::TakeNamespaces(const Isolation& iso) {
  if (!iso.enabled || iso.net != NetMode::kNone || options_.prebuilt_namespaces <= 0 ||
      geteuid() != 0) {
    return {};
  }
  if (!ns_pool_) ns_pool_ = std::make_unique<NamespacePool>(options_.prebuilt_namespaces);
  return ns_pool_->Take();
}

CellHost::CellHost(EventLoop* loop, HostOptions options)
    : loop_(loop), options_(std::move(options)) {}

Result<std::unique_ptr<CellHost>> CellHost::Create(EventLoop* loop, HostOptions options) {
  std::unique_ptr<CellHost> host(new CellHost(loop, std::move(options)));
  if (host->options_.reap_orphans) {
    // Orphans of our cells come back to us instead of init, so we can kill and reap them.
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
      return Error::FromErrno("prctl(PR_SET_CHILD_SUBREAPER)");
    sigset_t set = MakeSigset({SIGCHLD});
    TRY(BlockSignals(set));
    ASSIGN_OR_RETURN(SignalFd sfd, SignalFd::Create(set));
    host->sigchld_ = std::make_unique<SignalFd>(std::move(sfd));
    CellHost* h = host.get();
    ASSIGN_OR_RETURN(host->sigchld_token_, loop->Add(host->sigchld_->fd(), EPOLLIN, [h](uint32_t) {
      while (h->sigchld_->Read().value_or(0) != 0) {
      }
      h->ReapChildren();
    }));
    // Children may have exited before the signalfd existed: reap once before the first wait.
    host->ReapChildren();
  }
  if (host->options_.default_signals) host->ignored_signals_ = IgnoredSignals();
  host->pool_ = CgroupPool::ForConfig(host->options_.containment);
  if (host->pool_) host->pool_->Sweep();
  SweepOrphanedCells(host->options_.containment);
  return host;
}

CellHost::~CellHost() {
  // Cells still open when the host goes away are killed; nothing outlives its owner.
  for (auto& cell : cells_) {
    if (cell->containment_) cell->containment_->KillAll();
  }
  if (quarantine_timer_ != 0) loop_->CancelTimer(quarantine_timer_);
  if (sigchld_token_ != 0) loop_->Remove(sigchld_token_);
}

Cell* CellHost::Start(CellSpec spec, Cell::DoneCallback on_done) {
  cells_.push_back(std::make_unique<Cell>(this, std::move(spec), std::move(on_done)));
  Cell* cell = cells_.back().get();
  cell->Launch();
  return cell;
}

void CellHost::CellDone(Cell* cell) {
  auto it = std::find_if(cells_.begin(), cells_.end(),
                         [cell](const std::unique_ptr<Cell>& c) { return c.get() == cell; });
  if (it == cells_.end()) return;
  std::unique_ptr<Cell> owned = std::move(*it);
  cells_.erase(it);
  leftover_killed_total_ += static_cast<uint64_t>(owned->leftover_killed_);
  if (owned->containment_ && !owned->containment_->Release()) {
    UniqueFd pidfd = owned->leader_reaped_ ? UniqueFd() : std::move(owned->pidfd_);
    Quarantine(std::move(owned->containment_), std::move(pidfd), owned->result_.stuck.size());
  } else if (!owned->leader_reaped_ && owned->pidfd_) {
    Quarantine(nullptr, std::move(owned->pidfd_), 1);
  }
  Cell::DoneCallback cb = std::move(owned->on_done_);
  CellResult result = std::move(owned->result_);
  UniqueFd mnt_ns = std::move(owned->mnt_ns_);
  owned.reset();
  if (cb) cb(result);
  if (mnt_ns && ns_pool_) ns_pool_->Release(std::move(mnt_ns));
}

void CellHost::Quarantine(std::unique_ptr<Containment> c, UniqueFd pidfd, size_t stuck) {
  quarantine_.push_back(Quarantined{std::move(c), std::move(pidfd), stuck});
  if (quarantine_timer_ == 0) {
    quarantine_timer_ = loop_->AddTimer(MonotonicNs() + kNsPerSec, [this] {
      quarantine_timer_ = 0;
      RetryQuarantine();
    });
  }
}

void CellHost::RetryQuarantine() {
  for (auto it = quarantine_.begin(); it != quarantine_.end();) {
    if (it->pidfd) {
      auto r = WaitPidfd(it->pidfd.get(), WNOHANG);
      if (!r.ok() || r->pid != 0) it->pidfd.reset();
    }
    if (it->containment) {
      it->containment->KillAll();
      if (!it->containment->Populated() && it->containment->Release()) it->containment.reset();
    }
    if (!it->pidfd && !it->containment) {
      it = quarantine_.erase(it);
    } else {
      ++it;
    }
  }
  if (!quarantine_.empty()) {
    quarantine_timer_ = loop_->AddTimer(MonotonicNs() + kNsPerSec, [this] {
      quarantine_timer_ = 0;
      RetryQuarantine();
    });
  }
}

bool CellHost::ReapIfLeader(pid_t pid) {
  for (auto& c : cells_) {
    if (c->leader_pid_ == pid && !c->leader_reaped_) {
      c->OnLeaderReadable();  // may finish and destroy the cell: touch nothing after
      return true;
    }
  }
  return false;
}

size_t CellHost::fds_held_by_pool() const { return pool_ ? pool_->ExtraFds() : 0; }

size_t CellHost::quarantined_processes() const {
  size_t n = 0;
  for (const Quarantined& q : quarantine_) n += q.stuck;
  return n;
}

void CellHost::ReapChildren() {
  for (;;) {
    siginfo_t info;
    std::memset(&info, 0, sizeof info);
    // Peek first: a cell leader must be reaped through its own pidfd so that its cell gets the
    // status; everything else (adopted orphans) is reaped here.
    if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
      if (errno == EINTR) continue;
      break;  // ECHILD: no children at all
    }
    if (info.si_pid == 0) break;
    pid_t pid = info.si_pid;
    Cell* leader_of = nullptr;
    for (auto& c : cells_) {
      if (c->leader_pid_ == pid && !c->leader_reaped_) leader_of = c.get();
    }
    if (leader_of != nullptr) {
      leader_of->OnLeaderReadable();
      continue;
    }
    bool quarantined_leader = false;
    for (Quarantined& q : quarantine_) {
      if (q.pidfd) {
        auto r = WaitPidfd(q.pidfd.get(), WNOHANG);
        if (!r.ok() || r->pid != 0) {
          q.pidfd.reset();
          quarantined_leader = true;
          ++reaped_total_;
        }
      }
    }
    if (quarantined_leader) continue;
    siginfo_t done;
    if (waitid(P_PID, static_cast<id_t>(pid), &done, WEXITED | WNOHANG) == 0) ++reaped_total_;
  }
  // Orphans dying may have emptied a pgroup cell that waits for its tree to go. Checking may
  // finish (and destroy) a cell, so walk a copy and look each one up again.
  std::vector<Cell*> waiting;
  for (auto& c : cells_) {
    if (c->phase_ == Cell::Phase::kKilling && c->containment_->populated_event_fd() < 0) {
      waiting.push_back(c.get());
    }
  }
  for (Cell* c : waiting) {
    bool alive = std::any_of(cells_.begin(), cells_.end(),
                             [c](const std::unique_ptr<Cell>& p) { return p.get() == c; });
    if (alive) c->CheckTreeGone();
  }
}

}  // namespace corral

namespace corral {

CellResult RunCellSync(CellHost* host, CellSpec spec) {
  CellResult out;
  bool done = false;
  host->Start(std::move(spec), [&](const CellResult& r) {
    out = r;
    done = true;
  });
  while (!done) {
    auto st = host->loop()->RunOnce();
    if (!st.ok()) {
      out.state = CellState::kFailedToStart;
      out.error = st.error().message();
      out.exit_code = 125;
      break;
    }
  }
  return out;
}

}  // namespace corral
