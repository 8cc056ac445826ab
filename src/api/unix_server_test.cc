// Tests of the daemon transport over real Unix sockets in a temp dir, served by a real EventLoop
// on the test's thread. Clients are either raw non-blocking sockets driven between loop turns
// (deterministic) or UnixClient in threads (concurrency); the server is only touched from the
// test's thread.
#include "api/unix_server.h"

#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <random>
#include <thread>

#include "api/socket_path.h"
#include "api/unix_client.h"
#include "sys/clock.h"

namespace corral {
namespace {

using jsonrpc::json;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/corral-api-test-XXXXXX";
    char* p = ::mkdtemp(tmpl);
    EXPECT_NE(p, nullptr);
    path_ = p ? p : "";
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

sockaddr_un UnixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  return addr;
}

// A stream socket bound at `path`, not listening; invalid if bind() failed.
UniqueFd BoundSocket(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr = UnixAddress(path);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) fd.reset();
  return fd;
}

// A raw client: non-blocking socket, reads assembled into lines by the test.
class RawClient {
 public:
  explicit RawClient(const std::string& path) {
    fd_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_un addr = UnixAddress(path);
    connected_ = ::connect(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  bool connected() const { return connected_; }
  int fd() const { return fd_.get(); }
  // Non-blocking: returns bytes written (may be fewer than asked).
  size_t Write(std::string_view data) {
    ssize_t n = ::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL);
    return n < 0 ? 0 : static_cast<size_t>(n);
  }
  // Reads what is there; false on EOF or error.
  bool Pull() {
    char buf[65536];
    for (;;) {
      ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), 0);
      if (n > 0) {
        in_.append(buf, n);
        continue;
      }
      if (n == 0) return false;
      return errno == EAGAIN;
    }
  }
  std::optional<std::string> TakeLine() {
    size_t nl = in_.find('\n');
    if (nl == std::string::npos) return std::nullopt;
    std::string line = in_.substr(0, nl);
    in_.erase(0, nl + 1);
    return line;
  }
  void Close() { fd_.reset(); }
  void ShutdownWrite() { ::shutdown(fd_.get(), SHUT_WR); }

 private:
  UniqueFd fd_;
  bool connected_ = false;
  std::string in_;
};

UnixServer::Options WithPath(const std::string& path) {
  UnixServer::Options o;
  o.path = path;
  return o;
}

std::string Req(const json& id, const std::string& method, const json& params = nullptr) {
  return jsonrpc::Serialize(jsonrpc::MakeRequest(id, method, params));
}

class UnixServerTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer({}); }

  void StartServer(UnixServer::Options opts) {
    server_.reset();
    if (!loop_) {
      auto loop = EventLoop::Create();
      ASSERT_TRUE(loop.ok()) << loop.error().message();
      loop_ = std::move(loop).value();
    }
    opts.path = dir_.path() + "/corral.sock";
    auto server = UnixServer::Start(loop_.get(), opts);
    ASSERT_TRUE(server.ok()) << server.error().message();
    server_ = std::move(server).value();
    server_->Handle("echo", [this](Call call) {
      calls_by_conn_[call.reply_to.conn]++;
      server_->Reply(call.reply_to, call.request.params);
    });
    server_->Handle("whoami", [this](Call call) {
      server_->Reply(call.reply_to, json{{"pid", call.peer.pid},
                                         {"uid", call.peer.uid},
                                         {"gid", call.peer.gid},
                                         {"conn", call.reply_to.conn}});
    });
    server_->Handle("big", [this](Call call) {
      size_t n = call.request.params.value("n", 0);
      server_->Reply(call.reply_to, std::string(n, 'x'));
    });
    server_->Handle("later", [this](Call call) { later_.push_back(call.reply_to); });
    server_->Handle("throw", [](Call) { throw std::runtime_error("boom"); });
    server_->Handle("typed", [this](Call call) {
      jsonrpc::ParamReader p(call.request.params);
      auto t = p.Number("timeout_s", /*min=*/0);
      if (!p.ok()) {
        server_->ReplyError(call.reply_to, p.error());
        return;
      }
      server_->Reply(call.reply_to, json{{"timeout_s", t.value_or(-1)}});
    });
    server_->OnClose([this](ConnectionId id, CloseReason why) { closed_[id] = why; });
  }

  void Pump(int64_t max_wait_ns = 5 * kNsPerMs) {
    auto st = loop_->RunOnce(max_wait_ns);
    ASSERT_TRUE(st.ok()) << st.error().message();
  }

  // Pumps the loop until the client has a complete line (or the deadline passes).
  std::optional<json> Await(RawClient& c, int64_t timeout_ns = 5 * kNsPerSec) {
    int64_t deadline = MonotonicNs() + timeout_ns;
    while (MonotonicNs() < deadline) {
      if (auto line = c.TakeLine()) return json::parse(*line);
      Pump();
      c.Pull();
    }
    return std::nullopt;
  }

  bool PumpUntil(const std::function<bool()>& cond, int64_t timeout_ns = 5 * kNsPerSec) {
    int64_t deadline = MonotonicNs() + timeout_ns;
    while (MonotonicNs() < deadline) {
      if (cond()) return true;
      Pump();
    }
    return cond();
  }

  // A valid call on c still works: the server carried on.
  void ExpectEchoWorks(RawClient& c, int id) {
    ASSERT_EQ(c.Write(Req(id, "echo", json{{"n", id}})), Req(id, "echo", json{{"n", id}}).size());
    auto r = Await(c);
    ASSERT_TRUE(r.has_value()) << "no answer to a valid call";
    EXPECT_EQ((*r)["id"], id);
    EXPECT_EQ((*r)["result"]["n"], id);
  }

  ConnectionId NewestConnection() {
    ConnectionId newest = 0;
    for (ConnectionId id : server_->connections()) newest = std::max(newest, id);
    return newest;
  }

  TempDir dir_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<UnixServer> server_;
  std::vector<ReplyTo> later_;
  std::map<ConnectionId, CloseReason> closed_;
  std::map<ConnectionId, int> calls_by_conn_;
};

