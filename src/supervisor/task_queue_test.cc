// The task queue's policy against its SQLite store in a temp dir, with a real Supervisor and
// EventLoop running real cells (/bin/sh, process-group containment so that no cgroup is needed):
// dispatch order, group limits, retries and their backoff, cancel, idempotent keys, recovery
// after a daemon died, retention. Each test observes what the cells did (files they write, the
// times their attempts started), not the queue's own counters, so a broken policy fails it.
#include "supervisor/task_queue.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "cell/containment.h"
#include "sys/clock.h"

namespace corral {
namespace {

using Json = nlohmann::json;
using Answer = std::variant<Json, Refusal>;

std::string ReadAll(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

class TaskQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/corral-task-queue-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto loop = EventLoop::Create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(loop).value();
    StartDaemon();
  }

  void TearDown() override {
    StopDaemon();
    std::filesystem::remove_all(dir_);
  }

  // A Supervisor and a TaskQueue on dir_, as `corral daemon` makes them (the Supervisor first:
  // its recovery tears down a dead daemon's cells before the queue recovers their attempts).
  void StartDaemon(int64_t parallel = 0, int64_t retention_ms = 0) {
    auto containment = ChooseContainment(ContainmentMode::kPgroup);
    ASSERT_TRUE(containment.ok()) << containment.error().message();
    SupervisorOptions so;
    so.containment = containment.value();
    so.state_dir = dir_ + "/sup";
    auto sup = Supervisor::Create(loop_.get(), so);
    ASSERT_TRUE(sup.ok()) << sup.error().message();
    sup_ = std::move(sup).value();
    TaskQueueOptions qo;
    qo.state_dir = dir_ + "/queue";
    qo.parallel = parallel;
    qo.retention_ms = retention_ms;
    auto q = TaskQueue::Open(loop_.get(), sup_.get(), qo);
    ASSERT_TRUE(q.ok()) << q.error().message();
    queue_ = std::move(q).value();
  }

  // Like a daemon that died: nothing is recorded of what its cells did (the Supervisor's
  // destructor kills them without a word to the queue).
  void StopDaemon() {
    queue_.reset();
    sup_.reset();
  }

  bool RunUntil(const std::function<bool()>& done, double seconds = 30) {
    int64_t deadline = MonotonicNs() + static_cast<int64_t>(seconds * 1e9);
    while (!done()) {
      if (MonotonicNs() > deadline) return false;
      if (!loop_->RunOnce(10 * kNsPerMs).ok()) return false;
    }
    return true;
  }

  // Submits without running the loop: tasks submitted together are all queued before the
  // first dispatch. The answer lands in *out.
  void SubmitAsync(const std::string& sh, Answer* out, std::optional<Answer>* got,
                   const std::function<void(TaskSubmission&)>& tweak = nullptr) {
    TaskSubmission sub;
    sub.owner = me_;
    sub.argv = {"sh"};
    sub.spec_json = Json{{"shell", sh}, {"grace_s", 0.2}}.dump();  // the cell params of `run`
    sub.backoff_ms = 0;
    if (tweak) tweak(sub);
    queue_->Submit(std::move(sub), [out, got](Answer a) {
      *out = a;
      *got = a;
    });
  }

  Json Submit(const std::string& sh, const std::function<void(TaskSubmission&)>& tweak = nullptr) {
    Answer a;
    std::optional<Answer> got;
    SubmitAsync(sh, &a, &got, tweak);
    EXPECT_TRUE(RunUntil([&] { return got.has_value(); }));
    EXPECT_TRUE(std::holds_alternative<Json>(a));
    return std::holds_alternative<Json>(a) ? std::get<Json>(a) : Json();
  }

  Json WaitDone(const std::string& id, double seconds = 30) {
    std::optional<Json> done;
    uint64_t waiter = 0;
    auto refusal = queue_->Wait(
        me_, id, [&done](Json t) { done = t; }, &waiter);
    EXPECT_FALSE(refusal.has_value()) << refusal->message;
    EXPECT_TRUE(RunUntil([&] { return done.has_value(); }, seconds)) << id << " never finished";
    if (!done) queue_->Unwait(id, waiter);
    return done.value_or(Json());
  }

  Json Get(const std::string& id) {
    auto t = queue_->Get(me_, id);
    return std::holds_alternative<Json>(t) ? std::get<Json>(t) : Json();
  }

  Json Reply(const std::function<void(TaskQueue::Reply)>& call) {
    std::optional<Answer> got;
    call([&got](Answer a) { got = a; });
    EXPECT_TRUE(RunUntil([&] { return got.has_value(); }));
    if (!got || !std::holds_alternative<Json>(*got)) return Json();
    return std::get<Json>(*got);
  }

