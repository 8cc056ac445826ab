// The task queue's policy: dispatch, outcomes, retries, waiters, counts, recovery, retention. The
// header explains the mechanism and its guarantees; the stores (task_store.h) keep the rows.
#include "supervisor/task_queue.h"

#include <sched.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "supervisor/pg_task_store.h"
#include "supervisor/sqlite_task_store.h"
#include "sys/clock.h"
#include "sys/pidfd.h"
#include "sys/proc.h"

namespace corral {
namespace {

constexpr int64_t kRefusedRetryNs = 500 * kNsPerMs;  // Supervisor said "overloaded": try later
constexpr int64_t kTickNs = 100 * kNsPerMs;
constexpr int64_t kMaxClaim = 64;
// A shared store without a retention still drains the files other daemons pruned for it, as if
// the retention were this: every 5 s.
constexpr int64_t kDrainOnlyMs = 50 * 1000;

int64_t NowMs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

bool Unfinished(const std::string& state) { return state == "queued" || state == "running"; }

Refusal Unknown(const std::string& id) {
  return Refusal{Refusal::kNotFound, "no task '" + id + "' (see `corral tasks`)"};
}

using queue::TaskId;
using Json = nlohmann::json;

Json OptJson(const auto& v) { return v ? Json(*v) : Json(nullptr); }

Json AttemptJson(const AttemptRow& a) {
  Json cell = {{"daemon_pid", a.daemon_pid},
               {"id", OptJson(a.cell_id)},
               {"leader_pid", OptJson(a.leader_pid)},
               {"leader_starttime", OptJson(a.leader_starttime)}};
  if (a.daemon_id) cell["daemon_id"] = *a.daemon_id;
  Json at = {{"n", a.n},
             {"state", a.state},
             {"started", static_cast<double>(a.started_ms) / 1000},
             {"ended", a.ended_ms ? Json(static_cast<double>(*a.ended_ms) / 1000) : Json(nullptr)},
             {"exit_code", OptJson(a.exit_code)},
             {"signal", OptJson(a.signal)},
             {"reason", OptJson(a.reason)},
             {"error", OptJson(a.error)},
             {"cell", cell},
             {"stdout_path", OptJson(a.stdout_path)},
             {"stderr_path", OptJson(a.stderr_path)},
             {"stdout_bytes", OptJson(a.stdout_bytes)},
             {"stderr_bytes", OptJson(a.stderr_bytes)},
             {"stdout_truncated", OptJson(a.stdout_truncated)},
             {"stderr_truncated", OptJson(a.stderr_truncated)}};
  if (a.ended_ms) at["duration_s"] = static_cast<double>(*a.ended_ms - a.started_ms) / 1000;
  return at;
}

}  // namespace

std::unique_ptr<TaskQueue::Active> TaskQueue::Hold(TaskRow t, const char* state) {
  auto p = std::make_unique<Active>();
  p->id = t.id;
  p->owner = t.owner;
  p->group = std::move(t.group);
  p->priority = t.priority;
  p->spec_json = std::move(t.spec_json);
  p->attempts = t.attempts;
  p->max_attempts = t.max_attempts;
  p->backoff_ms = t.backoff_ms;
  p->state = state;
  return p;
}

std::optional<int64_t> TaskQueue::ParseId(const std::string& id) {
  if (id.size() < 3 || id.compare(0, 2, "t-") != 0) return std::nullopt;
  int64_t n = 0;
  for (size_t i = 2; i < id.size(); ++i) {
    if (id[i] < '0' || id[i] > '9' || n > (INT64_MAX - 9) / 10) return std::nullopt;
    n = n * 10 + (id[i] - '0');
  }
  return n > 0 ? std::optional<int64_t>(n) : std::nullopt;
}

bool TaskQueue::ValidGroup(const std::string& g) {
  if (g.empty() || g.size() > 64) return false;
  return std::all_of(g.begin(), g.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
  });
}

int64_t DefaultQueueParallel() {
  // Short tasks run best a few per CPU: more only queue up in the kernel's run queue and each
  // cell past the pool of reusable cgroups costs directories of its own (cell/cgroup_pool.h).
  cpu_set_t set;
  int cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
  return std::max<int64_t>(4, 2 * static_cast<int64_t>(cpus));
}

TaskQueue::TaskQueue(EventLoop* loop, Supervisor* sup, TaskQueueOptions options)
    : loop_(loop), sup_(sup), options_(std::move(options)) {
  for (const char* s : queue::kStates) counts_[s] = 0;
}

