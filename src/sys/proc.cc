#include "sys/proc.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <charconv>

namespace corral {

namespace {

template <typename T>
bool ParseNum(std::string_view& s, T* out) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  size_t end = s.find(' ');
  std::string_view tok = s.substr(0, end);
  auto [p, ec] = std::from_chars(tok.data(), tok.data() + tok.size(), *out);
  if (ec != std::errc() || p != tok.data() + tok.size()) return false;
  s.remove_prefix(tok.size());
  return true;
}

bool SkipField(std::string_view& s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  size_t end = s.find(' ');
  if (end == std::string_view::npos) return false;
  s.remove_prefix(end);
  return true;
}

}  // namespace

std::optional<ProcStat> ParseProcStat(std::string_view text) {
  ProcStat st;
  size_t open = text.find('(');
  size_t close = text.rfind(')');  // comm may itself contain ')'
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) {
    return std::nullopt;
  }
  std::string_view head = text.substr(0, open);
  if (!ParseNum(head, &st.pid)) return std::nullopt;
  st.comm = std::string(text.substr(open + 1, close - open - 1));
  std::string_view rest = text.substr(close + 1);
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  if (rest.empty()) return std::nullopt;
  st.state = rest.front();
  rest.remove_prefix(1);
  if (!ParseNum(rest, &st.ppid) || !ParseNum(rest, &st.pgrp) || !ParseNum(rest, &st.session)) {
    return std::nullopt;
  }
  // Fields 7..21 (tty_nr .. itrealvalue), then 22: starttime.
  for (int i = 7; i <= 21; ++i) {
    if (!SkipField(rest)) return std::nullopt;
  }
  if (!ParseNum(rest, &st.starttime)) return std::nullopt;
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
  return ParseProcStat(std::string_view(buf, static_cast<size_t>(n)));
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
