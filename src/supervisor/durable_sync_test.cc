#include "supervisor/durable_sync.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <thread>

namespace corral {
namespace {

// Waits until the helper says a sync finished; returns what Done() reports.
uint64_t WaitDone(DurableSync& s) {
  pollfd p{s.event_fd(), POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 5000), 1);
  std::string error;
  uint64_t done = s.Done(&error);
  EXPECT_EQ(error, "");
  return done;
}

TEST(DurableSync, ReportsTheHighestRequestedSeqAfterASync) {
  char path[] = "/var/tmp/corral-durable-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  {
    auto s = DurableSync::Start(path);
    ASSERT_TRUE(s.ok()) << s.error().message();
    (*s)->Request(1);
    (*s)->Request(3);  // may ride with the first sync or get its own
    uint64_t done = WaitDone(**s);
    while (done < 3) done = WaitDone(**s);
    EXPECT_EQ(done, 3u);
    (*s)->Request(2);  // already covered: no new sync, nothing to wait for
    pollfd p{(*s)->event_fd(), POLLIN, 0};
    EXPECT_EQ(poll(&p, 1, 100), 0);
    EXPECT_TRUE((*s)->SyncNow().ok());
  }
  unlink(path);
}

TEST(DurableSync, CheckpointsOnItsThreadOnlyOnceTheWalHoldsEnoughFrames) {
  char path[] = "/var/tmp/corral-durable-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  {
    std::atomic<int> checkpoints{0};
    std::atomic<bool> on_caller_thread{false};
    std::thread::id caller = std::this_thread::get_id();
    auto s = DurableSync::Start(path, [&] {
      if (std::this_thread::get_id() == caller) on_caller_thread = true;
      ++checkpoints;
    });
    ASSERT_TRUE(s.ok()) << s.error().message();
    (*s)->Request(1, DurableSync::kCheckpointFrames - 1);
    while (WaitDone(**s) < 1) {
    }
    (*s)->Request(2, DurableSync::kCheckpointFrames);
    while (WaitDone(**s) < 2) {
    }
    for (int i = 0; i < 500 && checkpoints == 0; ++i) usleep(1000);  // runs after the event
    EXPECT_EQ(checkpoints, 1);
    EXPECT_FALSE(on_caller_thread);
  }
  unlink(path);
}

TEST(DurableSync, MissingWalIsAnErrorNamingIt) {
  auto s = DurableSync::Start("/nonexistent/tasks.db-wal");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("/nonexistent/tasks.db-wal"), std::string::npos);
}

}  // namespace
}  // namespace corral