TaskQueue::~TaskQueue() {
  for (EventLoop::Token t : {flush_timer_, refused_timer_, prune_timer_, tick_timer_,
                             heartbeat_timer_, reclaim_timer_}) {
    if (t != 0) loop_->CancelTimer(t);
  }
  for (auto& [id, p] : active_) {
    if (p->backoff_timer != 0) loop_->CancelTimer(p->backoff_timer);
  }
  for (auto& [id, token] : blocker_tokens_) loop_->Remove(token);
  store_.reset();  // commits what is pending; drops the actions that wait for it
}

Result<std::unique_ptr<TaskQueue>> TaskQueue::Open(EventLoop* loop, Supervisor* sup,
                                                   TaskQueueOptions options) {
  std::unique_ptr<TaskQueue> q(new TaskQueue(loop, sup, std::move(options)));
  const TaskQueueOptions& o = q->options_;
  if (o.postgres.empty()) {
    ASSIGN_OR_RETURN(auto store, SqliteTaskStore::Open(loop, o.state_dir));
    q->local_ = store.get();
    q->store_ = std::move(store);
  } else {
    ASSIGN_OR_RETURN(auto store, PgTaskStore::Open(o.postgres, o.state_dir, o.lease_ms));
    q->shared_ = store.get();
    q->store_ = std::move(store);
  }
  TRY(q->Recover());
  if (q->local_) q->LoadQueued();
  // The leaders killed for tasks that are not held back (finished, or a shared store's) need no
  // watching: they were sent SIGKILL.
  for (auto it = q->blockers_.begin(); it != q->blockers_.end();) {
    it = q->blocker_tokens_.count(it->first) != 0 ? std::next(it) : q->blockers_.erase(it);
  }
  if (auto limits = q->store_->GroupLimits(); limits.ok()) q->limits_ = std::move(limits).value();
  for (const auto& [state, n] : q->store_->CountByState(-1)) q->counts_[state] = n;
  if (q->local_) {
    q->ScheduleFlush();
  } else {
    q->Reclaim();
    q->Heartbeat();
    q->Tick();
  }
  if (o.retention_ms > 0 || q->shared_) q->Prune();
  return q;
}

Status TaskQueue::Recover() {
  ASSIGN_OR_RETURN(std::vector<StaleAttempt> stale, store_->RecoverDeadDaemon());
  recovered_crashed_ = static_cast<int>(stale.size());
  for (const StaleAttempt& s : stale) {
    // The Supervisor's recovery has killed the dead daemon's cells; a leader that is still the
    // same process (pid and starttime) is killed again and waited for before its task reruns.
    auto st = s.leader_pid > 0 ? ReadProcStat(static_cast<pid_t>(s.leader_pid)) : std::nullopt;
    if (!st || static_cast<int64_t>(st->starttime_ticks) != s.leader_starttime || st->state == 'Z')
      continue;
    auto fd = PidfdOpen(static_cast<pid_t>(s.leader_pid));
    if (!fd.ok()) continue;                                       // ESRCH: gone meanwhile
    auto again = ReadProcStat(static_cast<pid_t>(s.leader_pid));  // the pidfd pins the process
    if (!again || static_cast<int64_t>(again->starttime_ticks) != s.leader_starttime) continue;
    (void)PidfdSendSignal(fd->get(), SIGKILL);
    blockers_[s.task] = std::move(fd).value();
  }
  return Ok();
}

void TaskQueue::LoadQueued() {
  int64_t now_ms = NowMs();
  for (TaskRow& t : local_->Queued()) {
    int64_t not_before_ms = t.not_before_ms;
    int64_t task_id = t.id;
    Active* raw = active_.emplace(task_id, Hold(std::move(t), "queued")).first->second.get();
    if (auto b = blockers_.find(raw->id); b != blockers_.end()) {
      int64_t id = raw->id;
      auto token = loop_->Add(b->second.get(), EPOLLIN, [this, id](uint32_t) {
        loop_->Remove(blocker_tokens_[id]);
        blocker_tokens_.erase(id);
        blockers_.erase(id);
        auto it = active_.find(id);
        if (it == active_.end()) return;
        MakeReady(it->second.get());
        ScheduleFlush();
      });
      if (token.ok()) {
        blocker_tokens_[id] = token.value();
        continue;
      }
    }
    ReadyAfter(raw, not_before_ms - now_ms);
  }
}