TEST_F(UnixServerTest, EchoRoundTrip) {
  RawClient c(server_->path());
  ASSERT_TRUE(c.connected());
  ExpectEchoWorks(c, 1);
  ExpectEchoWorks(c, 2);
}

TEST_F(UnixServerTest, PeerCredentialsAreTheCallersOwn) {
  RawClient c(server_->path());
  c.Write(Req("me", "whoami"));
  auto r = Await(c);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ((*r)["result"]["pid"], ::getpid());
  EXPECT_EQ((*r)["result"]["uid"], ::geteuid());
  EXPECT_EQ((*r)["result"]["gid"], ::getegid());
  auto peer = server_->Peer((*r)["result"]["conn"].get<ConnectionId>());
  ASSERT_TRUE(peer.has_value());
  EXPECT_EQ(peer->pid, ::getpid());
}

TEST_F(UnixServerTest, SocketFileIsMode0660InTheDaemonsGroup) {
  struct stat st;
  ASSERT_EQ(::lstat(server_->path().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  EXPECT_EQ(st.st_gid, ::getegid());
  EXPECT_EQ(st.st_uid, ::geteuid());
}

TEST_F(UnixServerTest, SocketGroupIsApplied) {
  if (::geteuid() != 0) GTEST_SKIP() << "chown to another group needs root";
  auto gid = ResolveGroup("65534");
  ASSERT_TRUE(gid.ok());
  UnixServer::Options opts;
  opts.group = *gid;
  StartServer(opts);
  struct stat st;
  ASSERT_EQ(::lstat(server_->path().c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, 65534u);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  RawClient c(server_->path());
  ExpectEchoWorks(c, 1);
}

TEST_F(UnixServerTest, ResolveGroupByNameAndNumber) {
  group* root = ::getgrgid(0);
  if (root == nullptr) GTEST_SKIP() << "no group 0 in the group database";
  auto by_name = ResolveGroup(root->gr_name);
  ASSERT_TRUE(by_name.ok()) << by_name.error().message();
  EXPECT_EQ(*by_name, 0u);
  EXPECT_EQ(ResolveGroup("123").value(), 123u);
  auto missing = ResolveGroup("no-such-group-corral");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message().find("unknown group"), std::string::npos);
}

TEST_F(UnixServerTest, SocketFileRemovedWhenServerEnds) {
  std::string path = server_->path();
  server_.reset();
  struct stat st;
  EXPECT_NE(::lstat(path.c_str(), &st), 0);
}

TEST_F(UnixServerTest, LiveSocketIsRefused) {
  auto second = UnixServer::Start(loop_.get(), WithPath(server_->path()));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code(), EADDRINUSE);
  EXPECT_NE(second.error().message().find("another corral daemon"), std::string::npos);
  RawClient c(server_->path());  // the first one is untouched
  ExpectEchoWorks(c, 1);
}

TEST_F(UnixServerTest, LiveListenerWithoutLockIsRefusedToo) {
  // Something else (not holding our lock) listening on the path: the connect() probe finds it.
  server_.reset();
  std::string path = dir_.path() + "/other.sock";
  UniqueFd other = BoundSocket(path);
  ASSERT_TRUE(other.valid());
  ASSERT_EQ(::listen(other.get(), 4), 0);
  auto s = UnixServer::Start(loop_.get(), WithPath(path));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), EADDRINUSE);
  struct stat st;
  EXPECT_EQ(::lstat(path.c_str(), &st), 0);  // not removed
}

