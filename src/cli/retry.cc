// corral retry ID: the `retry` method of the task queue.
#include <cstdio>
#include <string>

#include "cli/client.h"
#include "cli/commands.h"

namespace corral::cli {

int Retry(int argc, char** argv) {
  std::string socket = TakeSocketFlag(&argc, argv);
  bool json = argc == 3 && std::string(argv[2]) == "--json";
  if ((argc != 2 && !json) || std::string(argv[1]).rfind("-", 0) == 0) {
    bool help = argc == 2 && std::string(argv[1]) == "--help";
    std::fputs(
        "usage: corral retry [--socket PATH] ID [--json]\n\nRuns finished task ID again (whatever "
        "its outcome): back to the queue with one more attempt.\nPrints its state.\n",
        help ? stdout : stderr);
    return help ? 0 : kExitCorralError;
  }
  int code = 0;
  auto r = CallOnce("retry", socket, "retry", {{"id", argv[1]}}, &code);
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
