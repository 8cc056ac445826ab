#include "sys/fd.h"

#include <fcntl.h>
#include <unistd.h>

namespace corral {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) {
    // close(2) must not be retried on EINTR on Linux: the fd is gone either way.
    ::close(fd_);
  }
  fd_ = fd;
}

Result<UniqueFd> OpenFile(const std::string& path, int flags, int mode) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) return Error::FromErrno("open", path);
  return UniqueFd(fd);
}

Result<UniqueFd> OpenAt(int dirfd, const std::string& path, int flags, int mode) {
  int fd = ::openat(dirfd, path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) return Error::FromErrno("openat", path);
  return UniqueFd(fd);
}

Result<Pipe> MakePipe(int extra_flags) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | extra_flags) != 0) return Error::FromErrno("pipe2");
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

std::optional<std::string_view> ReadOnce(int fd, char* buf, size_t size) {
  ssize_t n;
  do {
    n = ::pread(fd, buf, size, 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return std::nullopt;
  return std::string_view(buf, static_cast<size_t>(n));
}

Result<std::string> ReadFd(int fd, size_t limit) {
  std::string out;
  out.resize(limit < 4096 ? limit : 4096);
  size_t len = 0;
  for (;;) {
    if (len == out.size()) {
      if (out.size() >= limit) break;
      out.resize(std::min(limit, out.size() * 2));
    }
    ssize_t n = ::pread(fd, out.data() + len, out.size() - len, static_cast<off_t>(len));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::FromErrno("pread");
    }
    if (n == 0) break;
    len += static_cast<size_t>(n);
  }
  out.resize(len);
  return out;
}

Result<std::string> ReadSmallFile(const std::string& path, size_t limit) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error::FromErrno("open", path);
  UniqueFd guard(fd);
  auto r = ReadFd(fd, limit);
  if (!r.ok()) return r.error().Wrap(path);
  return r;
}

Status WriteFd(int fd, std::string_view data, std::string_view what) {
  for (;;) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n >= 0) {
      if (static_cast<size_t>(n) != data.size())
        return Error::Msg("short write to " + std::string(what), EIO);
      return Ok();
    }
    if (errno != EINTR) return Error::FromErrno("write", what);
  }
}

Status WriteFileString(const std::string& path, std::string_view data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return Error::FromErrno("open", path);
  UniqueFd guard(fd);
  return WriteFd(fd, data, path);
}

Status WriteFileStringCreate(const std::string& path, std::string_view data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Error::FromErrno("open", path);
  UniqueFd guard(fd);
  return WriteFd(fd, data, path);
}

Status SetNonBlocking(int fd, bool on) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return Error::FromErrno("fcntl(F_GETFL)");
  int want = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (want != flags && ::fcntl(fd, F_SETFL, want) < 0) return Error::FromErrno("fcntl(F_SETFL)");
  return Ok();
}

}  // namespace corral
