// The tool table: adding a tool adds a file and a line here.
#include "api/mcp/tool.h"

namespace corral::mcp {

extern const Tool kRunCommand, kStartCommand, kReadOutput, kWaitCommand, kKillCommand,
    kListCommands;

const std::vector<Tool>& Tools() {
  static const std::vector<Tool> tools = {kRunCommand,  kStartCommand, kReadOutput,
                                          kWaitCommand, kKillCommand,  kListCommands};
  return tools;
}

}  // namespace corral::mcp
