// kill: ends a cell's whole tree (TERM, grace, KILL), or with `signal` forwards only that signal.
#include "api/methods/methods.h"
#include "sys/pidfd.h"

namespace corral::api {

void Kill(Methods* m, Call call) {
  jsonrpc::ParamReader p(call.request.params);
  auto id = p.String("id", true);
  auto sig_name = p.String("signal");
  if (!CheckParams(m, call, p)) return;
  int sig = 0;
  if (sig_name) {
    sig = SignalFromName(*sig_name);
    if (sig <= 0) {
      m->server->ReplyError(
          call.reply_to,
          jsonrpc::RpcError::InvalidParams("params.signal: unknown signal '" + *sig_name + "'"));
      return;
    }
  }
  if (auto refusal = m->sup->Kill(CallerOf(call), *id, "cancelled", sig)) {
    m->server->ReplyError(call.reply_to, ToRpc(*refusal));
    return;
  }
  m->server->Reply(call.reply_to, {{"id", *id}, {"ok", true}});
}

}  // namespace corral::api
