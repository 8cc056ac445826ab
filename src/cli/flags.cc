#include "cli/flags.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "cell/isolation.h"

namespace corral::cli {

std::optional<int64_t> ParseDurationNs(const std::string& s) {
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s.c_str(), &end);
  if (errno != 0 || end == s.c_str() || v < 0 || !std::isfinite(v)) return std::nullopt;
  std::string unit(end);
  double scale;
  if (unit.empty() || unit == "s")
    scale = 1e9;
  else if (unit == "ms")
    scale = 1e6;
  else if (unit == "m")
    scale = 60e9;
  else if (unit == "h")
    scale = 3600e9;
  else if (unit == "d")
    scale = 86400e9;
  else
    return std::nullopt;
  double ns = v * scale;
  if (ns > 9e18) return std::nullopt;
  return static_cast<int64_t>(ns);
}

std::optional<int64_t> ParseInteger(const std::string& s, int64_t min, int64_t max) {
  if (s.empty() || std::isspace(static_cast<unsigned char>(s[0]))) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || v < min || v > max) return std::nullopt;
  return v;
}

std::optional<double> ParseNonNegative(const std::string& s) {
  if (s.empty() || std::isspace(static_cast<unsigned char>(s[0]))) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s.c_str(), &end);
  if (errno != 0 || *end != '\0' || !std::isfinite(v) || v < 0) return std::nullopt;
  return v;
}

std::optional<uint64_t> ParseBytes(const std::string& s) {
  // strtoull skips leading space and then wraps a '-' ("  -5" is 2^64-5): refuse both.
  if (s.empty() || s[0] == '-' || std::isspace(static_cast<unsigned char>(s[0]))) {
    return std::nullopt;
  }
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (errno != 0 || end == s.c_str()) return std::nullopt;
  std::string unit(end);
  uint64_t scale;
  if (unit.empty() || unit == "B")
    scale = 1;
  else if (unit == "K" || unit == "k" || unit == "KiB")
    scale = 1ULL << 10;
  else if (unit == "M" || unit == "MiB")
    scale = 1ULL << 20;
  else if (unit == "G" || unit == "GiB")
    scale = 1ULL << 30;
  else
    return std::nullopt;
  if (v > UINT64_MAX / scale) return std::nullopt;
  return static_cast<uint64_t>(v) * scale;
}

OptionArg SplitOption(const std::string& arg) {
  size_t eq = arg.find('=');
  if (eq == std::string::npos || arg.rfind("--", 0) != 0) return {arg, std::nullopt};
  return {arg.substr(0, eq), arg.substr(eq + 1)};
}