TEST_F(UnixServerTest, StaleSocketIsReplaced) {
  server_.reset();
  std::string path = dir_.path() + "/stale.sock";
  // A dead daemon's socket: bound, then closed (the temporary goes) without unlink.
  ASSERT_TRUE(BoundSocket(path).valid());
  auto s = UnixServer::Start(loop_.get(), WithPath(path));
  ASSERT_TRUE(s.ok()) << s.error().message();
  server_ = std::move(s).value();
  server_->Handle("echo",
                  [this](Call call) { server_->Reply(call.reply_to, call.request.params); });
  RawClient c(path);
  ASSERT_TRUE(c.connected());
  ExpectEchoWorks(c, 9);
}

TEST_F(UnixServerTest, RegularFileAtThePathIsNeverRemoved) {
  std::string path = dir_.path() + "/file";
  {
    UniqueFd f(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    ASSERT_EQ(::write(f.get(), "precious", 8), 8);
  }
  auto s = UnixServer::Start(loop_.get(), WithPath(path));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), EEXIST);
  EXPECT_EQ(ReadSmallFile(path).value(), "precious");
}

TEST_F(UnixServerTest, MissingParentDirIsCreated0755) {
  std::string path = dir_.path() + "/a/b/corral.sock";
  auto s = UnixServer::Start(loop_.get(), WithPath(path));
  ASSERT_TRUE(s.ok()) << s.error().message();
  struct stat st;
  ASSERT_EQ(::stat((dir_.path() + "/a/b").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
}

TEST_F(UnixServerTest, GroupWritableParentDirIsRefused) {
  std::string sub = dir_.path() + "/open";
  ASSERT_EQ(::mkdir(sub.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(sub.c_str(), 0777), 0);
  auto s = UnixServer::Start(loop_.get(), WithPath(sub + "/corral.sock"));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("writable by group or others"), std::string::npos);
}

TEST_F(UnixServerTest, TooLongPathIsAClearError) {
  auto s = UnixServer::Start(loop_.get(), WithPath(dir_.path() + "/" + std::string(120, 'x')));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("too long"), std::string::npos);
}

TEST_F(UnixServerTest, BadInputGetsItsErrorAndTheConnectionCarriesOn) {
  RawClient c(server_->path());
  struct Case {
    std::string line;
    int code;
    json id;
  };
  std::vector<Case> cases = {
      {"garbage\n", -32700, nullptr},
      {"{\"jsonrpc\":\"2.0\",\"id\":1,\"meth\n", -32700, nullptr},  // truncated JSON
      {"\x01\x02\xff\xfe\n", -32700, nullptr},
      {"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"r\xc3\x28\"}\n", -32700, nullptr},  // bad UTF-8
      {"[1,2]\n", -32600, nullptr},
      {"{\"jsonrpc\":\"2.0\",\"id\":4}\n", -32600, 4},
      {"{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"echo\"}\n", -32600, nullptr},
      {Req(5, "no_such_method"), -32601, 5},
      {Req(6, "typed", json{{"timeout_s", "soon"}}), -32602, 6},
      {Req(7, "typed", json{{"timeout_s", -2}}), -32602, 7},
      {Req(8, "throw"), -32603, 8},
  };
  int valid_id = 100;
  for (const Case& k : cases) {
    SCOPED_TRACE(k.line);
    ASSERT_EQ(c.Write(k.line), k.line.size());
    auto r = Await(c);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ((*r)["jsonrpc"], "2.0");
    EXPECT_EQ((*r)["error"]["code"], k.code);
    EXPECT_EQ((*r)["id"], k.id);
    ExpectEchoWorks(c, ++valid_id);
  }
  // The typed-params message names the field.
  c.Write(Req(9, "typed", json{{"timeout_s", "soon"}}));
  EXPECT_EQ((*Await(c))["error"]["message"], "params.timeout_s must be a number, not string");
}

TEST_F(UnixServerTest, NotificationsGetNoReply) {
  RawClient c(server_->path());
  c.Write(Req(json(), "echo").replace(0, 0, ""));  // id null: a request, answered
  EXPECT_EQ((*Await(c))["id"], nullptr);
  // No id member at all: notifications, known or unknown method, never answered.
  std::string n1 = jsonrpc::Serialize(jsonrpc::MakeRequest(std::nullopt, "echo", json{{"a", 1}}));
  std::string n2 = jsonrpc::Serialize(jsonrpc::MakeRequest(std::nullopt, "nope"));
  c.Write(n1 + n2 + "\n\r\n  \n");  // blank lines are ignored too
  ExpectEchoWorks(c, 42);           // the first answer is the echo's: nothing came before it
  EXPECT_EQ(calls_by_conn_.size(), 1u);
  EXPECT_EQ(calls_by_conn_.begin()->second, 3);  // id-null echo, notification echo, echo 42
}

TEST_F(UnixServerTest, CrLfFramingWorks) {
  RawClient c(server_->path());
  std::string line = Req(1, "echo", json{{"x", 1}});
  line.insert(line.size() - 1, "\r");
  c.Write(line);
  auto r = Await(c);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ((*r)["result"]["x"], 1);
}

TEST_F(UnixServerTest, DeferredAnswersArriveOutOfOrderWithTheirIds) {
  RawClient c(server_->path());
  c.Write(Req("a", "later") + Req("b", "later"));
  ASSERT_TRUE(PumpUntil([&] { return later_.size() == 2; }));
  EXPECT_TRUE(server_->Reply(later_[1], "second"));
  EXPECT_FALSE(server_->Reply(later_[1], "again"));  // answered once only
  auto r1 = Await(c);
  EXPECT_EQ((*r1)["id"], "b");
  EXPECT_TRUE(server_->ReplyError(later_[0], jsonrpc::RpcError::Overloaded("queue full")));
  auto r2 = Await(c);
  EXPECT_EQ((*r2)["id"], "a");
  EXPECT_EQ((*r2)["error"]["code"], -32001);
}

TEST_F(UnixServerTest, LineOverTheLimitIsRefusedWithoutBufferingIt) {
  RawClient c(server_->path());
  ExpectEchoWorks(c, 1);
  ConnectionId id = NewestConnection();
  // 10 MiB in one line, written as fast as the server takes it.
  const size_t total = 10 * 1024 * 1024;
  std::string chunk(256 * 1024, 'a');
  size_t sent = 0;
  size_t max_buffered = 0;
  int64_t deadline = MonotonicNs() + 30 * kNsPerSec;
  while (sent < total && MonotonicNs() < deadline) {
    sent += c.Write(std::string_view(chunk).substr(0, std::min(chunk.size(), total - sent)));
    Pump(0);
    auto st = server_->Stats(id);
    ASSERT_TRUE(st.has_value());
    max_buffered = std::max(max_buffered, st->input_buffered);
  }
  ASSERT_EQ(sent, total);
  // Held at most one limit's worth plus one read, never the line.
  EXPECT_LE(max_buffered, kMaxLineBytes + 64 * 1024);
  EXPECT_GE(max_buffered, kMaxLineBytes / 2);  // it did buffer the allowed part
  // The error comes as soon as the limit is passed, before the line ends.
  auto err = Await(c);
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ((*err)["error"]["code"], -32600);
  EXPECT_NE((*err)["error"]["message"].get<std::string>().find("too large"), std::string::npos);
  EXPECT_EQ((*err)["id"], nullptr);
  c.Write("tail of the big line\n");
  ExpectEchoWorks(c, 2);
  EXPECT_LE(server_->Stats(id)->input_buffered, 64u * 1024);  // and the memory went back
}

TEST_F(UnixServerTest, LineExactlyAtTheLimitIsAccepted) {
  RawClient c(server_->path());
  std::string prefix = R"({"jsonrpc":"2.0","id":1,"method":"echo","params":{"s":")";
  std::string suffix = R"("}})";
  std::string line =
      prefix + std::string(kMaxLineBytes - prefix.size() - suffix.size(), 'y') + suffix;
  ASSERT_EQ(line.size(), kMaxLineBytes);
  line += "\n";
  size_t off = 0;
  int64_t deadline = MonotonicNs() + 30 * kNsPerSec;
  while (off < line.size() && MonotonicNs() < deadline) {
    off += c.Write(std::string_view(line).substr(off));
    Pump(0);
    c.Pull();
  }
  auto r = Await(c, 30 * kNsPerSec);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ((*r)["id"], 1);
  EXPECT_EQ((*r)["result"]["s"].get<std::string>().size(),
            kMaxLineBytes - prefix.size() - suffix.size());
}

