// wait: the result of a started cell once it closes, or {"id", "state": "running"} at timeout_s.
#include "api/methods/methods.h"
#include "cell/result_json.h"

namespace corral::api {

void Wait(Methods* m, Call call) {
  jsonrpc::ParamReader p(call.request.params);
  auto id = p.String("id", true);
  auto timeout = p.Number("timeout_s", 0.0, 1e9);
  if (!CheckParams(m, call, p)) return;
  ReplyTo to = call.reply_to;
  auto timer = std::make_shared<WaitTimer>(m->loop);
  uint64_t waiter = 0;
  auto refusal = m->sup->Wait(
      CallerOf(call), *id,
      [m, to, timer](const CellResult& r) {
        timer->Cancel();
        m->server->Reply(to, ResultToJson(r));
      },
      &waiter);
  if (refusal) {
    m->server->ReplyError(to, ToRpc(*refusal));
    return;
  }
  if (waiter == 0) return;  // answered already
  timer->Arm(timeout, [m, to, cell_id = *id, waiter] {
    m->sup->Unwait(cell_id, waiter);
    m->server->Reply(to, {{"id", cell_id}, {"state", "running"}});
  });
}

}  // namespace corral::api
