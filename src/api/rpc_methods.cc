// The daemon's JSON-RPC methods (DESIGN.md, "Daemon protocol"), one handler each, mapping params
// onto the Supervisor. Identity comes from the socket's SO_PEERCRED, never from params: a caller's
// commands run with its own uid, gid and groups; only root may name another `user`.
#include "api/rpc_methods.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cmath>
#include <map>
#include <memory>
#include <set>

#include "cell/isolation.h"
#include "cell/result_json.h"
#include "sys/clock.h"
#include "sys/pidfd.h"

namespace corral::api {
namespace {

using jsonrpc::json;
using jsonrpc::ParamReader;
using jsonrpc::RpcError;

constexpr uint64_t kDefaultMaxOutput = 1 << 20;
constexpr uint64_t kMaxOutputCap = 64ull << 20;  // per stream: the daemon holds it in memory

RpcError ToRpc(const Refusal& r) {
  switch (r.kind) {
    case Refusal::kOverloaded:
      return RpcError::Overloaded(r.message);
    case Refusal::kNotAllowed:
      return RpcError::NotAllowed(r.message);
    case Refusal::kNotFound:
      return RpcError::InvalidParams(r.message);
    case Refusal::kBadInput:
      return RpcError::InvalidParams(r.message);
  }
  return RpcError::Internal(r.message);
}

Caller CallerOf(const Call& call) { return Caller{call.peer.uid, call.peer.gid, call.peer.pid}; }

// The identity a caller's commands run with: its own, with its groups from the user database.
// Returns an error sentence when the user is unknown or the caller may not use it.
std::optional<RpcError> ResolveIdentity(const Caller& caller,
                                        const std::optional<std::string>& user, CellSpec* spec) {
  bool daemon_is_root = geteuid() == 0;
  uid_t uid = caller.uid;
  gid_t gid = caller.gid;
  std::string name;
  char buf[16384];
  struct passwd pw, *found = nullptr;
  if (user) {
    if (getpwnam_r(user->c_str(), &pw, buf, sizeof buf, &found) != 0 || found == nullptr) {
      return RpcError::InvalidParams("params.user: no such user '" + *user + "'");
    }
    if (!caller.root() && found->pw_uid != caller.uid) {
      return RpcError::NotAllowed("only root may run commands as another user (asked for '" +
                                  *user + "')");
    }
    uid = found->pw_uid;
    gid = found->pw_gid;
    name = found->pw_name;
  }
  if (!daemon_is_root) {
    // A daemon that is not root cannot change identity: it serves its own user only.
    if (uid != geteuid()) {
      return RpcError::NotAllowed("this daemon runs as uid " + std::to_string(geteuid()) +
                                  " and can only run commands for that user");
    }
    return std::nullopt;
  }
  if (uid == 0 && !user) return std::nullopt;  // root for root: keep everything as it is
  // The caller's own name, for its groups (read only here: /etc/passwd is opened and parsed on
  // each lookup, twice a task when it was done for every caller).
  if (!user && getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found != nullptr) {
    name = found->pw_name;
  }
  spec->uid = uid;
  spec->gid = gid;
  spec->groups.clear();
  if (!name.empty()) {
    int n = 64;
    std::vector<gid_t> groups(static_cast<size_t>(n));
    if (getgrouplist(name.c_str(), gid, groups.data(), &n) < 0) {
      groups.resize(static_cast<size_t>(n));
      getgrouplist(name.c_str(), gid, groups.data(), &n);
    }
    groups.resize(static_cast<size_t>(std::max(n, 0)));
    for (gid_t g : groups) spec->groups.push_back(g);
  } else {
    spec->groups.push_back(gid);
  }
  return std::nullopt;
}

}  // namespace

std::optional<RpcError> ParseCellParams(const json& params, const Caller& caller, CellSpec* spec) {
  ParamReader p(params);
  p.RejectUnknown({"argv", "shell", "cwd", "umask", "env", "clear_env", "stdin", "timeout_s",
                   "grace_s", "kill_wait_s", "max_output_bytes", "limits", "user", "isolate"});
  auto argv = p.StringArray("argv");
  auto shell = p.String("shell");
  auto cwd = p.String("cwd");
  auto umask = p.Integer("umask", 0, 0777);  // the caller's: files the command makes get its modes
  auto env = p.StringMap("env");
  auto clear_env = p.Bool("clear_env");
  auto stdin_data = p.String("stdin");
  auto timeout = p.Number("timeout_s", 0.0, 1e9);
  auto grace = p.Number("grace_s", 0.0, 3600.0);
  auto kill_wait = p.Number("kill_wait_s", 0.0, 3600.0);
  auto max_output = p.Integer("max_output_bytes", 0, static_cast<int64_t>(kMaxOutputCap));
  ParamReader limits = p.Object("limits");
  std::optional<int64_t> mem, pids;
  std::optional<double> cpu;
  if (limits.has_value()) {
    limits.RejectUnknown({"memory_bytes", "pids", "cpu_s"});
    mem = limits.Integer("memory_bytes", 1, std::nullopt);
    pids = limits.Integer("pids", 1, std::nullopt);
    cpu = limits.Number("cpu_s", 0.001, 1e9);
  }
  auto user = p.String("user");
  if (!p.ok()) return p.error();
  if (const json* iso = p.Raw("isolate")) {
    if (auto err = ParseIsolationJson(*iso, &spec->isolation)) {
      return RpcError::InvalidParams("params.isolate: " + *err);
    }
  }
  if (argv && shell) return RpcError::InvalidParams("give params.argv or params.shell, not both");
  if (shell) {
    spec->argv = {"/bin/sh", "-c", *shell};
  } else if (argv && !argv->empty()) {
    spec->argv = *argv;
  } else {
    return RpcError::InvalidParams(
        "params.argv (a non-empty array of strings) or params.shell "
        "is required");
  }
  if (cwd) spec->cwd = *cwd;
  if (umask) spec->umask = static_cast<int>(*umask);
  if (env) {
    for (const auto& [k, v] : *env) {
      if (k.empty() || k.find('=') != std::string::npos) {
        return RpcError::InvalidParams("params.env: '" + k + "' is not a variable name");
      }
      spec->env.emplace_back(k, v);
    }
  }
  spec->clear_env = clear_env.value_or(false);
  if (stdin_data) {
    spec->stdin_mode = StdinMode::kBytes;
    spec->stdin_data = *stdin_data;
  } else {
    spec->stdin_mode = StdinMode::kNull;
  }
  spec->output = OutputMode::kCapture;
  if (timeout && *timeout > 0) spec->timeout_ns = static_cast<int64_t>(*timeout * 1e9);
  if (grace) spec->grace_ns = static_cast<int64_t>(*grace * 1e9);
  if (kill_wait) spec->kill_wait_ns = static_cast<int64_t>(*kill_wait * 1e9);
  spec->max_output_bytes = max_output ? static_cast<uint64_t>(*max_output) : kDefaultMaxOutput;
  if (mem) spec->limits.memory_bytes = static_cast<uint64_t>(*mem);
  if (pids) spec->limits.pids = static_cast<uint64_t>(*pids);
  if (cpu) spec->limits.cpu_s = *cpu;
  return ResolveIdentity(caller, user, spec);
}

json ListingToJson(const Supervisor::Listing& l) {
  json j = {
      {"id", l.id}, {"argv", l.argv}, {"state", l.state}, {"uid", l.owner}, {"age_s", l.age_s}};
  j["pid"] = l.pid > 0 ? json(l.pid) : json(nullptr);
  if (l.result) {
    j["exit_code"] = l.result->exit_code ? json(*l.result->exit_code) : json(nullptr);
    j["duration_s"] = l.result->duration_s;
  }
  return j;
}

void RegisterMethods(UnixServer* server, Supervisor* sup, EventLoop* loop, Extras extras) {
  auto runs = std::make_shared<std::map<ConnectionId, std::set<std::string>>>();
  server->Handle("run", [server, sup, runs](Call call) {
    CellSpec spec;
    Caller caller = CallerOf(call);
    if (auto err = ParseCellParams(call.request.params, caller, &spec)) {
      server->ReplyError(call.reply_to, *err);
      return;
    }
    ReplyTo to = call.reply_to;
    auto started = sup->Start(caller, std::move(spec), [server, to, runs](const CellResult& r) {
      (*runs)[to.conn].erase(r.id);
      server->Reply(to, ResultToJson(r));
    });
    if (auto* refusal = std::get_if<Refusal>(&started)) {
      server->ReplyError(to, ToRpc(*refusal));
      return;
    }
    // Remembered so that the client's disconnect cancels it (unless it already ended).
    const std::string& id = std::get<std::string>(started);
    if (auto l = sup->Find(Caller{}, id); l && !l->result) (*runs)[to.conn].insert(id);
  });

  server->Handle("start", [server, sup](Call call) {
    CellSpec spec;
    Caller caller = CallerOf(call);
    if (auto err = ParseCellParams(call.request.params, caller, &spec)) {
      server->ReplyError(call.reply_to, *err);
      return;
    }
    auto started = sup->Start(caller, std::move(spec));
    if (auto* refusal = std::get_if<Refusal>(&started)) {
      server->ReplyError(call.reply_to, ToRpc(*refusal));
      return;
    }
    server->Reply(call.reply_to, {{"id", std::get<std::string>(started)}});
  });

  server->Handle("wait", [server, sup, loop](Call call) {
    ParamReader p(call.request.params);
    auto id = p.String("id", true);
    auto timeout = p.Number("timeout_s", 0.0, 1e9);
    if (!p.ok()) {
      server->ReplyError(call.reply_to, p.error());
      return;
    }
    ReplyTo to = call.reply_to;
    // Answered once: with the result, or at timeout_s with {"id", "state": "running"}.
    auto timer = std::make_shared<EventLoop::Token>(0);
    uint64_t waiter = 0;
    auto refusal = sup->Wait(
        CallerOf(call), *id,
        [server, to, timer, loop](const CellResult& r) {
          if (*timer != 0) loop->CancelTimer(*timer);
          server->Reply(to, ResultToJson(r));
        },
        &waiter);
    if (refusal) {
      server->ReplyError(to, ToRpc(*refusal));
      return;
    }
    if (timeout && waiter != 0) {
      std::string cell_id = *id;
      *timer = loop->AddTimer(MonotonicNs() + static_cast<int64_t>(*timeout * 1e9),
                              [server, sup, to, cell_id, waiter, timer] {
                                *timer = 0;
                                sup->Unwait(cell_id, waiter);
                                server->Reply(to, {{"id", cell_id}, {"state", "running"}});
                              });
    }
  });

  server->Handle("output", [server, sup](Call call) {
    ParamReader p(call.request.params);
    auto id = p.String("id", true);
    auto stream = p.String("stream");
    auto offset = p.Integer("offset", 0, std::nullopt);
    auto max_bytes = p.Integer("max_bytes", 1, static_cast<int64_t>(kMaxOutputCap));
    if (!p.ok()) {
      server->ReplyError(call.reply_to, p.error());
      return;
    }
    if (stream && *stream != "stdout" && *stream != "stderr") {
      server->ReplyError(call.reply_to,
                         RpcError::InvalidParams("params.stream must be \"stdout\" or \"stderr\""));
      return;
    }
    auto out = sup->Output(CallerOf(call), *id, stream && *stream == "stderr",
                           static_cast<uint64_t>(offset.value_or(0)),
                           static_cast<uint64_t>(max_bytes.value_or(kDefaultMaxOutput)));
    if (auto* refusal = std::get_if<Refusal>(&out)) {
      server->ReplyError(call.reply_to, ToRpc(*refusal));
      return;
    }
    const auto& c = std::get<Supervisor::OutputChunk>(out);
    server->Reply(call.reply_to, {{"data", c.data},
                                  {"offset", c.offset},
                                  {"next_offset", c.next_offset},
                                  {"total_bytes", c.total_bytes},
                                  {"truncated", c.truncated},
                                  {"done", c.done}});
  });

  server->Handle("kill", [server, sup](Call call) {
    ParamReader p(call.request.params);
    auto id = p.String("id", true);
    auto sig_name = p.String("signal");
    if (!p.ok()) {
      server->ReplyError(call.reply_to, p.error());
      return;
    }
    int sig = 0;
    if (sig_name) {
      sig = SignalFromName(*sig_name);
      if (sig <= 0) {
        server->ReplyError(call.reply_to, RpcError::InvalidParams(
                                              "params.signal: unknown signal '" + *sig_name + "'"));
        return;
      }
    }
    if (auto refusal = sup->Kill(CallerOf(call), *id, "cancelled", sig)) {
      server->ReplyError(call.reply_to, ToRpc(*refusal));
      return;
    }
    server->Reply(call.reply_to, {{"id", *id}, {"ok", true}});
  });

  server->Handle("list", [server, sup](Call call) {
    json cells = json::array();
    for (const auto& l : sup->List(CallerOf(call))) cells.push_back(ListingToJson(l));
    server->Reply(call.reply_to, {{"cells", cells}});
  });

  server->Handle("stats", [server, sup](Call call) {
    json by_state = json::object();
    for (const auto& [state, n] : sup->finished_by_state()) by_state[state] = n;
    server->Reply(call.reply_to,
                  {{"running", sup->running()},
                   {"queued", sup->queued()},
                   {"finished", by_state},
                   {"reaped_total", sup->host()->reaped_total()},
                   {"leftover_killed_total", sup->host()->leftover_killed_total()},
                   {"stuck_processes", sup->host()->quarantined_processes()},
                   {"containment", ContainmentModeName(sup->host()->containment().mode)},
                   {"recovered_killed", sup->recovered_killed()},
                   {"connections", server->connection_count()}});
  });

  if (extras.scan) {
    auto scan = extras.scan;
    server->Handle("scan", [server, scan](Call call) { server->Reply(call.reply_to, scan()); });
  }

  // A client that disconnects during `run` cancels its cell. Cells from `start` are meant to
  // outlive their caller's connection and are left alone.
  server->OnClose([sup, runs](ConnectionId conn, CloseReason) {
    auto it = runs->find(conn);
    if (it == runs->end()) return;
    std::set<std::string> ids = std::move(it->second);
    runs->erase(it);
    Caller root;
    for (const std::string& id : ids) sup->Kill(root, id, "client_gone");
  });
}

}  // namespace corral::api
