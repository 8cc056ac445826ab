#include "api/jsonrpc.h"

#include <gtest/gtest.h>

namespace corral::jsonrpc {
namespace {

// The error object of a refused line: {"code":..,"message":..}, after checking the envelope.
json ErrorOf(const ParseOutcome& out, const json& expect_id = nullptr) {
  EXPECT_FALSE(out.ok());
  if (out.ok()) return json::object();
  const json& r = out.error_response();
  EXPECT_EQ(r["jsonrpc"], "2.0");
  EXPECT_EQ(r["id"], expect_id);
  EXPECT_FALSE(r.contains("result"));
  return r["error"];
}

TEST(JsonRpcParseTest, RequestWithNumberIdAndObjectParams) {
  auto out = ParseRequest(R"({"jsonrpc":"2.0","id":7,"method":"run","params":{"argv":["true"]}})");
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out.request().id, 7);
  EXPECT_FALSE(out.request().notification);
  EXPECT_EQ(out.request().method, "run");
  EXPECT_EQ(out.request().params["argv"][0], "true");
}

TEST(JsonRpcParseTest, IdsOfEveryAllowedType) {
  for (const char* id : {"1", "-3", "2.5", "\"abc\"", "\"\"", "null", "18446744073709551615"}) {
    auto out = ParseRequest(std::string(R"({"jsonrpc":"2.0","method":"m","id":)") + id + "}");
    ASSERT_TRUE(out.ok()) << id;
    EXPECT_EQ(out.request().id, json::parse(id)) << id;
    EXPECT_FALSE(out.request().notification) << id;
  }
}

TEST(JsonRpcParseTest, NoIdMeansNotification) {
  auto out = ParseRequest(R"({"jsonrpc":"2.0","method":"list","params":[1,2]})");
  ASSERT_TRUE(out.ok());
  EXPECT_TRUE(out.request().notification);
  EXPECT_TRUE(out.request().params.is_array());
}

TEST(JsonRpcParseTest, AbsentParamsAreNull) {
  auto out = ParseRequest(R"({"jsonrpc":"2.0","id":"x","method":"stats"})");
  ASSERT_TRUE(out.ok());
  EXPECT_TRUE(out.request().params.is_null());
}

TEST(JsonRpcParseTest, GarbageIsParseError) {
  for (const char* line : {"garbage", "{", R"({"jsonrpc":"2.0","id":1,"method":"ru)", "",
                           "\x01\x02", "{}}", "[1,]", "nul"}) {
    json e = ErrorOf(ParseRequest(line));
    EXPECT_EQ(e["code"], kParseError) << line;
    EXPECT_NE(e["message"].get<std::string>().find("parse error"), std::string::npos);
    EXPECT_EQ(e["message"].get<std::string>().find("json.exception"), std::string::npos);
  }
}

TEST(JsonRpcParseTest, InvalidUtf8InsideAStringIsParseError) {
  std::string line = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"r\xff\xfe\"}";
  json e = ErrorOf(ParseRequest(line));
  EXPECT_EQ(e["code"], kParseError);
  // The error answer itself still serializes (the message quotes the bad bytes).
  std::string wire = Serialize(MakeError(nullptr, RpcError::ParseError(e["message"])));
  EXPECT_TRUE(json::accept(wire));
}

TEST(JsonRpcParseTest, DeepNestingIsRefusedBeforeParsing) {
  std::string deep = R"({"jsonrpc":"2.0","id":1,"method":"m","params":)" +
                     std::string(100000, '[') + std::string(100000, ']') + "}";
  json e = ErrorOf(ParseRequest(deep));
  EXPECT_EQ(e["code"], kParseError);
  EXPECT_NE(e["message"].get<std::string>().find("nesting"), std::string::npos);
  // Brackets inside strings do not count.
  std::string in_string = R"({"jsonrpc":"2.0","id":1,"method":"m","params":{"s":")" +
                          std::string(1000, '[') + R"(\"["}})";
  EXPECT_TRUE(ParseRequest(in_string).ok());
  // Exactly kMaxDepth levels are fine.
  std::string ok = R"({"jsonrpc":"2.0","id":1,"method":"m","params":)" +
                   std::string(kMaxDepth - 1, '[') + std::string(kMaxDepth - 1, ']') + "}";
  EXPECT_TRUE(ParseRequest(ok).ok());
}

