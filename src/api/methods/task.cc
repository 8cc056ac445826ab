// task: one task with its attempts.
#include "api/methods/methods.h"

namespace corral::api {

void Task(Methods* m, Call call) {
  if (auto id = OnlyIdParam(m, call)) {
    AnswerDurable(m, call.reply_to, m->queue->Get(CallerOf(call), *id));
  }
}

}  // namespace corral::api
