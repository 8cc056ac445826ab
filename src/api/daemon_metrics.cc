#include "api/daemon_metrics.h"

#include <dirent.h>

#include "sys/clock.h"

namespace corral::api {

int CountOpenFds() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n - 1;  // the DIR's own fd
}

DaemonMetrics::DaemonMetrics(metrics::Registry* registry, Supervisor* sup, EventLoop* loop)
    : sup_(sup), loop_(loop) {
  auto& cells_total =
      registry->AddCounterFamily("corral_cells_total", "Cells ended, by state.", {"state"}, 8);
  auto& duration = registry->AddHistogram("corral_cell_duration_seconds", "Cell wall time.");
  auto& spawn =
      registry->AddHistogram("corral_spawn_seconds", "Time to create a cell and spawn its leader.",
                             {0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1});
  reaped_ = &registry->AddCounter("corral_reaped_total", "Child processes reaped.");
  auto& leftover = registry->AddCounter("corral_leftover_killed_total",
                                        "Processes still alive when their leader ended, killed.");
  unreaped_ = &registry->AddGauge("corral_unreaped_children",
                                  "Zombie children of corral itself (should always be 0).");
  registry->AddCallbackGauge("corral_cells_running", "Cells running now.",
                             [sup] { return static_cast<double>(sup->stats().running); });
  registry->AddCallbackGauge("corral_queue_depth", "Calls waiting for a free cell slot.",
                             [sup] { return static_cast<double>(sup->stats().queued); });
  registry->AddCallbackGauge("corral_stuck_processes",
                             "Processes that survived SIGKILL (D state), quarantined.",
                             [sup] { return static_cast<double>(sup->stats().stuck_processes); });
  registry->AddCallbackGauge("corral_open_fds", "corral's own open file descriptors.",
                             [] { return static_cast<double>(CountOpenFds()); });
  metrics::Counter* reaped = reaped_;
  sup->on_cell_done = [&cells_total, &duration, &spawn, &leftover, reaped](const CellResult& r) {
    if (auto* c = cells_total.With({CellStateName(r.state)})) c->Inc();
    duration.Observe(r.duration_s);
    if (r.spawn_s > 0) spawn.Observe(r.spawn_s);
    if (r.state != CellState::kFailedToStart) reaped->Inc();  // the leader
    leftover.Inc(r.leftover_killed);
  };
  SyncReaped();
}

DaemonMetrics::~DaemonMetrics() {
  if (timer_ != 0) loop_->CancelTimer(timer_);
  sup_->on_cell_done = nullptr;
}

void DaemonMetrics::SyncReaped() {
  uint64_t now = sup_->stats().reaped_total;
  if (now > orphans_seen_) reaped_->Inc(static_cast<double>(now - orphans_seen_));
  orphans_seen_ = now;
  timer_ = loop_->AddTimer(MonotonicNs() + kNsPerSec, [this] {
    timer_ = 0;
    SyncReaped();
  });
}

}  // namespace corral::api