void TaskQueue::ScheduleFlush() {
  if (flush_timer_ != 0) return;
  // Dispatch first: its "attempt running" rows then share one commit (one fsync) with the ends
  // and submits of this turn.
  flush_timer_ = loop_->AddTimer(MonotonicNs(), [this] {
    flush_timer_ = 0;
    Dispatch();
    store_->Commit();
  });
}

void TaskQueue::WhenDurable(std::function<void()> fn) {
  store_->WhenDurable(std::move(fn));
  if (store_->Uncommitted()) ScheduleFlush();
}

void TaskQueue::Prune() {
  prune_timer_ = 0;
  Pruned gone = store_->Prune(options_.retention_ms);
  // A shared store's other daemons' counts catch up at their next Reclaim.
  for (const std::string& s : gone.states) SetCount(s, std::max<int64_t>(0, counts_[s] - 1));
  if (!gone.files.empty()) {
    // The files go once the rows are durably gone: a crash in between leaves files, not rows
    // pointing at nothing.
    store_->WhenDurable([dir = options_.state_dir, files = std::move(gone.files)] {
      queue::RemoveOutputFiles(dir, files);
    });
  }
  if (store_->Uncommitted()) ScheduleFlush();
  int64_t every = options_.retention_ms > 0 ? options_.retention_ms : kDrainOnlyMs;
  int64_t next_ms = queue::NextPruneMs(every, gone.taken);
  prune_timer_ = loop_->AddTimer(MonotonicNs() + next_ms * kNsPerMs, [this] { Prune(); });
}

void TaskQueue::Tick() {
  tick_timer_ = loop_->AddTimer(MonotonicNs() + kTickNs, [this] { Tick(); });
  // Another daemon's `group set` reaches this one within a second (it picks the claim's mode).
  if (++ticks_ % 10 == 1) {
    if (auto limits = store_->GroupLimits(); limits.ok()) limits_ = std::move(limits).value();
  }
  Dispatch();
  if (waiters_.empty()) return;
  std::vector<int64_t> ids;
  for (const auto& [id, ws] : waiters_) ids.push_back(id);
  for (int64_t id : shared_->Finished(ids)) NotifyWaiters(id);
}

void TaskQueue::Heartbeat() {
  heartbeat_timer_ =
      loop_->AddTimer(MonotonicNs() + options_.lease_ms * kNsPerMs / 3, [this] { Heartbeat(); });
  if (active_.empty()) return;
  auto renewed = shared_->RenewLeases();
  if (!renewed.ok()) {
    std::fprintf(stderr, "corral daemon: task queue: %s\n", renewed.error().message().c_str());
  }
  // Kill may end an attempt (and erase it) before it returns: walk a copy of the ids.
  std::vector<int64_t> ids;
  for (const auto& [id, p] : active_) ids.push_back(id);
  for (int64_t id : ids) {
    auto it = active_.find(id);
    if (it == active_.end()) continue;
    Active* p = it->second.get();
    const SharedTaskStore::Lease* lease = nullptr;
    if (renewed.ok()) {
      if (auto got = renewed->find(id); got != renewed->end()) lease = &got->second;
    }
    if (lease == nullptr || lease->n != p->attempts) {
      // Claimed after the UPDATE's snapshot? Then it is younger than a lease: keep it.
      if (renewed.ok() && MonotonicNs() - p->claimed_ns < options_.lease_ms * kNsPerMs / 3) {
        continue;
      }
      LoseAttempt(p, renewed.ok() ? "its lease was reclaimed by another daemon"
                                  : "its lease could not be renewed");
    } else if (lease->cancel_requested && !p->cancel_requested && !p->cell_id.empty()) {
      p->cancel_requested = true;  // `cancel` through another daemon
      (void)sup_->Kill(Caller::System(), p->cell_id, "cancelled");
    }
  }
}

void TaskQueue::Reclaim() {
  reclaim_timer_ =
      loop_->AddTimer(MonotonicNs() + std::max<int64_t>(options_.lease_ms / 2, 200) * kNsPerMs,
                      [this] { Reclaim(); });
  shared_->ReclaimExpired();
  std::map<std::string, int64_t> now;
  for (const char* s : queue::kStates) now[s] = 0;
  for (const auto& [s, n] : store_->CountByState(-1)) now[s] = n;
  for (const auto& [s, n] : now) {
    if (counts_[s] != n) SetCount(s, n);
  }
}

