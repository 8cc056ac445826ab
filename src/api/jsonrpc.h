// JSON-RPC 2.0 codec for the daemon protocol: one request per line in, one response per line out.
//
// ParseRequest() turns one line (without its '\n') into either a Request for the dispatcher or a
// ready-made error response; nothing in here throws to the caller. The hazards of untrusted bytes
// are handled before nlohmann::json sees them or after it gives up:
// - invalid UTF-8 inside a JSON string is a parse error (-32700): nlohmann's lexer validates it;
// - nesting deeper than kMaxDepth is refused before parsing, so no later recursive walk over the
//   value (dump, destructor, a handler's visitor) can run out of stack;
// - a batch (a JSON array) is answered with -32600 "batch requests are not supported": every
//   request here may be answered asynchronously (`run` answers when its cell ends), and a batch
//   would force holding the early answers until the slowest one is done. Clients pipeline
//   instead: several lines, each with its own id, answered in completion order.
//
// Serialize() writes a response with error_handler_t::replace, so a result that carries invalid
// UTF-8 (a command's raw stdout) becomes U+FFFD instead of an exception in the event loop.
//
// ParamReader checks a method's params field by field and keeps the first problem as a -32602
// error whose message names the field: "params.limits.pids must be an integer".
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace corral::jsonrpc {

using json = nlohmann::json;

// The error codes of the daemon protocol (DESIGN.md, "Daemon protocol").
enum ErrorCode : int {
  kParseError = -32700,      // not JSON (includes invalid UTF-8 and too deep nesting)
  kInvalidRequest = -32600,  // JSON, but not a request object; also a line over the size limit
  kMethodNotFound = -32601,
  kInvalidParams = -32602,
  kInternalError = -32603,
  kOverloaded = -32001,  // queue full, host near pid_max / fd limit, too many connections
  kNotAllowed = -32003,  // e.g. a non-root caller asking for another user
};

constexpr int kMaxDepth = 64;  // arrays/objects nested deeper than this are a parse error

struct RpcError {
  int code = kInternalError;
  std::string message;
  json data;  // null when absent; otherwise sent as error.data

  static RpcError ParseError(std::string detail);
  static RpcError InvalidRequest(std::string detail);
  static RpcError MethodNotFound(std::string_view method);
  static RpcError InvalidParams(std::string detail);
  static RpcError Internal(std::string detail);
  static RpcError Overloaded(std::string detail);
  static RpcError NotAllowed(std::string detail);
};

struct Request {
  json id;                    // a number, a string or null; null also when notification
  bool notification = false;  // no "id" member at all: the sender wants no reply, ever
  std::string method;
  json params;  // an object or an array; null when the request had no "params"
};

// One parsed line: either a request to dispatch or an error response to send back as is.
struct ParseOutcome {
  std::variant<Request, json> value;
  bool ok() const { return value.index() == 0; }
  Request& request() { return std::get<0>(value); }
  const json& error_response() const { return std::get<1>(value); }
};

ParseOutcome ParseRequest(std::string_view line);

// {"jsonrpc":"2.0","id":id,"result":result}
json MakeResult(const json& id, json result);
// {"jsonrpc":"2.0","id":id,"error":{"code":..,"message":..[,"data":..]}}
json MakeError(const json& id, const RpcError& error);
// {"jsonrpc":"2.0","id":id,"method":..[,"params":..]}; no id member when id is std::nullopt.
json MakeRequest(const std::optional<json>& id, std::string_view method, json params = nullptr);

// One line: compact JSON plus '\n'. Never throws; invalid UTF-8 becomes U+FFFD.
std::string Serialize(const json& message);

// Field-by-field validation of params. The first failure is kept (later calls return nullopt and
// change nothing), so a method reads every field it needs and checks ok() once:
//
//   ParamReader p(req.params);
//   auto argv = p.StringArray("argv");
//   auto timeout = p.Number("timeout_s", /*min=*/0);
//   ParamReader limits = p.Object("limits");
//   auto pids = limits.Integer("pids", /*min=*/1);
//   p.RejectUnknown({"argv", "shell", "timeout_s", "limits"});
//   if (!p.ok()) return server.ReplyError(to, p.error());
//
// Absent fields and explicit nulls both read as nullopt (no error) unless marked required.
// Strings are checked to hold no NUL byte: argv, env and paths cannot carry one through exec.
class ParamReader {
 public:
  // params must be an object or null (absent); an array is a -32602 error.
  explicit ParamReader(const json& params, std::string prefix = "params");

  std::optional<std::string> String(std::string_view key, bool required = false);
  std::optional<bool> Bool(std::string_view key, bool required = false);
  // Any finite JSON number.
  std::optional<double> Number(std::string_view key, std::optional<double> min = std::nullopt,
                               std::optional<double> max = std::nullopt, bool required = false);
  // A JSON integer, or a float with an integral value (1e6), within int64 and the rule.
  std::optional<int64_t> Integer(std::string_view key, std::optional<int64_t> min = std::nullopt,
                                 std::optional<int64_t> max = std::nullopt, bool required = false);
  std::optional<std::vector<std::string>> StringArray(std::string_view key, bool required = false);
  // An object whose values are all strings (env).
  std::optional<std::map<std::string, std::string>> StringMap(std::string_view key,
                                                              bool required = false);
  // A nested object read with prefix "params.key"; it shares this reader's error slot. Absent:
  // a reader over an empty object (has_value() false).
  ParamReader Object(std::string_view key, bool required = false);
  // The raw value, or nullptr when absent or null: for fields with a type of their own.
  const json* Raw(std::string_view key) const;
  bool Has(std::string_view key) const { return Raw(key) != nullptr; }
  bool has_value() const { return present_; }

  // Records a method-specific problem ("params: give argv or shell, not both") unless an earlier
  // one is already kept.
  void Fail(std::string message);
  // Fails on the first member of params whose name is not in `known`.
  void RejectUnknown(std::initializer_list<std::string_view> known);

  bool ok() const { return !error_->has_value(); }
  // Only when !ok(): a -32602 error.
  const RpcError& error() const { return **error_; }
  std::string Field(std::string_view key) const;  // "params.limits.pids"

 private:
  ParamReader(const json* obj, std::string prefix, std::shared_ptr<std::optional<RpcError>> err);
  // nullptr when absent/null (or a required one missing, which fails); also nullptr after a
  // failure, so nothing reads past the first error.
  const json* Get(std::string_view key, bool required);
  bool CheckString(const std::string& s, const std::string& field);

  const json* obj_ = nullptr;  // nullptr: absent (reads as empty) or not an object (failed)
  bool present_ = false;
  std::string prefix_;
  std::shared_ptr<std::optional<RpcError>> error_;
};

}  // namespace corral::jsonrpc
