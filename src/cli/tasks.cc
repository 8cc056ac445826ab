// corral tasks: the task queue's tasks that are yours (all of them for root), newest first.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "cli/client.h"
#include "cli/commands.h"
#include "cli/flags.h"

namespace corral::cli {
namespace {

constexpr const char* kHelp =
    R"(usage: corral tasks [--socket PATH] [--state S] [--group G] [--limit N] [--json]

Lists the durable queue's tasks, newest first (default: the last 1000), and the count of tasks
in each state. --state: queued, running, succeeded, failed, timed_out, crashed or cancelled.
--json prints the daemon's answer ({"tasks": [...], "counts": {...}}).
)";

}  // namespace

int Tasks(int argc, char** argv) {
  std::string socket = TakeSocketFlag(&argc, argv);
  jsonrpc::json params = jsonrpc::json::object();
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--json") {
      json = true;
    } else if (a == "-h" || a == "--help") {
      std::fputs(kHelp, stdout);
      return 0;
    } else if ((a == "--state" || a == "--group" || a == "--limit") && i + 1 < argc) {
      std::string v = argv[++i];
      if (a == "--limit") {
        auto n = ParseInteger(v, 1, INT64_MAX);
        if (!n) {
          std::fprintf(stderr, "corral tasks: --limit: '%s' is not a positive number\n", v.c_str());
          return kExitCorralError;
        }
        params["limit"] = *n;
      } else {
        params[a.substr(2)] = v;
      }
    } else {
      std::fprintf(stderr, "corral tasks: unexpected '%s'\n%s", a.c_str(), kHelp);
      return kExitCorralError;
    }
  }
  int code = 0;
  auto r = CallOnce("tasks", socket, "tasks", params, &code);
  if (!r) return code;
  if (json) {
    std::printf("%s\n", r->dump(-1, ' ', false, jsonrpc::json::error_handler_t::replace).c_str());
    return 0;
  }
  std::printf("%-10s %-10s %-12s %5s %8s %5s  %s\n", "ID", "STATE", "GROUP", "PRIO", "ATTEMPTS",
              "EXIT", "COMMAND");
  for (const auto& t : (*r)["tasks"]) {
    std::string cmd;
    for (const auto& a : t["argv"]) cmd += (cmd.empty() ? "" : " ") + a.get<std::string>();
    std::string exit = t["exit_code"].is_number() ? std::to_string(t["exit_code"].get<int>())
                       : t["signal"].is_string()  ? t["signal"].get<std::string>()
                                                  : "-";
    std::string attempts = std::to_string(t["attempts"].get<int>()) + "/" +
                           std::to_string(t["max_attempts"].get<int>());
    std::printf("%-10s %-10s %-12s %5lld %8s %5s  %s\n", t["id"].get<std::string>().c_str(),
                t["state"].get<std::string>().c_str(), t["group"].get<std::string>().c_str(),
                static_cast<long long>(t["priority"].get<int64_t>()), attempts.c_str(),
                exit.c_str(), cmd.c_str());
  }
  return 0;
}

}  // namespace corral::cli
