// The daemon's methods over a real Unix socket, a real Supervisor and real cells, served by a real
// EventLoop on the test's thread; clients are raw sockets driven between loop turns.
#include "api/methods/methods.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "sys/clock.h"
#include "sys/fd.h"

namespace corral::api {
namespace {

using jsonrpc::json;

class MethodsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/corral-methods-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto loop = EventLoop::Create();
    ASSERT_TRUE(loop.ok()) << loop.error().message();
    loop_ = std::move(loop).value();
    auto config = ChooseContainment(std::nullopt);
    ASSERT_TRUE(config.ok()) << config.error().message();
    SupervisorOptions so;
    so.containment = config.value();
    so.reap_orphans = false;
    auto sup = Supervisor::Create(loop_.get(), so);
    ASSERT_TRUE(sup.ok()) << sup.error().message();
    sup_ = std::move(sup).value();
    UnixServer::Options uo;
    uo.path = dir_ + "/corral.sock";
    auto server = UnixServer::Start(loop_.get(), uo);
    ASSERT_TRUE(server.ok()) << server.error().message();
    server_ = std::move(server).value();
    methods_ = RegisterMethods(server_.get(), sup_.get(), loop_.get());
  }

  void TearDown() override {
    bool done = false;
    sup_->Shutdown([&] { done = true; });
    PumpUntil([&] { return done; }, 10 * kNsPerSec);
    server_.reset();
    sup_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  UniqueFd Connect() {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, (dir_ + "/corral.sock").c_str(), sizeof(addr.sun_path) - 1);
    EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    return fd;
  }

  void Send(const UniqueFd& fd, const std::string& method, const json& params) {
    std::string line = jsonrpc::Serialize(jsonrpc::MakeRequest(json(1), method, params));
    ASSERT_EQ(::send(fd.get(), line.data(), line.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(line.size()));
  }

  bool PumpUntil(const std::function<bool()>& cond, int64_t timeout_ns = 10 * kNsPerSec) {
    int64_t deadline = MonotonicNs() + timeout_ns;
    while (!cond() && MonotonicNs() < deadline) {
      if (!loop_->RunOnce(5 * kNsPerMs).ok()) return false;
    }
    return cond();
  }

  uint64_t Finished(const std::string& state) {
    auto by_state = sup_->stats().finished_by_state;
    return by_state.count(state) ? by_state[state] : 0;
  }

  std::string dir_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<Supervisor> sup_;
  std::unique_ptr<UnixServer> server_;
  std::shared_ptr<Methods> methods_;
};

TEST_F(MethodsTest, ClientsThatDisconnectDuringRunCancelTheirCellsAndLeaveNoBookkeeping) {
  constexpr int kClients = 5;
  std::vector<UniqueFd> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(Connect());
    Send(clients.back(), "run", json{{"argv", {"sleep", "60"}}});
  }
  ASSERT_TRUE(PumpUntil([&] { return sup_->stats().running == kClients; }));
  EXPECT_EQ(methods_->run_cells.connections(), static_cast<size_t>(kClients));

  clients.clear();  // every client goes while its `run` is pending
  ASSERT_TRUE(PumpUntil([&] { return Finished("cancelled") == kClients; }))
      << "running: " << sup_->stats().running;
  // Each cancelled cell's end arrives after its connection closed: nothing may be kept for it.
  EXPECT_EQ(methods_->run_cells.connections(), 0u);
}

TEST_F(MethodsTest, RunAnsweredNormallyLeavesNoBookkeeping) {
  UniqueFd c = Connect();
  Send(c, "run", json{{"argv", {"true"}}});
  ASSERT_TRUE(PumpUntil([&] { return Finished("exited") == 1; }));
  EXPECT_EQ(methods_->run_cells.connections(), 0u);
}

TEST_F(MethodsTest, StartedCellsOutliveTheirConnection) {
  {
    UniqueFd c = Connect();
    Send(c, "start", json{{"argv", {"sleep", "60"}}});
    ASSERT_TRUE(PumpUntil([&] { return sup_->stats().running == 1; }));
  }
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(loop_->RunOnce(5 * kNsPerMs).ok());
  EXPECT_EQ(sup_->stats().running, 1u);
  EXPECT_EQ(Finished("cancelled"), 0u);
}

TEST(ConnectionCellsTest, UnbindAfterTheConnectionClosedCreatesNothing) {
  ConnectionCells cells;
  cells.Bind(7, "d-1");
  cells.Bind(7, "d-2");
  EXPECT_EQ(cells.TakeAll(7), (std::set<std::string>{"d-1", "d-2"}));
  cells.Unbind(7, "d-1");  // the cancelled cells end after the close
  cells.Unbind(7, "d-2");
  EXPECT_EQ(cells.connections(), 0u);
  cells.Bind(8, "d-3");
  cells.Unbind(8, "d-3");
  EXPECT_EQ(cells.connections(), 0u);
}

}  // namespace
}  // namespace corral::api
