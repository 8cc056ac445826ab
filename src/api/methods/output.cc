// output: a page of a cell's captured stdout or stderr, from an offset.
#include "api/methods/methods.h"

namespace corral::api {

void Output(Methods* m, Call call) {
  jsonrpc::ParamReader p(call.request.params);
  auto page = ReadOutputPage(m, call, p);
  if (!page) return;
  auto out =
      m->sup->Output(CallerOf(call), page->id, page->stderr_stream, page->offset, page->max_bytes);
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
