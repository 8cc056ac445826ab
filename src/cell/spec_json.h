// The one codec between a CellSpec and its JSON form, the "cell params" of the protocol
// (docs/protocol.md): JSON-RPC `run`, `start` and `submit`, MCP's `run_command` and
// `start_command`, the task queue's stored specs (a task keeps the params it was submitted with and
// is rebuilt from them at every attempt) and the CLI clients, which send what their flags parsed.
//
// Parsing reads only what the params say, with the protocol's defaults; it knows nothing of who
// asks. Each front end then applies its own policy to the spec: the daemon the caller's identity
// (supervisor/cell_request.h), MCP its allowed directories, environment pass-through and default
// and maximum timeout (api/mcp_server.cc). Errors are sentences that name the field
// ("params.limits.pids must be >= 1"); JSON-RPC answers them as -32602, MCP as tool errors.
//
// Seconds become nanoseconds in one way only (sys/clock.h SecondsToNs, rounded).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cell/spec.h"

namespace corral {

// How a front end spells and bounds the params. The defaults are the daemon protocol's.
struct CellParamsSyntax {
  std::string prefix = "params";    // names fields in errors: "params.timeout_s"
  std::string shell_key = "shell";  // the one-string command for /bin/sh -c (MCP: "command")
  // The keys this front end takes (others are refused by name); empty: every key of the protocol.
  std::vector<std::string_view> keys;
  uint64_t max_output_cap = 64ull << 20;  // per stream: a daemon holds captured output in memory
};

// Every key of the protocol's cell params.
const std::vector<std::string_view>& AllCellParamKeys();

struct CellParams {
  CellSpec spec;                    // output captured, stdin null unless `stdin` was given
  std::optional<std::string> user;  // `user`: checked against the caller by the daemon
  bool has_timeout = false;         // timeout_s was given (MCP applies its default otherwise)
  bool has_max_output = false;      // max_output_bytes was given
};

// Fills *out from params (an object), or returns why not.
std::optional<std::string> ParseCellParams(const nlohmann::json& params,
                                           const CellParamsSyntax& syntax, CellParams* out);

// The inverse: params that parse back to `spec`'s command, cwd, umask, environment, stdin bytes,
// time bounds, output cap, limits and isolation. Identity (uid, gid, groups) is never written: a
// daemon takes it from the socket, not from params.
nlohmann::json CellParamsToJson(const CellSpec& spec);

}  // namespace corral
