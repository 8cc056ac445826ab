#include "supervisor/queue_store_common.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace corral::queue {
namespace {

bool Exists(const std::string& p) {
  struct stat sb;
  return lstat(p.c_str(), &sb) == 0;
}

void Touch(const std::string& p) {
  auto fd = OpenFile(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_TRUE(fd.ok()) << fd.error().message();
}

// On PostgreSQL the names come from a shared database: a daemon (root) must unlink only the
// output files of its own state dir, whatever a row says.
TEST(RemoveOutputFiles, UnlinksOnlyFilesUnderTheStateDirsTasks) {
  char tmpl[] = "/tmp/corral-prune-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string root = tmpl, state = root + "/state", other = root + "/other";
  ASSERT_EQ(mkdir(state.c_str(), 0700), 0);
  ASSERT_EQ(mkdir((state + "/tasks").c_str(), 0700), 0);
  ASSERT_EQ(mkdir(other.c_str(), 0700), 0);
  std::string mine = AttemptOutputPath(state, 7, 1, false);
  std::string outside = other + "/victim", sibling = state + "/tasks.db";
  for (const std::string& p : {mine, outside, sibling}) Touch(p);
  RemoveOutputFiles(state, {mine, outside, sibling, state + "/tasks/../tasks.db", state + "/tasks/",
                            "", state + "/tasks/t-404.1.stdout"});
  EXPECT_FALSE(Exists(mine));
  EXPECT_TRUE(Exists(outside));
  EXPECT_TRUE(Exists(sibling));
  EXPECT_TRUE(Exists(state + "/tasks"));
  for (const std::string& p : {outside, sibling}) unlink(p.c_str());
  rmdir((state + "/tasks").c_str());
  rmdir(state.c_str());
  rmdir(other.c_str());
  rmdir(root.c_str());
}

TEST(NextPruneMs, ATenthOfTheRetentionBetweenOneSecondAndOneHourOrSoonAfterAFullBatch) {
  EXPECT_EQ(NextPruneMs(2000, 0), 1000);
  EXPECT_EQ(NextPruneMs(60 * 1000, 3), 6000);
  EXPECT_EQ(NextPruneMs(7LL * 24 * 3600 * 1000, 0), 3600 * 1000);
  EXPECT_EQ(NextPruneMs(7LL * 24 * 3600 * 1000, kPruneBatch), 10);
}

}  // namespace
}  // namespace corral::queue
