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
// ParamReader (sys/param_reader.h) checks a method's params field by field; here its first problem
// becomes a -32602 error whose message names the field: "params.limits.pids must be an integer".
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

#include "sys/param_reader.h"

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

// ParamReader (sys/param_reader.h) whose failure is the -32602 error to answer.
class ParamReader : public corral::ParamReader {
 public:
  using corral::ParamReader::ParamReader;
  explicit ParamReader(corral::ParamReader base) : corral::ParamReader(std::move(base)) {}
  ParamReader Object(std::string_view key, bool required = false) {
    return ParamReader(corral::ParamReader::Object(key, required));
  }
  // Only when !ok().
  RpcError error() const { return RpcError::InvalidParams(corral::ParamReader::error()); }
};

}  // namespace corral::jsonrpc
