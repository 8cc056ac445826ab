// run_command: runs a command in a cell and answers with its result object once the whole tree
// is gone. The request is held meanwhile: progress notifications while it runs, and a cancelled
// request (notifications/cancelled, or the client's own timeout) ends the cell. Its record goes
// with the answer (Retention::kDropWhenDone): only start_command's results are kept to be read
// again.
#include "api/mcp/tool.h"
#include "cell/result_json.h"

namespace corral::mcp {
namespace {

json Describe(const McpOptions& o) {
  return {
      {"name", "run_command"},
      {"title", "Run a command"},
      {"description",
       "Runs a command in a cell (its whole process tree is contained, killed as a whole on "
       "timeout or cancellation, and reaped) and returns when the tree is gone: exit code or "
       "signal, stdout, stderr, duration, peak memory, CPU time, leftover processes. " +
           LimitsText(o) + " For commands longer than your tool-call timeout, use start_command."},
      {"inputSchema", CommandInputSchema()},
      {"outputSchema", ResultSchema()},
      {"annotations", {{"destructiveHint", true}, {"openWorldHint", true}}}};
}

void Call(McpServer& s, const ToolCall& call) {
  auto started = s.StartCommand(call, Retention::kDropWhenDone);
  if (!started) return;
  std::string id = *started;
  std::string key = s.Hold(call, id, /*kill_on_cancel=*/true);
  s.AnswerWhenDone(key, [](const CellResult& r) { return ResultToJson(r); });
  s.Progress(key);
}

}  // namespace

extern const Tool kRunCommand = {"run_command", Describe, Call, /*holds=*/true};

}  // namespace corral::mcp