  // The test's own identity, as SO_PEERCRED would give it (root here: it may set group limits).
  Caller me_ = Caller::Peer(getuid(), getgid(), getpid());
  std::string dir_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<Supervisor> sup_;
  std::unique_ptr<TaskQueue> queue_;
};

TEST_F(TaskQueueTest, HigherPriorityRunsFirstThenOldestFirst) {
  StopDaemon();
  StartDaemon(/*parallel=*/1);
  std::string order = dir_ + "/order";
  std::vector<int64_t> priorities = {0, 5, 0, 5, 9};
  std::vector<Answer> answers(priorities.size());
  std::vector<std::optional<Answer>> got(priorities.size());
  for (size_t i = 0; i < priorities.size(); ++i) {
    SubmitAsync("echo $CORRAL_TASK >> " + order, &answers[i], &got[i],
                [p = priorities[i]](TaskSubmission& s) { s.priority = p; });
  }
  std::vector<std::string> ids;
  for (size_t i = 0; i < priorities.size(); ++i) {
    ASSERT_TRUE(RunUntil([&] { return got[i].has_value(); }));
    ids.push_back(std::get<Json>(answers[i])["id"]);
  }
  for (const std::string& id : ids) EXPECT_EQ(WaitDone(id)["state"], "succeeded");
  // 9 first; then the two 5s, older first; then the two 0s, older first.
  EXPECT_EQ(ReadAll(order),
            ids[4] + "\n" + ids[1] + "\n" + ids[3] + "\n" + ids[0] + "\n" + ids[2] + "\n");
}

TEST_F(TaskQueueTest, GroupLimitKeepsItsTasksApartWhileOtherGroupsRun) {
  Json set = Reply([&](TaskQueue::Reply r) { queue_->SetGroup(me_, "one", 1, r); });
  EXPECT_EQ(set["parallel"], 1);
  // Each task of "one" holds a directory while it runs: a second one at once fails to make it.
  std::string hold = "mkdir " + dir_ + "/held || exit 3; sleep 0.5; rmdir " + dir_ + "/held";
  auto in_one = [](TaskSubmission& s) { s.group = "one"; };
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(Submit(hold, in_one)["id"]);
  // Another group is not held back by "one": it finishes while "one" still has work.
  std::string other = Submit("true", [](TaskSubmission& s) { s.group = "two"; })["id"];
  EXPECT_EQ(WaitDone(other)["state"], "succeeded");
  EXPECT_NE(Get(ids[2])["state"], "succeeded");
  for (const std::string& id : ids) EXPECT_EQ(WaitDone(id)["state"], "succeeded") << id;
}

TEST_F(TaskQueueTest, FailedAttemptsAreRetriedAfterADoublingBackoff) {
  Json t = Submit("test $CORRAL_ATTEMPT -ge 3", [](TaskSubmission& s) {
    s.retries = 3;
    s.backoff_ms = 300;
  });
  Json done = WaitDone(t["id"]);
  EXPECT_EQ(done["state"], "succeeded");
  EXPECT_EQ(done["attempts"], 3);
  const Json& list = done["attempt_list"];
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0]["state"], "failed");
  EXPECT_EQ(list[1]["state"], "failed");
  EXPECT_EQ(list[2]["state"], "succeeded");
  // Attempt 2 waited the backoff (300 ms) after attempt 1 ended, attempt 3 twice that.
  double gap1 = list[1]["started"].get<double>() - list[0]["ended"].get<double>();
  double gap2 = list[2]["started"].get<double>() - list[1]["ended"].get<double>();
  EXPECT_GE(gap1, 0.29);
  EXPECT_GE(gap2, 0.59);
}

TEST_F(TaskQueueTest, NoAttemptsLeftEndsTheTaskWithItsLastOutcome) {
  Json done = WaitDone(Submit("exit 4", [](TaskSubmission& s) { s.retries = 1; })["id"]);
  EXPECT_EQ(done["state"], "failed");
  EXPECT_EQ(done["attempts"], 2);
  EXPECT_EQ(done["exit_code"], 4);
}

TEST_F(TaskQueueTest, CancelEndsAQueuedTaskUnrunAndARunningOneByItsCell) {
  StopDaemon();
  StartDaemon(/*parallel=*/1);
  std::string ran = dir_ + "/ran";
  std::string running = Submit("touch " + dir_ + "/started; sleep 30")["id"];
  std::string queued = Submit("touch " + ran)["id"];
  ASSERT_TRUE(RunUntil([&] { return access((dir_ + "/started").c_str(), F_OK) == 0; }));
  EXPECT_EQ(Get(queued)["state"], "queued");

  Json q = Reply([&](TaskQueue::Reply r) { queue_->Cancel(me_, queued, r); });
  EXPECT_EQ(q["state"], "cancelled");
  EXPECT_EQ(q["attempts"], 0);

  int64_t before = MonotonicNs();
  Json r = Reply([&](TaskQueue::Reply rep) { queue_->Cancel(me_, running, rep); });
  EXPECT_EQ(r["state"], "cancelled");
  EXPECT_LT(MonotonicNs() - before, 10 * kNsPerSec);  // not the 30 s of its sleep
  Json t = Get(running);
  EXPECT_EQ(t["attempt_list"][0]["state"], "cancelled");

  // The slot is free again and the cancelled task never ran.
  EXPECT_EQ(WaitDone(Submit("true")["id"])["state"], "succeeded");
  EXPECT_NE(access(ran.c_str(), F_OK), 0);
  // Cancelling what is finished is refused.
  std::optional<Answer> again;
  queue_->Cancel(me_, running, [&again](Answer a) { again = a; });
  ASSERT_TRUE(RunUntil([&] { return again.has_value(); }));
  EXPECT_TRUE(std::holds_alternative<Refusal>(*again));
}

