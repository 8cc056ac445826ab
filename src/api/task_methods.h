// The task queue's JSON-RPC methods (docs/queue.md): submit, tasks, task, task_wait, cancel,
// retry, task_output, group_set, groups; and its metrics (corral_tasks{state}, wait and run time
// histograms). Identity comes from SO_PEERCRED as for the cell methods: a task runs with its
// submitter's uid and gid, and only its submitter (or root) sees or touches it.
#pragma once

#include "api/metrics.h"
#include "api/unix_server.h"
#include "supervisor/task_queue.h"

namespace corral::api {

void RegisterTaskMethods(UnixServer* server, TaskQueue* queue, EventLoop* loop);

// The SpecBuilder for TaskQueue: stored `run` params -> CellSpec with the owner's identity.
SpecBuilder CellParamsSpecBuilder();

// Registers corral_tasks{state}, corral_task_wait_seconds and corral_task_run_seconds and hooks
// them to `queue` (which must outlive nothing: the hooks only touch the registry).
void RegisterTaskMetrics(metrics::Registry* registry, TaskQueue* queue);

}  // namespace corral::api
