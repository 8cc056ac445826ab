#include "api/metrics_scan.h"

#include <algorithm>
#include <string>

namespace corral::api {

namespace {

// Process names are arbitrary bytes; Prometheus label values must be UTF-8. Keep printable ASCII
// and replace the rest, so a hostile comm cannot make the exposition unparseable.
std::string Label(const std::string& s) {
  std::string out = s;
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  }
  return out;
}

}  // namespace

HostMetrics::HostMetrics(metrics::Registry* r, size_t top) : top_(std::min<size_t>(top, 100)) {
  const size_t n = top_;
  zombies_ = &r->AddGauge("corral_host_zombies", "Zombie processes on the host.");
  zombies_by_parent_ = &r->AddGaugeFamily(
      "corral_host_zombies_by_parent", "Zombie children per parent process, for the top N parents.",
      {"pid", "comm"}, n);
  zombie_chains_ =
      &r->AddGauge("corral_host_zombie_chains", "Zombie processes whose own children are zombies.");
  dstate_ =
      &r->AddGauge("corral_host_dstate_processes", "Processes in uninterruptible sleep (D state).");
  dstate_oldest_ = &r->AddGauge("corral_host_dstate_oldest_seconds",
                                "How long the longest-sleeping D-state process has slept.");
  dstate_seconds_ = &r->AddGaugeFamily("corral_host_dstate_seconds",
                                       "Seconds in D state, for the top N processes.",
                                       {"pid", "comm", "wchan"}, n);
  fd_pressure_ = &r->AddGauge("corral_host_fd_pressure_processes",
                              "Processes whose open fds are over the fd threshold of their "
                              "soft RLIMIT_NOFILE.");
  fd_max_ratio_ = &r->AddGauge("corral_host_fd_max_ratio",
                               "Highest open fds / soft RLIMIT_NOFILE over processes checked.");
  process_fds_ =
      &r->AddGaugeFamily("corral_host_process_open_fds",
                         "Open fds of processes near their limit (top N).", {"pid", "comm"}, n);
  process_fd_limit_ =
      &r->AddGaugeFamily("corral_host_process_fd_limit",
                         "Soft RLIMIT_NOFILE of the same processes.", {"pid", "comm"}, n);
  pids_used_ = &r->AddGauge("corral_host_pids_used", "Tasks (threads included) on the host.");
  pid_max_ = &r->AddGauge("corral_host_pid_max", "kernel.pid_max.");
  threads_max_ = &r->AddGauge("corral_host_threads_max", "kernel.threads-max.");
  processes_ = &r->AddGauge("corral_host_processes", "Processes seen in /proc.");
  cgroup_pids_current_ = &r->AddGaugeFamily("corral_host_cgroup_pids_current",
                                            "pids.current of pids-limited cgroups (fullest N).",
                                            {"cgroup", "hierarchy"}, n);
  cgroup_pids_max_ = &r->AddGaugeFamily(
      "corral_host_cgroup_pids_max", "pids.max of the same cgroups.", {"cgroup", "hierarchy"}, n);
  gpu_available_ = &r->AddGauge("corral_host_gpu_available", "1 when NVML answered.");
  gpu_orphaned_ = &r->AddGauge("corral_host_gpu_orphaned_bytes",
                               "GPU memory held by processes that are dead or zombies.");
  gpu_used_ = &r->AddGaugeFamily("corral_host_gpu_memory_used_bytes", "GPU memory in use.",
                                 {"gpu", "name"}, 64);
  gpu_total_ = &r->AddGaugeFamily("corral_host_gpu_memory_total_bytes", "GPU memory size.",
                                  {"gpu", "name"}, 64);
  gpu_device_orphaned_ = &r->AddGaugeFamily(
      "corral_host_gpu_device_orphaned_bytes",
      "GPU memory held by dead or zombie processes, per device.", {"gpu", "name"}, 64);
  skipped_ = &r->AddGauge("corral_host_scan_skipped",
                          "Things the last scan did not read because they could block.");
  findings_ = &r->AddGauge("corral_host_scan_findings",
                           "Thresholds crossed in the last scan (corral scan's findings).");
  scan_duration_ = &r->AddGauge("corral_host_scan_duration_seconds", "Duration of the last scan.");
  scan_timestamp_ =
      &r->AddGauge("corral_host_scan_timestamp_seconds", "Unix time of the last successful scan.");
  scans_ = &r->AddCounter("corral_host_scans_total", "Host scans run.");
  errors_ = &r->AddCounter("corral_host_scan_errors_total", "Host scans that failed.");
}