TEST(JsonRpcParseTest, BatchIsRefusedClearly) {
  json e = ErrorOf(ParseRequest(R"([{"jsonrpc":"2.0","id":1,"method":"m"}])"));
  EXPECT_EQ(e["code"], kInvalidRequest);
  EXPECT_NE(e["message"].get<std::string>().find("batch"), std::string::npos);
  EXPECT_EQ(ErrorOf(ParseRequest("[]"))["code"], kInvalidRequest);
}

TEST(JsonRpcParseTest, NonObjectsAreInvalidRequests) {
  for (const char* line : {"42", "\"run\"", "true", "null"}) {
    EXPECT_EQ(ErrorOf(ParseRequest(line))["code"], kInvalidRequest) << line;
  }
}

TEST(JsonRpcParseTest, WrongVersionEchoesTheId) {
  EXPECT_EQ(ErrorOf(ParseRequest(R"({"id":5,"method":"m"})"), 5)["code"], kInvalidRequest);
  EXPECT_EQ(ErrorOf(ParseRequest(R"({"jsonrpc":"1.0","id":"a","method":"m"})"), "a")["code"],
            kInvalidRequest);
  EXPECT_EQ(ErrorOf(ParseRequest(R"({"jsonrpc":2.0,"id":5,"method":"m"})"), 5)["code"],
            kInvalidRequest);
}

TEST(JsonRpcParseTest, MethodMustBeAString) {
  EXPECT_EQ(ErrorOf(ParseRequest(R"({"jsonrpc":"2.0","id":1})"), 1)["code"], kInvalidRequest);
  EXPECT_EQ(ErrorOf(ParseRequest(R"({"jsonrpc":"2.0","id":1,"method":3})"), 1)["code"],
            kInvalidRequest);
  // Invalid even without an id: the spec answers invalid requests with id null.
  EXPECT_EQ(ErrorOf(ParseRequest(R"({"jsonrpc":"2.0","method":null})"))["code"], kInvalidRequest);
}

TEST(JsonRpcParseTest, ParamsMustBeStructured) {
  for (const char* p : {"1", "\"x\"", "true", "null"}) {
    auto out =
        ParseRequest(std::string(R"({"jsonrpc":"2.0","id":1,"method":"m","params":)") + p + "}");
    EXPECT_EQ(ErrorOf(out, 1)["code"], kInvalidRequest) << p;
  }
}

TEST(JsonRpcParseTest, IdOfAWrongTypeIsInvalidWithNullId) {
  for (const char* id : {"{}", "[1]", "true"}) {
    auto out = ParseRequest(std::string(R"({"jsonrpc":"2.0","method":"m","id":)") + id + "}");
    json e = ErrorOf(out, nullptr);
    EXPECT_EQ(e["code"], kInvalidRequest) << id;
    EXPECT_NE(e["message"].get<std::string>().find("id must be"), std::string::npos);
  }
}

TEST(JsonRpcParseTest, UnicodeSurvivesTheRoundTrip) {
  auto out = ParseRequest(
      "{\"jsonrpc\":\"2.0\",\"id\":\"\xc3\xa9\",\"method\":\"m\",\"params\":"
      "{\"s\":\"\\u00e9 \\ud83d\\ude00 \xe2\x82\xac \\n\\u0000x\"}}");
  ASSERT_TRUE(out.ok());
  std::string s = out.request().params["s"];
  EXPECT_EQ(s, std::string("\xc3\xa9 \xf0\x9f\x98\x80 \xe2\x82\xac \n\0x", 15));
  std::string wire = Serialize(MakeResult(out.request().id, out.request().params));
  EXPECT_EQ(wire.find('\n'), wire.size() - 1);  // one line: the newline inside is escaped
  EXPECT_EQ(json::parse(wire)["result"]["s"], s);
  EXPECT_EQ(json::parse(wire)["id"], "\xc3\xa9");
}

TEST(JsonRpcSerializeTest, InvalidUtf8InAResultBecomesReplacementCharacter) {
  std::string raw = "ok \xff\xfe\x80 end";
  std::string wire;
  ASSERT_NO_THROW(wire = Serialize(MakeResult(1, json{{"stdout", raw}})));
  json back = json::parse(wire);
  EXPECT_EQ(back["result"]["stdout"], "ok \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd end");
  EXPECT_EQ(wire.back(), '\n');
}

