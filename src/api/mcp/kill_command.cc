// kill_command: ends a command's whole tree (SIGTERM, grace, SIGKILL) and answers with its status
// once the tree is gone. The request is held meanwhile; cancelling it does not stop the kill.
#include "api/mcp/tool.h"

namespace corral::mcp {
namespace {

json Describe(const McpOptions&) {
  return {{"name", "kill_command"},
          {"title", "Kill a command"},
          {"description",
           "Ends a started command's whole process tree (SIGTERM, then SIGKILL after the grace "
           "period) and returns its result once the tree is gone."},
          {"inputSchema", IdInputSchema()},
          {"outputSchema", StatusSchema()},
          {"annotations", {{"destructiveHint", true}}}};
}

void Call(McpServer& s, const ToolCall& call) {
  jsonrpc::ParamReader p(call.args, "arguments");
  auto id = p.String("id", /*required=*/true);
  p.RejectUnknown({"id"});
  if (!p.ok()) return s.ReplyToolError(call.id, p.error().message);
  Supervisor& sup = s.supervisor();
  auto l = sup.Find(Caller::System(), *id);
  if (!l) return s.ReplyToolError(call.id, NoCommand(sup, *id));
  if (l->result) return s.ReplyToolResult(call.id, CommandStatus(*l));
  std::string key = s.Hold(call, *id, /*kill_on_cancel=*/false);
  s.AnswerWhenDone(key, [](const CellResult& r) { return CommandStatus(r); });
  (void)sup.Kill(Caller::System(), *id, "cancelled");
  s.Progress(key);
}

}  // namespace

extern const Tool kKillCommand = {"kill_command", Describe, Call, /*holds=*/true};

}  // namespace corral::mcp
