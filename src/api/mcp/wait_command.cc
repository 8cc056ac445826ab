// wait_command: waits up to timeout_s for a command to end and answers with its status: done and
// its result, or done: false when the time is up. The request is held meanwhile (progress
// notifications if asked for); cancelling it only stops the waiting.
#include "api/mcp/tool.h"
#include "sys/clock.h"

namespace corral::mcp {
namespace {

constexpr double kMaxWaitS = 3600;
constexpr double kDefaultWaitS = 30;

json Describe(const McpOptions&) {
  return {{"name", "wait_command"},
          {"title", "Wait for a command"},
          {"description",
           "Waits up to timeout_s seconds (default 30) for a started command to end. Returns "
           "done: true and its result, or done: false while it is still running."},
          {"inputSchema", IdInputSchema({{"timeout_s", {{"type", "number"}, {"minimum", 0}}}})},
          {"outputSchema", StatusSchema()},
          {"annotations", {{"readOnlyHint", true}}}};
}

void Call(McpServer& s, const ToolCall& call) {
  jsonrpc::ParamReader p(call.args, "arguments");
  auto id = p.String("id", /*required=*/true);
  auto timeout_s = p.Number("timeout_s", 0, kMaxWaitS);
  p.RejectUnknown({"id", "timeout_s"});
  if (!p.ok()) return s.ReplyToolError(call.id, p.error().message);
  Supervisor& sup = s.supervisor();
  auto l = sup.Find(Caller::System(), *id);
  if (!l) return s.ReplyToolError(call.id, NoCommand(sup, *id));
  double wait = timeout_s.value_or(kDefaultWaitS);
  if (l->result || wait == 0) return s.ReplyToolResult(call.id, CommandStatus(*l));
  std::string key = s.Hold(call, *id, /*kill_on_cancel=*/false);
  s.AnswerWhenDone(key, [](const CellResult& r) { return CommandStatus(r); });
  s.AnswerAt(key, MonotonicNs() + static_cast<int64_t>(wait * kNsPerSec),
             [&sup, cid = *id]() -> std::optional<json> {
               auto now = sup.Find(Caller::System(), cid);
               if (!now) return std::nullopt;
               return CommandStatus(*now);
             });
  s.Progress(key);
}

}  // namespace

extern const Tool kWaitCommand = {"wait_command", Describe, Call, /*holds=*/true};

}  // namespace corral::mcp
