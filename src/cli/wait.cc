// corral wait ID: block until a started cell ends; print its result object; exit with its code.
#include <cstdio>
#include <string>

#include "cli/client.h"
#include "cli/commands.h"

namespace corral::cli {

int Wait(int argc, char** argv) {
  std::string socket = TakeSocketFlag(&argc, argv);
  if (argc != 2 || std::string(argv[1]).rfind("-", 0) == 0) {
    std::fprintf(argc == 2 ? stdout : stderr,
                 "usage: corral wait [--socket PATH] ID\n\nWaits for cell or task (t-N) ID to end, "
                 "prints its "
                 "result object and exits with its exit code (124 timed out, 128+N signal N).\n");
    return argc == 2 ? 0 : kExitCorralError;
  }
  int code = 0;
  // Task ids (t-N) wait for the task's last attempt; anything else is a cell id.
  bool task = std::string(argv[1]).rfind("t-", 0) == 0;
  auto r = CallOnce("wait", socket, task ? "task_wait" : "wait", {{"id", argv[1]}}, &code);
  if (!r) return code;
  std::printf("%s\n", r->dump(-1, ' ', false, jsonrpc::json::error_handler_t::replace).c_str());
  return ExitCodeOf(*r);
}

}  // namespace corral::cli
