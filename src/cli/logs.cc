// corral logs ID [--stderr] [--follow]: a cell's captured output (kept up to its max_output).
#include <unistd.h>

#include <cstdio>
#include <optional>
#include <string>

#include "cli/client.h"
#include "cli/commands.h"
#include "cli/flags.h"

namespace corral::cli {
namespace {

constexpr const char* kUsage =
    "usage: corral logs [--socket PATH] [--stderr] [--follow] [--attempt N] ID\n\nPrints "
    "cell ID's output (stdout, or stderr with --stderr); --follow keeps printing until "
    "it ends.\nFor a task (t-N): its latest attempt, or attempt N; --follow goes on "
    "through retries until the task is finished.\n";

// One call to `method` (output, task_output) whose bytes are printed as they come; its result,
// or nullopt once the error has been said.
struct Chunk {
  jsonrpc::json result;
  bool empty = true;  // no bytes this time
};
std::optional<Chunk> PrintChunk(UnixClient* client, const char* method,
                                const jsonrpc::json& params) {
  auto r = client->Call(method, params);
  if (!r.ok() || !r->ok()) {
    std::fprintf(stderr, "corral logs: %s\n",
                 r.ok() ? r->error->message.c_str() : r.error().message().c_str());
    return std::nullopt;
  }
  Chunk c{std::move(*r->result)};
  std::string data = c.result.value("data", "");
  std::fwrite(data.data(), 1, data.size(), stdout);
  std::fflush(stdout);
  c.empty = data.empty();
  return c;
}

// A task's output: attempt N, or the latest one, following retries while the task is not done.
int TaskLogs(UnixClient* client, const std::string& id, bool err, bool follow, int64_t attempt) {
  uint64_t offset = 0;
  int64_t shown = 0;  // the attempt whose bytes are being printed
  for (;;) {
    jsonrpc::json params = {{"id", id}, {"stream", err ? "stderr" : "stdout"}, {"offset", offset}};
    if (attempt > 0)
      params["attempt"] = attempt;
    else if (shown > 0)
      params["attempt"] = shown;
    auto chunk = PrintChunk(client, "task_output", params);
    if (!chunk) return kExitCorralError;
    const auto& res = chunk->result;
    offset = res.value("next_offset", offset);
    shown = res.value("attempt", shown);
    bool done = res.value("done", false);
    if (!follow || (done && chunk->empty && (attempt > 0 || res.value("task_done", false)))) {
      return 0;
    }
    if (done && chunk->empty && attempt == 0) {
      // This attempt is over but the task is not: move on to a newer attempt once there is one.
      auto latest = client->Call("task_output", {{"id", id}, {"offset", 0}, {"max_bytes", 1}});
      if (latest.ok() && latest->ok() && (*latest->result).value("attempt", shown) > shown) {
        shown = (*latest->result).value("attempt", shown);
        offset = 0;
        std::fprintf(stderr, "corral logs: %s attempt %lld\n", id.c_str(),
                     static_cast<long long>(shown));
        continue;
      }
    }
    if (chunk->empty) usleep(100000);
  }
}

}  // namespace

int Logs(int argc, char** argv) {
  std::string socket = TakeSocketFlag(&argc, argv);
  std::string id;
  bool err = false, follow = false;
  int64_t attempt = 0;  // tasks: 0 = the latest attempt
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--stderr")
      err = true;
    else if (a == "--follow" || a == "-f")
      follow = true;
    else if (a == "--attempt" && i + 1 < argc) {
      auto n = ParseInteger(argv[++i], 1, INT64_MAX);
      if (!n) {
        std::fprintf(stderr, "corral logs: --attempt: '%s' is not an attempt number (1, 2, ...)\n",
                     argv[i]);
        return kExitCorralError;
      }
      attempt = *n;
    } else if (a[0] != '-' && id.empty())
      id = a;
    else
      return Usage(kUsage, a == "--help");
  }
  if (!HaveCellId("logs", id)) return kExitCorralError;
  auto client = UnixClient::Connect(socket);
  if (!client.ok()) {
    std::fprintf(stderr, "corral logs: %s\n", client.error().message().c_str());
    return kExitCorralError;
  }
  if (id.rfind("t-", 0) == 0) return TaskLogs(&client.value(), id, err, follow, attempt);
  const char* stream = err ? "stderr" : "stdout";
  uint64_t offset = 0;
  for (;;) {
    auto chunk =
        PrintChunk(&client.value(), "output", {{"id", id}, {"stream", stream}, {"offset", offset}});
    if (!chunk) return kExitCorralError;
    offset = chunk->result.value("next_offset", offset);
    if (!follow || (chunk->result.value("done", false) && chunk->empty)) return 0;
    if (chunk->empty) usleep(100000);
  }
}

}  // namespace corral::cli
