// list_commands: the commands running now (run_command's and start_command's) and the started
// ones the Supervisor still keeps after their end, with how many run and how many may.
#include "api/mcp/tool.h"

namespace corral::mcp {
namespace {

json Describe(const McpOptions&) {
  return {{"name", "list_commands"},
          {"title", "List commands"},
          {"description",
           "Lists the commands running now and the started commands that ended recently."},
          {"inputSchema", {{"type", "object"}, {"properties", json::object()}}},
          {"outputSchema",
           {{"type", "object"},
            {"properties",
             {{"commands", {{"type", "array"}, {"items", SummarySchema()}}},
              {"running", {{"type", "integer"}}},
              {"max_concurrent", {{"type", "integer"}}}}},
            {"required", {"commands", "running", "max_concurrent"}}}},
          {"annotations", {{"readOnlyHint", true}}}};
}

// Takes no arguments; whatever comes is ignored.
void Call(McpServer& s, const ToolCall& call) {
  const Supervisor& sup = s.supervisor();
  json list = json::array();
  for (const auto& l : sup.List(Caller::System())) list.push_back(CommandSummary(l));
  s.ReplyToolResult(
      call.id,
      {{"commands", list}, {"running", sup.running()}, {"max_concurrent", sup.max_running()}});
}

}  // namespace

extern const Tool kListCommands = {"list_commands", Describe, Call, /*holds=*/false};

}  // namespace corral::mcp
