// corral start: start a command in the daemon and print its id at once; it outlives this call
// (and this connection). Then: corral wait ID, corral logs ID, corral kill ID.
#include <cstdio>

#include "cli/client.h"
#include "cli/commands.h"
#include "cli/flags.h"

namespace corral::cli {
namespace {

constexpr const char* kHelp = R"(usage: corral start [--socket PATH] [OPTIONS] -- CMD [ARG...]

Starts CMD in a cell of the daemon and prints its id. Options as `corral run`, and
like it the command gets your working directory, environment and umask.
Follow with `corral wait ID`, `corral logs ID [--follow]`, `corral kill ID`.
)";

}  // namespace

int Start(int argc, char** argv) {
  CellRequest req;
  int code = 0;
  if (!ParseCellRequest("start", kHelp, argc, argv, &req, &code)) return code;
  auto r = CallOnce("start", req.socket, "start", req.params, &code);
  if (!r) return code;
  std::printf("%s\n", (*r)["id"].get<std::string>().c_str());
  return 0;
}

}  // namespace corral::cli
