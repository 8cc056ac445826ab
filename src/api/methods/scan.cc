// scan: the daemon's latest host scan (zombies, D state, fd and PID pressure, GPU).
#include "api/methods/methods.h"

namespace corral::api {

void Scan(Methods* m, Call call) { m->server->Reply(call.reply_to, m->scan()); }

}  // namespace corral::api