TEST_F(TaskQueueTest, ARepeatedKeyReturnsTheSameTask) {
  std::string count = dir_ + "/count";
  auto keyed = [](TaskSubmission& s) { s.key = "build-42"; };
  Json first = Submit("echo x >> " + count, keyed);
  Json second = Submit("echo x >> " + count, keyed);
  EXPECT_EQ(first["existing"], false);
  EXPECT_EQ(second["existing"], true);
  EXPECT_EQ(first["id"], second["id"]);
  EXPECT_EQ(WaitDone(first["id"])["state"], "succeeded");
  EXPECT_EQ(ReadAll(count), "x\n");
  // Another key, or none, is another task.
  Json other = Submit("true", [](TaskSubmission& s) { s.key = "build-43"; });
  EXPECT_NE(other["id"], first["id"]);
  auto list = queue_->List(me_, "", "", 100);
  EXPECT_EQ(std::get<Json>(list)["tasks"].size(), 2u);
}

TEST_F(TaskQueueTest, ARestartMarksTheDeadDaemonsAttemptCrashedAndRunsTheTaskAgain) {
  // Attempt 1 runs until the daemon dies; attempt 2 succeeds.
  std::string id = Submit("touch " + dir_ +
                              "/a$CORRAL_ATTEMPT; test $CORRAL_ATTEMPT -ge 2 || "
                              "sleep 30",
                          [](TaskSubmission& s) { s.retries = 1; })["id"];
  ASSERT_TRUE(RunUntil([&] { return access((dir_ + "/a1").c_str(), F_OK) == 0; }));
  // Its identity rides with the next commit; give the loop a turn to make it.
  ASSERT_TRUE(RunUntil([&] { return !Get(id)["attempt_list"][0]["cell"]["id"].is_null(); }));
  StopDaemon();

  StartDaemon();
  EXPECT_EQ(queue_->recovered_crashed(), 1);
  Json done = WaitDone(id);
  EXPECT_EQ(done["state"], "succeeded");
  ASSERT_EQ(done["attempt_list"].size(), 2u);
  EXPECT_EQ(done["attempt_list"][0]["state"], "crashed");
  EXPECT_EQ(done["attempt_list"][0]["reason"], "daemon_died");
  EXPECT_EQ(done["attempt_list"][1]["state"], "succeeded");
}

TEST_F(TaskQueueTest, ARestartWithNoAttemptsLeftLeavesTheTaskCrashed) {
  std::string id = Submit("touch " + dir_ + "/up; sleep 30")["id"];
  ASSERT_TRUE(RunUntil([&] { return access((dir_ + "/up").c_str(), F_OK) == 0; }));
  StopDaemon();
  StartDaemon();
  EXPECT_EQ(queue_->recovered_crashed(), 1);
  EXPECT_EQ(Get(id)["state"], "crashed");
  EXPECT_EQ(queue_->counts().at("crashed"), 1);
  EXPECT_EQ(queue_->counts().at("running"), 0);
}

TEST_F(TaskQueueTest, RetentionRemovesFinishedTasksAndTheirFilesButNotRunningOnes) {
  StopDaemon();
  StartDaemon(/*parallel=*/0, /*retention_ms=*/1000);
  std::string done_id = Submit("echo out; echo err >&2")["id"];
  Json done = WaitDone(done_id);
  ASSERT_EQ(done["state"], "succeeded");
  std::string out = done["attempt_list"][0]["stdout_path"];
  std::string err = done["attempt_list"][0]["stderr_path"];
  EXPECT_EQ(ReadAll(out), "out\n");
  std::string live = Submit("sleep 30")["id"];
  // Gone within about two prune periods (1 s each) after the retention passed.
  ASSERT_TRUE(RunUntil([&] { return Get(done_id).is_null(); }, 10));
  // The files go once the rows' removal is durable.
  EXPECT_TRUE(
      RunUntil([&] { return access(out.c_str(), F_OK) != 0 && access(err.c_str(), F_OK) != 0; }));
  EXPECT_EQ(queue_->counts().at("succeeded"), 0);
  EXPECT_EQ(Get(live)["state"], "running");
  Json c = Reply([&](TaskQueue::Reply r) { queue_->Cancel(me_, live, r); });
  EXPECT_EQ(c["state"], "cancelled");
}

}  // namespace
}  // namespace corral
