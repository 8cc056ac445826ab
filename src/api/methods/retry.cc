// retry: a finished task goes back to the queue with one more attempt.
#include "api/methods/methods.h"

namespace corral::api {

void Retry(Methods* m, Call call) { TaskIdAction(m, call, &TaskQueue::Retry); }

}  // namespace corral::api
