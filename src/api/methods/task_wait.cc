// task_wait: a task once it is finished, or at timeout_s the task as it is then.
#include "api/methods/methods.h"

namespace corral::api {

void TaskWait(Methods* m, Call call) {
  jsonrpc::ParamReader p(call.request.params);
  p.RejectUnknown({"id", "timeout_s"});
  auto id = p.String("id", true);
  auto timeout = p.Number("timeout_s", 0.0, 1e9);
  if (!CheckParams(m, call, p)) return;
  ReplyTo to = call.reply_to;
  Caller caller = CallerOf(call);
  auto timer = std::make_shared<WaitTimer>(m->loop);
  uint64_t waiter = 0;
  auto refusal = m->queue->Wait(
      caller, *id,
      [m, to, timer](jsonrpc::json t) {
        timer->Cancel();
        AnswerDurable(m, to, std::move(t));
      },
      &waiter);
  if (refusal) {
    m->server->ReplyError(to, ToRpc(*refusal));
    return;
  }
  if (waiter == 0) return;  // answered already
  timer->Arm(timeout, [m, to, task_id = *id, waiter, caller] {
    m->queue->Unwait(task_id, waiter);
    AnswerDurable(m, to, m->queue->Get(caller, task_id));
  });
}

}  // namespace corral::api
