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

namespace corral {

struct ProcStat {
  pid_t pid = 0;
  std::string comm;
  char state = '?';  // R S D Z T t X I ...
  pid_t ppid = 0;
  pid_t pgrp = 0;
  pid_t session = 0;
  uint64_t starttime = 0;  // clock ticks after boot: (pid, starttime) names a process uniquely
};

// Parses the text of /proc/PID/stat; the comm field may contain spaces and parentheses.
std::optional<ProcStat> ParseProcStat(std::string_view text);
std::optional<ProcStat> ReadProcStat(pid_t pid);
// Every numeric entry of /proc.
std::vector<pid_t> ListPids();
std::string ReadWchan(pid_t pid);  // "" when unknown; "0" is normalized to ""
// The inode number of our PID namespace ("4026531836"), read once. PIDs mean something only
// within one namespace: names and liveness checks that carry a PID carry this too.
const std::string& PidNamespaceTag();

}  // namespace corral
