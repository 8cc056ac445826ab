// corral group set G --parallel N | corral group list: per-group concurrency limits of the task
// queue, kept in the queue's database.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "cli/client.h"
#include "cli/commands.h"
#include "cli/flags.h"

namespace corral::cli {
namespace {

constexpr const char* kHelp = R"(usage: corral group [--socket PATH] set G --parallel N
       corral group [--socket PATH] list [--json]

set: at most N tasks of group G run at once (0: no limit). Kept in the queue's database, so it
survives restarts; applies to every user's tasks (root or the daemon's own user only).
list: each group's limit, running and ready tasks.
)";

}  // namespace

int Group(int argc, char** argv) {
  std::string socket = TakeSocketFlag(&argc, argv);
  std::string verb = argc > 1 ? argv[1] : "";
  int code = 0;
  if (verb == "list") {
    bool json = argc == 3 && std::string(argv[2]) == "--json";
    auto r = CallOnce("group", socket, "groups", jsonrpc::json::object(), &code);
    if (!r) return code;
    if (json) {
      std::printf("%s\n", r->dump().c_str());
      return 0;
    }
    std::printf("%-16s %8s %8s %8s\n", "GROUP", "PARALLEL", "RUNNING", "READY");
    for (const auto& g : (*r)["groups"]) {
      std::printf("%-16s %8lld %8lld %8lld\n", g["group"].get<std::string>().c_str(),
                  static_cast<long long>(g["parallel"].get<int64_t>()),
                  static_cast<long long>(g["running"].get<int64_t>()),
                  static_cast<long long>(g["ready"].get<int64_t>()));
    }
    return 0;
  }
  if (verb == "set" && argc == 5 && std::string(argv[3]) == "--parallel") {
    std::string v = argv[4];
    auto n = ParseInteger(v, 0, INT64_MAX);  // how far it may go is the daemon's to say
    if (!n) {
      std::fprintf(stderr, "corral group: --parallel: '%s' is not a number (0: no limit)\n",
                   v.c_str());
      return kExitCorralError;
    }
    auto r = CallOnce("group", socket, "group_set", {{"group", argv[2]}, {"parallel", *n}}, &code);
    if (!r) return code;
    std::printf("%s parallel %lld\n", (*r)["group"].get<std::string>().c_str(),
                static_cast<long long>(*n));
    return 0;
  }
  bool help = verb == "--help" || verb == "-h";
  std::fputs(kHelp, help ? stdout : stderr);
  return help ? 0 : kExitCorralError;
}

}  // namespace corral::cli
