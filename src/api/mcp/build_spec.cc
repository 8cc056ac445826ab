// The arguments of run_command and start_command (the protocol's cell params, cell/spec_json.h) as
// a CellSpec, with the server's policy applied:
// the cwd resolved with realpath and kept inside --allow-cwd, only the passed-through variables
// of our environment, timeouts and output caps within the server's maxima, the server's grace,
// kill wait and isolation. stdin and stdout are never the server's own: they carry the protocol.
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "api/mcp/tool.h"
#include "cell/spec_json.h"
#include "sys/clock.h"

namespace corral {

using jsonrpc::json;

namespace {

bool IsUnderDir(const std::string& path, const std::string& dir) {
  if (dir == "/") return true;
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         path[dir.size()] == '/');
}

}  // namespace

std::optional<std::string> McpServer::BuildSpec(const json& args, CellSpec* spec) {
  // The protocol's cell params (cell/spec_json.h), as MCP spells and narrows them; the maxima are
  // this server's policy, checked below with the flag that sets them.
  CellParamsSyntax syntax;
  syntax.prefix = "arguments";
  syntax.shell_key = "command";
  syntax.keys = {"command", "argv", "cwd", "env", "stdin", "timeout_s", "max_output_bytes"};
  syntax.max_output_cap = INT64_MAX;
  CellParams params;
  if (auto err = ParseCellParams(args, syntax, &params)) return err;
  CellSpec asked = std::move(params.spec);
  spec->argv = std::move(asked.argv);

  // Working directory: canonical, an existing directory, and inside an allowed one.
  std::string dir;
  if (!asked.cwd.empty()) {
    const std::string& cwd = asked.cwd;
    char resolved[PATH_MAX];
    if (realpath(cwd.c_str(), resolved) == nullptr) {
      return "cwd `" + cwd + "`: " + std::strerror(errno);
    }
    struct stat st {};
    if (stat(resolved, &st) != 0 || !S_ISDIR(st.st_mode)) {
      return "cwd `" + cwd + "` is not a directory";
    }
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
  spec->env.insert(spec->env.end(), asked.env.begin(), asked.env.end());

  // stdin and stdout are never ours: they carry the protocol (the codec's defaults).
  spec->stdin_mode = asked.stdin_mode;
  spec->stdin_data = std::move(asked.stdin_data);
  spec->output = OutputMode::kCapture;

  if (params.has_timeout) {
    if (asked.timeout_ns <= 0) return "arguments.timeout_s must be above 0";
    if (options_.max_timeout_ns > 0 && asked.timeout_ns > options_.max_timeout_ns) {
      char msg[160];
      std::snprintf(msg, sizeof msg,
                    "arguments.timeout_s %g is above this server's maximum of %g s "
                    "(--max-timeout)",
                    NsToSeconds(asked.timeout_ns), NsToSeconds(options_.max_timeout_ns));
      return std::string(msg);
    }
    spec->timeout_ns = asked.timeout_ns;
  } else {
    spec->timeout_ns = options_.default_timeout_ns;
  }
  if (params.has_max_output) {
    if (asked.max_output_bytes > options_.max_output_bytes) {
      return "arguments.max_output_bytes " + std::to_string(asked.max_output_bytes) +
             " is above this server's maximum of " + std::to_string(options_.max_output_bytes) +
             " (--max-output)";
    }
    spec->max_output_bytes = asked.max_output_bytes;
  } else {
    spec->max_output_bytes = options_.max_output_bytes;
  }
  spec->grace_ns = options_.grace_ns;
  spec->kill_wait_ns = options_.kill_wait_ns;
  spec->isolation = options_.isolation;
  return std::nullopt;
}

}  // namespace corral