void TaskQueue::LoseAttempt(Active* p, const char* why) {
  if (p->lost) return;
  p->lost = true;
  std::fprintf(stderr, "corral daemon: task queue: %s attempt %lld: %s; killing its cell\n",
               TaskId(p->id).c_str(), static_cast<long long>(p->attempts), why);
  if (!p->cell_id.empty()) (void)sup_->Kill(Caller::System(), p->cell_id, "lease_lost");
}

void TaskQueue::MakeReady(Active* p) {
  p->ready_ns = MonotonicNs();
  ready_[p->group].emplace(-p->priority, p->id);
}

void TaskQueue::ReadyAfter(Active* p, int64_t delay_ms) {
  if (delay_ms <= 0) return MakeReady(p);
  int64_t id = p->id;
  p->backoff_timer = loop_->AddTimer(MonotonicNs() + delay_ms * kNsPerMs, [this, id] {
    auto it = active_.find(id);
    if (it == active_.end()) return;
    it->second->backoff_timer = 0;
    MakeReady(it->second.get());
    ScheduleFlush();
  });
}

void TaskQueue::Dispatch() {
  if (dispatching_ || sup_->shutting_down() || MonotonicNs() < refused_until_ns_) return;
  dispatching_ = true;
  if (local_) {
    DispatchLocal();
  } else {
    DispatchShared();
  }
  dispatching_ = false;
}

void TaskQueue::DispatchLocal() {
  // Pick, below the Supervisor's cap (so that every cell starts at once, none waits in its
  // queue), the best ready task of every group that has room: highest priority, then oldest.
  std::vector<int64_t> chosen;
  size_t busy = sup_->running() + sup_->queued() + static_cast<size_t>(starting_);
  int64_t ours = 0;  // this queue's tasks running (or starting), every group
  for (const auto& [group, n] : running_in_group_) ours += n;
  while (
      busy + chosen.size() < sup_->max_running() &&
      (options_.parallel <= 0 || ours + static_cast<int64_t>(chosen.size()) < options_.parallel)) {
    const std::pair<int64_t, int64_t>* best = nullptr;
    std::string best_group;
    for (auto& [group, set] : ready_) {
      if (set.empty()) continue;
      auto lim = limits_.find(group);
      if (lim != limits_.end() && lim->second > 0 && running_in_group_[group] >= lim->second) {
        continue;
      }
      if (best == nullptr || *set.begin() < *best) {
        best = &*set.begin();
        best_group = group;
      }
    }
    if (best == nullptr) break;
    int64_t id = best->second;
    ready_[best_group].erase(ready_[best_group].begin());
    ++running_in_group_[best_group];
    chosen.push_back(id);
  }
  if (chosen.empty()) return;
  for (int64_t id : chosen) {
    Active* p = active_.at(id).get();
    ++p->attempts;
    p->state = "running";
    local_->BeginAttempt(id, p->attempts);
    SetTaskState("queued", "running");
  }
  // "Attempt N running" is durable before any of these cells exists.
  starting_ += static_cast<int64_t>(chosen.size());
  store_->WhenDurable([this, chosen = std::move(chosen)] {
    starting_ -= static_cast<int64_t>(chosen.size());
    std::vector<CellIdentity> started;
    for (int64_t id : chosen) {
      Active* p = Held(id);
      if (p != nullptr && p->state == "running" && p->cell_id.empty()) StartAttempt(p, &started);
    }
    store_->RecordIdentities(started);
    if (store_->Uncommitted()) ScheduleFlush();
  });
  store_->Commit();
  if (store_->Uncommitted()) ScheduleFlush();
}

void TaskQueue::DispatchShared() {
  size_t busy = sup_->running() + sup_->queued();
  if (busy >= sup_->max_running()) return;
  int64_t want = std::min<int64_t>(kMaxClaim, static_cast<int64_t>(sup_->max_running() - busy));
  if (options_.parallel > 0) {
    want = std::min<int64_t>(want, options_.parallel - static_cast<int64_t>(active_.size()));
    if (want <= 0) return;
  }
  // Group limits count committed running rows: with any limit, claims go one task at a time.
  bool limited = std::any_of(limits_.begin(), limits_.end(), [](auto& l) { return l.second > 0; });
  auto claimed = shared_->Claim(want, limited);
  if (!claimed.ok()) return;  // the store said why, once per outage
  std::vector<Active*> run;
  for (SharedTaskStore::Claimed& c : *claimed) {
    std::unique_ptr<Active> p = Hold(std::move(c.task), "running");
    p->claimed_ns = MonotonicNs();
    p->ready_ns = p->claimed_ns - c.waited_ms * kNsPerMs;  // the database's clock said
    ++running_in_group_[p->group];
    run.push_back(p.get());
    active_[p->id] = std::move(p);
  }
  std::vector<CellIdentity> started;
  for (Active* p : run) StartAttempt(p, &started);  // may erase p, but not the others
  store_->RecordIdentities(started);
}

