// corral kill ID [--signal SIG]: end a cell's whole tree (TERM, grace, KILL), or send one signal
// to every process of it.
#include <cstdio>
#include <string>

#include "cli/client.h"
#include "cli/commands.h"

namespace corral::cli {
namespace {

constexpr const char* kUsage = R"(usage: corral kill [--socket PATH] [--signal SIG] ID

Ends cell ID's whole tree (SIGTERM, grace, SIGKILL), or with --signal sends SIG to every process.
)";

}  // namespace

int Kill(int argc, char** argv) {
  std::string socket = TakeSocketFlag(&argc, argv);
  std::string id, sig;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--signal" && i + 1 < argc)
      sig = argv[++i];
    else if (a.rfind("--signal=", 0) == 0)
      sig = a.substr(9);
    else if (a[0] != '-' && id.empty())
      id = a;
    else
      return Usage(kUsage, a == "--help");
  }
  if (!HaveCellId("kill", id)) return kExitCorralError;
  jsonrpc::json params = {{"id", id}};
  if (!sig.empty()) params["signal"] = sig;
  int code = 0;
  return CallOnce("kill", socket, "kill", params, &code) ? 0 : code;
}

}  // namespace corral::cli
