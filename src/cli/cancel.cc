// corral cancel ID: the `cancel` method of the task queue.
#include <cstdio>
#include <string>

#include "cli/client.h"
#include "cli/commands.h"

namespace corral::cli {

int Cancel(int argc, char** argv) {
  std::string socket = TakeSocketFlag(&argc, argv);
  bool json = argc == 3 && std::string(argv[2]) == "--json";
  if ((argc != 2 && !json) || std::string(argv[1]).rfind("-", 0) == 0) {
    bool help = argc == 2 && std::string(argv[1]) == "--help";
    std::fputs(
        "usage: corral cancel [--socket PATH] ID [--json]\n\nCancels task ID: a queued task never "
        "runs; a running one has its cell ended (TERM, grace,\nKILL). Answers once the task is "
        "recorded cancelled; prints its state.\n",
        help ? stdout : stderr);
    return help ? 0 : kExitCorralError;
  }
  int code = 0;
  auto r = CallOnce("cancel", socket, "cancel", {{"id", argv[1]}}, &code);
  if (!r) return code;
  if (json) {
    std::printf("%s\n", r->dump().c_str());
  } else {
    std::printf("%s %s\n", (*r)["id"].get<std::string>().c_str(),
                (*r)["state"].get<std::string>().c_str());
  }
  return 0;
}

}  // namespace corral::cli
