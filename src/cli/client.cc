#include "cli/client.h"

#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "api/socket_path.h"
#include "cell/spec_json.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "sys/fd.h"

namespace corral::cli {

std::string TakeSocketFlag(int* argc, char** argv) {
  std::string path;
  int out = 0;
  for (int i = 0; i < *argc; ++i) {
    if (std::strcmp(argv[i], "--") == 0) {  // the command's own arguments stay untouched
      for (; i < *argc; ++i) argv[out++] = argv[i];
      break;
    }
    if (std::strcmp(argv[i], "--socket") == 0 && i + 1 < *argc) {
      path = argv[++i];
    } else if (std::strncmp(argv[i], "--socket=", 9) == 0) {
      path = argv[i] + 9;
    } else {
      argv[out++] = argv[i];
    }
  }
  *argc = out;
  if (path.empty()) {
    const char* env = getenv("CORRAL_SOCKET");
    path = env != nullptr && env[0] != '\0' ? env : DefaultSocketPath();
  }
  return path;
}

std::optional<jsonrpc::json> CallOnce(const char* verb, const std::string& socket,
                                      const std::string& method, const jsonrpc::json& params,
                                      int* exit_code) {
  *exit_code = kExitCorralError;
  auto client = UnixClient::Connect(socket);
  if (!client.ok()) {
    std::fprintf(stderr, "corral %s: %s\n", verb, client.error().message().c_str());
    return std::nullopt;
  }
  auto r = client->Call(method, params);
  if (!r.ok()) {
    std::fprintf(stderr, "corral %s: %s\n", verb, r.error().message().c_str());
    return std::nullopt;
  }
  if (r->error) {
    std::fprintf(stderr, "corral %s: %s (%d)\n", verb, r->error->message.c_str(), r->error->code);
    return std::nullopt;
  }
  *exit_code = 0;
  return *r->result;
}

namespace {

std::string CurrentDirectory() {
  char buf[PATH_MAX];
  return ::getcwd(buf, sizeof buf) != nullptr ? std::string(buf) : std::string();
}

}  // namespace

namespace {

jsonrpc::json SpecToParams(const CellSpec& spec) {
  jsonrpc::json p = CellParamsToJson(spec);
  // `exec` is `run` with the daemon as parent: the command gets what `corral run` would give it
  // here -- this working directory (a relative --cwd is resolved against it), this environment
  // and this umask -- not the daemon's.
  std::string here = CurrentDirectory();
  if (spec.cwd.empty()) {
    if (!here.empty()) p["cwd"] = here;
  } else {
    p["cwd"] = spec.cwd[0] == '/' || here.empty() ? spec.cwd : here + "/" + spec.cwd;
  }
  mode_t mask = ::umask(0);  // read and put back at once: the CLI is one thread
  ::umask(mask);
  p["umask"] = static_cast<int>(mask);
  jsonrpc::json env = jsonrpc::json::object();
  if (!spec.clear_env) {
    for (char** e = environ; *e != nullptr; ++e) {
      const char* eq = std::strchr(*e, '=');
      if (eq == nullptr || eq == *e) continue;
      env[std::string(*e, static_cast<size_t>(eq - *e))] = std::string(eq + 1);
    }
  }
  for (const auto& [k, v] : spec.env) env[k] = v;
  p["env"] = env;
  p["clear_env"] = true;
  return p;
}

}  // namespace

bool ParseCellRequest(const char* verb, const char* help, int argc, char** argv, CellRequest* req,
                      int* exit_code) {
  *exit_code = kExitCorralError;
  req->socket = TakeSocketFlag(&argc, argv);
  CellFlags& flags = req->flags;
  if (auto err = ParseCellFlags(argc, argv, /*allow_containment=*/false, &flags)) {
    std::fprintf(stderr, "corral %s: %s\n(see `corral %s --help`)\n", verb, err->c_str(), verb);
    return false;
  }
  if (flags.help) {
    std::fputs(help, stdout);
    *exit_code = 0;
    return false;
  }
  req->params = SpecToParams(flags.spec);
  if (flags.spec.stdin_mode == StdinMode::kFile) {
    auto data = ReadSmallFile(flags.spec.stdin_data, 64 << 20);
    if (!data.ok()) {
      std::fprintf(stderr, "corral %s: --stdin: %s\n", verb, data.error().message().c_str());
      return false;
    }
    req->params["stdin"] = data.value();
  }
  return true;
}

bool HaveCellId(const char* verb, const std::string& id) {
  if (!id.empty()) return true;
  std::fprintf(stderr, "corral %s: which cell? (corral %s ID; see `corral ps`)\n", verb, verb);
  return false;
}

int Usage(const char* text, bool asked) {
  std::fputs(text, asked ? stdout : stderr);
  return asked ? 0 : kExitCorralError;
}

int TaskIdCommand(const char* verb, const char* help, int argc, char** argv) {
  std::string socket = TakeSocketFlag(&argc, argv);
  bool json = argc == 3 && std::string(argv[2]) == "--json";
  if ((argc != 2 && !json) || std::string(argv[1]).rfind("-", 0) == 0) {
    return Usage(help, argc == 2 && std::string(argv[1]) == "--help");
  }
  int code = 0;
  auto r = CallOnce(verb, socket, verb, {{"id", argv[1]}}, &code);
  if (!r) return code;
  if (json) {
    std::printf("%s\n", r->dump().c_str());
  } else {
    std::printf("%s %s\n", (*r)["id"].get<std::string>().c_str(),
                (*r)["state"].get<std::string>().c_str());
  }
  return 0;
}

int ExitCodeOf(const jsonrpc::json& r) {
  std::string state = r.value("state", "");
  if (state == "timed_out") return 124;
  if (r.contains("exit_code") && r["exit_code"].is_number_integer())
    return r["exit_code"].get<int>();
  if (state == "failed_to_start") return kExitCorralError;
  if (r.contains("signal") && r["signal"].is_string()) {
    int sig = 0;
    std::string name = r["signal"].get<std::string>();
    for (int s = 1; s < 65; ++s) {
      const char* a = sigabbrev_np(s);
      if (a != nullptr && name == std::string("SIG") + a) sig = s;
    }
    if (sig > 0) return 128 + sig;
  }
  return kExitCorralError;
}

}  // namespace corral::cli
