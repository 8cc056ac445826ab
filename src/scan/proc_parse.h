// Parsers for the /proc files the host scan reads: /proc/PID/stat, the "Max open files" line of
// /proc/PID/limits, the "se.exec_start" line of /proc/PID/sched and /proc/loadavg.
//
// Every byte here comes from the kernel but is shaped by untrusted processes: a process names
// itself (comm, up to 15 bytes) with prctl(PR_SET_NAME) and may put spaces, parentheses, newlines
// and digits in it, so "1 (a) b) S 1" is a valid stat line whose comm is "a) b". The stat parser
// therefore takes comm as everything between the FIRST '(' and the LAST ')' and parses the
// fixed-format fields after it. The parsers never read outside the given view, never throw and
// reject (with a message) any line they cannot read fully; they are fuzzed in proc_parse_test.cc.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "sys/error.h"
#include "sys/proc.h"

namespace corral::scan {

// /proc/PID/stat: see sys/proc.h (shared with the cell layer).
using corral::ParseProcStat;
using corral::ProcStat;

// RLIMIT_NOFILE from /proc/PID/limits. "unlimited" reads as kUnlimited.
struct NofileLimit {
  static constexpr uint64_t kUnlimited = UINT64_MAX;
  uint64_t soft = 0;
  uint64_t hard = 0;
};
Result<NofileLimit> ParseNofileLimit(std::string_view limits_text);

// The value of "se.exec_start" in /proc/PID/sched, in nanoseconds of the scheduler clock (the
// file prints milliseconds with 6 decimals). For a sleeping task it is when it last got the CPU,
// so "now - exec_start" estimates how long it has been asleep.
Result<int64_t> ParseSchedExecStartNs(std::string_view sched_text);

// The total task count (threads included) from /proc/loadavg: "0.00 0.01 0.05 1/123 4567".
Result<uint64_t> ParseLoadavgTasks(std::string_view loadavg_text);

using corral::ParseU64;

}  // namespace corral::scan
