// The daemon's own metrics (DESIGN.md, "Metrics"), registered once and updated as things happen:
// counters and histograms from each finished cell, gauges read at scrape time, and the orphan
// reap count synced once a second. Used by `corral daemon` and `corral init --serve`.
#pragma once

#include "api/metrics.h"
#include "supervisor/supervisor.h"
#include "sys/event_loop.h"

namespace corral::api {

class DaemonMetrics {
 public:
  DaemonMetrics(metrics::Registry* registry, Supervisor* sup, EventLoop* loop);
  ~DaemonMetrics();
  // Zombie children of this process, as the host scan last saw them (should always be 0).
  void SetUnreapedChildren(int n) { unreaped_->Set(n); }

 private:
  void SyncReaped();

  Supervisor* sup_;
  EventLoop* loop_;
  metrics::Counter* reaped_;
  metrics::Gauge* unreaped_;
  uint64_t orphans_seen_ = 0;
  EventLoop::Token timer_ = 0;
};

int CountOpenFds();

}  // namespace corral::api
