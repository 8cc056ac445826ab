// run: a cell for the caller, answered with its result when it closes. A client that disconnects
// before that cancels it (connection_cells.h).
#include "api/methods/methods.h"
#include "cell/result_json.h"

namespace corral::api {

void Run(Methods* m, Call call) {
  Caller caller = CallerOf(call);
  auto spec = CellSpecOf(m, call, caller);
  if (!spec) return;
  ReplyTo to = call.reply_to;
  auto started = m->sup->Start(caller, std::move(*spec), [m, to](const CellResult& r) {
    m->run_cells.Unbind(to.conn, r.id);
    m->server->Reply(to, ResultToJson(r));
  });
  if (auto* refusal = std::get_if<Refusal>(&started)) {
    m->server->ReplyError(to, ToRpc(*refusal));
    return;
  }
  // Bound unless it already ended (a spawn that failed at once answered above).
  const std::string& id = std::get<std::string>(started);
  if (auto l = m->sup->Find(Caller::System(), id); l && !l->result) m->run_cells.Bind(to.conn, id);
}

}  // namespace corral::api
