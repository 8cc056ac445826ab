// retry: a finished task goes back to the queue with one more attempt.
#include "api/methods/methods.h"

namespace corral::api {

void Retry(Methods* m, Call call) {
  auto id = OnlyIdParam(m, call);
  if (!id) return;
  m->queue->Retry(CallerOf(call), *id,
                  [m, to = call.reply_to](auto r) { Answer(m, to, std::move(r)); });
}

}  // namespace corral::api
