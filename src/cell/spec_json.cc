#include "cell/spec_json.h"

#include "cell/isolation.h"
#include "sys/clock.h"
#include "sys/param_reader.h"

namespace corral {

const std::vector<std::string_view>& AllCellParamKeys() {
  static const std::vector<std::string_view> keys = {"argv",
                                                     "shell",
                                                     "cwd",
                                                     "umask",
                                                     "env",
                                                     "clear_env",
                                                     "stdin",
                                                     "timeout_s",
                                                     "grace_s",
                                                     "kill_wait_s",
                                                     "max_output_bytes",
                                                     "limits",
                                                     "user",
                                                     "isolate"};
  return keys;
}

std::optional<std::string> ParseCellParams(const nlohmann::json& params,
                                           const CellParamsSyntax& syntax, CellParams* out) {
  std::vector<std::string_view> known = syntax.keys;
  if (known.empty()) {
    known = AllCellParamKeys();
    for (auto& k : known) {
      if (k == "shell") k = syntax.shell_key;
    }
  }
  ParamReader p(params, syntax.prefix);
  p.RejectUnknown(known);
  auto argv = p.StringArray("argv");
  auto shell = p.String(syntax.shell_key);
  auto cwd = p.String("cwd");
  auto umask = p.Integer("umask", 0, 0777);  // the caller's: files the command makes get its modes
  auto env = p.StringMap("env");
  auto clear_env = p.Bool("clear_env");
  auto stdin_data = p.String("stdin");
  auto timeout = p.Number("timeout_s", 0.0, 1e9);
  auto grace = p.Number("grace_s", 0.0, 3600.0);
  auto kill_wait = p.Number("kill_wait_s", 0.0, 3600.0);
  auto max_output = p.Integer("max_output_bytes", 0, static_cast<int64_t>(syntax.max_output_cap));
  ParamReader limits = p.Object("limits");
  limits.RejectUnknown({"memory_bytes", "pids", "cpu_s"});
  auto mem = limits.Integer("memory_bytes", 1, std::nullopt);
  auto pids = limits.Integer("pids", 1, std::nullopt);
  auto cpu = limits.Number("cpu_s", 0.001, 1e9);
  auto user = p.String("user");
  if (!p.ok()) return p.error();

  CellSpec& spec = out->spec;
  if (const nlohmann::json* iso = p.Raw("isolate")) {
    if (auto err = ParseIsolationJson(*iso, &spec.isolation)) {
      return p.Field("isolate") + ": " + *err;
    }
  }
  if (argv && shell) {
    return "give " + p.Field("argv") + " or " + p.Field(syntax.shell_key) + ", not both";
  }
  if (shell) {
    spec.argv = {"/bin/sh", "-c", *shell};
  } else if (argv && !argv->empty()) {
    spec.argv = std::move(*argv);
  } else {
    return p.Field("argv") + " (a non-empty array of strings) or " + p.Field(syntax.shell_key) +
           " (a shell command) is required";
  }
  if (cwd) {
    if (cwd->empty()) return p.Field("cwd") + " is empty (leave it out for the default)";
    spec.cwd = std::move(*cwd);
  }
  if (umask) spec.umask = static_cast<int>(*umask);
  if (env) {
    for (auto& [k, v] : *env) {
      if (k.empty() || k.find('=') != std::string::npos) {
        return p.Field("env") + ": '" + k + "' is not a variable name";
      }
      spec.env.emplace_back(k, std::move(v));
    }
  }
  spec.clear_env = clear_env.value_or(false);
  if (stdin_data) {
    spec.stdin_mode = StdinMode::kBytes;
    spec.stdin_data = std::move(*stdin_data);
  } else {
    spec.stdin_mode = StdinMode::kNull;
  }
  spec.output = OutputMode::kCapture;
  out->has_timeout = timeout.has_value();
  if (timeout) spec.timeout_ns = SecondsToNs(*timeout);
  if (grace) spec.grace_ns = SecondsToNs(*grace);
  if (kill_wait) spec.kill_wait_ns = SecondsToNs(*kill_wait);
  out->has_max_output = max_output.has_value();
  if (max_output) spec.max_output_bytes = static_cast<uint64_t>(*max_output);
  if (mem) spec.limits.memory_bytes = static_cast<uint64_t>(*mem);
  if (pids) spec.limits.pids = static_cast<uint64_t>(*pids);
  if (cpu) spec.limits.cpu_s = *cpu;
  out->user = std::move(user);
  return std::nullopt;
}

nlohmann::json CellParamsToJson(const CellSpec& spec) {
  nlohmann::json p = {{"argv", spec.argv}};
  if (!spec.cwd.empty()) p["cwd"] = spec.cwd;
  if (spec.umask >= 0) p["umask"] = spec.umask;
  if (!spec.env.empty()) {
    nlohmann::json env = nlohmann::json::object();
    for (const auto& [k, v] : spec.env) env[k] = v;
    p["env"] = env;
  }
  if (spec.clear_env) p["clear_env"] = true;
  if (spec.stdin_mode == StdinMode::kBytes) p["stdin"] = spec.stdin_data;
  if (spec.timeout_ns > 0) p["timeout_s"] = NsToSeconds(spec.timeout_ns);
  p["grace_s"] = NsToSeconds(spec.grace_ns);
  p["kill_wait_s"] = NsToSeconds(spec.kill_wait_ns);
  p["max_output_bytes"] = spec.max_output_bytes;
  nlohmann::json limits = nlohmann::json::object();
  if (spec.limits.memory_bytes != 0) limits["memory_bytes"] = spec.limits.memory_bytes;
  if (spec.limits.pids != 0) limits["pids"] = spec.limits.pids;
  if (spec.limits.cpu_s > 0) limits["cpu_s"] = spec.limits.cpu_s;
  if (!limits.empty()) p["limits"] = limits;
  if (spec.isolation.enabled) p["isolate"] = IsolationToJson(spec.isolation);
  return p;
}

}  // namespace corral
