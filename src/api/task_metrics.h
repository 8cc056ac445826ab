// The task queue's metrics (docs/queue.md): corral_tasks{state} and the wait and run time
// histograms of its attempts.
#pragma once

#include "api/metrics.h"
#include "supervisor/task_queue.h"

namespace corral::api {

// Registers the families and hooks them to `queue` (the hooks only touch the registry).
void RegisterTaskMetrics(metrics::Registry* registry, TaskQueue* queue);

}  // namespace corral::api
