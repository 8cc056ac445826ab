// list: the caller's cells (root: all), queued, running and kept finished ones.
#include "api/methods/methods.h"

namespace corral::api {

void List(Methods* m, Call call) {
  jsonrpc::json cells = jsonrpc::json::array();
  for (const auto& l : m->sup->List(CallerOf(call))) {
    jsonrpc::json j = {
        {"id", l.id}, {"argv", l.argv}, {"state", l.state}, {"uid", l.owner}, {"age_s", l.age_s}};
    j["pid"] = l.pid > 0 ? jsonrpc::json(l.pid) : jsonrpc::json(nullptr);
    if (l.result) {
      j["exit_code"] = l.result->exit_code ? jsonrpc::json(*l.result->exit_code) : nullptr;
      j["duration_s"] = l.result->duration_s;
    }
    cells.push_back(std::move(j));
  }
  m->server->Reply(call.reply_to, {{"cells", cells}});
}

}  // namespace corral::api