TEST_F(UnixServerTest, ClientThatSendsAndVanishesIsNoticedAndItsAnswerIsANoOp) {
  {
    RawClient c(server_->path());
    c.Write(Req(1, "later"));
    ASSERT_TRUE(PumpUntil([&] { return later_.size() == 1; }));
    c.Close();
  }
  ConnectionId gone = later_[0].conn;
  ASSERT_TRUE(PumpUntil([&] { return closed_.count(gone) != 0; }));
  EXPECT_EQ(closed_[gone], CloseReason::kPeerGone);
  EXPECT_FALSE(server_->IsOpen(gone));
  EXPECT_FALSE(server_->Reply(later_[0], "too late"));  // a no-op, not a crash
  RawClient next(server_->path());
  ExpectEchoWorks(next, 2);
}

TEST_F(UnixServerTest, RequestsOfAClientThatClosedBeforeTheyWereReadAreDropped) {
  {
    RawClient c(server_->path());
    c.Write(Req(1, "later") + Req(2, "later"));
    c.Close();
  }
  ASSERT_TRUE(PumpUntil([&] { return !closed_.empty(); }));
  EXPECT_TRUE(later_.empty());
  EXPECT_EQ(closed_.begin()->second, CloseReason::kPeerGone);
}

TEST_F(UnixServerTest, HalfCloseStillGetsItsAnswersThenCloses) {
  RawClient c(server_->path());
  c.Write(Req(1, "later") + Req(2, "echo", json{{"v", 2}}));
  c.ShutdownWrite();
  ASSERT_TRUE(PumpUntil([&] { return later_.size() == 1; }));
  auto r = Await(c);
  EXPECT_EQ((*r)["id"], 2);
  for (int i = 0; i < 5; ++i) Pump(0);
  EXPECT_TRUE(server_->IsOpen(later_[0].conn));  // still waiting for the deferred answer
  EXPECT_TRUE(server_->Reply(later_[0], "done"));
  auto r2 = Await(c);
  EXPECT_EQ((*r2)["id"], 1);
  ASSERT_TRUE(PumpUntil([&] { return closed_.count(later_[0].conn) != 0; }));
  EXPECT_EQ(closed_[later_[0].conn], CloseReason::kDone);
}

