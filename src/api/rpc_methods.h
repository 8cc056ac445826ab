// The daemon's JSON-RPC methods: run, start, wait, output, kill, list, stats (and scan when the
// daemon scans the host). See docs/protocol.md for the wire format.
#pragma once

#include <functional>
#include <optional>

#include "api/jsonrpc.h"
#include "api/unix_server.h"
#include "supervisor/supervisor.h"

namespace corral::api {

struct Extras {
  std::function<jsonrpc::json()> scan;  // latest host scan report; null: no `scan` method
};

void RegisterMethods(UnixServer* server, Supervisor* sup, EventLoop* loop, Extras extras = {});

// params of `run`/`start` -> CellSpec (identity resolved from the caller), or the -32602/-32003
// error to answer.
std::optional<jsonrpc::RpcError> ParseCellParams(const jsonrpc::json& params, const Caller& caller,
                                                 CellSpec* spec);

}  // namespace corral::api
