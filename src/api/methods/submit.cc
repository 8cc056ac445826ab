// submit: a task into the durable queue, answered with its id once the row is committed. The
// queue's own fields are read here; the rest are the cell params of `run`, checked now and kept
// as given, to be rebuilt for the owner at each attempt (supervisor/cell_request.h).
#include "api/methods/methods.h"
#include "supervisor/cell_request.h"

namespace corral::api {

void Submit(Methods* m, Call call) {
  constexpr int64_t kMaxRetries = 1000;
  constexpr double kMaxBackoffS = 86400;
  constexpr int64_t kMaxPriority = 1000000;
  const jsonrpc::json& params = call.request.params;
  if (!params.is_object()) {
    m->server->ReplyError(call.reply_to, jsonrpc::RpcError::InvalidParams(
                                             "params must be an object with argv or shell"));
    return;
  }
  jsonrpc::ParamReader p(params);
  auto retries = p.Integer("retries", 0, kMaxRetries);
  auto backoff = p.Number("backoff_s", 0.0, kMaxBackoffS);
  auto group = p.String("group");
  auto priority = p.Integer("priority", -kMaxPriority, kMaxPriority);
  auto key = p.String("key");
  if (!CheckParams(m, call, p)) return;
  if (key && (key->empty() || key->size() > 256)) {
    m->server->ReplyError(
        call.reply_to, jsonrpc::RpcError::InvalidParams("params.key must be 1 to 256 characters"));
    return;
  }
  jsonrpc::json cell = params;
  for (const char* k : {"retries", "backoff_s", "group", "priority", "key"}) cell.erase(k);
  Caller caller = CallerOf(call);
  auto spec = SpecForCaller(cell, caller);
  if (auto* refusal = std::get_if<Refusal>(&spec)) {
    m->server->ReplyError(call.reply_to, ToRpc(*refusal));
    return;
  }
  TaskSubmission sub;
  sub.owner = caller;
  sub.argv = std::get<CellSpec>(spec).argv;
  sub.spec_json = cell.dump();
  sub.group = group.value_or("default");
  sub.priority = priority.value_or(0);
  sub.key = key.value_or("");
  sub.retries = retries.value_or(0);
  sub.backoff_ms = SecondsToNs(backoff.value_or(1.0)) / kNsPerMs;
  ReplyTo to = call.reply_to;
  m->queue->Submit(std::move(sub), [m, to](std::variant<jsonrpc::json, Refusal> r) {
    Answer(m, to, std::move(r));
  });
}

}  // namespace corral::api