TEST_F(UnixServerTest, LastRequestWithoutNewlineBeforeHalfCloseIsServed) {
  RawClient c(server_->path());
  std::string line = Req(3, "echo", json{{"v", 3}});
  line.pop_back();
  c.Write(line);
  c.ShutdownWrite();
  auto r = Await(c);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ((*r)["result"]["v"], 3);
}

TEST_F(UnixServerTest, ClientThatNeverReadsIsBoundedThenClosedWhileOthersAreServed) {
  UnixServer::Options opts;
  opts.output_high_water = 256 * 1024;
  opts.stuck_timeout_ns = 1 * kNsPerSec;
  StartServer(opts);
  RawClient hog(server_->path());
  ASSERT_TRUE(hog.connected());
  Pump(0);
  ConnectionId hog_id = NewestConnection();
  RawClient good(server_->path());
  const size_t answer = 64 * 1024;
  std::string req = Req(1, "big", json{{"n", answer}});
  size_t requests_sent = 0;
  size_t max_out = 0, max_in = 0;
  int64_t worst_latency = 0;
  int good_id = 1000;
  int64_t start = MonotonicNs();
  // Keep pushing requests for 0.6 s (within the stuck timeout); the hog reads nothing.
  while (MonotonicNs() - start < 600 * kNsPerMs) {
    for (int i = 0; i < 50; ++i) {
      if (hog.Write(req) != req.size()) break;  // its socket is full: the server stopped reading
      ++requests_sent;
    }
    Pump(0);
    auto st = server_->Stats(hog_id);
    ASSERT_TRUE(st.has_value());
    max_out = std::max(max_out, st->output_queued);
    max_in = std::max(max_in, st->input_buffered);
    {
      int64_t t0 = MonotonicNs();
      ExpectEchoWorks(good, ++good_id);
      worst_latency = std::max(worst_latency, MonotonicNs() - t0);
    }
  }
  // The hog's answers would be requests_sent * 64 KiB; the server holds a bounded part.
  EXPECT_GT(requests_sent * answer, 8u * opts.output_high_water);
  EXPECT_LE(max_out, opts.output_high_water + 2 * answer);
  EXPECT_LE(max_in, 64u * 1024 + 4096);
  EXPECT_LT(worst_latency, 500 * kNsPerMs) << "the other client was slowed";
  EXPECT_FALSE(server_->Stats(hog_id)->reading);
  // Stuck past the timeout: closed, and the owner is told.
  ASSERT_TRUE(PumpUntil([&] { return closed_.count(hog_id) != 0; }, 5 * kNsPerSec));
  EXPECT_EQ(closed_[hog_id], CloseReason::kStuck);
  ExpectEchoWorks(good, ++good_id);
}