void TaskQueue::StartAttempt(Active* p, std::vector<CellIdentity>* started) {
  int64_t id = p->id, n = p->attempts;
  if (on_attempt_started)
    on_attempt_started(static_cast<double>(MonotonicNs() - p->ready_ns) / 1e9);
  auto cell = queue::AttemptCell(p->spec_json, p->owner, id, n);
  if (auto* failed = std::get_if<CellResult>(&cell)) return OnAttemptDone(id, n, *failed);
  CellSpec spec = std::move(std::get<CellSpec>(cell));
  auto cell_or = sup_->Start(p->owner, std::move(spec),
                             [this, id, n](const CellResult& r) { OnAttemptDone(id, n, r); });
  if (auto* refusal = std::get_if<Refusal>(&cell_or)) {
    // Not an attempt: the cell never existed. Back to the queue, dispatch again a bit later.
    store_->AbandonAttempt(id, n);
    --running_in_group_[p->group];
    if (local_) {
      SetTaskState("running", "queued");
      p->attempts = n - 1;
      p->state = "queued";
      MakeReady(p);
    } else {
      active_.erase(id);  // any daemon's again
    }
    if (refused_timer_ == 0 && !sup_->shutting_down()) {
      std::fprintf(stderr, "corral daemon: task queue: %s: %s; retrying\n", TaskId(id).c_str(),
                   refusal->message.c_str());
      refused_until_ns_ = MonotonicNs() + kRefusedRetryNs;
      refused_timer_ = loop_->AddTimer(refused_until_ns_, [this] {
        refused_timer_ = 0;
        ScheduleFlush();
      });
    }
    if (store_->Uncommitted()) ScheduleFlush();
    return;
  }
  p->cell_id = std::get<std::string>(cell_or);
  CellIdentity c{id, n, p->cell_id};
  if (auto l = sup_->Find(Caller::System(), p->cell_id)) c.pid = l->pid;
  if (auto st = c.pid > 0 ? ReadProcStat(static_cast<pid_t>(c.pid)) : std::nullopt) {
    c.starttime = static_cast<int64_t>(st->starttime_ticks);
  }
  started->push_back(std::move(c));
}

void TaskQueue::OnAttemptDone(int64_t id, int64_t n, const CellResult& r) {
  Active* p = Held(id);
  if (p == nullptr || p->attempts != n) return;
  --running_in_group_[p->group];
  p->cell_id.clear();
  if (p->lost) {
    active_.erase(id);  // reclaimed (or unrenewable): another daemon owns the task now
    return;
  }
  bool shutdown = r.state == CellState::kCancelled && r.reason == "shutdown";
  std::string outcome = queue::AttemptOutcome(r, p->cancel_requested);
  // Output first (files), then the row that points at them.
  AttemptEnd end;
  end.id = id;
  end.n = n;
  end.attempt_state = shutdown ? std::string("crashed") : outcome;
  end.result = &r;
  queue::WriteAttemptOutput(options_.state_dir, id, n, r, &end.stdout_path, &end.stderr_path);
  if (on_attempt_done && r.state != CellState::kFailedToStart) on_attempt_done(r.duration_s);
  end.attempts = n;
  if (shutdown && !p->cancel_requested) {
    end.task_state = "queued";  // the daemon is stopping: not the task's fault, does not count
    end.attempts = n - 1;
  } else if (outcome == "succeeded" || outcome == "cancelled" || n >= p->max_attempts) {
    end.task_state = outcome;
  } else {
    end.task_state = "queued";
    end.delay_ms = queue::RetryDelayMs(p->backoff_ms, n);
  }
  bool recorded = store_->EndAttempt(end);
  if (end.task_state == "queued" && local_) {
    p->attempts = end.attempts;
    p->state = "queued";
    SetTaskState("running", "queued");
    ReadyAfter(p, end.delay_ms);
  } else if (recorded || !shared_) {
    Forget(p, end.task_state);
  } else {
    active_.erase(id);  // unrecorded: its lease expires and any daemon re-queues it
  }
  ScheduleFlush();
}

