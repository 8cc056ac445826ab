// cancel: a queued task is cancelled at once; a running one once its cell's end is recorded.
#include "api/methods/methods.h"

namespace corral::api {

void Cancel(Methods* m, Call call) { TaskIdAction(m, call, &TaskQueue::Cancel); }

}  // namespace corral::api