TEST_F(UnixServerTest, FloodingClientDoesNotStarveAnother) {
  RawClient flood(server_->path());
  RawClient other(server_->path());
  Pump(0);
  std::string many;
  for (int i = 0; i < 1500; ++i) many += Req(i, "echo");
  ASSERT_EQ(flood.Write(many), many.size());
  std::string one = Req(7, "echo", json{{"o", 1}});
  ASSERT_EQ(other.Write(one), one.size());
  ConnectionId flood_id = 0, other_id = 0;
  for (ConnectionId id : server_->connections()) (flood_id == 0 ? flood_id : other_id) = id;
  if (flood_id > other_id) std::swap(flood_id, other_id);
  int turns = 0;
  std::optional<json> got;
  while (!got && turns < 100) {
    Pump(0);
    ++turns;
    other.Pull();
    if (auto line = other.TakeLine()) got = json::parse(*line);
    flood.Pull();  // keep its answers flowing
  }
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ((*got)["result"]["o"], 1);
  // The other client was answered while most of the flood still waited its turn.
  // One budget from its epoll event and one from its continuation timer per loop turn at most.
  EXPECT_LE(calls_by_conn_[flood_id], 2 * 32 * turns);
  EXPECT_LT(calls_by_conn_[flood_id], 1500);
  // And the flood is served completely in the end.
  ASSERT_TRUE(PumpUntil([&] {
    flood.Pull();
    return calls_by_conn_[flood_id] == 1500;
  }));
}

