// tasks: the caller's tasks (root: all), newest first, filtered by state and group.
#include "api/methods/methods.h"

namespace corral::api {

void Tasks(Methods* m, Call call) {
  jsonrpc::ParamReader p(call.request.params);
  p.RejectUnknown({"state", "group", "limit"});
  auto state = p.String("state");
  auto group = p.String("group");
  auto limit = p.Integer("limit", 1, 1000000);
  if (!CheckParams(m, call, p)) return;
  AnswerDurable(
      m, call.reply_to,
      m->queue->List(CallerOf(call), state.value_or(""), group.value_or(""), limit.value_or(1000)));
}

}  // namespace corral::api
