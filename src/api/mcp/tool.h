// The MCP tools of `corral mcp`, one file each (run_command.cc, start_command.cc, ...), registered
// in one table (tools.cc) that McpServer dispatches tools/call through and lists for tools/list,
// in the table's order. A tool answers at once (ReplyToolResult / ReplyToolError) or holds the
// request (McpServer::Hold) and answers it later; either way it reaches cells only through the
// Supervisor, as Caller::System(): every cell of this server is its own.
//
// Problems with a tool's arguments or with policy are tool results with isError (the model reads
// and fixes them); only protocol problems are JSON-RPC errors, and those are the server's.
#pragma once

#include <string>
#include <vector>

#include "api/jsonrpc.h"
#include "api/mcp_server.h"
#include "supervisor/supervisor.h"

namespace corral::mcp {

using jsonrpc::json;

// One tools/call request as a tool sees it.
struct ToolCall {
  json id;              // the request's id, for the answer
  std::string key;      // its JSON text: names it in notifications/cancelled and in Hold
  json progress_token;  // null: the caller asked for no progress
  const json& args;     // an object
};

struct Tool {
  const char* name;
  json (*describe)(const McpOptions& options);  // its tools/list entry
  void (*call)(McpServer& server, const ToolCall& call);
  // May hold the request: its id must not be one of a request still held.
  bool holds;
};

// Every tool, in the order tools/list gives them.
const std::vector<Tool>& Tools();

// ---- shared by the tools (common.cc) ----

// JSON Schemas: the result object of DESIGN.md, run/start_command's arguments, an `id` argument
// (plus `extra` properties), wait/kill_command's status, a command summary.
json ResultSchema();
json CommandInputSchema();
json IdInputSchema(const json& extra = json::object());
json StatusSchema();
json SummarySchema();
// "Default timeout 60 s; output kept up to 1048576 bytes per stream." for the descriptions.
std::string LimitsText(const McpOptions& o);

// start_command's and list_commands' view of a command.
json CommandSummary(const Supervisor::Listing& l);
// wait_command's and kill_command's structured content.
json CommandStatus(const Supervisor::Listing& l);
json CommandStatus(const CellResult& r);
// The tool error for an id that names no command (never given, or evicted).
std::string NoCommand(const Supervisor& sup, const std::string& id);

}  // namespace corral::mcp