std::optional<std::string> ParseCellFlags(int argc, char** argv, bool allow_containment,
                                          CellFlags* out) {
  CellSpec& spec = out->spec;
  std::string shell;
  // Isolation flags are collected first and applied over the profile after the loop, so that
  // their order on the command line does not matter.
  bool isolate = false, no_seccomp = false, no_landlock = false;
  std::string profile, net;
  std::vector<std::string> rw, ro, hide;
  int i = 1;
  for (; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') break;  // the command starts here
    const OptionArg opt = SplitOption(arg);
    const std::string& name = opt.name;
    auto need = [&](std::string* v) -> std::optional<std::string> {
      if (opt.inline_value) {
        *v = *opt.inline_value;
        return std::nullopt;
      }
      if (i + 1 >= argc) return name + " needs a value";
      *v = argv[++i];
      return std::nullopt;
    };
    // The value read by `parse` into *dst, or "NAME: 'VALUE' is not WHAT".
    auto parsed = [&](auto* dst, auto parse, const char* what) -> std::optional<std::string> {
      std::string v;
      if (auto e = need(&v)) return e;
      auto p = parse(v);
      if (!p) return name + ": '" + v + "' is not " + what;
      *dst = static_cast<std::remove_pointer_t<decltype(dst)>>(*p);
      return std::nullopt;
    };
    auto duration = [&](int64_t* dst) {
      return parsed(dst, ParseDurationNs, "a duration (use 500ms, 30s, 2m, 1h or seconds)");
    };
    auto bytes = [&](uint64_t* dst) {
      return parsed(dst, ParseBytes, "a size (use bytes or K, M, G suffixes)");
    };
    std::optional<std::string> err;
    if (name == "-h" || name == "--help") {
      out->help = true;
      return std::nullopt;
    } else if (name == "--timeout") {
      err = duration(&spec.timeout_ns);
    } else if (name == "--grace") {
      err = duration(&spec.grace_ns);
    } else if (name == "--kill-wait") {
      err = duration(&spec.kill_wait_ns);
    } else if (name == "--memory") {
      err = bytes(&spec.limits.memory_bytes);
      if (!err && spec.limits.memory_bytes == 0) err = "--memory must be more than 0";
    } else if (name == "--max-output") {
      err = bytes(&spec.max_output_bytes);
    } else if (name == "--pids") {
      auto pids = [](const std::string& v) {
        return ParseInteger(v, 1, 4194304);
      };  // PID_MAX_LIMIT
      err = parsed(&spec.limits.pids, pids, "a number of processes from 1 to 4194304");
    } else if (name == "--cpu") {
      int64_t ns = 0;
      err = duration(&ns);
      spec.limits.cpu_s = static_cast<double>(ns) / 1e9;
      if (!err && ns == 0) err = "--cpu must be more than 0";
    } else if (name == "--cwd") {
      err = need(&spec.cwd);
    } else if (name == "--env") {
      std::string v;
      err = need(&v);
      if (!err) {
        size_t eq = v.find('=');
        if (eq == std::string::npos || eq == 0) {
          err = "--env: '" + v + "' is not KEY=VALUE";
        } else {
          spec.env.emplace_back(v.substr(0, eq), v.substr(eq + 1));
        }
      }
    } else if (name == "--clear-env") {
      spec.clear_env = true;
    } else if (name == "--stdin") {
      err = need(&spec.stdin_data);
      spec.stdin_mode = StdinMode::kFile;
    } else if (name == "--shell") {
      err = need(&shell);
    } else if (name == "--json") {
      out->json = true;
    } else if (name == "--isolate") {
      isolate = true;
    } else if (name == "--profile") {
      err = need(&profile);
    } else if (name == "--net") {
      err = need(&net);
      if (!err && net != "none" && net != "host") err = "--net: '" + net + "' is not none or host";
    } else if (name == "--rw" || name == "--ro" || name == "--hide") {
      std::string v;
      err = need(&v);
      if (!err && v.empty()) err = name + " needs a path";
      (name == "--rw" ? rw : name == "--ro" ? ro : hide).push_back(v);
    } else if (name == "--no-seccomp") {
      no_seccomp = true;
    } else if (name == "--no-landlock") {
      no_landlock = true;
    } else if (name == "--containment" && allow_containment) {
      err = need(&out->containment);
    } else if (name == "--socket" && !allow_containment) {
      err = need(&out->socket);
    } else {
      err = "unknown option " + name;
    }
    if (err) return err;
  }
  if (!profile.empty()) {
    auto p = LoadProfile(profile);
    if (!p.ok()) return "--profile: " + p.error().message();
    spec.isolation = std::move(p).value();
  }
  // Any isolation flag turns isolation on: asking for a part is asking for isolation.
  if (isolate || !net.empty() || !rw.empty() || !ro.empty() || !hide.empty() || no_seccomp ||
      no_landlock) {
    spec.isolation.enabled = true;
  }
  if (net == "none") spec.isolation.net = NetMode::kNone;
  if (net == "host") spec.isolation.net = NetMode::kHost;
  Isolation& iso = spec.isolation;
  iso.rw.insert(iso.rw.end(), rw.begin(), rw.end());
  iso.ro.insert(iso.ro.end(), ro.begin(), ro.end());
  iso.hide.insert(iso.hide.end(), hide.begin(), hide.end());
  if (no_seccomp) iso.seccomp = false;
  if (no_landlock) iso.landlock = false;
  if (!shell.empty()) {
    if (i < argc) return "give either --shell 'STRING' or a command after --, not both";
    spec.argv = {"/bin/sh", "-c", shell};
  } else {
    for (; i < argc; ++i) spec.argv.emplace_back(argv[i]);
  }
  if (spec.argv.empty()) return "no command given (corral run [OPTIONS] -- CMD [ARG...])";
  return std::nullopt;
}

}  // namespace corral::cli
