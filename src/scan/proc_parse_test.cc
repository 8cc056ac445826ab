// Parsers of /proc text, driven by real kernel output and by fuzz-style random and hostile
// input: they must never crash, never read outside the input, and either parse exactly or
// reject with a message.
#include "scan/proc_parse.h"

#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <random>
#include <string>

#include "sys/fd.h"

namespace corral::scan {
namespace {

std::string StatLine(const std::string& comm, char state = 'S', int ppid = 1) {
  return "4242 (" + comm + ") " + state + " " + std::to_string(ppid) +
         " 4242 4242 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 123456 1000000 250 "
         "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
}

TEST(ProcStatTest, ParsesOwnStatFromTheKernel) {
  auto text = ReadSmallFile("/proc/self/stat");
  ASSERT_TRUE(text.ok());
  auto st = ParseProcStat(text.value());
  ASSERT_TRUE(st.ok()) << st.error().message();
  EXPECT_EQ(st->pid, getpid());
  EXPECT_EQ(st->ppid, getppid());
  EXPECT_EQ(st->state, 'R');
  EXPECT_GE(st->num_threads, 1);
  EXPECT_GT(st->starttime_ticks, 0u);
}

TEST(ProcStatTest, CommWithParensSpacesAndDigitsIsTakenToTheLastParen) {
  for (const std::string comm :
       {"a) b", ") S 1 (", "x y z", "((()))", "", "1 2 3 4 5 6 7", "tab\there", "new\nline", ")"}) {
    auto st = ParseProcStat(StatLine(comm, 'Z', 77));
    ASSERT_TRUE(st.ok()) << comm << ": " << st.error().message();
    EXPECT_EQ(st->comm, comm);
    EXPECT_EQ(st->state, 'Z');
    EXPECT_EQ(st->ppid, 77);
    EXPECT_EQ(st->utime_ticks, 7u);
    EXPECT_EQ(st->stime_ticks, 3u);
    EXPECT_EQ(st->num_threads, 1);
    EXPECT_EQ(st->starttime_ticks, 123456u);
    EXPECT_EQ(st->rss_pages, 250);
  }
}

TEST(ProcStatTest, HostileCommSetByTheKernelRoundTrips) {
  // A real process renames itself (prctl PR_SET_NAME) to something that looks like stat fields.
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    prctl(PR_SET_NAME, ") R 1 2 (x");
    char c = 0;
    if (write(p[1], &c, 1) != 1) _exit(1);
    pause();
    _exit(0);
  }
  char c;
  ASSERT_EQ(read(p[0], &c, 1), 1);
  auto text = ReadSmallFile("/proc/" + std::to_string(pid) + "/stat");
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  close(p[0]);
  close(p[1]);
  ASSERT_TRUE(text.ok());
  auto st = ParseProcStat(text.value());
  ASSERT_TRUE(st.ok()) << st.error().message();
  EXPECT_EQ(st->comm, ") R 1 2 (x");
  EXPECT_EQ(st->ppid, getpid());
}

TEST(ProcStatTest, RejectsTruncatedAndMalformedLines) {
  std::string good = StatLine("ok");
  // Every cut before the last field parsed (24, rss "250") must be rejected.
  size_t last = good.find(" 250 ") + 1;
  for (size_t cut = 0; cut <= last; ++cut) {
    EXPECT_FALSE(ParseProcStat(good.substr(0, cut)).ok()) << cut;
  }
  EXPECT_FALSE(ParseProcStat("x (a) S 1").ok());
  EXPECT_FALSE(ParseProcStat("-5 (a) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1 1 1").ok());
  EXPECT_FALSE(ParseProcStat("5 (a) SS 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1 1 1").ok());
  EXPECT_FALSE(ParseProcStat("5 (a S 1 1 1").ok());
  EXPECT_FALSE(ParseProcStat("99999999999999999999 (a) S 1").ok());
  auto bad = ParseProcStat("5 (a) S 1 1 1 0 -1 0 0 0 0 0 zz 0 0 0 20 0 1 0 1 1 1");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("field 14"), std::string::npos);
}

