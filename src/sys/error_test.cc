#include "sys/error.h"

#include <gtest/gtest.h>

#include "sys/fd.h"

namespace corral {

TEST(ErrorTest, FromErrnoNamesCallObjectAndReason) {
  Error e = Error::FromErrno(ENOENT, "open", "/nope");
  EXPECT_EQ(e.code(), ENOENT);
  EXPECT_EQ(e.message(), "open `/nope`: No such file or directory");
}

TEST(ErrorTest, WrapPrefixesContextAndKeepsErrno) {
  Error e = Error::FromErrno(EACCES, "mkdir", "/x").Wrap("create cell c-1");
  EXPECT_EQ(e.code(), EACCES);
  EXPECT_EQ(e.message(), "create cell c-1: mkdir `/x`: Permission denied");
}

TEST(ErrorTest, ReadSmallFileOfMissingFileCarriesErrno) {
  auto r = ReadSmallFile("/nonexistent/corral");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ENOENT);
}

}  // namespace corral
