// task_output: a page of an attempt's output (attempt 0 or absent: the latest).
#include "api/methods/methods.h"

namespace corral::api {

void TaskOutput(Methods* m, Call call) {
  constexpr int64_t kMaxPage = 64 << 20;
  constexpr int64_t kDefaultPage = 1 << 20;
  jsonrpc::ParamReader p(call.request.params);
  p.RejectUnknown({"id", "attempt", "stream", "offset", "max_bytes"});
  auto id = p.String("id", true);
  auto attempt = p.Integer("attempt", 1, std::nullopt);
  auto stream = p.String("stream");
  auto offset = p.Integer("offset", 0, std::nullopt);
  auto max_bytes = p.Integer("max_bytes", 1, kMaxPage);
  if (!CheckParams(m, call, p)) return;
  auto err_stream = StderrParam(m, call, stream);
  if (!err_stream) return;
  AnswerDurable(m, call.reply_to,
                m->queue->Output(CallerOf(call), *id, attempt.value_or(0), *err_stream,
                                 static_cast<uint64_t>(offset.value_or(0)),
                                 static_cast<uint64_t>(max_bytes.value_or(kDefaultPage))));
}

}  // namespace corral::api
