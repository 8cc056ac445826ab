// A small blocking JSON-RPC client for the daemon's socket, for the CLI (`corral exec`, `start`,
// `wait`, `ps`, `kill`, `logs`) and for tests. One request in flight at a time: Call() sends one
// line and reads lines until the answer with its id (or an id-null error: the server could not
// read the id) arrives. Every wait is bounded by poll() against a deadline; timeout_ns < 0 waits
// for as long as it takes (a `run` with no timeout).
//
// The connection is opened non-blocking: a Unix connect() that finds the daemon's backlog full
// fails with EAGAIN instead of waiting, so Connect() retries every 10 ms until its deadline.
// Writes use MSG_NOSIGNAL, so a daemon that goes away is an EPIPE error, not a SIGPIPE death.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "api/jsonrpc.h"
#include "sys/error.h"
#include "sys/fd.h"

namespace corral {

class UnixClient {
 public:
  struct Response {
    jsonrpc::json id;
    std::optional<jsonrpc::json> result;     // set on success
    std::optional<jsonrpc::RpcError> error;  // set when the daemon answered with an error
    bool ok() const { return result.has_value(); }
  };

  // "cannot connect to corral daemon at PATH: connect: ... (is `corral daemon` running?)"
  static Result<UnixClient> Connect(const std::string& path, int64_t timeout_ns = 5'000'000'000);

  // Sends {"jsonrpc":"2.0","id":N,"method":..,"params":..} and waits for its answer.
  Result<Response> Call(std::string_view method, jsonrpc::json params = nullptr,
                        int64_t timeout_ns = -1);

  // The raw pieces, for callers (and tests) that speak the protocol themselves.
  Status SendLine(std::string_view line, int64_t timeout_ns = -1);  // adds '\n' if missing
  // One line without its '\n'. Fails with ETIMEDOUT at the deadline, with ECONNRESET when the
  // daemon closed the connection, with EMSGSIZE past max_line bytes.
  Result<std::string> ReadLine(int64_t timeout_ns = -1);

  int fd() const { return fd_.get(); }
  const std::string& path() const { return path_; }
  void set_max_line(size_t n) { max_line_ = n; }

 private:
  UnixClient(UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}

  UniqueFd fd_;
  std::string path_;
  std::string in_;  // bytes read past the last returned line
  int64_t next_id_ = 1;
  // Answers carry command output (two capped streams, JSON-escaped), so allow well over 4 MiB.
  size_t max_line_ = 64 * 1024 * 1024;
};

// Connect + Call + close.
Result<UnixClient::Response> CallDaemon(const std::string& path, std::string_view method,
                                        jsonrpc::json params = nullptr, int64_t timeout_ns = -1);

}  // namespace corral