TEST(JsonRpcSerializeTest, ErrorsCarryCodeMessageAndOptionalData) {
  struct Case {
    RpcError e;
    int code;
  };
  Case cases[] = {
      {RpcError::ParseError("x"), -32700},        {RpcError::InvalidRequest("x"), -32600},
      {RpcError::MethodNotFound("nope"), -32601}, {RpcError::InvalidParams("x"), -32602},
      {RpcError::Internal("x"), -32603},          {RpcError::Overloaded("queue full"), -32001},
      {RpcError::NotAllowed("user"), -32003},
  };
  for (const Case& c : cases) {
    json r = json::parse(Serialize(MakeError("i", c.e)));
    EXPECT_EQ(r["jsonrpc"], "2.0");
    EXPECT_EQ(r["id"], "i");
    EXPECT_EQ(r["error"]["code"], c.code);
    EXPECT_FALSE(r["error"]["message"].get<std::string>().empty());
    EXPECT_FALSE(r["error"].contains("data"));
  }
  RpcError with_data = RpcError::Overloaded("queue full");
  with_data.data = json{{"queued", 1024}};
  EXPECT_EQ(json::parse(Serialize(MakeError(1, with_data)))["error"]["data"]["queued"], 1024);
  EXPECT_EQ(RpcError::MethodNotFound("frob").message, "no such method: `frob`");
}

TEST(JsonRpcSerializeTest, MakeRequestOmitsIdForNotifications) {
  EXPECT_FALSE(MakeRequest(std::nullopt, "m").contains("id"));
  EXPECT_FALSE(MakeRequest(std::nullopt, "m").contains("params"));
  json r = MakeRequest(json(3), "run", json{{"shell", "true"}});
  EXPECT_EQ(r["id"], 3);
  EXPECT_TRUE(ParseRequest(Serialize(r).substr(0, Serialize(r).size() - 1)).ok());
}

// ---- ParamReader ----

json RunParams() {
  return json::parse(R"({"argv":["ls","-l"],"cwd":"/tmp","env":{"A":"1"},"clear_env":true,
    "stdin":"in","timeout_s":1.5,"grace_s":0,"max_output_bytes":1048576,
    "limits":{"memory_bytes":1e9,"pids":10,"cpu_s":2},"user":"nobody"})");
}

TEST(ParamReaderTest, ReadsEveryFieldOfRun) {
  json params = RunParams();
  ParamReader p(params);
  EXPECT_EQ(p.StringArray("argv"), (std::vector<std::string>{"ls", "-l"}));
  EXPECT_EQ(p.String("cwd"), "/tmp");
  EXPECT_EQ(p.StringMap("env")->at("A"), "1");
  EXPECT_EQ(p.Bool("clear_env"), true);
  EXPECT_EQ(p.String("stdin"), "in");
  EXPECT_EQ(p.Number("timeout_s", /*min=*/0), 1.5);
  EXPECT_EQ(p.Number("grace_s", /*min=*/0), 0.0);
  EXPECT_EQ(p.Integer("max_output_bytes", /*min=*/0), 1048576);
  ParamReader limits = p.Object("limits");
  EXPECT_TRUE(limits.has_value());
  EXPECT_EQ(limits.Integer("memory_bytes", /*min=*/0), 1000000000);
  EXPECT_EQ(limits.Integer("pids", /*min=*/1), 10);
  EXPECT_EQ(limits.Number("cpu_s"), 2.0);
  EXPECT_EQ(p.String("user"), "nobody");
  EXPECT_FALSE(p.String("shell").has_value());  // absent: no error
  p.RejectUnknown({"argv", "cwd", "env", "clear_env", "stdin", "timeout_s", "grace_s",
                   "max_output_bytes", "limits", "user"});
  EXPECT_TRUE(p.ok());
}

std::string FirstError(const std::string& params_text,
                       const std::function<void(ParamReader&)>& read) {
  json params = json::parse(params_text);
  ParamReader p(params);
  read(p);
  if (p.ok()) return "";
  EXPECT_EQ(p.error().code, kInvalidParams);
  return p.error().message;
}

