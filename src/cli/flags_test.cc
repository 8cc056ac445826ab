// The command line's value parsers (cli/flags.h), with the inputs their fuzz target
// (flags_fuzz.cc) found wrong.
#include "cli/flags.h"

#include <gtest/gtest.h>

#include <string>

namespace corral::cli {
namespace {

TEST(ParseBytesTest, ReadsSuffixesAsPowersOf1024) {
  EXPECT_EQ(ParseBytes("512"), 512u);
  EXPECT_EQ(ParseBytes("4K"), 4096u);
  EXPECT_EQ(ParseBytes("2MiB"), 2u << 20);
  EXPECT_EQ(ParseBytes("1G"), 1u << 30);
  EXPECT_EQ(ParseBytes("17179869184G"), std::nullopt);  // over 2^64
  EXPECT_EQ(ParseBytes("5x"), std::nullopt);
}

// Found by flags_fuzz: strtoull skips leading space and wraps a minus sign, so " -2" read as
// 2^64-2 bytes (`--memory ' -2'` was an unlimited limit instead of an error).
TEST(ParseBytesTest, RefusesNegativeNumbersAfterLeadingSpace) {
  EXPECT_EQ(ParseBytes("-2"), std::nullopt);
  EXPECT_EQ(ParseBytes(" -2"), std::nullopt);
  EXPECT_EQ(ParseBytes("\t-1K"), std::nullopt);
  EXPECT_EQ(ParseBytes(" 2"), std::nullopt);
}

TEST(ParseDurationTest, ReadsUnitsAndRefusesNegativeOrHuge) {
  EXPECT_EQ(ParseDurationNs("500ms"), 500'000'000);
  EXPECT_EQ(ParseDurationNs("2m"), 120'000'000'000);
  EXPECT_EQ(ParseDurationNs("1.5"), 1'500'000'000);
  EXPECT_EQ(ParseDurationNs("-1s"), std::nullopt);
  EXPECT_EQ(ParseDurationNs("nan"), std::nullopt);
  EXPECT_EQ(ParseDurationNs("1e400"), std::nullopt);
  EXPECT_EQ(ParseDurationNs("1e12h"), std::nullopt);
}

TEST(ParseIntegerTest, RefusesFractionsSpacesAndOutOfRange) {
  EXPECT_EQ(ParseInteger("64", 1, 100), 64);
  EXPECT_EQ(ParseInteger("1.5", 1, 100), std::nullopt);
  EXPECT_EQ(ParseInteger(" 5", 1, 100), std::nullopt);
  EXPECT_EQ(ParseInteger("101", 1, 100), std::nullopt);
  EXPECT_EQ(ParseInteger("-1", 0, 100), std::nullopt);
  EXPECT_EQ(ParseNonNegative("0.8"), 0.8);
  EXPECT_EQ(ParseNonNegative("inf"), std::nullopt);
}

}  // namespace
}  // namespace corral::cli
