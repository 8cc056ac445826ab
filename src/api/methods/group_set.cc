// group_set: a group's parallel limit (0: none), for root or the daemon's own user.
#include "api/methods/methods.h"

namespace corral::api {

void GroupSet(Methods* m, Call call) {
  jsonrpc::ParamReader p(call.request.params);
  p.RejectUnknown({"group", "parallel"});
  auto group = p.String("group", true);
  auto parallel = p.Integer("parallel", 0, 1000000);
  if (!CheckParams(m, call, p)) return;
  if (!parallel) {
    m->server->ReplyError(call.reply_to, jsonrpc::RpcError::InvalidParams(
                                             "params.parallel is required (0: no limit)"));
    return;
  }
  m->queue->SetGroup(CallerOf(call), *group, *parallel,
                     [m, to = call.reply_to](auto r) { Answer(m, to, std::move(r)); });
}

}  // namespace corral::api
