// corral submit: queue a task in the daemon's durable task queue and print its id at once. The
// queue's own options are taken out first; the rest are `corral run`'s cell options.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cli/client.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "sys/clock.h"
#include "sys/fd.h"

namespace corral::cli {
namespace {

constexpr const char* kHelp =
    R"(usage: corral submit [--socket PATH] [QUEUE OPTIONS] [CELL OPTIONS] -- CMD [ARG...]

Queues CMD as a task of the daemon's durable task queue and prints its id (t-N) once the task is
committed to disk. The daemon runs it in a cell when its group has room, as `corral run` would
run it here: with your uid and gid, working directory, environment (as at submit) and umask.

Queue options:
  --retries N      run again after failed / timed_out / crashed, up to N more times (default 0)
  --backoff DUR    wait before a retry: DUR, doubled each time, at most 1h (default 1s)
  --group G        concurrency group (default "default"; see `corral group set G --parallel N`)
  --priority P     higher runs first (default 0); equal priorities run in submission order
  --key K          idempotent submit: a second submit with the same key returns the same task
  --json           print the answer object ({"id", "existing"}) instead of the id

Cell options are those of `corral run` (--timeout DUR, --grace, --memory, --pids, --cpu,
--max-output, --cwd, --env K=V, --clear-env, --stdin FILE, --shell 'STRING', --isolate ...).
Then: corral wait t-N, corral logs t-N, corral tasks, corral cancel t-N, corral retry t-N.
)";

int Fail(const std::string& what) {
  std::fprintf(stderr, "corral submit: %s\n(see `corral submit --help`)\n", what.c_str());
  return kExitCorralError;
}

}  // namespace

int Submit(int argc, char** argv) {
  jsonrpc::json queue = jsonrpc::json::object();
  bool json_out = false;
  // Take the queue's options out of argv (up to `--`), leaving the cell options in place.
  std::vector<char*> rest = {argv[0]};
  int i = 1;
  for (; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--") break;
    const OptionArg opt = SplitOption(a);
    const std::string& name = opt.name;
    bool ours = name == "--retries" || name == "--backoff" || name == "--group" ||
                name == "--priority" || name == "--key";
    if (name == "--json") {
      json_out = true;
      continue;
    }
    if (!ours) {
      rest.push_back(argv[i]);
      continue;
    }
    std::string value;
    if (opt.inline_value) {
      value = *opt.inline_value;
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return Fail(name + " needs a value");
    }
    if (name == "--retries" || name == "--priority") {
      bool retries = name == "--retries";
      // Well-formed here; how far each may go is the daemon's to say.
      auto n = ParseInteger(value, retries ? 0 : INT64_MIN, INT64_MAX);
      if (!n) {
        return Fail(name + ": '" + value + "' is not " +
                    (retries ? "a number of retries" : "an integer priority"));
      }
      queue[name.substr(2)] = *n;
    } else if (name == "--backoff") {
      auto d = ParseDurationNs(value);
      if (!d)
        return Fail("--backoff: '" + value +
                    "' is not a duration (use 500ms, 30s, 2m, 1h "
                    "or seconds)");
      queue["backoff_s"] = NsToSeconds(*d);
    } else {
      queue[name.substr(2)] = value;
    }
  }
  for (; i < argc; ++i) rest.push_back(argv[i]);
  // --socket and the cell options stayed in `rest`.
  CellRequest req;
  int code = 0;
  if (!ParseCellRequest("submit", kHelp, static_cast<int>(rest.size()), rest.data(), &req, &code)) {
    return code;
  }
  req.params.update(queue);
  auto r = CallOnce("submit", req.socket, "submit", req.params, &code);
  if (!r) return code;
  if (json_out || req.flags.json) {
    std::printf("%s\n", r->dump().c_str());
  } else {
    std::printf("%s\n", (*r)["id"].get<std::string>().c_str());
  }
  return 0;
}

}  // namespace corral::cli
