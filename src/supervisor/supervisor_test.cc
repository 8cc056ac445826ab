// The Supervisor's policy knobs and its caller identities, on real cells (the test payload) in
// the pgroup backend, which every host has: who sees which cell, max_queued 0 refusing past
// max_running, keep_finished bounding the records, and Retention::kDropWhenDone.
#include "supervisor/supervisor.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <optional>
#include <string>
#include <variant>

#include "sys/clock.h"

namespace corral {
namespace {

const char* kPayload = CORRAL_PAYLOAD;

class SupervisorTest : public ::testing::Test {
 protected:
  void Make(SupervisorOptions opts) {
    auto loop = EventLoop::Create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(loop).value();
    auto config = ChooseContainment(ContainmentMode::kPgroup);
    ASSERT_TRUE(config.ok()) << config.error().message();
    opts.containment = config.value();
    opts.id_prefix = "st";
    auto sup = Supervisor::Create(loop_.get(), std::move(opts));
    ASSERT_TRUE(sup.ok()) << sup.error().message();
    sup_ = std::move(sup).value();
  }

  void TearDown() override {
    if (!sup_) return;
    bool done = false;
    sup_->Shutdown([&] { done = true; });
    ASSERT_TRUE(loop_->Run([&] { return done; }).ok());
    sup_.reset();
  }

  static CellSpec Spec(std::vector<std::string> args) {
    CellSpec s;
    s.argv = {kPayload};
    for (auto& a : args) s.argv.push_back(std::move(a));
    s.grace_ns = 300 * kNsPerMs;
    return s;
  }

  std::string Start(const Caller& caller, CellSpec spec, Retention r = Retention::kKeep,
                    Supervisor::DoneCallback on_done = nullptr) {
    auto started = sup_->Start(caller, std::move(spec), std::move(on_done), r);
    EXPECT_TRUE(std::holds_alternative<std::string>(started));
    return std::holds_alternative<std::string>(started) ? std::get<std::string>(started) : "";
  }

  void RunUntilDone(const std::string& id) {
    bool done = false;
    ASSERT_FALSE(sup_->Wait(Caller::System(), id, [&](const CellResult&) { done = true; }));
    ASSERT_TRUE(loop_->Run([&] { return done; }).ok());
  }

  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<Supervisor> sup_;
};

TEST_F(SupervisorTest, DefaultCallerOwnsNothingAndSystemSeesEverything) {
  Make({});
  uid_t me = getuid();
  Caller owner = Caller::Peer(me + 1, 0, 1);
  std::string id = Start(owner, Spec({"sleep", "30"}));
  EXPECT_TRUE(sup_->Find(owner, id));
  EXPECT_TRUE(sup_->Find(Caller::System(), id));
  EXPECT_FALSE(sup_->Find(Caller{}, id));
  EXPECT_FALSE(sup_->Find(Caller::Peer(me + 2, 0, 1), id));
  EXPECT_TRUE(sup_->List(Caller{}).empty());
  EXPECT_EQ(sup_->List(Caller::System()).size(), 1u);
  EXPECT_FALSE(Caller{}.root());
  auto refused = sup_->Kill(Caller{}, id, "cancelled");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->kind, Refusal::kNotFound);
  EXPECT_FALSE(sup_->Kill(Caller::System(), id, "cancelled"));
  RunUntilDone(id);
  EXPECT_EQ(sup_->Find(owner, id)->state, "cancelled");
}

TEST_F(SupervisorTest, NoQueueRefusesPastMaxRunning) {
  SupervisorOptions opts;
  opts.max_running = 1;
  opts.max_queued = 0;
  Make(opts);
  std::string first = Start(Caller::System(), Spec({"sleep", "30"}));
  auto second = sup_->Start(Caller::System(), Spec({"exit", "0"}));
  ASSERT_TRUE(std::holds_alternative<Refusal>(second));
  EXPECT_EQ(std::get<Refusal>(second).kind, Refusal::kOverloaded);
  EXPECT_EQ(sup_->stats().queued, 0u);
  EXPECT_EQ(sup_->stats().running, 1u);
  EXPECT_EQ(sup_->List(Caller::System()).size(), 1u);
  ASSERT_FALSE(sup_->Kill(Caller::System(), first, "cancelled"));
  RunUntilDone(first);
  RunUntilDone(Start(Caller::System(), Spec({"exit", "0"})));  // a slot again
}

TEST_F(SupervisorTest, KeepFinishedBoundsTheRecordsOldestFirst) {
  SupervisorOptions opts;
  opts.keep_finished = 2;
  Make(opts);
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    ids.push_back(Start(Caller::System(), Spec({"exit", std::to_string(i)})));
    RunUntilDone(ids.back());
  }
  EXPECT_FALSE(sup_->Find(Caller::System(), ids[0]));
  EXPECT_FALSE(sup_->Find(Caller::System(), ids[1]));
  auto kept = sup_->Find(Caller::System(), ids[3]);
  ASSERT_TRUE(kept && kept->result);
  EXPECT_EQ(kept->result->exit_code, 3);
  EXPECT_EQ(sup_->List(Caller::System()).size(), 2u);
  EXPECT_EQ(sup_->stats().finished_by_state.at("exited"), 4u);
}

TEST_F(SupervisorTest, DropWhenDoneKeepsTheRecordOnlyUntilItsWaitersRan) {
  Make({});
  std::string id;
  bool seen_in_waiter = false;
  id = Start(Caller::System(), Spec({"exit", "7"}), Retention::kDropWhenDone,
             [&](const CellResult& r) {
               EXPECT_EQ(r.exit_code, 7);
               auto l = sup_->Find(Caller::System(), id);
               seen_in_waiter = l && l->result && !l->kept && l->leader_pid > 0;
             });
  auto running = sup_->Find(Caller::System(), id);
  ASSERT_TRUE(running);
  EXPECT_FALSE(running->kept);
  RunUntilDone(id);
  EXPECT_TRUE(seen_in_waiter);
  EXPECT_FALSE(sup_->Find(Caller::System(), id));
  EXPECT_EQ(id.rfind("st-" + std::to_string(getpid()) + "-", 0), 0u);
}

}  // namespace
}  // namespace corral
