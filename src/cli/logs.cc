// corral logs ID [--stderr] [--follow]: a cell's captured output (kept up to its max_output).
#include <unistd.h>

#include <cstdio>
#include <string>

#include "cli/client.h"
#include "cli/commands.h"

namespace corral::cli {

int Logs(int argc, char** argv) {
  std::string socket = TakeSocketFlag(&argc, argv);
  std::string id;
  bool err = false, follow = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--stderr") err = true;
    else if (a == "--follow" || a == "-f") follow = true;
    else if (a[0] != '-' && id.empty()) id = a;
    else {
      std::fputs("usage: corral logs [--socket PATH] [--stderr] [--follow] ID\n\nPrints cell ID's "
                 "output (stdout, or stderr with --stderr); --follow keeps printing until it ends.\n",
                 a == "--help" ? stdout : stderr);
      return a == "--help" ? 0 : kExitCorralError;
    }
  }
  if (id.empty()) {
    std::fputs("corral logs: which cell? (corral logs ID; see `corral ps`)\n", stderr);
    return kExitCorralError;
  }
  auto client = UnixClient::Connect(socket);
  if (!client.ok()) {
    std::fprintf(stderr, "corral logs: %s\n", client.error().message().c_str());
    return kExitCorralError;
  }
  uint64_t offset = 0;
  for (;;) {
    auto r = client->Call("output", {{"id", id}, {"stream", err ? "stderr" : "stdout"},
                                     {"offset", offset}});
    if (!r.ok() || !r->ok()) {
      std::fprintf(stderr, "corral logs: %s\n",
                   r.ok() ? r->error->message.c_str() : r.error().message().c_str());
      return kExitCorralError;
    }
    const auto& res = *r->result;
    std::string data = res.value("data", "");
    std::fwrite(data.data(), 1, data.size(), stdout);
    std::fflush(stdout);
    offset = res.value("next_offset", offset);
    if (!follow || (res.value("done", false) && data.empty())) return 0;
    if (data.empty()) usleep(100000);
  }
}

}  // namespace corral::cli
