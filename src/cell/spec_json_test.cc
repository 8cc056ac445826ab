#include "cell/spec_json.h"

#include <gtest/gtest.h>

namespace corral {
namespace {

using nlohmann::json;

CellParams Parse(const json& params, const CellParamsSyntax& syntax = {}) {
  CellParams out;
  auto err = ParseCellParams(params, syntax, &out);
  EXPECT_FALSE(err.has_value()) << *err;
  return out;
}

std::string ErrorOf(const json& params, const CellParamsSyntax& syntax = {}) {
  CellParams out;
  auto err = ParseCellParams(params, syntax, &out);
  EXPECT_TRUE(err.has_value()) << params.dump();
  return err.value_or("");
}

TEST(SpecJsonTest, EveryFieldSurvivesARoundTrip) {
  CellSpec spec;
  spec.argv = {"make", "-j2", "test"};
  spec.cwd = "/srv/x";
  spec.umask = 027;
  spec.env = {{"A", "1"}, {"B", "two words"}};
  spec.clear_env = true;
  spec.stdin_mode = StdinMode::kBytes;
  spec.stdin_data = "two\nlines\n";
  spec.timeout_ns = 1500 * kNsPerMs;
  spec.grace_ns = 300 * kNsPerMs;
  spec.kill_wait_ns = 2 * kNsPerSec;
  spec.max_output_bytes = 4096;
  spec.limits = {64 << 20, 100, 2.5};
  spec.isolation.enabled = true;
  spec.isolation.rw = {"."};

  CellSpec back = Parse(CellParamsToJson(spec)).spec;
  EXPECT_EQ(back.argv, spec.argv);
  EXPECT_EQ(back.cwd, spec.cwd);
  EXPECT_EQ(back.umask, spec.umask);
  EXPECT_EQ(back.env, spec.env);
  EXPECT_TRUE(back.clear_env);
  EXPECT_EQ(back.stdin_mode, StdinMode::kBytes);
  EXPECT_EQ(back.stdin_data, spec.stdin_data);
  EXPECT_EQ(back.timeout_ns, spec.timeout_ns);
  EXPECT_EQ(back.grace_ns, spec.grace_ns);
  EXPECT_EQ(back.kill_wait_ns, spec.kill_wait_ns);
  EXPECT_EQ(back.max_output_bytes, spec.max_output_bytes);
  EXPECT_EQ(back.limits.memory_bytes, spec.limits.memory_bytes);
  EXPECT_EQ(back.limits.pids, spec.limits.pids);
  EXPECT_EQ(back.limits.cpu_s, spec.limits.cpu_s);
  EXPECT_TRUE(back.isolation.enabled);
  EXPECT_EQ(back.isolation.rw, spec.isolation.rw);
}

TEST(SpecJsonTest, IdentityIsNeverWritten) {
  CellSpec spec;
  spec.argv = {"id"};
  spec.uid = 1000;
  spec.gid = 1000;
  spec.groups = {27};
  json j = CellParamsToJson(spec);
  for (const char* k : {"uid", "gid", "groups", "user"}) EXPECT_FALSE(j.contains(k)) << k;
}

TEST(SpecJsonTest, SecondsBecomeNanosecondsRoundedNotTruncated) {
  // 4.1 * 1e9 is 4099999999.9999995 in binary floating point: truncated, 1 ns short.
  EXPECT_EQ(Parse({{"argv", {"x"}}, {"timeout_s", 4.1}}).spec.timeout_ns, 4100000000);
  EXPECT_EQ(Parse({{"argv", {"x"}}, {"grace_s", 1.001}}).spec.grace_ns, 1001000000);
  EXPECT_EQ(Parse({{"argv", {"x"}}, {"timeout_s", 0}}).spec.timeout_ns, 0);
}

TEST(SpecJsonTest, DefaultsAreTheProtocols) {
  CellParams p = Parse({{"shell", "echo hi"}});
  EXPECT_EQ(p.spec.argv, (std::vector<std::string>{"/bin/sh", "-c", "echo hi"}));
  EXPECT_EQ(p.spec.stdin_mode, StdinMode::kNull);
  EXPECT_EQ(p.spec.output, OutputMode::kCapture);
  EXPECT_EQ(p.spec.max_output_bytes, 1u << 20);
  EXPECT_FALSE(p.has_timeout);
  EXPECT_FALSE(p.has_max_output);
  EXPECT_FALSE(p.user.has_value());
  EXPECT_EQ(Parse({{"argv", {"x"}}, {"user", "nobody"}}).user, "nobody");
}

TEST(SpecJsonTest, BadFieldsAreNamed) {
  EXPECT_EQ(ErrorOf({{"argv", {"a"}}, {"shell", "b"}}),
            "give params.argv or params.shell, not both");
  EXPECT_NE(ErrorOf({{"argv", json::array()}}).find("params.argv"), std::string::npos);
  EXPECT_NE(ErrorOf(json::object()).find("is required"), std::string::npos);
  EXPECT_NE(ErrorOf({{"argv", {"a"}}, {"limits", {{"pids", 0}}}}).find("params.limits.pids"),
            std::string::npos);
  EXPECT_NE(ErrorOf({{"argv", {"a"}}, {"env", {{"A=B", "c"}}}}).find("params.env"),
            std::string::npos);
  EXPECT_NE(ErrorOf({{"argv", {"a"}}, {"bogus", 1}}).find("params.bogus"), std::string::npos);
  EXPECT_NE(ErrorOf({{"argv", {"a"}}, {"umask", 01000}}).find("params.umask"), std::string::npos);
  EXPECT_NE(ErrorOf({{"argv", {"a"}}, {"max_output_bytes", (64 << 20) + 1}})
                .find("params.max_output_bytes"),
            std::string::npos);
  EXPECT_NE(ErrorOf({{"argv", {std::string("a\0b", 3)}}}).find("NUL"), std::string::npos);
  EXPECT_NE(ErrorOf({{"argv", {"a"}}, {"cwd", ""}}).find("params.cwd is empty"), std::string::npos);
}

TEST(SpecJsonTest, AFrontEndSpellsAndNarrowsTheParams) {
  CellParamsSyntax mcp;
  mcp.prefix = "arguments";
  mcp.shell_key = "command";
  mcp.keys = {"command", "argv", "timeout_s"};
  CellParams p = Parse({{"command", "true"}, {"timeout_s", 5}}, mcp);
  EXPECT_EQ(p.spec.argv, (std::vector<std::string>{"/bin/sh", "-c", "true"}));
  EXPECT_TRUE(p.has_timeout);
  EXPECT_EQ(ErrorOf({{"command", "true"}, {"grace_s", 1}}, mcp),
            "arguments.grace_s is not a known parameter");
  EXPECT_EQ(ErrorOf({{"command", "true"}, {"argv", {"true"}}}, mcp),
            "give arguments.argv or arguments.command, not both");
}

}  // namespace
}  // namespace corral
