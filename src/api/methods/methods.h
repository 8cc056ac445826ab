// The daemon's JSON-RPC methods (DESIGN.md, "Daemon protocol"; docs/protocol.md): one file per
// method in this folder, each a function that checks its params (naming the bad field) and maps
// them onto the Supervisor or the TaskQueue; registered once, from the table in methods.cc.
//
// Identity comes from the socket's SO_PEERCRED, never from params: a caller's commands and tasks
// run with its own uid, gid and groups; only root may name another `user`; a caller sees and
// touches only its own cells and tasks (root: all).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "api/connection_cells.h"
#include "api/jsonrpc.h"
#include "api/unix_server.h"
#include "supervisor/supervisor.h"
#include "supervisor/task_queue.h"
#include "sys/event_loop.h"

namespace corral::api {

// What the methods reach; kept alive by the server's handlers.
struct Methods {
  UnixServer* server = nullptr;
  Supervisor* sup = nullptr;
  EventLoop* loop = nullptr;
  TaskQueue* queue = nullptr;           // null: no task methods (corral init --serve)
  std::function<jsonrpc::json()> scan;  // latest host scan report; null: no `scan` method
  ConnectionCells run_cells;            // `run` cells, cancelled when their client goes
};

// Registers every method on `server` (the task methods only with a queue, `scan` only with a
// scanner) and the close handler that cancels a gone client's `run` cells.
std::shared_ptr<Methods> RegisterMethods(UnixServer* server, Supervisor* sup, EventLoop* loop,
                                         TaskQueue* queue = nullptr,
                                         std::function<jsonrpc::json()> scan = nullptr);

// One function per method, each in its own file.
void Run(Methods* m, Call call);
void Start(Methods* m, Call call);
void Wait(Methods* m, Call call);
void Output(Methods* m, Call call);
void Kill(Methods* m, Call call);
void List(Methods* m, Call call);
void Stats(Methods* m, Call call);
void Scan(Methods* m, Call call);
void Submit(Methods* m, Call call);
void Tasks(Methods* m, Call call);
void Task(Methods* m, Call call);
void TaskWait(Methods* m, Call call);
void Cancel(Methods* m, Call call);
void Retry(Methods* m, Call call);
void TaskOutput(Methods* m, Call call);
void GroupSet(Methods* m, Call call);
void Groups(Methods* m, Call call);

// ---- what the methods share ----

// The caller as the socket saw it.
Caller CallerOf(const Call& call);
jsonrpc::RpcError ToRpc(const Refusal& r);
// True when p read every field well; else answers its -32602 error and returns false.
bool CheckParams(Methods* m, const Call& call, const jsonrpc::ParamReader& p);
// Answers with the JSON or the refusal.
void Answer(Methods* m, const ReplyTo& to, std::variant<jsonrpc::json, Refusal> r);
// The same, once what it read from the queue is durable (TaskQueue::WhenDurable).
void AnswerDurable(Methods* m, const ReplyTo& to, std::variant<jsonrpc::json, Refusal> r);
// The "id" of a call that takes only that; nullopt after answering the error.
std::optional<std::string> OnlyIdParam(Methods* m, const Call& call);
// The cell `run`/`start` ask for, for this caller; nullopt after answering the refusal.
std::optional<CellSpec> CellSpecOf(Methods* m, const Call& call, const Caller& caller);
// A task method that takes only an id and answers with the task (cancel, retry).
void TaskIdAction(Methods* m, const Call& call,
                  void (TaskQueue::*action)(const Caller&, const std::string&, TaskQueue::Reply));

// The params of `output` and `task_output` (which adds `attempt`): a page of a stream.
struct OutputPage {
  std::string id;
  bool stderr_stream = false;
  uint64_t offset = 0;
  uint64_t max_bytes = 1 << 20;
};
// Reads them from p (which the caller may have read more from); nullopt after answering.
std::optional<OutputPage> ReadOutputPage(Methods* m, const Call& call, jsonrpc::ParamReader& p);

// The deadline half of `wait` and `task_wait`, which answer once: when the awaited thing ends
// (its callback calls Cancel() first) or, past timeout_s, with its state then (Arm's `expire`,
// which also drops the registration).
class WaitTimer : public std::enable_shared_from_this<WaitTimer> {
 public:
  explicit WaitTimer(EventLoop* loop) : loop_(loop) {}
  void Arm(std::optional<double> timeout_s, std::function<void()> expire);  // none: no deadline
  void Cancel();

 private:
  EventLoop* loop_;
  EventLoop::Token timer_ = 0;
};

}  // namespace corral::api
