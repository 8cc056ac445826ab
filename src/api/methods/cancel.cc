// cancel: a queued task is cancelled at once; a running one once its cell's end is recorded.
#include "api/methods/methods.h"

namespace corral::api {

void Cancel(Methods* m, Call call) {
  auto id = OnlyIdParam(m, call);
  if (!id) return;
  m->queue->Cancel(CallerOf(call), *id,
                   [m, to = call.reply_to](auto r) { Answer(m, to, std::move(r)); });
}

}  // namespace corral::api