void TaskQueue::Forget(Active* p, const std::string& state) {
  int64_t id = p->id;
  SetTaskState(p->state, state);
  std::vector<Reply> replies = std::move(p->cancel_replies);
  if (p->backoff_timer != 0) loop_->CancelTimer(p->backoff_timer);
  if (auto it = ready_.find(p->group); it != ready_.end()) it->second.erase({-p->priority, id});
  if (auto t = blocker_tokens_.find(id); t != blocker_tokens_.end()) {
    loop_->Remove(t->second);
    blocker_tokens_.erase(t);
    blockers_.erase(id);
  }
  active_.erase(id);
  if (state == "queued") return;  // a shared store's, for any daemon to claim
  store_->WhenDurable([this, id, replies = std::move(replies)] {
    for (const Reply& r : replies) r(TaskJson(id, false));
    NotifyWaiters(id);
  });
}

void TaskQueue::SetTaskState(const std::string& from, const std::string& to) {
  // A shared store's counts are the database's, refreshed by Reclaim: other daemons move them.
  if (shared_ || from == to) return;
  if (!from.empty()) SetCount(from, counts_[from] - 1);
  SetCount(to, counts_[to] + 1);
}

void TaskQueue::SetCount(const std::string& state, int64_t n) {
  counts_[state] = n;
  if (on_count) on_count(state, n);
}

void TaskQueue::NotifyWaiters(int64_t id) {
  auto it = waiters_.find(id);
  if (it == waiters_.end()) return;
  auto ws = std::move(it->second);
  waiters_.erase(it);
  Json t = TaskJson(id, true);
  for (auto& [n, w] : ws) w(t);
}

TaskQueue::Active* TaskQueue::Held(int64_t id) {
  auto it = active_.find(id);
  return it == active_.end() ? nullptr : it->second.get();
}

std::optional<Refusal> TaskQueue::Lookup(const Caller& caller, const std::string& id, int64_t* n,
                                         std::string* state) {
  auto parsed = ParseId(id);
  if (!parsed) return Unknown(id);
  *n = *parsed;
  auto head = store_->Head(*n);
  if (!head.ok()) return Refusal{Refusal::kOverloaded, head.error().message()};
  if (!*head || (!caller.root() && (*head)->first != caller.uid)) return Unknown(id);
  *state = (*head)->second;
  return std::nullopt;
}

TaskQueue::Json TaskQueue::TaskJson(int64_t id, bool with_attempts) {
  auto row = store_->Task(id);
  if (!row) return Json{{"id", TaskId(id)}, {"state", "unknown"}};
  const TaskRow& r = *row;
  Json t = {{"id", TaskId(id)},
            {"uid", static_cast<int64_t>(r.owner.uid)},
            {"argv", Json::parse(r.argv_json, nullptr, false)},
            {"group", r.group},
            {"priority", r.priority},
            {"key", OptJson(r.key)},
            {"state", r.state},
            {"attempts", r.attempts},
            {"max_attempts", r.max_attempts},
            {"retries", r.max_attempts - 1},
            {"backoff_s", static_cast<double>(r.backoff_ms) / 1000},
            {"not_before", static_cast<double>(r.not_before_ms) / 1000},
            {"created", static_cast<double>(r.created_ms) / 1000},
            {"updated", static_cast<double>(r.updated_ms) / 1000}};
  Json attempts = Json::array();
  Json last;
  for (const AttemptRow& a : store_->Attempts(id)) {
    last = AttemptJson(a);
    if (with_attempts) attempts.push_back(last);
  }
  queue::AddLastAttempt(&t, last, with_attempts ? &attempts : nullptr);
  return t;
}

