#include "api/task_metrics.h"

namespace corral::api {

void RegisterTaskMetrics(metrics::Registry* registry, TaskQueue* queue) {
  auto& tasks = registry->AddGaugeFamily("corral_tasks", "Tasks of the durable queue, by state.",
                                         {"state"}, 8);
  auto& wait =
      registry->AddHistogram("corral_task_wait_seconds",
                             "Time a task attempt waited in the queue before its cell started.");
  auto& run = registry->AddHistogram("corral_task_run_seconds", "Wall time of a task attempt.");
  for (const auto& [state, n] : queue->counts()) {
    if (auto* g = tasks.With({state})) g->Set(static_cast<double>(n));
  }
  queue->on_count = [&tasks](const std::string& state, int64_t n) {
    if (auto* g = tasks.With({state})) g->Set(static_cast<double>(n));
  };
  queue->on_attempt_started = [&wait](double s) { wait.Observe(s); };
  queue->on_attempt_done = [&run](double s) { run.Observe(s); };
}

}  // namespace corral::api
