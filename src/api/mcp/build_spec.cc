// The arguments of run_command and start_command as a CellSpec, with the server's policy applied:
// the cwd resolved with realpath and kept inside --allow-cwd, only the passed-through variables
// of our environment, timeouts and output caps within the server's maxima, the server's grace,
// kill wait and isolation. stdin and stdout are never the server's own: they carry the protocol.
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "api/mcp/tool.h"

namespace corral {

using jsonrpc::json;
using mcp::Seconds;

namespace {

bool IsUnderDir(const std::string& path, const std::string& dir) {
  if (dir == "/") return true;
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         path[dir.size()] == '/');
}

}  // namespace

std::optional<std::string> McpServer::BuildSpec(const json& args, CellSpec* spec) {
  jsonrpc::ParamReader p(args, "arguments");
  auto command = p.String("command");
  auto argv = p.StringArray("argv");
  auto cwd = p.String("cwd");
  auto env = p.StringMap("env");
  auto stdin_data = p.String("stdin");
  auto timeout_s = p.Number("timeout_s", 0);
  auto max_output = p.Integer("max_output_bytes", 0);
  p.RejectUnknown({"command", "argv", "cwd", "env", "stdin", "timeout_s", "max_output_bytes"});
  if (!p.ok()) return p.error().message;

  if (command.has_value() == argv.has_value()) {
    return "give either `command` (a shell string) or `argv` (an array), exactly one of them";
  }
  if (command) {
    spec->argv = {"/bin/sh", "-c", *command};
  } else {
    if (argv->empty()) return "arguments.argv must hold at least the program";
    spec->argv = std::move(*argv);
  }

  // Working directory: canonical, an existing directory, and inside an allowed one.
  std::string dir;
  if (cwd) {
    if (cwd->empty()) return "arguments.cwd is empty";
    char resolved[PATH_MAX];
    if (realpath(cwd->c_str(), resolved) == nullptr) {
      return "cwd `" + *cwd + "`: " + std::strerror(errno);
    }
    struct stat st {};
    if (stat(resolved, &st) != 0 || !S_ISDIR(st.st_mode))
      return "cwd `" + *cwd + "` is not a directory";
    dir = resolved;
  } else if (!options_.allow_cwd.empty()) {
    dir = options_.allow_cwd.front();  // the first allowed directory is the default
  }
  if (!options_.allow_cwd.empty() && !dir.empty()) {
    bool allowed = false;
    for (const std::string& a : options_.allow_cwd) allowed = allowed || IsUnderDir(dir, a);
    if (!allowed) {
      std::string list;
      for (const std::string& a : options_.allow_cwd) list += (list.empty() ? "" : ", ") + a;
      return "cwd `" + dir + "` is not allowed by this server (allowed: " + list + ")";
    }
  }
  spec->cwd = dir;

  // Environment: only the passed-through variables of ours, then the caller's.
  spec->clear_env = !pass_all_env_;
  if (!pass_all_env_) spec->env = passed_env_;
  if (env) {
    for (auto& [k, v] : *env) {
      if (k.empty() || k.find('=') != std::string::npos) {
        return "arguments.env: `" + k + "` is not a valid variable name";
      }
      spec->env.emplace_back(k, v);
    }
  }

  if (stdin_data) {
    spec->stdin_mode = StdinMode::kBytes;
    spec->stdin_data = std::move(*stdin_data);
  } else {
    spec->stdin_mode = StdinMode::kNull;  // never ours: our stdin carries the protocol
  }
  spec->output = OutputMode::kCapture;  // never ours: our stdout carries the protocol

  if (timeout_s) {
    if (*timeout_s <= 0) return "arguments.timeout_s must be above 0";
    double max_s = Seconds(options_.max_timeout_ns);
    if (options_.max_timeout_ns > 0 && *timeout_s > max_s) {
      char msg[160];
      std::snprintf(msg, sizeof msg,
                    "arguments.timeout_s %g is above this server's maximum of %g s "
                    "(--max-timeout)",
                    *timeout_s, max_s);
      return std::string(msg);
    }
    if (*timeout_s > 1e9) return "arguments.timeout_s is too large";
    spec->timeout_ns = static_cast<int64_t>(std::llround(*timeout_s * kNsPerSec));
  } else {
    spec->timeout_ns = options_.default_timeout_ns;
  }
  if (max_output) {
    if (static_cast<uint64_t>(*max_output) > options_.max_output_bytes) {
      return "arguments.max_output_bytes " + std::to_string(*max_output) +
             " is above this server's maximum of " + std::to_string(options_.max_output_bytes) +
             " (--max-output)";
    }
    spec->max_output_bytes = static_cast<uint64_t>(*max_output);
  } else {
    spec->max_output_bytes = options_.max_output_bytes;
  }
  spec->grace_ns = options_.grace_ns;
  spec->kill_wait_ns = options_.kill_wait_ns;
  spec->isolation = options_.isolation;
  return std::nullopt;
}

}  // namespace corral
