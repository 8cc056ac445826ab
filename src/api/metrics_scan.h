// Exports a host scan report into a metrics registry as the host gauges of DESIGN.md. The
// registry keeps the last scan's values; the caller refreshes on its own cadence (the daemon's
// --scan-interval, `corral scan --serve`'s --interval), never per scrape, so a scrape storm
// costs nothing and a slow /proc costs one scan per interval.
//
// Label cardinality is bounded: the per-parent, per-process and per-cgroup families hold the
// top N entries of the report (N = `top`, at most 100) and are rebuilt whole on every export,
// so a parent that is gone disappears from /metrics instead of lingering.
#pragma once

#include <cstddef>

#include "api/metrics.h"
#include "scan/host_scan.h"

namespace corral::api {

class HostMetrics {
 public:
  // Registers the corral_host_* metrics in `registry` (which must outlive this object).
  HostMetrics(metrics::Registry* registry, size_t top);
  // Replaces every host gauge with the report's values.
  void Export(const scan::ScanReport& report);
  // Counts a scan that failed (the gauges keep the last good values).
  void CountError() { errors_->Inc(); }

 private:
  size_t top_;
  metrics::Gauge* zombies_;
  metrics::Family<metrics::Gauge>* zombies_by_parent_;
  metrics::Gauge* zombie_chains_;
  metrics::Gauge* dstate_;
  metrics::Gauge* dstate_oldest_;
  metrics::Family<metrics::Gauge>* dstate_seconds_;
  metrics::Gauge* fd_pressure_;
  metrics::Gauge* fd_max_ratio_;
  metrics::Family<metrics::Gauge>* process_fds_;
  metrics::Family<metrics::Gauge>* process_fd_limit_;
  metrics::Gauge* pids_used_;
  metrics::Gauge* pid_max_;
  metrics::Gauge* threads_max_;
  metrics::Gauge* processes_;
  metrics::Family<metrics::Gauge>* cgroup_pids_current_;
  metrics::Family<metrics::Gauge>* cgroup_pids_max_;
  metrics::Gauge* gpu_available_;
  metrics::Gauge* gpu_orphaned_;
  metrics::Family<metrics::Gauge>* gpu_used_;
  metrics::Family<metrics::Gauge>* gpu_total_;
  metrics::Family<metrics::Gauge>* gpu_device_orphaned_;
  metrics::Gauge* skipped_;
  metrics::Gauge* findings_;
  metrics::Gauge* scan_duration_;
  metrics::Gauge* scan_timestamp_;
  metrics::Counter* scans_;
  metrics::Counter* errors_;
};

}  // namespace corral::api
