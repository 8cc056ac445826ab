// stats: the supervisor's counters and the server's connections.
#include "api/methods/methods.h"

namespace corral::api {

void Stats(Methods* m, Call call) {
  SupervisorStats s = m->sup->stats();
  jsonrpc::json by_state = jsonrpc::json::object();
  for (const auto& [state, n] : s.finished_by_state) by_state[state] = n;
  m->server->Reply(call.reply_to, {{"running", s.running},
                                   {"queued", s.queued},
                                   {"finished", by_state},
                                   {"reaped_total", s.reaped_total},
                                   {"leftover_killed_total", s.leftover_killed_total},
                                   {"stuck_processes", s.stuck_processes},
                                   {"containment", s.containment},
                                   {"recovered_killed", s.recovered_killed},
                                   {"connections", m->server->connection_count()}});
}

}  // namespace corral::api