TEST(ProcStatTest, FuzzRandomBytesNeverCrash) {
  std::mt19937 rng(12345);
  // Built with its size: a std::string made from the literal alone would stop before the NUL.
  const char kAlphabet[] = "0123456789 ()-SZDRx\n\t\0";
  const std::string alphabet(kAlphabet, sizeof kAlphabet - 1);
  ASSERT_EQ(alphabet.back(), '\0');
  for (int i = 0; i < 20000; ++i) {
    std::string s(rng() % 200, ' ');
    for (char& c : s) c = alphabet[rng() % alphabet.size()];
    (void)ParseProcStat(s);
    (void)ParseNofileLimit(s);
    (void)ParseSchedExecStartNs(s);
    (void)ParseLoadavgTasks(s);
  }
}

TEST(ProcStatTest, FuzzMutationsOfAValidLineParseOrReject) {
  std::mt19937 rng(777);
  std::string good = StatLine("fuzz me");
  for (int i = 0; i < 20000; ++i) {
    std::string s = good;
    for (int k = 0; k < 3; ++k) {
      size_t at = rng() % s.size();
      switch (rng() % 3) {
        case 0: s[at] = static_cast<char>(rng() % 256); break;
        case 1: s.erase(at, 1); break;
        default: s.insert(at, 1, static_cast<char>(rng() % 256)); break;
      }
    }
    auto st = ParseProcStat(s);
    if (st.ok()) {
      EXPECT_GT(st->pid, 0);
      EXPECT_LE(st->comm.size(), s.size());
    } else {
      EXPECT_FALSE(st.error().message().empty());
    }
  }
}

TEST(NofileLimitTest, ParsesOwnLimitsAndUnlimited) {
  auto text = ReadSmallFile("/proc/self/limits");
  ASSERT_TRUE(text.ok());
  auto lim = ParseNofileLimit(text.value());
  ASSERT_TRUE(lim.ok()) << lim.error().message();
  EXPECT_GT(lim->soft, 0u);
  EXPECT_GE(lim->hard, lim->soft);
  auto u = ParseNofileLimit(
      "Limit                     Soft Limit           Hard Limit           Units     \n"
      "Max open files            unlimited            unlimited            files     \n");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->soft, NofileLimit::kUnlimited);
  EXPECT_FALSE(ParseNofileLimit("Max open files  12\n").ok());
  EXPECT_FALSE(ParseNofileLimit("Max processes 10 10 processes\n").ok());
}

TEST(SchedTest, ParsesExecStartInNanoseconds) {
  auto v = ParseSchedExecStartNs("x (1, #threads: 1)\n---\nse.exec_start   :   411861.949565\n");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v.value(), 411861949565);
  EXPECT_EQ(ParseSchedExecStartNs("se.exec_start : 12\n").value(), 12000000);
  EXPECT_FALSE(ParseSchedExecStartNs("se.exec_start : -1.5\n").ok());
  EXPECT_FALSE(ParseSchedExecStartNs("se.exec_start : 1.1234567\n").ok());
  auto own = ReadSmallFile("/proc/thread-self/sched");
  if (own.ok()) {
    EXPECT_TRUE(ParseSchedExecStartNs(own.value()).ok());
  }
}

TEST(LoadavgTest, ParsesTaskTotal) {
  EXPECT_EQ(ParseLoadavgTasks("0.00 0.01 0.05 1/123 4567\n").value(), 123u);
  EXPECT_FALSE(ParseLoadavgTasks("0.00 0.01 0.05 123 4567\n").ok());
  EXPECT_FALSE(ParseLoadavgTasks("").ok());
  auto own = ReadSmallFile("/proc/loadavg");
  ASSERT_TRUE(own.ok());
  EXPECT_GT(ParseLoadavgTasks(own.value()).value(), 1u);
}

}  // namespace
}  // namespace corral::scan