TEST_F(UnixServerTest, ManyClientsAtOnce) {
  constexpr int kClients = 64;
  constexpr int kCalls = 20;
  std::atomic<int> done{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  std::string path = server_->path();
  for (int t = 0; t < kClients; ++t) {
    threads.emplace_back([&, t] {
      auto c = UnixClient::Connect(path, 5 * kNsPerSec);
      if (!c.ok()) {
        failures++;
        done++;
        return;
      }
      for (int i = 0; i < kCalls; ++i) {
        auto r = c->Call("echo", json{{"t", t}, {"i", i}}, 10 * kNsPerSec);
        if (!r.ok() || !r->ok() || (*r->result)["t"] != t || (*r->result)["i"] != i) failures++;
      }
      done++;
    });
  }
  bool finished = PumpUntil([&] { return done == kClients; }, 60 * kNsPerSec);
  for (auto& th : threads) th.join();
  ASSERT_TRUE(finished);
  EXPECT_EQ(failures, 0);
  ASSERT_TRUE(PumpUntil([&] { return server_->connection_count() == 0; }));
  EXPECT_EQ(closed_.size(), static_cast<size_t>(kClients));
}

TEST_F(UnixServerTest, TooManyConnectionsGetsOverloaded) {
  UnixServer::Options opts;
  opts.max_connections = 2;
  StartServer(opts);
  RawClient a(server_->path()), b(server_->path());
  ASSERT_TRUE(PumpUntil([&] { return server_->connection_count() == 2; }));
  RawClient c(server_->path());
  auto r = Await(c);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ((*r)["error"]["code"], -32001);
  ExpectEchoWorks(a, 1);
}

TEST_F(UnixServerTest, ShutdownClosesEveryoneAndRemovesTheSocket) {
  RawClient a(server_->path());
  a.Write(Req(1, "later"));
  ASSERT_TRUE(PumpUntil([&] { return later_.size() == 1; }));
  std::string path = server_->path();
  server_->Shutdown();
  EXPECT_EQ(closed_[later_[0].conn], CloseReason::kShutdown);
  struct stat st;
  EXPECT_NE(::lstat(path.c_str(), &st), 0);
  EXPECT_FALSE(server_->Reply(later_[0], "x"));
}

TEST_F(UnixServerTest, RandomBytesInRandomFragmentsNeverHurtTheServer) {
  std::mt19937 rng(12345);
  RawClient c(server_->path());
  size_t newlines = 0;
  for (int round = 0; round < 200; ++round) {
    std::string junk(rng() % 2048, '\0');
    for (char& ch : junk) {
      ch = static_cast<char>(rng() % 256);
      if (ch == '\n') ++newlines;
    }
    c.Write(junk);
    Pump(0);
    c.Pull();
  }
  c.Write("\n");
  std::string sentinel = Req("sentinel", "echo", json{{"ok", true}});
  c.Write(sentinel);
  // Every answer before the sentinel's is a JSON-RPC error; the sentinel's is a result.
  int64_t deadline = MonotonicNs() + 10 * kNsPerSec;
  bool seen = false;
  size_t errors = 0;
  while (!seen && MonotonicNs() < deadline) {
    Pump();
    c.Pull();
    while (auto line = c.TakeLine()) {
      json r = json::parse(*line);
      if (r["id"] == "sentinel") {
        seen = true;
        EXPECT_EQ(r["result"]["ok"], true);
      } else {
        EXPECT_TRUE(r.contains("error")) << *line;
        ++errors;
      }
    }
  }
  EXPECT_TRUE(seen);
  EXPECT_GT(errors, 0u);
  EXPECT_LE(errors, newlines + 1);
}

// ---- LineFramer ----

// The reference: split on '\n'; a line longer than max is one kTooLong (also the unfinished last
// one); '\r' before '\n' dropped.
std::vector<std::string> Reference(const std::string& stream, size_t max) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t nl = stream.find('\n', start);
    if (nl == std::string::npos) {
      // An unfinished line is reported as soon as it passes the limit, before its end.
      if (stream.size() - start > max) out.push_back("<too long>");
      break;
    }
    std::string line = stream.substr(start, nl - start);
    if (line.size() > max) {
      out.push_back("<too long>");
    } else {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      out.push_back(line);
    }
    start = nl + 1;
  }
  return out;
}

TEST(LineFramerTest, RandomFragmentsFrameExactlyLikeTheReference) {
  std::mt19937 rng(20240601);
  for (int iter = 0; iter < 300; ++iter) {
    size_t max = 1 + rng() % 64;
    std::string stream;
    int lines = rng() % 40;
    for (int i = 0; i < lines; ++i) {
      size_t len = rng() % 3 == 0 ? rng() % (3 * max) : rng() % (max + 2);
      for (size_t j = 0; j < len; ++j) {
        char ch = static_cast<char>(rng() % 256);
        stream.push_back(ch == '\n' ? 'n' : ch);
      }
      if (rng() % 4 == 0) stream.push_back('\r');
      stream.push_back('\n');
    }
    for (size_t j = rng() % 20; j > 0; --j) stream.push_back('t');  // unterminated tail
    LineFramer f(max);
    std::vector<std::string> got;
    size_t off = 0;
    size_t max_chunk = 1 + rng() % 100;
    while (off < stream.size()) {
      size_t n = std::min<size_t>(stream.size() - off, 1 + rng() % max_chunk);
      f.Append(std::string_view(stream).substr(off, n));
      off += n;
      // Sometimes leave items in the framer across appends, as the server does under its budget.
      while (rng() % 3 != 0) {
        auto item = f.Next();
        if (item.kind == LineFramer::Kind::kNone) break;
        got.push_back(item.kind == LineFramer::Kind::kTooLong ? "<too long>"
                                                              : std::string(item.line));
      }
    }
    for (auto item = f.Next(); item.kind != LineFramer::Kind::kNone; item = f.Next()) {
      got.push_back(item.kind == LineFramer::Kind::kTooLong ? "<too long>"
                                                            : std::string(item.line));
    }
    std::vector<std::string> want = Reference(stream, max);
    for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
      ASSERT_EQ(got[i], want[i]) << "iteration " << iter << " item " << i << " max " << max;
    }
    ASSERT_EQ(got.size(), want.size()) << "iteration " << iter;
  }
}

