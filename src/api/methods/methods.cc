#include "api/methods/methods.h"

#include "supervisor/cell_request.h"
#include "sys/clock.h"

namespace corral::api {

using jsonrpc::json;
using jsonrpc::RpcError;

namespace {

struct MethodEntry {
  const char* name;
  void (*handler)(Methods*, Call);
  enum Needs { kCells, kQueue, kScanner } needs;
};

constexpr MethodEntry kMethods[] = {
    {"run", Run, MethodEntry::kCells},
    {"start", Start, MethodEntry::kCells},
    {"wait", Wait, MethodEntry::kCells},
    {"output", Output, MethodEntry::kCells},
    {"kill", Kill, MethodEntry::kCells},
    {"list", List, MethodEntry::kCells},
    {"stats", Stats, MethodEntry::kCells},
    {"scan", Scan, MethodEntry::kScanner},
    {"submit", Submit, MethodEntry::kQueue},
    {"tasks", Tasks, MethodEntry::kQueue},
    {"task", Task, MethodEntry::kQueue},
    {"task_wait", TaskWait, MethodEntry::kQueue},
    {"cancel", Cancel, MethodEntry::kQueue},
    {"retry", Retry, MethodEntry::kQueue},
    {"task_output", TaskOutput, MethodEntry::kQueue},
    {"group_set", GroupSet, MethodEntry::kQueue},
    {"groups", Groups, MethodEntry::kQueue},
};

}  // namespace

std::shared_ptr<Methods> RegisterMethods(UnixServer* server, Supervisor* sup, EventLoop* loop,
                                         TaskQueue* queue, std::function<json()> scan) {
  auto m = std::make_shared<Methods>();
  m->server = server;
  m->sup = sup;
  m->loop = loop;
  m->queue = queue;
  m->scan = std::move(scan);
  for (const MethodEntry& e : kMethods) {
    if (e.needs == MethodEntry::kQueue && queue == nullptr) continue;
    if (e.needs == MethodEntry::kScanner && !m->scan) continue;
    server->Handle(e.name,
                   [m, handler = e.handler](Call call) { handler(m.get(), std::move(call)); });
  }
  server->OnClose([m](ConnectionId conn, CloseReason) {
    for (const std::string& id : m->run_cells.TakeAll(conn)) {
      m->sup->Kill(Caller::System(), id, "client_gone");
    }
  });
  return m;
}

Caller CallerOf(const Call& call) {
  return Caller::Peer(call.peer.uid, call.peer.gid, call.peer.pid);
}

RpcError ToRpc(const Refusal& r) {
  switch (r.kind) {
    case Refusal::kOverloaded: return RpcError::Overloaded(r.message);
    case Refusal::kNotAllowed: return RpcError::NotAllowed(r.message);
    case Refusal::kNotFound:
    case Refusal::kBadInput: return RpcError::InvalidParams(r.message);
  }
  return RpcError::Internal(r.message);
}

bool CheckParams(Methods* m, const Call& call, const jsonrpc::ParamReader& p) {
  if (p.ok()) return true;
  m->server->ReplyError(call.reply_to, p.error());
  return false;
}

void Answer(Methods* m, const ReplyTo& to, std::variant<json, Refusal> r) {
  if (auto* refusal = std::get_if<Refusal>(&r)) {
    m->server->ReplyError(to, ToRpc(*refusal));
  } else {
    m->server->Reply(to, std::get<json>(std::move(r)));
  }
}

void AnswerDurable(Methods* m, const ReplyTo& to, std::variant<json, Refusal> r) {
  m->queue->WhenDurable([m, to, r = std::move(r)]() mutable { Answer(m, to, std::move(r)); });
}

std::optional<std::string> OnlyIdParam(Methods* m, const Call& call) {
  jsonrpc::ParamReader p(call.request.params);
  p.RejectUnknown({"id"});
  auto id = p.String("id", true);
  if (!CheckParams(m, call, p)) return std::nullopt;
  return id;
}

std::optional<CellSpec> CellSpecOf(Methods* m, const Call& call, const Caller& caller) {
  auto spec = SpecForCaller(call.request.params, caller);
  if (auto* refusal = std::get_if<Refusal>(&spec)) {
    m->server->ReplyError(call.reply_to, ToRpc(*refusal));
    return std::nullopt;
  }
  return std::get<CellSpec>(std::move(spec));
}

void TaskIdAction(Methods* m, const Call& call,
                  void (TaskQueue::*action)(const Caller&, const std::string&, TaskQueue::Reply)) {
  if (auto id = OnlyIdParam(m, call)) {
    (m->queue->*action)(CallerOf(call), *id,
                        [m, to = call.reply_to](auto r) { Answer(m, to, std::move(r)); });
  }
}

std::optional<OutputPage> ReadOutputPage(Methods* m, const Call& call, jsonrpc::ParamReader& p) {
  constexpr int64_t kMaxPage = 64 << 20;
  auto id = p.String("id", true);
  auto stream = p.String("stream");
  auto offset = p.Integer("offset", 0, std::nullopt);
  auto max_bytes = p.Integer("max_bytes", 1, kMaxPage);
  if (!CheckParams(m, call, p)) return std::nullopt;
  if (stream && *stream != "stdout" && *stream != "stderr") {
    m->server->ReplyError(
        call.reply_to, RpcError::InvalidParams("params.stream must be \"stdout\" or \"stderr\""));
    return std::nullopt;
  }
  OutputPage page;
  page.id = *id;
  page.stderr_stream = stream && *stream == "stderr";
  page.offset = static_cast<uint64_t>(offset.value_or(0));
  if (max_bytes) page.max_bytes = static_cast<uint64_t>(*max_bytes);
  return page;
}

void WaitTimer::Arm(std::optional<double> timeout_s, std::function<void()> expire) {
  if (!timeout_s) return;
  // The callback holds the timer alive until it runs or is cancelled.
  timer_ = loop_->AddTimer(MonotonicNs() + SecondsToNs(*timeout_s),
                           [self = shared_from_this(), expire = std::move(expire)] {
                             self->timer_ = 0;
                             expire();
                           });
}

void WaitTimer::Cancel() {
  if (timer_ != 0) loop_->CancelTimer(timer_);
  timer_ = 0;
}

}  // namespace corral::api
