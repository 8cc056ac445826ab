// start: a cell for the caller, answered at once with its id; it outlives the connection.
#include "api/methods/methods.h"

namespace corral::api {

void Start(Methods* m, Call call) {
  Caller caller = CallerOf(call);
  auto spec = CellSpecOf(m, call, caller);
  if (!spec) return;
  auto started = m->sup->Start(caller, std::move(*spec));
  if (auto* refusal = std::get_if<Refusal>(&started)) {
    m->server->ReplyError(call.reply_to, ToRpc(*refusal));
    return;
  }
  m->server->Reply(call.reply_to, {{"id", std::get<std::string>(started)}});
}

}  // namespace corral::api
