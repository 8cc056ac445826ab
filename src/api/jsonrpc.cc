#include "api/jsonrpc.h"

#include <cmath>
#include <cstring>
#include <limits>

namespace corral::jsonrpc {
namespace {

// True when arrays/objects nest deeper than kMaxDepth. Brackets inside strings do not count; the
// scan is one linear pass and gives up on nothing (malformed input is the parser's to report).
bool TooDeep(std::string_view text) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxDepth) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

// nlohmann's messages start with "[json.exception.parse_error.101] "; the tag means nothing to a
// client.
std::string StripExceptionTag(const char* what) {
  std::string_view s(what);
  if (!s.empty() && s.front() == '[') {
    size_t end = s.find("] ");
    if (end != std::string_view::npos) s.remove_prefix(end + 2);
  }
  return std::string(s);
}

bool ValidId(const json& id) { return id.is_string() || id.is_number() || id.is_null(); }

ParseOutcome Fail(const json& id, RpcError error) { return ParseOutcome{MakeError(id, error)}; }

}  // namespace

RpcError RpcError::ParseError(std::string detail) {
  return {kParseError, "parse error: " + detail, nullptr};
}
RpcError RpcError::InvalidRequest(std::string detail) {
  return {kInvalidRequest, "invalid request: " + detail, nullptr};
}
RpcError RpcError::MethodNotFound(std::string_view method) {
  return {kMethodNotFound, "no such method: `" + std::string(method) + "`", nullptr};
}
RpcError RpcError::InvalidParams(std::string detail) {
  return {kInvalidParams, std::move(detail), nullptr};
}
RpcError RpcError::Internal(std::string detail) {
  return {kInternalError, "internal error: " + detail, nullptr};
}
RpcError RpcError::Overloaded(std::string detail) {
  return {kOverloaded, "overloaded: " + detail, nullptr};
}
RpcError RpcError::NotAllowed(std::string detail) {
  return {kNotAllowed, "not allowed: " + detail, nullptr};
}

ParseOutcome ParseRequest(std::string_view line) {
  if (TooDeep(line)) {
    return Fail(nullptr, RpcError::ParseError("nesting deeper than " + std::to_string(kMaxDepth) +
                                              " levels"));
  }
  json doc;
  try {
    doc = json::parse(line.begin(), line.end());
  } catch (const std::exception& e) {
    return Fail(nullptr, RpcError::ParseError(StripExceptionTag(e.what())));
  }
  if (doc.is_array()) {
    return Fail(nullptr, RpcError::InvalidRequest(
                             "batch requests are not supported; send one request per line"));
  }
  if (!doc.is_object()) {
    return Fail(nullptr, RpcError::InvalidRequest(std::string("a request is a JSON object, not ") +
                                                  doc.type_name()));
  }
  // The id is echoed in every error below whenever it is itself valid, so a client pipelining
  // several calls can tell which one was refused.
  Request req;
  auto id_it = doc.find("id");
  req.notification = id_it == doc.end();
  if (!req.notification) {
    if (!ValidId(*id_it)) {
      return Fail(nullptr, RpcError::InvalidRequest(std::string("id must be a string, a number "
                                                                "or null, not ") +
                                                    id_it->type_name()));
    }
    req.id = std::move(*id_it);
  }
  auto version = doc.find("jsonrpc");
  if (version == doc.end() || !version->is_string() || version->get_ref<std::string&>() != "2.0") {
    return Fail(req.id, RpcError::InvalidRequest("member \"jsonrpc\" must be \"2.0\""));
  }
  auto method = doc.find("method");
  if (method == doc.end() || !method->is_string()) {
    return Fail(req.id, RpcError::InvalidRequest("member \"method\" must be a string"));
  }
  req.method = std::move(method->get_ref<std::string&>());
  auto params = doc.find("params");
  if (params != doc.end()) {
    if (!params->is_object() && !params->is_array()) {
      return Fail(req.id, RpcError::InvalidRequest(std::string("member \"params\" must be an "
                                                               "object or an array, not ") +
                                                   params->type_name()));
    }
    req.params = std::move(*params);
  }
  return ParseOutcome{std::move(req)};
}

json MakeResult(const json& id, json result) {
  json r = json::object();
  r["jsonrpc"] = "2.0";
  r["id"] = id;
  r["result"] = std::move(result);
  return r;
}

json MakeError(const json& id, const RpcError& error) {
  json e = json::object();
  e["code"] = error.code;
  e["message"] = error.message;
  if (!error.data.is_null()) e["data"] = error.data;
  json r = json::object();
  r["jsonrpc"] = "2.0";
  r["id"] = id;
  r["error"] = std::move(e);
  return r;
}

json MakeRequest(const std::optional<json>& id, std::string_view method, json params) {
  json r = json::object();
  r["jsonrpc"] = "2.0";
  if (id) r["id"] = *id;
  r["method"] = std::string(method);
  if (!params.is_null()) r["params"] = std::move(params);
  return r;
}

std::string Serialize(const json& message) {
  try {
    std::string s = message.dump(-1, ' ', false, json::error_handler_t::replace);
    s.push_back('\n');
    return s;
  } catch (const std::exception& e) {
    // Unreachable with replace; kept so that a broken invariant costs one answer, not the daemon.
    json id = message.is_object() && message.contains("id") ? message["id"] : json(nullptr);
    if (!ValidId(id)) id = nullptr;
    return MakeError(id, RpcError::Internal("cannot serialize the response"))
               .dump(-1, ' ', false, json::error_handler_t::replace) +
           "\n";
  }
}

}  // namespace corral::jsonrpc