TEST(ParamReaderTest, WrongTypesNameTheField) {
  EXPECT_EQ(FirstError(R"({"timeout_s":"10"})", [](ParamReader& p) { p.Number("timeout_s"); }),
            "params.timeout_s must be a number, not string");
  EXPECT_EQ(FirstError(R"({"argv":"ls"})", [](ParamReader& p) { p.StringArray("argv"); }),
            "params.argv must be an array of strings, not string");
  EXPECT_EQ(FirstError(R"({"argv":["ls",3]})", [](ParamReader& p) { p.StringArray("argv"); }),
            "params.argv[1] must be a string, not number");
  EXPECT_EQ(FirstError(R"({"env":{"A":1}})", [](ParamReader& p) { p.StringMap("env"); }),
            "params.env.A must be a string, not number");
  EXPECT_EQ(FirstError(R"({"clear_env":1})", [](ParamReader& p) { p.Bool("clear_env"); }),
            "params.clear_env must be a boolean, not number");
  EXPECT_EQ(FirstError(R"({"limits":{"pids":1.5}})",
                       [](ParamReader& p) { p.Object("limits").Integer("pids"); }),
            "params.limits.pids must be an integer");
  EXPECT_EQ(FirstError(R"({"limits":[]})", [](ParamReader& p) { p.Object("limits"); }),
            "params.limits must be an object, not array");
  EXPECT_EQ(FirstError(R"({"limits":{"pids":"x"}})",
                       [](ParamReader& p) { p.Object("limits").Integer("pids"); }),
            "params.limits.pids must be an integer, not string");
}

TEST(ParamReaderTest, RangesAndRequiredFields) {
  EXPECT_EQ(
      FirstError(R"({"timeout_s":-1})", [](ParamReader& p) { p.Number("timeout_s", /*min=*/0); }),
      "params.timeout_s must be >= 0");
  EXPECT_EQ(FirstError(R"({"pids":0})", [](ParamReader& p) { p.Integer("pids", /*min=*/1); }),
            "params.pids must be >= 1");
  EXPECT_EQ(FirstError(R"({"n":18446744073709551615})", [](ParamReader& p) { p.Integer("n"); }),
            "params.n is too large");
  EXPECT_EQ(FirstError(R"({"n":1e300})", [](ParamReader& p) { p.Integer("n"); }),
            "params.n must be an integer");
  EXPECT_EQ(FirstError(R"({})", [](ParamReader& p) { p.String("id", /*required=*/true); }),
            "params.id is required");
  EXPECT_EQ(FirstError(R"({"x":null})", [](ParamReader& p) { p.String("x"); }), "");
  EXPECT_EQ(FirstError(R"({"x":1})", [](ParamReader& p) { p.RejectUnknown({"y"}); }),
            "params.x is not a known parameter");
}

TEST(ParamReaderTest, NulBytesAreRefused) {
  EXPECT_EQ(FirstError(R"({"argv":["a\u0000b"]})", [](ParamReader& p) { p.StringArray("argv"); }),
            "params.argv[0] must not contain a NUL byte");
  EXPECT_EQ(FirstError(R"({"cwd":"\u0000"})", [](ParamReader& p) { p.String("cwd"); }),
            "params.cwd must not contain a NUL byte");
}

TEST(ParamReaderTest, FirstErrorWinsAndLaterReadsAreEmpty) {
  json params = json::parse(R"({"a":"x","b":"y","c":3})");
  ParamReader p(params);
  EXPECT_FALSE(p.Number("a").has_value());
  EXPECT_FALSE(p.Number("b").has_value());
  EXPECT_FALSE(p.Integer("c").has_value());  // valid, but nothing reads past an error
  p.Fail("later");
  EXPECT_EQ(p.error().message, "params.a must be a number, not string");
}

TEST(ParamReaderTest, ArrayOrScalarParamsAreRejected) {
  json arr = json::array({1});
  ParamReader p(arr);
  EXPECT_FALSE(p.ok());
  EXPECT_EQ(p.error().message, "params must be an object, not array");
  json absent;
  ParamReader q(absent);
  EXPECT_TRUE(q.ok());
  EXPECT_FALSE(q.has_value());
  EXPECT_FALSE(q.String("x").has_value());
  EXPECT_FALSE(q.Object("limits").Integer("pids").has_value());
  EXPECT_TRUE(q.ok());
}

}  // namespace
}  // namespace corral::jsonrpc
