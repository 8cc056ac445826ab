#include "api/http_server.h"

#include <arpa/inet.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cstring>

#include "api/metrics.h"

namespace corral::api {

Result<sockaddr_storage> ParseListenAddress(const std::string& text, socklen_t* len) {
  sockaddr_storage ss{};
  std::string host, port;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return Error::Msg("bad address `" + text + "`: expected [IPV6]:PORT", EINVAL);
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string::npos) {
      return Error::Msg("bad address `" + text + "`: expected HOST:PORT, e.g. 127.0.0.1:9464",
                        EINVAL);
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  char* end = nullptr;
  long p = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || p < 0 || p > 65535) {
    return Error::Msg("bad port in `" + text + "`", EINVAL);
  }
  if (host.empty() || host == "localhost") host = "127.0.0.1";
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(p));
    *len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(p));
    *len = sizeof(sockaddr_in6);
  } else {
    return Error::Msg("bad address `" + text + "`: give a numeric IPv4 or IPv6 address", EINVAL);
  }
  return ss;
}

namespace {

std::string FormatAddress(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &v6->sin6_addr, buf, sizeof buf);
    return "[" + std::string(buf) + "]:" + std::to_string(ntohs(v6->sin6_port));
  }
  const auto* v4 = reinterpret_cast<const sockaddr_in*>(&ss);
  inet_ntop(AF_INET, &v4->sin_addr, buf, sizeof buf);
  return std::string(buf) + ":" + std::to_string(ntohs(v4->sin_port));
}

}  // namespace

Result<std::unique_ptr<HttpServer>> HttpServer::Create(EventLoop* loop,
                                                       const std::string& address) {
  return Create(loop, address, Options());
}

Result<std::unique_ptr<HttpServer>> HttpServer::Create(EventLoop* loop, const std::string& address,
                                                       Options options) {
  socklen_t len = 0;
  ASSIGN_OR_RETURN(sockaddr_storage ss, ParseListenAddress(address, &len));
  int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error::FromErrno("socket", address);
  UniqueFd sock(fd);
  int one = 1;
  // A restarted exporter must be able to bind while old connections sit in TIME_WAIT.
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    return Error::FromErrno("bind", address);
  }
  if (::listen(fd, 64) != 0) return Error::FromErrno("listen", address);
  sockaddr_storage bound{};
  socklen_t blen = sizeof bound;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &blen);
  std::unique_ptr<HttpServer> s(new HttpServer(loop, std::move(sock), options));
  s->bound_ = FormatAddress(bound);
  HttpServer* self = s.get();
  ASSIGN_OR_RETURN(s->listen_token_,
                   loop->Add(s->listener_.get(), EPOLLIN, [self](uint32_t) { self->OnAccept(); }));
  return s;
}

HttpServer::~HttpServer() {
  while (!conns_.empty()) Close(conns_.begin()->first);
  if (listen_token_ != 0) loop_->Remove(listen_token_);
}

void HttpServer::Handle(const std::string& path, const std::string& content_type, Handler handler) {
  routes_[path] = Route{content_type, std::move(handler)};
}

void HttpServer::OnAccept() {
  for (;;) {
    int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      // EAGAIN: drained. Anything else (EMFILE, ECONNABORTED): try again on the next event
      // rather than spin; the listener stays registered.
      return;
    }
    UniqueFd cfd(fd);
    if (conns_.size() >= options_.max_connections) continue;  // closed by UniqueFd
    uint64_t id = next_id_++;
    auto c = std::make_unique<Conn>();
    c->fd = std::move(cfd);
    auto token =
        loop_->Add(c->fd.get(), EPOLLIN | EPOLLRDHUP, [this, id](uint32_t ev) { OnConn(id, ev); });
    if (!token.ok()) continue;
    c->token = token.value();
    c->timer = loop_->AddTimer(MonotonicNs() + options_.idle_timeout_ns, [this, id] {
      auto it = conns_.find(id);
      if (it == conns_.end()) return;
      it->second->timer = 0;  // fired: nothing to cancel
      Close(id);
    });
    conns_.emplace(id, std::move(c));
  }
}

void HttpServer::Respond(Conn* c, int code, const char* reason, const std::string& content_type,
                         const std::string& body, bool head) {
  c->out = "HTTP/1.1 " + std::to_string(code) + " " + reason + "\r\nContent-Type: " + content_type +
           "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
  if (!head) c->out += body;
  c->out_off = 0;
  ++served_;
}

void HttpServer::OnConn(uint64_t id, uint32_t events) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  Conn* c = it->second.get();
  if (c->out.empty()) {
    char buf[4096];
    bool eof = false;
    for (;;) {
      ssize_t n = ::read(c->fd.get(), buf, sizeof buf);
      if (n > 0) {
        c->in.append(buf, static_cast<size_t>(n));
        if (c->in.size() > options_.max_request_bytes) break;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno != EAGAIN) {
        Close(id);
        return;
      }
      eof = n == 0;  // a client may half-close after its request
      break;
    }
    size_t end = c->in.find("\r\n\r\n");
    if (end == std::string::npos) end = c->in.find("\n\n");
    if (end == std::string::npos) {
      if (c->in.size() > options_.max_request_bytes) {
        Respond(c, 431, "Request Header Fields Too Large", "text/plain", "request too large\n",
                false);
      } else {
        if (eof) Close(id);  // peer gone before a full request
        return;              // else wait for more
      }
    } else {
      // Request line: METHOD SP TARGET SP HTTP/1.x
      std::string line = c->in.substr(0, c->in.find_first_of("\r\n"));
      size_t sp1 = line.find(' ');
      size_t sp2 = sp1 == std::string::npos ? sp1 : line.find(' ', sp1 + 1);
      if (sp1 == std::string::npos || sp2 == std::string::npos ||
          line.compare(sp2 + 1, 5, "HTTP/") != 0) {
        Respond(c, 400, "Bad Request", "text/plain", "bad request\n", false);
      } else {
        std::string method = line.substr(0, sp1);
        std::string path = line.substr(sp1 + 1, sp2 - sp1 - 1);
        path = path.substr(0, path.find('?'));
        bool head = method == "HEAD";
        auto route = routes_.find(path);
        if (method != "GET" && !head) {
          Respond(c, 405, "Method Not Allowed", "text/plain", "only GET and HEAD\n", false);
        } else if (route == routes_.end()) {
          Respond(c, 404, "Not Found", "text/plain", "not found; try /metrics\n", head);
        } else {
          Respond(c, 200, "OK", route->second.content_type, route->second.handler(), head);
        }
      }
    }
    // Switch to writing; the write below usually finishes at once.
    (void)loop_->Modify(c->token, EPOLLOUT);
    events = EPOLLOUT;
  }
  if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
    while (c->out_off < c->out.size()) {
      ssize_t n =
          ::send(c->fd.get(), c->out.data() + c->out_off, c->out.size() - c->out_off, MSG_NOSIGNAL);
      if (n > 0) {
        c->out_off += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;  // wait for EPOLLOUT
      break;                                 // error: the peer went away
    }
    Close(id);
  }
}

void HttpServer::Close(uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  Conn* c = it->second.get();
  loop_->Remove(c->token);
  if (c->timer != 0) loop_->CancelTimer(c->timer);
  conns_.erase(it);  // closes the fd
}

void ServeMetrics(HttpServer* server, const metrics::Registry* registry) {
  server->Handle("/metrics", "text/plain; version=0.0.4; charset=utf-8",
                 [registry] { return registry->Render(); });
}

}  // namespace corral::api