void TaskQueue::Submit(TaskSubmission sub, Reply reply) {
  if (!ValidGroup(sub.group)) {
    return reply(Refusal{Refusal::kBadInput, "params.group: '" + sub.group +
                                                 "' is not a group name (1 to 64 of A-Z a-z 0-9 "
                                                 "_ - .)"});
  }
  if (sup_->shutting_down()) {
    return reply(Refusal{Refusal::kOverloaded, "the daemon is shutting down"});
  }
  NewTask t{sub.owner,    Json(sub.argv).dump(), std::move(sub.spec_json), std::move(sub.group),
            sub.priority, std::move(sub.key),    sub.retries + 1,          sub.backoff_ms};
  auto inserted = store_->Insert(t);
  if (!inserted.ok()) {
    return reply(Refusal{Refusal::kOverloaded, inserted.error().message()});
  }
  // Named, not a structured binding: the answer's lambda captures both.
  int64_t id = inserted->first;
  bool existing = inserted->second;
  if (!existing) {
    SetTaskState("", "queued");
    if (local_) {
      TaskRow row;
      row.id = id;
      row.owner = sub.owner;
      row.group = std::move(t.group);
      row.priority = sub.priority;
      row.spec_json = std::move(t.spec_json);
      row.max_attempts = t.max_attempts;
      row.backoff_ms = sub.backoff_ms;
      MakeReady(active_.emplace(id, Hold(std::move(row), "queued")).first->second.get());
    }
  }
  // An existing task may have been inserted in this very transaction: answer once committed.
  store_->WhenDurable([reply, id, existing] {
    reply(Json{{"id", TaskId(id)}, {"existing", existing}});
  });
  ScheduleFlush();
}

std::variant<TaskQueue::Json, Refusal> TaskQueue::List(const Caller& caller,
                                                       const std::string& state,
                                                       const std::string& group, int64_t limit) {
  if (!state.empty() && counts_.count(state) == 0) {
    return Refusal{Refusal::kBadInput,
                   "params.state: '" + state +
                       "' is not a task state "
                       "(queued, running, succeeded, failed, timed_out, crashed, "
                       "cancelled)"};
  }
  if (!group.empty() && !ValidGroup(group)) {
    return Refusal{Refusal::kBadInput, "params.group: '" + group + "' is not a group name"};
  }
  int64_t uid = caller.root() ? -1 : static_cast<int64_t>(caller.uid);
  Json list = Json::array();
  for (int64_t id : store_->List(state, group, uid, limit)) list.push_back(TaskJson(id, false));
  // A local store's counts are all in memory; a shared one's are the caller's, asked now.
  Json counts = Json::object();
  for (const auto& [s, n] : counts_) counts[s] = shared_ ? 0 : n;
  if (shared_) {
    for (const auto& [s, n] : store_->CountByState(uid)) counts[s] = n;
  }
  return Json{{"tasks", list}, {"counts", counts}};
}

std::variant<TaskQueue::Json, Refusal> TaskQueue::Get(const Caller& caller, const std::string& id) {
  int64_t n = 0;
  std::string state;
  if (auto why = Lookup(caller, id, &n, &state)) return *why;
  return TaskJson(n, true);
}

std::optional<Refusal> TaskQueue::Wait(const Caller& caller, const std::string& id,
                                       std::function<void(Json)> done, uint64_t* waiter) {
  int64_t n = 0;
  std::string state;
  *waiter = 0;
  if (auto why = Lookup(caller, id, &n, &state)) return why;
  if (Unfinished(state)) {
    waiters_[n].emplace(++waiter_seq_, std::move(done));
    *waiter = waiter_seq_;
    return std::nullopt;
  }
  done(TaskJson(n, true));
  return std::nullopt;
}

void TaskQueue::Unwait(const std::string& id, uint64_t waiter) {
  auto n = ParseId(id);
  if (!n) return;
  auto it = waiters_.find(*n);
  if (it == waiters_.end()) return;
  it->second.erase(waiter);
  if (it->second.empty()) waiters_.erase(it);
}

void TaskQueue::Cancel(const Caller& caller, const std::string& id, Reply reply) {
  int64_t n = 0;
  std::string state;
  if (auto why = Lookup(caller, id, &n, &state)) return reply(*why);
  if (Active* p = Held(n); p != nullptr && p->state == "running" && !p->lost) {
    p->cancel_requested = true;
    p->cancel_replies.push_back(std::move(reply));
    // May end the attempt (and erase p) before it returns: p is not used after this.
    if (!p->cell_id.empty()) (void)sup_->Kill(Caller::System(), p->cell_id, "cancelled");
    return;
  }
  auto now = store_->Cancel(n);
  if (!now.ok()) return reply(Refusal{Refusal::kOverloaded, now.error().message()});
  if (now->empty()) {
    return reply(Refusal{Refusal::kBadInput,
                         "task " + id + " already finished (" + state + "); nothing to cancel"});
  }
  if (*now == "running") {
    // Running on another daemon, which kills it at its next renewal: answered once it ended.
    waiters_[n].emplace(++waiter_seq_, [this, reply, n](Json) { reply(TaskJson(n, false)); });
    return;
  }
  if (Active* p = Held(n)) {
    Forget(p, "cancelled");
  } else {
    NotifyWaiters(n);
  }
  store_->WhenDurable([this, reply, n] { reply(TaskJson(n, false)); });
  ScheduleFlush();
}

