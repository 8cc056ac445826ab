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

namespace corral::scan {

// The fields of /proc/PID/stat the scan uses (proc(5) numbers them from 1).
struct ProcStat {
  int pid = 0;                 // (1)
  std::string comm;            // (2) without the parentheses
  char state = '?';            // (3) R S D Z T t X I ...
  int ppid = 0;                // (4)
  int pgrp = 0;                // (5)
  int session = 0;             // (6)
  uint64_t flags = 0;          // (9) PF_* bits; PF_KTHREAD marks kernel threads
  uint64_t utime_ticks = 0;    // (14)
  uint64_t stime_ticks = 0;    // (15)
  int64_t num_threads = 0;     // (20)
  uint64_t starttime_ticks = 0;  // (22) clock ticks after boot
  int64_t rss_pages = 0;       // (24)
};

Result<ProcStat> ParseProcStat(std::string_view text);

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

// A decimal unsigned integer that must fill the whole view (no sign, no spaces).
bool ParseU64(std::string_view s, uint64_t* out);

}  // namespace corral::scan
