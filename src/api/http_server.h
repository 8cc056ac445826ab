// A tiny non-blocking HTTP/1.1 server for GET /metrics, driven by the program's EventLoop: the
// listening socket and every connection are fds registered in the given loop, so serving a
// scrape never blocks cells, timers or anything else on the loop.
//
// Scope, on purpose: GET and HEAD of registered paths (404 for others, 405 for other methods),
// one request per connection ("Connection: close"; Prometheus copes), no request bodies, no TLS.
// Bounded: request headers are capped at 8 KiB (431 past that), at most `max_connections`
// connections are open (more are accepted and closed at once), and a connection that has not
// finished within `idle_timeout_ns` is closed by a timer, so a slow or silent client costs one
// fd for a bounded time. The default address is loopback: exposing metrics beyond the host is
// an explicit choice (`0.0.0.0:9464`).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "sys/clock.h"
#include "sys/error.h"
#include "sys/event_loop.h"
#include "sys/fd.h"

namespace corral::metrics {
class Registry;
}

namespace corral::api {

// "127.0.0.1:9464", "[::1]:9464", "localhost:9464", ":9464" (loopback), port 0 for any free port.
// No name resolution beyond "localhost".
Result<sockaddr_storage> ParseListenAddress(const std::string& text, socklen_t* len);

class HttpServer {
 public:
  struct Options {
    size_t max_connections = 64;
    int64_t idle_timeout_ns = 10 * kNsPerSec;
    size_t max_request_bytes = 8192;
  };
  using Handler = std::function<std::string()>;  // returns the body

  // Binds and listens on `address` and registers the socket in `loop`, which must outlive the
  // server. The server's destructor unregisters and closes every fd it owns.
  static Result<std::unique_ptr<HttpServer>> Create(EventLoop* loop, const std::string& address);
  static Result<std::unique_ptr<HttpServer>> Create(EventLoop* loop, const std::string& address,
                                                    Options options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Serves GET/HEAD of `path` (query strings ignored) with the handler's body.
  void Handle(const std::string& path, const std::string& content_type, Handler handler);

  // The address actually bound, e.g. "127.0.0.1:39121" when port 0 was asked for.
  const std::string& bound_address() const { return bound_; }
  size_t open_connections() const { return conns_.size(); }
  uint64_t requests_served() const { return served_; }

 private:
  struct Conn {
    UniqueFd fd;
    EventLoop::Token token = 0;
    EventLoop::Token timer = 0;
    std::string in;
    std::string out;
    size_t out_off = 0;
  };
  struct Route {
    std::string content_type;
    Handler handler;
  };

  HttpServer(EventLoop* loop, UniqueFd listener, Options options)
      : loop_(loop), listener_(std::move(listener)), options_(options) {}
  void OnAccept();
  void OnConn(uint64_t id, uint32_t events);
  void Respond(Conn* c, int code, const char* reason, const std::string& content_type,
               const std::string& body, bool head);
  void Close(uint64_t id);

  EventLoop* loop_;
  UniqueFd listener_;
  Options options_;
  EventLoop::Token listen_token_ = 0;
  std::string bound_;
  uint64_t next_id_ = 1;
  uint64_t served_ = 0;
  std::map<uint64_t, std::unique_ptr<Conn>> conns_;
  std::map<std::string, Route> routes_;
};

// Serves GET /metrics from `registry` (which must outlive the server).
void ServeMetrics(HttpServer* server, const metrics::Registry* registry);

}  // namespace corral::api