TEST(LineFramerTest, HoldsAtMostTheLimitOfAnEndlessLine) {
  LineFramer f(1024 * 1024);
  std::string chunk(64 * 1024, 'z');
  size_t peak = 0;
  for (int i = 0; i < 200; ++i) {  // 12.5 MiB, no newline
    f.Append(chunk);
    peak = std::max(peak, f.buffered_bytes());
  }
  EXPECT_LE(peak, 1024u * 1024 + 64 * 1024);
  EXPECT_TRUE(f.discarding());
  EXPECT_EQ(f.Next().kind, LineFramer::Kind::kTooLong);
  EXPECT_EQ(f.Next().kind, LineFramer::Kind::kNone);  // one event per line, not per chunk
  f.Append("rest\nok\n");
  auto item = f.Next();
  ASSERT_EQ(item.kind, LineFramer::Kind::kLine);
  EXPECT_EQ(item.line, "ok");
  EXPECT_LE(f.buffered_bytes(), 64u * 1024);
}

// ---- client ----

TEST_F(UnixServerTest, ClientCallGetsResultsAndErrors) {
  std::atomic<bool> done{false};
  std::optional<Result<UnixClient::Response>> ok, err;
  std::thread t([&] {
    ok = CallDaemon(server_->path(), "echo", json{{"k", "v"}}, 5 * kNsPerSec);
    err = CallDaemon(server_->path(), "nope", nullptr, 5 * kNsPerSec);
    done = true;
  });
  bool finished = PumpUntil([&] { return done.load(); });
  t.join();
  ASSERT_TRUE(finished);
  ASSERT_TRUE(ok->ok()) << ok->error().message();
  ASSERT_TRUE((*ok)->ok());
  EXPECT_EQ((*(*ok)->result)["k"], "v");
  ASSERT_TRUE(err->ok());
  ASSERT_TRUE((*err)->error.has_value());
  EXPECT_EQ((*err)->error->code, -32601);
}

TEST_F(UnixServerTest, ClientTimesOutOnAnAnswerThatNeverComes) {
  std::atomic<bool> done{false};
  std::optional<Result<UnixClient::Response>> r;
  std::thread t([&] {
    r = CallDaemon(server_->path(), "later", nullptr, 300 * kNsPerMs);
    done = true;
  });
  int64_t t0 = MonotonicNs();
  bool finished = PumpUntil([&] { return done.load(); });
  t.join();
  ASSERT_TRUE(finished);
  ASSERT_FALSE(r->ok());
  EXPECT_EQ(r->error().code(), ETIMEDOUT);
  EXPECT_LT(MonotonicNs() - t0, 3 * kNsPerSec);
}

TEST(UnixClientTest, NoDaemonIsAClearError) {
  TempDir dir;
  auto c = UnixClient::Connect(dir.path() + "/none.sock", kNsPerSec);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), ENOENT);
  EXPECT_NE(
      c.error().message().find("cannot connect to corral daemon at " + dir.path() + "/none.sock: "),
      std::string::npos)
      << c.error().message();
  EXPECT_NE(c.error().message().find("is `corral daemon` running?"), std::string::npos);
}

// ---- default socket path ----

TEST(SocketPathTest, FollowsTheDesign) {
  EXPECT_EQ(DefaultSocketPathFor(0, "/run/user/0"), "/run/corral/corral.sock");
  EXPECT_EQ(DefaultSocketPathFor(1000, "/run/user/1000"), "/run/user/1000/corral.sock");
  EXPECT_EQ(DefaultSocketPathFor(1000, "/run/user/1000/"), "/run/user/1000/corral.sock");
  EXPECT_EQ(DefaultSocketPathFor(1000, nullptr), "/tmp/corral-1000/corral.sock");
  EXPECT_EQ(DefaultSocketPathFor(1000, ""), "/tmp/corral-1000/corral.sock");
  EXPECT_EQ(DefaultSocketPathFor(1000, "relative/dir"), "/tmp/corral-1000/corral.sock");
  EXPECT_FALSE(DefaultSocketPath().empty());
}

}  // namespace
}  // namespace corral