void HostMetrics::Export(const scan::ScanReport& rep) {
  zombies_->Set(static_cast<double>(rep.zombies));
  zombies_by_parent_->Clear();
  for (size_t i = 0; i < rep.zombies_by_parent.size() && i < top_; ++i) {
    const auto& z = rep.zombies_by_parent[i];
    if (auto* g = zombies_by_parent_->With({std::to_string(z.pid), Label(z.comm)}))
      g->Set(z.zombies);
  }
  zombie_chains_->Set(static_cast<double>(rep.zombie_chains.size()));
  dstate_->Set(static_cast<double>(rep.dstate_total));
  dstate_oldest_->Set(rep.dstate.empty() ? 0 : rep.dstate.front().since_s);
  dstate_seconds_->Clear();
  for (size_t i = 0; i < rep.dstate.size() && i < top_; ++i) {
    const auto& d = rep.dstate[i];
    if (auto* g = dstate_seconds_->With({std::to_string(d.tid), Label(d.comm), Label(d.wchan)})) {
      g->Set(d.since_s);
    }
  }
  fd_pressure_->Set(static_cast<double>(rep.fd_pressure.size()));
  fd_max_ratio_->Set(rep.fd_max_ratio);
  process_fds_->Clear();
  process_fd_limit_->Clear();
  for (size_t i = 0; i < rep.fd_pressure.size() && i < top_; ++i) {
    const auto& f = rep.fd_pressure[i];
    std::vector<std::string> labels{std::to_string(f.pid), Label(f.comm)};
    if (auto* g = process_fds_->With(labels)) g->Set(static_cast<double>(f.open_fds));
    if (auto* g = process_fd_limit_->With(labels)) g->Set(static_cast<double>(f.soft_limit));
  }
  pids_used_->Set(static_cast<double>(rep.pids.used));
  pid_max_->Set(static_cast<double>(rep.pids.max));
  threads_max_->Set(static_cast<double>(rep.pids.threads_max));
  processes_->Set(static_cast<double>(rep.pids.processes));
  cgroup_pids_current_->Clear();
  cgroup_pids_max_->Clear();
  for (size_t i = 0; i < rep.pids.cgroups.size() && i < top_; ++i) {
    const auto& c = rep.pids.cgroups[i];
    std::vector<std::string> labels{Label(c.path), c.hierarchy};
    if (auto* g = cgroup_pids_current_->With(labels)) g->Set(static_cast<double>(c.current));
    if (auto* g = cgroup_pids_max_->With(labels)) g->Set(static_cast<double>(c.max));
  }
  gpu_available_->Set(rep.gpu.available ? 1 : 0);
  gpu_orphaned_->Set(static_cast<double>(rep.gpu.orphaned_bytes));
  gpu_used_->Clear();
  gpu_total_->Clear();
  gpu_device_orphaned_->Clear();
  for (const auto& d : rep.gpu.devices) {
    std::vector<std::string> labels{std::to_string(d.index), Label(d.name)};
    if (auto* g = gpu_used_->With(labels)) g->Set(static_cast<double>(d.used_bytes));
    if (auto* g = gpu_total_->With(labels)) g->Set(static_cast<double>(d.total_bytes));
    if (auto* g = gpu_device_orphaned_->With(labels)) g->Set(static_cast<double>(d.orphaned_bytes));
  }
  skipped_->Set(static_cast<double>(rep.skipped.size()));
  findings_->Set(static_cast<double>(rep.findings.size()));
  scan_duration_->Set(rep.duration_s);
  scan_timestamp_->Set(rep.timestamp_s);
  scans_->Inc();
}

}  // namespace corral::api
