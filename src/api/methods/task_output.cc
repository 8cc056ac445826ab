// task_output: a page of an attempt's output (attempt 0 or absent: the latest).
#include "api/methods/methods.h"

namespace corral::api {

void TaskOutput(Methods* m, Call call) {
  jsonrpc::ParamReader p(call.request.params);
  p.RejectUnknown({"id", "attempt", "stream", "offset", "max_bytes"});
  auto attempt = p.Integer("attempt", 1, std::nullopt);
  auto page = ReadOutputPage(m, call, p);
  if (!page) return;
  AnswerDurable(m, call.reply_to,
                m->queue->Output(CallerOf(call), page->id, attempt.value_or(0), page->stderr_stream,
                                 page->offset, page->max_bytes));
}

}  // namespace corral::api
