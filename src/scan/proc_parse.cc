#include "scan/proc_parse.h"

#include <cerrno>

namespace corral::scan {

Result<NofileLimit> ParseNofileLimit(std::string_view text) {
  constexpr std::string_view kKey = "Max open files";
  std::string_view rest = text, line;
  while (NextLine(&rest, &line)) {
    if (line.substr(0, kKey.size()) != kKey) continue;
    std::string_view rest = line.substr(kKey.size());
    std::string_view soft, hard;
    if (!NextProcToken(&rest, &soft) || !NextProcToken(&rest, &hard)) break;
    NofileLimit lim;
    auto one = [](std::string_view s, uint64_t* v) {
      if (s == "unlimited") {
        *v = NofileLimit::kUnlimited;
        return true;
      }
      return ParseU64(s, v);
    };
    if (!one(soft, &lim.soft) || !one(hard, &lim.hard)) break;
    return lim;
  }
  return ProcParseError("/proc/PID/limits (Max open files)", text);
}

Result<int64_t> ParseSchedExecStartNs(std::string_view text) {
  constexpr std::string_view kKey = "se.exec_start";
  size_t at = text.find(kKey);
  if (at == std::string_view::npos) return ProcParseError("/proc/PID/sched (se.exec_start)", text);
  std::string_view rest = text.substr(at + kKey.size());
  size_t colon = rest.find(':');
  if (colon == std::string_view::npos)
    return ProcParseError("/proc/PID/sched (se.exec_start)", text);
  rest = rest.substr(colon + 1);
  std::string_view tok;
  if (!NextProcToken(&rest, &tok)) return ProcParseError("/proc/PID/sched (se.exec_start)", text);
  size_t dot = tok.find('.');
  uint64_t ms = 0, frac = 0;
  std::string_view frac_s = dot == std::string_view::npos ? "" : tok.substr(dot + 1);
  if (!ParseU64(tok.substr(0, dot), &ms) || frac_s.size() > 6 ||
      (!frac_s.empty() && !ParseU64(frac_s, &frac)) || ms > INT64_MAX / 1000000 / 2) {
    return ProcParseError("/proc/PID/sched (se.exec_start)", text);
  }
  for (size_t i = frac_s.size(); i < 6; ++i) frac *= 10;
  return static_cast<int64_t>(ms * 1000000 + frac);
}

Result<uint64_t> ParseLoadavgTasks(std::string_view text) {
  std::string_view rest = text, tok;
  for (int i = 0; i < 4; ++i) {
    if (!NextProcToken(&rest, &tok)) return ProcParseError("/proc/loadavg", text);
  }
  size_t slash = tok.find('/');
  uint64_t total;
  if (slash == std::string_view::npos || !ParseU64(tok.substr(slash + 1), &total)) {
    return ProcParseError("/proc/loadavg", text);
  }
  return total;
}

}  // namespace corral::scan
