// The task queue over JSON-RPC: each handler checks its params (naming the bad field), then asks
// the TaskQueue, which answers once the change it made is committed.
#include "api/task_methods.h"

#include <memory>
#include <optional>
#include <string>

#include "api/rpc_methods.h"
#include "sys/clock.h"

namespace corral::api {
namespace {

using jsonrpc::json;
using jsonrpc::ParamReader;
using jsonrpc::RpcError;

constexpr int64_t kMaxRetries = 1000;
constexpr double kMaxBackoffS = 86400;
constexpr int64_t kMaxPriority = 1000000;
constexpr uint64_t kDefaultOutputPage = 1 << 20;

RpcError ToRpc(const Refusal& r) {
  switch (r.kind) {
    case Refusal::kOverloaded:
      return RpcError::Overloaded(r.message);
    case Refusal::kNotAllowed:
      return RpcError::NotAllowed(r.message);
    case Refusal::kNotFound:
    case Refusal::kBadInput:
      return RpcError::InvalidParams(r.message);
  }
  return RpcError::Internal(r.message);
}

Caller CallerOf(const Call& call) { return Caller{call.peer.uid, call.peer.gid, call.peer.pid}; }

TaskQueue::Reply ReplyWith(UnixServer* server, ReplyTo to) {
  return [server, to](std::variant<json, Refusal> r) {
    if (auto* refusal = std::get_if<Refusal>(&r)) {
      server->ReplyError(to, ToRpc(*refusal));
    } else {
      server->Reply(to, std::get<json>(std::move(r)));
    }
  };
}

// An answer read from the queue now, sent once what it read is durable (TaskQueue::WhenDurable).
void Answer(UnixServer* server, TaskQueue* queue, const ReplyTo& to,
            std::variant<json, Refusal> r) {
  queue->WhenDurable(
      [reply = ReplyWith(server, to), r = std::move(r)]() mutable { reply(std::move(r)); });
}

// The "id" of a call that takes only that; nullopt after replying with the error.
std::optional<std::string> OnlyIdParam(UnixServer* server, const Call& call) {
  ParamReader p(call.request.params);
  p.RejectUnknown({"id"});
  auto id = p.String("id", true);
  if (!p.ok()) {
    server->ReplyError(call.reply_to, p.error());
    return std::nullopt;
  }
  return id;
}

}  // namespace

SpecBuilder CellParamsSpecBuilder() {
  return
      [](const std::string& spec_json, const Caller& owner) -> std::variant<CellSpec, std::string> {
        json params = json::parse(spec_json, nullptr, false);
        if (params.is_discarded()) return std::string("the stored task spec is not JSON");
        CellSpec spec;
        if (auto err = ParseCellParams(params, owner, &spec)) return err->message;
        return spec;
      };
}

void RegisterTaskMethods(UnixServer* server, TaskQueue* queue, EventLoop* loop) {
  server->Handle("submit", [server, queue](Call call) {
    const json& params = call.request.params;
    if (!params.is_object()) {
      server->ReplyError(call.reply_to,
                         RpcError::InvalidParams("params must be an object with argv or shell"));
      return;
    }
    // The queue's own fields; the rest are the cell params of `run`, checked now and kept.
    ParamReader p(params);
    auto retries = p.Integer("retries", 0, kMaxRetries);
    auto backoff = p.Number("backoff_s", 0.0, kMaxBackoffS);
    auto group = p.String("group");
    auto priority = p.Integer("priority", -kMaxPriority, kMaxPriority);
    auto key = p.String("key");
    if (!p.ok()) {
      server->ReplyError(call.reply_to, p.error());
      return;
    }
    if (key && (key->empty() || key->size() > 256)) {
      server->ReplyError(call.reply_to,
                         RpcError::InvalidParams("params.key must be 1 to 256 characters"));
      return;
    }
    json cell = params;
    for (const char* k : {"retries", "backoff_s", "group", "priority", "key"}) cell.erase(k);
    Caller caller = CallerOf(call);
    CellSpec spec;
    if (auto err = ParseCellParams(cell, caller, &spec)) {
      server->ReplyError(call.reply_to, *err);
      return;
    }
    TaskSubmission sub;
    sub.owner = caller;
    sub.argv = spec.argv;
    sub.spec_json = cell.dump();
    sub.group = group.value_or("default");
    sub.priority = priority.value_or(0);
    sub.key = key.value_or("");
    sub.retries = retries.value_or(0);
    sub.backoff_ms = static_cast<int64_t>(backoff.value_or(1.0) * 1000);
    queue->Submit(std::move(sub), ReplyWith(server, call.reply_to));
  });

  server->Handle("tasks", [server, queue](Call call) {
    ParamReader p(call.request.params);
    p.RejectUnknown({"state", "group", "limit"});
    auto state = p.String("state");
    auto group = p.String("group");
    auto limit = p.Integer("limit", 1, 1000000);
    if (!p.ok()) {
      server->ReplyError(call.reply_to, p.error());
      return;
    }
    Answer(
        server, queue, call.reply_to,
        queue->List(CallerOf(call), state.value_or(""), group.value_or(""), limit.value_or(1000)));
  });

  server->Handle("task", [server, queue](Call call) {
    auto id = OnlyIdParam(server, call);
    if (id) Answer(server, queue, call.reply_to, queue->Get(CallerOf(call), *id));
  });

  server->Handle("task_wait", [server, queue, loop](Call call) {
    ParamReader p(call.request.params);
    p.RejectUnknown({"id", "timeout_s"});
    auto id = p.String("id", true);
    auto timeout = p.Number("timeout_s", 0.0, 1e9);
    if (!p.ok()) {
      server->ReplyError(call.reply_to, p.error());
      return;
    }
    ReplyTo to = call.reply_to;
    Caller caller = CallerOf(call);
    // Answered once: with the finished task, or at timeout_s with the task as it is then.
    auto timer = std::make_shared<EventLoop::Token>(0);
    uint64_t waiter = 0;
    auto refusal = queue->Wait(
        caller, *id,
        [server, queue, to, timer, loop](json t) {
          if (*timer != 0) loop->CancelTimer(*timer);
          Answer(server, queue, to, std::move(t));
        },
        &waiter);
    if (refusal) {
      server->ReplyError(to, ToRpc(*refusal));
      return;
    }
    if (timeout && waiter != 0) {
      std::string task_id = *id;
      *timer = loop->AddTimer(MonotonicNs() + static_cast<int64_t>(*timeout * 1e9),
                              [server, queue, to, task_id, waiter, timer, caller] {
                                *timer = 0;
                                queue->Unwait(task_id, waiter);
                                Answer(server, queue, to, queue->Get(caller, task_id));
                              });
    }
  });

  // cancel and retry: a task id in, the task as it is then out.
  using IdAction = void (TaskQueue::*)(const Caller&, const std::string&, TaskQueue::Reply);
  for (auto [name, action] : {std::pair<const char*, IdAction>{"cancel", &TaskQueue::Cancel},
                              std::pair<const char*, IdAction>{"retry", &TaskQueue::Retry}}) {
    server->Handle(name, [server, queue, action](Call call) {
      auto id = OnlyIdParam(server, call);
      if (id) (queue->*action)(CallerOf(call), *id, ReplyWith(server, call.reply_to));
    });
  }

  server->Handle("task_output", [server, queue](Call call) {
    ParamReader p(call.request.params);
    p.RejectUnknown({"id", "attempt", "stream", "offset", "max_bytes"});
    auto id = p.String("id", true);
    auto attempt = p.Integer("attempt", 1, std::nullopt);
    auto stream = p.String("stream");
    auto offset = p.Integer("offset", 0, std::nullopt);
    auto max_bytes = p.Integer("max_bytes", 1, 64 << 20);
    if (!p.ok()) {
      server->ReplyError(call.reply_to, p.error());
      return;
    }
    if (stream && *stream != "stdout" && *stream != "stderr") {
      server->ReplyError(call.reply_to,
                         RpcError::InvalidParams("params.stream must be \"stdout\" or \"stderr\""));
      return;
    }
    Answer(server, queue, call.reply_to,
           queue->Output(CallerOf(call), *id, attempt.value_or(0), stream && *stream == "stderr",
                         static_cast<uint64_t>(offset.value_or(0)),
                         static_cast<uint64_t>(max_bytes.value_or(kDefaultOutputPage))));
  });

  server->Handle("group_set", [server, queue](Call call) {
    ParamReader p(call.request.params);
    p.RejectUnknown({"group", "parallel"});
    auto group = p.String("group", true);
    auto parallel = p.Integer("parallel", 0, 1000000);
    if (!p.ok()) {
      server->ReplyError(call.reply_to, p.error());
      return;
    }
    if (!parallel) {
      server->ReplyError(call.reply_to,
                         RpcError::InvalidParams("params.parallel is required (0: no limit)"));
      return;
    }
    queue->SetGroup(CallerOf(call), *group, *parallel, ReplyWith(server, call.reply_to));
  });

  server->Handle("groups", [server, queue](Call call) {
    Answer(server, queue, call.reply_to, json{{"groups", queue->Groups()}});
  });
}

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
