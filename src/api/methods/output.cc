// output: a page of a cell's captured stdout or stderr, from an offset.
#include "api/methods/methods.h"

namespace corral::api {

void Output(Methods* m, Call call) {
  constexpr int64_t kMaxPage = 64 << 20;
  constexpr int64_t kDefaultPage = 1 << 20;
  jsonrpc::ParamReader p(call.request.params);
  auto id = p.String("id", true);
  auto stream = p.String("stream");
  auto offset = p.Integer("offset", 0, std::nullopt);
  auto max_bytes = p.Integer("max_bytes", 1, kMaxPage);
  if (!CheckParams(m, call, p)) return;
  auto err_stream = StderrParam(m, call, stream);
  if (!err_stream) return;
  auto out =
      m->sup->Output(CallerOf(call), *id, *err_stream, static_cast<uint64_t>(offset.value_or(0)),
                     static_cast<uint64_t>(max_bytes.value_or(kDefaultPage)));
  if (auto* refusal = std::get_if<Refusal>(&out)) {
    m->server->ReplyError(call.reply_to, ToRpc(*refusal));
    return;
  }
  const auto& c = std::get<Supervisor::OutputChunk>(out);
  m->server->Reply(call.reply_to, {{"data", c.data},
                                   {"offset", c.offset},
                                   {"next_offset", c.next_offset},
                                   {"total_bytes", c.total_bytes},
                                   {"truncated", c.truncated},
                                   {"done", c.done}});
}

}  // namespace corral::api
