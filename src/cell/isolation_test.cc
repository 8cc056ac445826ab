// The parts of isolation that can be checked without a cell: the seccomp program really loads
// and refuses what it lists (in a forked child, which the filter then binds for life), the JSON
// form and the built-in profiles.
#include "cell/isolation.h"

#include <gtest/gtest.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

namespace corral {
namespace {

// Runs fn in a child under the default filter; returns the child's exit code.
template <typename Fn>
int UnderFilter(Fn fn) {
  std::vector<sock_filter> f = DefaultSeccompFilter();
  pid_t pid = fork();
  if (pid == 0) {
    sock_fprog prog{static_cast<unsigned short>(f.size()), f.data()};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(100);
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) _exit(101);
    _exit(fn());
  }
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 200 + WTERMSIG(st);
}

TEST(IsolationSeccomp, RefusesPtraceMountAndNamespacesWithEperm) {
  EXPECT_EQ(UnderFilter([] { return ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) < 0 ? errno : 0; }),
            EPERM);
  EXPECT_EQ(UnderFilter([] {
              return syscall(SYS_mount, "x", "/mnt", "tmpfs", 0, nullptr) < 0 ? errno : 0;
            }),
            EPERM);
  EXPECT_EQ(UnderFilter([] { return unshare(CLONE_NEWUSER) < 0 ? errno : 0; }), EPERM);
  EXPECT_EQ(UnderFilter([] { return syscall(SYS_clone3, nullptr, 0) < 0 ? errno : 0; }), ENOSYS);
  // The last of the deny-list too (the compares share one return: every offset must land on it).
  EXPECT_EQ(
      UnderFilter([] { return syscall(SYS_io_uring_register, -1, 0, nullptr, 0) < 0 ? errno : 0; }),
      EPERM);
#if defined(__x86_64__)
  EXPECT_EQ(UnderFilter([] { return syscall(SYS_uselib, "/nonexistent") < 0 ? errno : 0; }), EPERM);
#endif
}

TEST(IsolationSeccomp, LetsOrdinaryWorkThrough) {
  // fork (clone without namespace flags), pipes, files, unshare of a non-namespace flag.
  EXPECT_EQ(UnderFilter([] {
              pid_t c = fork();
              if (c == 0) _exit(7);
              int st = 0;
              if (waitpid(c, &st, 0) != c || WEXITSTATUS(st) != 7) return 1;
              int p[2];
              if (pipe(p) != 0) return 2;
              if (unshare(CLONE_FILES) != 0) return 3;
              return 0;
            }),
            0);
}

TEST(IsolationJson, ObjectOverridesProfileAndAddsPaths) {
  Isolation iso;
  auto err = ParseIsolationJson(
      nlohmann::json::parse(R"({"profile":"workspace","net":"host","rw":["/data"],"hide":["/x"]})"),
      &iso);
  ASSERT_FALSE(err) << *err;
  EXPECT_TRUE(iso.enabled);
  EXPECT_EQ(iso.net, NetMode::kHost);
  EXPECT_EQ(iso.rw, (std::vector<std::string>{".", "/data"}));
  EXPECT_EQ(iso.hide, (std::vector<std::string>{"/x"}));
  EXPECT_EQ(iso.profile, "workspace");
}

TEST(IsolationJson, BadFieldsAreNamed) {
  Isolation iso;
  EXPECT_EQ(*ParseIsolationJson(nlohmann::json::parse(R"({"net":"wifi"})"), &iso),
            "isolate.net must be \"none\" or \"host\"");
  EXPECT_EQ(*ParseIsolationJson(nlohmann::json::parse(R"({"rw":"/a"})"), &iso),
            "isolate.rw must be an array of paths");
  EXPECT_NE(ParseIsolationJson(nlohmann::json::parse(R"({"bogus":1})"), &iso)->find("bogus"),
            std::string::npos);
  EXPECT_NE(ParseIsolationJson(nlohmann::json("nope"), &iso)->find("no isolation profile"),
            std::string::npos);
}

TEST(IsolationJson, TrueAndProfileNameAndRoundTrip) {
  Isolation a;
  ASSERT_FALSE(ParseIsolationJson(nlohmann::json(true), &a));
  EXPECT_TRUE(a.enabled);
  EXPECT_EQ(a.net, NetMode::kNone);
  Isolation b;
  ASSERT_FALSE(ParseIsolationJson(nlohmann::json("network"), &b));
  EXPECT_EQ(b.net, NetMode::kHost);
  Isolation c;
  ASSERT_FALSE(ParseIsolationJson(IsolationToJson(b), &c));
  EXPECT_EQ(IsolationToJson(c), IsolationToJson(b));
}

}  // namespace
}  // namespace corral
