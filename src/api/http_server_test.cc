// The metrics HTTP server on a real loopback socket, driven by a real EventLoop.
#include "api/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/metrics.h"

namespace corral::api {
namespace {

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = EventLoop::Create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(loop.value());
    registry_.AddGauge("corral_test_gauge", "A gauge.").Set(42);
    HttpServer::Options o;
    o.max_connections = 4;
    o.idle_timeout_ns = 300 * kNsPerMs;
    auto s = HttpServer::Create(loop_.get(), "127.0.0.1:0", o);
    ASSERT_TRUE(s.ok()) << s.error().message();
    server_ = std::move(s.value());
    ServeMetrics(server_.get(), &registry_);
  }

  UniqueFd Connect() {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    std::string addr = server_->bound_address();
    a.sin_port = htons(static_cast<uint16_t>(std::stoi(addr.substr(addr.rfind(':') + 1))));
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    SetNonBlocking(fd, true).ok();
    return UniqueFd(fd);
  }

  // Sends `req` and runs the loop until the server closes the connection; returns the reply.
  std::string Exchange(const std::string& req) {
    UniqueFd c = Connect();
    EXPECT_EQ(send(c.get(), req.data(), req.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(req.size()));
    std::string reply;
    int64_t deadline = MonotonicNs() + 5 * kNsPerSec;
    while (MonotonicNs() < deadline) {
      EXPECT_TRUE(loop_->RunOnce(10 * kNsPerMs).ok());
      char buf[4096];
      ssize_t n = read(c.get(), buf, sizeof buf);
      if (n > 0) reply.append(buf, static_cast<size_t>(n));
      if (n == 0) return reply;
    }
    ADD_FAILURE() << "no close within 5 s";
    return reply;
  }

  metrics::Registry registry_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpServerTest, BindsLoopbackByDefaultAndPicksAPortForZero) {
  socklen_t len;
  auto a = ParseListenAddress(":9464", &len);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(reinterpret_cast<sockaddr_in*>(&a.value())->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
  EXPECT_TRUE(ParseListenAddress("[::1]:80", &len).ok());
  EXPECT_FALSE(ParseListenAddress("example.com:80", &len).ok());
  EXPECT_FALSE(ParseListenAddress("127.0.0.1", &len).ok());
  EXPECT_FALSE(ParseListenAddress("127.0.0.1:99999", &len).ok());
  EXPECT_EQ(server_->bound_address().rfind("127.0.0.1:", 0), 0u);
  EXPECT_NE(server_->bound_address(), "127.0.0.1:0");
}

TEST_F(HttpServerTest, GetMetricsRendersTheRegistry) {
  std::string r = Exchange("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(r.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << r;
  EXPECT_NE(r.find("Content-Type: text/plain; version=0.0.4"), std::string::npos);
  EXPECT_NE(r.find("\r\n\r\n# HELP corral_test_gauge A gauge.\n"), std::string::npos);
  EXPECT_NE(r.find("corral_test_gauge 42\n"), std::string::npos);
  std::string head = Exchange("HEAD /metrics?x=1 HTTP/1.0\r\n\r\n");
  EXPECT_EQ(head.rfind("HTTP/1.1 200 OK", 0), 0u);
  EXPECT_EQ(head.find("corral_test_gauge 42"), std::string::npos);
}

TEST_F(HttpServerTest, OtherPathsMethodsAndGarbageGetErrors) {
  EXPECT_EQ(Exchange("GET / HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 404", 0), 0u);
  EXPECT_EQ(Exchange("POST /metrics HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 405", 0), 0u);
  EXPECT_EQ(Exchange("hello\r\n\r\n").rfind("HTTP/1.1 400", 0), 0u);
  EXPECT_EQ(
      Exchange("GET /metrics HTTP/1.1\r\nX: " + std::string(10000, 'a')).rfind("HTTP/1.1 431", 0),
      0u);
}

TEST_F(HttpServerTest, SilentClientsAreClosedByTheIdleTimerAndBounded) {
  std::vector<UniqueFd> silent;
  for (int i = 0; i < 6; ++i) silent.push_back(Connect());
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(loop_->RunOnce(5 * kNsPerMs).ok());
  EXPECT_LE(server_->open_connections(), 4u);
  int64_t deadline = MonotonicNs() + 3 * kNsPerSec;
  while (server_->open_connections() > 0 && MonotonicNs() < deadline) {
    ASSERT_TRUE(loop_->RunOnce(20 * kNsPerMs).ok());
  }
  EXPECT_EQ(server_->open_connections(), 0u);
  // And the server still answers.
  EXPECT_EQ(Exchange("GET /metrics HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 200", 0), 0u);
}

TEST_F(HttpServerTest, DestructorUnregistersEverything) {
  UniqueFd c = Connect();
  for (int i = 0; i < 10 && server_->open_connections() == 0; ++i) {
    ASSERT_TRUE(loop_->RunOnce(5 * kNsPerMs).ok());
  }
  EXPECT_EQ(server_->open_connections(), 1u);
  server_.reset();
  EXPECT_EQ(loop_->watched_fds(), 0u);
  EXPECT_EQ(loop_->pending_timers(), 0u);
}

}  // namespace
}  // namespace corral::api
