// UniqueFd owns one file descriptor: move-only, closed on destruction. Every fd the program opens
// is opened with O_CLOEXEC (or the *_CLOEXEC flag of its syscall) so that a child spawned at any
// moment inherits nothing; spawn additionally closes everything above 2 with close_range.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "sys/error.h"

namespace corral {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1);

 private:
  int fd_ = -1;  // -1 when empty
};

// open(2) with O_CLOEXEC added; the error names the path.
Result<UniqueFd> OpenFile(const std::string& path, int flags, int mode = 0);
Result<UniqueFd> OpenAt(int dirfd, const std::string& path, int flags, int mode = 0);

struct Pipe {
  UniqueFd read;
  UniqueFd write;
};
// pipe2(O_CLOEXEC | extra_flags).
Result<Pipe> MakePipe(int extra_flags = 0);

// Whole-file helpers for small kernel files (/proc, /sys/fs/cgroup). ReadSmallFile reads at most
// `limit` bytes. WriteFileString writes with one write(2), as cgroup files require.
Result<std::string> ReadSmallFile(const std::string& path, size_t limit = 64 * 1024);
Result<std::string> ReadFd(int fd, size_t limit = 64 * 1024);  // pread from offset 0
// One pread from offset 0 into buf (EINTR retried): for the one-line /proc and cgroup files kept
// open and read again and again, which the kernel generates whole on a read from offset 0.
std::optional<std::string_view> ReadOnce(int fd, char* buf, size_t size);
Status WriteFileString(const std::string& path, std::string_view data);
Status WriteFd(int fd, std::string_view data, std::string_view what);
// Creates or truncates path (mode 0600) and writes data.
Status WriteFileStringCreate(const std::string& path, std::string_view data);

Status SetNonBlocking(int fd, bool on);

}  // namespace corral
