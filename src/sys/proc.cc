#include "sys/proc.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>

#include "sys/fd.h"

namespace corral {

Error ProcParseError(std::string_view what, std::string_view text) {
  std::string sample(text.substr(0, 80));
  for (char& c : sample) {
    if (static_cast<unsigned char>(c) < 0x20) c = '?';
  }
  return Error::Msg("parse " + std::string(what) + ": unexpected text `" + sample + "`", EINVAL);
}

bool NextProcToken(std::string_view* rest, std::string_view* tok) {
  size_t start = rest->find_first_not_of(' ');
  if (start == std::string_view::npos) return false;
  size_t end = rest->find_first_of(" \n", start);
  if (end == std::string_view::npos) end = rest->size();
  *tok = rest->substr(start, end - start);
  *rest = rest->substr(end);
  return !tok->empty();
}

bool NextLine(std::string_view* rest, std::string_view* line) {
  if (rest->empty()) return false;
  size_t eol = rest->find('\n');
  *line = rest->substr(0, eol);
  rest->remove_prefix(eol == std::string_view::npos ? rest->size() : eol + 1);
  return true;
}

namespace {

bool ParseI64(std::string_view s, int64_t* out) {
  bool neg = !s.empty() && s[0] == '-';
  if (neg) s.remove_prefix(1);
  uint64_t v;
  if (!ParseU64(s, &v) || v > static_cast<uint64_t>(INT64_MAX)) return false;
  *out = neg ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
  return true;
}

bool ParseInt(std::string_view s, int* out) {
  int64_t v;
  if (!ParseI64(s, &v) || v < INT32_MIN || v > INT32_MAX) return false;
  *out = static_cast<int>(v);
  return true;
}

}  // namespace

bool ParseU64(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

Result<ProcStat> ParseProcStat(std::string_view text) {
  ProcStat st;
  size_t open = text.find('(');
  size_t close = text.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open ||
      open == 0 || text[open - 1] != ' ') {
    return ProcParseError("/proc/PID/stat", text);
  }
  if (!ParseInt(text.substr(0, open - 1), &st.pid) || st.pid <= 0) {
    return ProcParseError("/proc/PID/stat pid", text);
  }
  st.comm = std::string(text.substr(open + 1, close - open - 1));
  std::string_view rest = text.substr(close + 1);
  // Fields from (3) on; index i here is field number i + 3.
  std::string_view tok;
  for (int field = 3; field <= 24; ++field) {
    if (!NextProcToken(&rest, &tok)) return ProcParseError("/proc/PID/stat (too few fields)", text);
    bool ok = true;
    int64_t i64 = 0;
    uint64_t u64 = 0;
    switch (field) {
      case 3:
        ok = tok.size() == 1;
        st.state = tok[0];
        break;
      case 4: ok = ParseInt(tok, &st.ppid); break;
      case 5: ok = ParseInt(tok, &st.pgrp); break;
      case 6: ok = ParseInt(tok, &st.session); break;
      case 9: ok = ParseU64(tok, &st.flags); break;
      case 14: ok = ParseU64(tok, &st.utime_ticks); break;
      case 15: ok = ParseU64(tok, &st.stime_ticks); break;
      case 20: ok = ParseI64(tok, &st.num_threads); break;
      case 22: ok = ParseU64(tok, &st.starttime_ticks); break;
      case 24: ok = ParseI64(tok, &st.rss_pages); break;
      default:
        ok = ParseI64(tok, &i64) || ParseU64(tok, &u64);  // checked, unused
        break;
    }
    if (!ok) return ProcParseError("/proc/PID/stat field " + std::to_string(field), text);
  }
  return st;
}

std::optional<ProcStat> ReadProcStat(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buf[1024];
  ssize_t n = read(fd, buf, sizeof buf);
  close(fd);
  if (n <= 0) return std::nullopt;
  auto st = ParseProcStat(std::string_view(buf, static_cast<size_t>(n)));
  if (!st.ok()) return std::nullopt;
  return std::move(st).value();
}

std::vector<pid_t> ListPids() {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    pid_t pid = 0;
    std::string_view name(e->d_name);
    auto [p, ec] = std::from_chars(name.data(), name.data() + name.size(), pid);
    if (ec == std::errc() && p == name.data() + name.size()) out.push_back(pid);
  }
  closedir(d);
  return out;
}

const std::string& PidNamespaceTag() {
  static const std::string tag = [] {
    char buf[64];
    ssize_t n = readlink("/proc/self/ns/pid", buf, sizeof buf - 1);
    if (n <= 0) return std::string("0");
    std::string s(buf, static_cast<size_t>(n));  // "pid:[4026531836]"
    size_t open = s.find('['), close = s.find(']');
    if (open == std::string::npos || close == std::string::npos) return std::string("0");
    return s.substr(open + 1, close - open - 1);
  }();
  return tag;
}

std::vector<std::string_view> SplitFields(std::string_view text, std::string_view seps) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t start = text.find_first_not_of(seps, pos);
    if (start == std::string_view::npos) break;
    size_t end = text.find_first_of(seps, start);
    if (end == std::string_view::npos) end = text.size();
    out.push_back(text.substr(start, end - start));
    pos = end;
  }
  return out;
}

std::optional<std::string> ReadEnvironVar(pid_t pid, std::string_view name) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/environ", pid);
  auto env = ReadSmallFile(path, 256 * 1024);
  if (!env.ok()) return std::nullopt;
  std::string_view s = env.value();
  while (!s.empty()) {
    size_t end = s.find('\0');
    std::string_view entry = s.substr(0, end);
    if (entry.size() > name.size() && entry.substr(0, name.size()) == name &&
        entry[name.size()] == '=') {
      return std::string(entry.substr(name.size() + 1));
    }
    if (end == std::string_view::npos) break;
    s.remove_prefix(end + 1);
  }
  return std::nullopt;
}

std::string ReadWchan(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/wchan", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  char buf[128];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return "";
  std::string w(buf, static_cast<size_t>(n));
  if (w == "0") return "";
  return w;
}

}  // namespace corral
