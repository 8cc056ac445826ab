// start: a cell for the caller, answered at once with its id; it outlives the connection.
#include "api/methods/methods.h"
#include "supervisor/cell_request.h"

namespace corral::api {

void Start(Methods* m, Call call) {
  Caller caller = CallerOf(call);
  auto spec = SpecForCaller(call.request.params, caller);
  if (auto* refusal = std::get_if<Refusal>(&spec)) {
    m->server->ReplyError(call.reply_to, ToRpc(*refusal));
    return;
  }
  auto started = m->sup->Start(caller, std::get<CellSpec>(std::move(spec)));
  if (auto* refusal = std::get_if<Refusal>(&started)) {
    m->server->ReplyError(call.reply_to, ToRpc(*refusal));
    return;
  }
  m->server->Reply(call.reply_to, {{"id", std::get<std::string>(started)}});
}

}  // namespace corral::api
