// corral ps: the daemon's cells that are yours (all of them for root).
#include <cstdio>
#include <string>

#include "cli/client.h"
#include "cli/commands.h"

namespace corral::cli {

int Ps(int argc, char** argv) {
  std::string socket = TakeSocketFlag(&argc, argv);
  bool json = argc == 2 && std::string(argv[1]) == "--json";
  if (argc > 1 && !json) {
    std::puts(
        "usage: corral ps [--socket PATH] [--json]\n\nLists the daemon's cells: running, "
        "queued and recently finished.");
    return std::string(argv[1]) == "--help" ? 0 : kExitCorralError;
  }
  int code = 0;
  auto r = CallOnce("ps", socket, "list", jsonrpc::json::object(), &code);
  if (!r) return code;
  if (json) {
    std::printf("%s\n", r->dump().c_str());
    return 0;
  }
  std::printf("%-18s %-10s %-8s %-6s %9s  %s\n", "ID", "STATE", "PID", "UID", "AGE", "COMMAND");
  for (const auto& c : (*r)["cells"]) {
    std::string cmd;
    for (const auto& a : c["argv"]) cmd += (cmd.empty() ? "" : " ") + a.get<std::string>();
    std::string pid = c["pid"].is_null() ? "-" : std::to_string(c["pid"].get<int>());
    std::printf("%-18s %-10s %-8s %-6u %8.1fs  %s\n", c["id"].get<std::string>().c_str(),
                c["state"].get<std::string>().c_str(), pid.c_str(), c["uid"].get<unsigned>(),
                c["age_s"].get<double>(), cmd.c_str());
  }
  return 0;
}

}  // namespace corral::cli
