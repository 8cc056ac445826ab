#include "api/unix_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "sys/clock.h"

namespace corral {
namespace {

int64_t DeadlineFrom(int64_t timeout_ns) {
  return timeout_ns < 0 ? -1 : MonotonicNs() + timeout_ns;
}

// Waits for `events` on fd until deadline_ns (-1: forever). ETIMEDOUT at the deadline.
Status WaitFd(int fd, short events, int64_t deadline_ns, std::string_view what) {
  for (;;) {
    int ms = -1;
    if (deadline_ns >= 0) {
      int64_t left = deadline_ns - MonotonicNs();
      if (left <= 0) return Error::Msg(std::string(what) + ": timed out", ETIMEDOUT);
      ms = static_cast<int>((left + kNsPerMs - 1) / kNsPerMs);
    }
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, ms);
    if (rc > 0) return Ok();
    if (rc < 0 && errno != EINTR) return Error::FromErrno("poll", what);
  }
}

std::string ConnectHint(int err) {
  switch (err) {
    case EACCES:
    case EPERM: return " (is your user in the socket's group? see `corral daemon --socket-group`)";
    default: return " (is `corral daemon` running?)";
  }
}

}  // namespace

Result<UnixClient> UnixClient::Connect(const std::string& path, int64_t timeout_ns) {
  std::string prefix = "cannot connect to corral daemon at " + path;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return Error::Msg(prefix + ": the path is empty or longer than " +
                          std::to_string(sizeof(addr.sun_path) - 1) + " bytes",
                      ENAMETOOLONG);
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return Error::FromErrno("socket(AF_UNIX)").Wrap(prefix);
  int64_t deadline = DeadlineFrom(timeout_ns);
  for (;;) {
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) break;
    int err = errno;
    if (err == EINTR) continue;
    if (err == EAGAIN && (deadline < 0 || MonotonicNs() < deadline)) {
      // Backlog full: the daemon is alive but busy accepting.
      timespec ts{0, 10 * kNsPerMs};
      ::nanosleep(&ts, nullptr);
      continue;
    }
    Error e = Error::FromErrno(err, "connect");
    return Error(err, prefix + ": " + e.message() + ConnectHint(err));
  }
  return UnixClient(std::move(fd), path);
}

Status UnixClient::SendLine(std::string_view line, int64_t timeout_ns) {
  std::string data(line);
  if (data.empty() || data.back() != '\n') data.push_back('\n');
  int64_t deadline = DeadlineFrom(timeout_ns);
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd_.get(), data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n >= 0) {
      off += n;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return Error::FromErrno("send", path_);
    TRY(WaitFd(fd_.get(), POLLOUT, deadline, "send to " + path_));
  }
  return Ok();
}

Result<std::string> UnixClient::ReadLine(int64_t timeout_ns) {
  int64_t deadline = DeadlineFrom(timeout_ns);
  size_t scanned = 0;
  for (;;) {
    size_t nl = in_.find('\n', scanned);
    if (nl != std::string::npos) {
      std::string line = in_.substr(0, nl);
      in_.erase(0, nl + 1);
      return line;
    }
    scanned = in_.size();
    if (in_.size() > max_line_) {
      return Error::Msg(
          "answer from " + path_ + " is longer than " + std::to_string(max_line_) + " bytes",
          EMSGSIZE);
    }
    char buf[64 * 1024];
    ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), 0);
    if (n > 0) {
      in_.append(buf, n);
    } else if (n == 0) {
      return Error::Msg("the corral daemon at " + path_ + " closed the connection", ECONNRESET);
    } else if (errno == EAGAIN) {
      TRY(WaitFd(fd_.get(), POLLIN, deadline, "read from " + path_));
    } else if (errno != EINTR) {
      return Error::FromErrno("recv", path_);
    }
  }
}

Result<UnixClient::Response> UnixClient::Call(std::string_view method, jsonrpc::json params,
                                              int64_t timeout_ns) {
  int64_t id = next_id_++;
  int64_t deadline = DeadlineFrom(timeout_ns);
  auto left = [&] { return deadline < 0 ? -1 : std::max<int64_t>(0, deadline - MonotonicNs()); };
  TRY(SendLine(jsonrpc::Serialize(jsonrpc::MakeRequest(id, method, std::move(params))), left()));
  for (;;) {
    ASSIGN_OR_RETURN(std::string line, ReadLine(left()));
    jsonrpc::json msg = jsonrpc::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!msg.is_object()) {
      return Error::Msg("the corral daemon at " + path_ + " sent something that is not JSON-RPC",
                        EPROTO);
    }
    auto mid = msg.find("id");
    if (mid == msg.end()) continue;  // a notification from the daemon: not ours
    bool ours = mid->is_number_integer() && mid->get<int64_t>() == id;
    if (!ours && !mid->is_null()) continue;  // an answer to an earlier, abandoned call
    Response r;
    r.id = *mid;
    if (auto res = msg.find("result"); res != msg.end()) {
      if (!ours) continue;
      r.result = std::move(*res);
      return r;
    }
    auto err = msg.find("error");
    if (err == msg.end() || !err->is_object()) {
      return Error::Msg("the corral daemon at " + path_ +
                            " sent an answer with neither result "
                            "nor error",
                        EPROTO);
    }
    jsonrpc::RpcError e;
    e.code = err->value("code", static_cast<int>(jsonrpc::kInternalError));
    e.message = err->value("message", std::string("(no message)"));
    if (auto d = err->find("data"); d != err->end()) e.data = *d;
    r.error = std::move(e);
    return r;
  }
}

Result<UnixClient::Response> CallDaemon(const std::string& path, std::string_view method,
                                        jsonrpc::json params, int64_t timeout_ns) {
  ASSIGN_OR_RETURN(UnixClient c,
                   UnixClient::Connect(path, timeout_ns < 0 ? 5 * kNsPerSec : timeout_ns));
  return c.Call(method, std::move(params), timeout_ns);
}

}  // namespace corral
