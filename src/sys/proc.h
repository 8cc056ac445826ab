// Minimal, non-blocking reads of /proc for the cell layer: the fields of /proc/PID/stat that
// tell a process's family (ppid, process group, session) and state, and /proc/PID/wchan.
// /proc/PID/stat and wchan never take the locks that a D-state process may hold (unlike
// cmdline, environ or status's memory fields), so reading them cannot hang.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sys/error.h"

namespace corral {

// The fields of /proc/PID/stat corral reads (proc(5) numbers them from 1).
struct ProcStat {
  int pid = 0;                   // (1)
  std::string comm;              // (2) without the parentheses
  char state = '?';              // (3) R S D Z T t X I ...
  int ppid = 0;                  // (4)
  int pgrp = 0;                  // (5)
  int session = 0;               // (6)
  uint64_t flags = 0;            // (9) PF_* bits; PF_KTHREAD marks kernel threads
  uint64_t utime_ticks = 0;      // (14)
  uint64_t stime_ticks = 0;      // (15)
  int64_t num_threads = 0;       // (20)
  uint64_t starttime_ticks = 0;  // (22) clock ticks after boot
  int64_t rss_pages = 0;         // (24)
};

Result<ProcStat> ParseProcStat(std::string_view text);
// A decimal unsigned integer that must fill the whole view (no sign, no spaces).
bool ParseU64(std::string_view s, uint64_t* out);
// "parse WHAT: unexpected text `...`" (EINVAL), control characters of the sample masked.
Error ProcParseError(std::string_view what, std::string_view text);
// Splits off the next space-separated token of `rest` (single spaces, as the kernel writes them).
bool NextProcToken(std::string_view* rest, std::string_view* tok);
// Splits off the next line of `rest`, without its '\n'; false once `rest` is empty.
bool NextLine(std::string_view* rest, std::string_view* line);
// The fields of `text` separated by any of `seps`, empty fields dropped. For kernel files:
// iostreams would pull libstdc++'s locale machinery into every corral start.
std::vector<std::string_view> SplitFields(std::string_view text, std::string_view seps = " \t\n");
std::optional<ProcStat> ReadProcStat(pid_t pid);
// Every numeric entry of /proc.
std::vector<pid_t> ListPids();
std::string ReadWchan(pid_t pid);
// The value of variable `name` in the process's initial environment (/proc/PID/environ). That
// file takes the target's mmap lock: never call it for a process in D state.
std::optional<std::string> ReadEnvironVar(
    pid_t pid, std::string_view name);  // "" when unknown; "0" is normalized to ""
// The inode number of our PID namespace ("4026531836"), read once. PIDs mean something only
// within one namespace: names and liveness checks that carry a PID carry this too.
const std::string& PidNamespaceTag();

}  // namespace corral
