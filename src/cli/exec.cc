// corral exec: like `corral run`, but the daemon is the cell's parent. Same flags and exit codes.
// Without --json the output is streamed: the client starts the cell, then alternates a short
// `wait` with `output` reads from its offsets; SIGINT/SIGTERM/SIGHUP are forwarded to the tree.
#include <signal.h>
#include <unistd.h>

#include <cstdio>

#include "cli/client.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "sys/signal_fd.h"

namespace corral::cli {
namespace {

constexpr const char* kHelp = R"(usage: corral exec [--socket PATH] [OPTIONS] -- CMD [ARG...]

Runs CMD in a cell of the daemon (`corral daemon`): the daemon is its parent and reaper, and it
runs as `corral run` would run it here: with your uid, gid and groups, in your working
directory, with your environment and umask (--cwd, --env and --clear-env change them as for
`corral run`). Options, output and exit status are those of `corral run` (see `corral run
--help`); --stdin FILE sends the file's bytes. Streams output as it comes (up to --max-output per
stream, default 1M); --json prints one result object instead. --socket (or $CORRAL_SOCKET) names
the daemon's socket.
)";

bool Drain(UnixClient* c, const std::string& id, const char* stream, uint64_t* offset, FILE* out) {
  auto r = c->Call("output", {{"id", id}, {"stream", stream}, {"offset", *offset}});
  if (!r.ok() || !r->ok()) return false;
  const auto& res = *r->result;
  std::string data = res.value("data", "");
  if (!data.empty()) {
    std::fwrite(data.data(), 1, data.size(), out);
    std::fflush(out);
  }
  *offset = res.value("next_offset", *offset);
  return true;
}

}  // namespace

int Exec(int argc, char** argv) {
  CellRequest req;
  int code = 0;
  if (!ParseCellRequest("exec", kHelp, argc, argv, &req, &code)) return code;
  const std::string& socket = req.socket;
  const jsonrpc::json& params = req.params;
  if (req.flags.json) {
    auto r = CallOnce("exec", socket, "run", params, &code);
    if (!r) return code;
    std::printf("%s\n", r->dump(-1, ' ', false, jsonrpc::json::error_handler_t::replace).c_str());
    return ExitCodeOf(*r);
  }

  sigset_t fwd = MakeSigset({SIGINT, SIGTERM, SIGHUP});
  (void)BlockSignals(fwd);
  auto sigfd = SignalFd::Create(fwd);
  auto client = UnixClient::Connect(socket);
  if (!client.ok()) {
    std::fprintf(stderr, "corral exec: %s\n", client.error().message().c_str());
    return kExitCorralError;
  }
  auto started = client->Call("start", params);
  if (!started.ok() || !started->ok()) {
    std::fprintf(
        stderr, "corral exec: %s\n",
        started.ok() ? started->error->message.c_str() : started.error().message().c_str());
    return kExitCorralError;
  }
  std::string id = (*started->result)["id"];
  uint64_t out_off = 0, err_off = 0;
  for (;;) {
    auto w = client->Call("wait", {{"id", id}, {"timeout_s", 0.05}});
    if (!w.ok() || !w->ok()) {
      std::fprintf(stderr, "corral exec: lost the daemon while waiting for %s\n", id.c_str());
      return kExitCorralError;
    }
    Drain(&client.value(), id, "stdout", &out_off, stdout);
    Drain(&client.value(), id, "stderr", &err_off, stderr);
    const auto& res = *w->result;
    if (res.value("state", "") != "running") {
      if (res.value("state", "") == "failed_to_start") {
        std::fprintf(stderr, "corral exec: %s\n", res.value("error", "").c_str());
      }
      return ExitCodeOf(res);
    }
    if (sigfd.ok()) {
      while (int sig = sigfd->Read().value_or(0)) {
        (void)client->Call("kill", {{"id", id}, {"signal", std::to_string(sig)}});
      }
    }
  }
}

}  // namespace corral::cli