void TaskQueue::Retry(const Caller& caller, const std::string& id, Reply reply) {
  int64_t n = 0;
  std::string state;
  if (auto why = Lookup(caller, id, &n, &state)) return reply(*why);
  auto before = store_->Requeue(n);
  if (!before.ok()) return reply(Refusal{Refusal::kOverloaded, before.error().message()});
  if (before->empty()) {
    return reply(Refusal{Refusal::kBadInput, "task " + id +
                                                 " has not finished; nothing to retry "
                                                 "(cancel it first to start over)"});
  }
  SetTaskState(*before, "queued");
  if (local_) {
    if (auto row = store_->Task(n)) {
      Active* p = active_.emplace(n, Hold(std::move(*row), "queued")).first->second.get();
      MakeReady(p);
    }
  }
  store_->WhenDurable([this, reply, n] { reply(TaskJson(n, false)); });
  ScheduleFlush();
}

std::variant<TaskQueue::Json, Refusal> TaskQueue::Output(const Caller& caller,
                                                         const std::string& id, int64_t attempt,
                                                         bool stderr_stream, uint64_t offset,
                                                         uint64_t max_bytes) {
  int64_t n = 0;
  std::string state;
  if (auto why = Lookup(caller, id, &n, &state)) return *why;
  bool task_done = !Unfinished(state);
  if (attempt == 0) {
    attempt = store_->LatestAttempt(n);
    if (attempt == 0) return queue::NoAttemptYet(task_done);
  }
  auto a = store_->Attempt(n, attempt);
  if (!a) {
    return Refusal{Refusal::kBadInput, "task " + id + " has no attempt " + std::to_string(attempt)};
  }
  Json out = {{"attempt", attempt}, {"task_done", task_done}};
  if (a->state == "running") {
    std::string cell = a->cell_id.value_or("");
    Active* p = Held(n);
    bool ours = p != nullptr && !cell.empty() && p->cell_id == cell;
    out.update(queue::RunningOutputPage(sup_, ours ? cell : "", stderr_stream, offset, max_bytes));
    return out;
  }
  // The files live on the host whose daemon ran the attempt; elsewhere they read as empty.
  const auto& path = stderr_stream ? a->stderr_path : a->stdout_path;
  const auto& bytes = stderr_stream ? a->stderr_bytes : a->stdout_bytes;
  const auto& truncated = stderr_stream ? a->stderr_truncated : a->stdout_truncated;
  out.update(queue::FinishedOutputPage(a->files_here ? path.value_or("") : "", bytes.value_or(0),
                                       truncated.value_or(false), offset, max_bytes));
  return out;
}

void TaskQueue::SetGroup(const Caller& caller, const std::string& group, int64_t parallel,
                         Reply reply) {
  if (auto why = queue::CheckGroupSet(caller, group, ValidGroup(group))) return reply(*why);
  if (Status st = store_->SetGroupLimit(group, parallel); !st.ok()) {
    return reply(Refusal{Refusal::kOverloaded, st.error().message()});
  }
  limits_[group] = parallel;
  store_->WhenDurable([reply, group, parallel] {
    reply(Json{{"group", group}, {"parallel", parallel}});
  });
  ScheduleFlush();
}

TaskQueue::Json TaskQueue::Groups() {
  // group -> (running, ready): a shared store's are every daemon's, from the database.
  std::map<std::string, std::pair<int64_t, int64_t>> seen;
  if (shared_) {
    if (auto limits = store_->GroupLimits(); limits.ok()) limits_ = std::move(limits).value();
    seen = shared_->GroupCounts();
  } else {
    for (const auto& [g, n] : running_in_group_) seen[g].first = n;
    for (const auto& [g, s] : ready_) seen[g].second = static_cast<int64_t>(s.size());
  }
  for (const auto& [g, n] : limits_) seen.emplace(g, std::make_pair(0, 0));
  Json out = Json::array();
  for (const auto& [g, rr] : seen) {
    auto lim = limits_.find(g);
    out.push_back({{"group", g},
                   {"parallel", lim == limits_.end() ? 0 : lim->second},
                   {"running", rr.first},
                   {"ready", rr.second}});
  }
  return out;
}

}  // namespace corral
