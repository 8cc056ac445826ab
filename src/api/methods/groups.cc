// groups: every group with its limit and running tasks.
#include "api/methods/methods.h"

namespace corral::api {

void Groups(Methods* m, Call call) {
  AnswerDurable(m, call.reply_to, jsonrpc::json{{"groups", m->queue->Groups()}});
}

}  // namespace corral::api
