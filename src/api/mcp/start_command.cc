// start_command: starts a command in a cell and answers at once with its id (a summary: state,
// pid). The answer waits for the next loop turn, so that a spawn failure (reported from a
// zero-delay timer) is in it as failed_to_start. A request cancelled before its answer went out
// ends the cell: the client never learnt its id. The record stays after the end
// (Retention::kKeep) for read_output and wait_command, until the Supervisor's keep_finished newer
// ones have ended.
#include "api/mcp/tool.h"
#include "sys/clock.h"

namespace corral::mcp {
namespace {

json Describe(const McpOptions& o) {
  return {{"name", "start_command"},
          {"title", "Start a background command"},
          {"description",
           "Starts a command in a cell and returns its id at once. Follow it with read_output, "
           "wait_command and kill_command. It ends at its timeout or when the server stops. " +
               LimitsText(o)},
          {"inputSchema", CommandInputSchema()},
          {"outputSchema", SummarySchema()},
          {"annotations", {{"destructiveHint", true}, {"openWorldHint", true}}}};
}

void Call(McpServer& s, const ToolCall& call) {
  auto started = s.StartCommand(call, Retention::kKeep);
  if (!started) return;
  std::string id = *started;
  std::string key = s.Hold(call, id, /*kill_on_cancel=*/true);
  auto summary = [&s, id]() -> std::optional<json> {
    auto l = s.supervisor().Find(Caller::System(), id);
    if (!l) return std::nullopt;
    return CommandSummary(*l);
  };
  // The Supervisor runs waiters while the record is still there: the summary has the result.
  s.AnswerWhenDone(key, [summary](const CellResult&) { return summary(); });
  s.AnswerAt(key, MonotonicNs(), summary);
}

}  // namespace

extern const Tool kStartCommand = {"start_command", Describe, Call, /*holds=*/true};

}  // namespace corral::mcp
