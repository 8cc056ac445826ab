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

// 0 rather than 0.0 in messages about bounds.
std::string FormatNumber(double d) {
  if (d == std::trunc(d) && std::fabs(d) < 1e15) return std::to_string(static_cast<int64_t>(d));
  return json(d).dump();
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

// ---- ParamReader ----

ParamReader::ParamReader(const json& params, std::string prefix)
    : prefix_(std::move(prefix)), error_(std::make_shared<std::optional<RpcError>>()) {
  if (params.is_object()) {
    obj_ = &params;
    present_ = true;
  } else if (!params.is_null()) {
    Fail(prefix_ + " must be an object, not " + params.type_name());
  }
}

ParamReader::ParamReader(const json* obj, std::string prefix,
                         std::shared_ptr<std::optional<RpcError>> err)
    : obj_(obj), present_(obj != nullptr), prefix_(std::move(prefix)), error_(std::move(err)) {}

std::string ParamReader::Field(std::string_view key) const {
  return prefix_ + "." + std::string(key);
}

void ParamReader::Fail(std::string message) {
  if (!error_->has_value()) *error_ = RpcError::InvalidParams(std::move(message));
}

const json* ParamReader::Raw(std::string_view key) const {
  if (obj_ == nullptr) return nullptr;
  auto it = obj_->find(key);
  if (it == obj_->end() || it->is_null()) return nullptr;
  return &*it;
}

const json* ParamReader::Get(std::string_view key, bool required) {
  if (!ok()) return nullptr;
  const json* v = Raw(key);
  if (v == nullptr && required) Fail(Field(key) + " is required");
  return v;
}

bool ParamReader::CheckString(const std::string& s, const std::string& field) {
  if (std::memchr(s.data(), '\0', s.size()) != nullptr) {
    Fail(field + " must not contain a NUL byte");
    return false;
  }
  return true;
}

std::optional<std::string> ParamReader::String(std::string_view key, bool required) {
  const json* v = Get(key, required);
  if (v == nullptr) return std::nullopt;
  if (!v->is_string()) {
    Fail(Field(key) + " must be a string, not " + v->type_name());
    return std::nullopt;
  }
  const std::string& s = v->get_ref<const std::string&>();
  if (!CheckString(s, Field(key))) return std::nullopt;
  return s;
}

std::optional<bool> ParamReader::Bool(std::string_view key, bool required) {
  const json* v = Get(key, required);
  if (v == nullptr) return std::nullopt;
  if (!v->is_boolean()) {
    Fail(Field(key) + " must be a boolean, not " + v->type_name());
    return std::nullopt;
  }
  return v->get<bool>();
}

std::optional<double> ParamReader::Number(std::string_view key, std::optional<double> min,
                                          std::optional<double> max, bool required) {
  const json* v = Get(key, required);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number()) {
    Fail(Field(key) + " must be a number, not " + v->type_name());
    return std::nullopt;
  }
  double d = v->get<double>();
  if (!std::isfinite(d)) {
    Fail(Field(key) + " must be a finite number");
    return std::nullopt;
  }
  if (min && d < *min) {
    Fail(Field(key) + " must be >= " + FormatNumber(*min));
    return std::nullopt;
  }
  if (max && d > *max) {
    Fail(Field(key) + " must be <= " + FormatNumber(*max));
    return std::nullopt;
  }
  return d;
}

std::optional<int64_t> ParamReader::Integer(std::string_view key, std::optional<int64_t> min,
                                            std::optional<int64_t> max, bool required) {
  const json* v = Get(key, required);
  if (v == nullptr) return std::nullopt;
  int64_t n = 0;
  if (v->is_number_unsigned()) {
    uint64_t u = v->get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      Fail(Field(key) + " is too large");
      return std::nullopt;
    }
    n = static_cast<int64_t>(u);
  } else if (v->is_number_integer()) {
    n = v->get<int64_t>();
  } else if (v->is_number_float()) {
    double d = v->get<double>();
    // 2^63 is exactly representable; anything at or above it does not fit.
    if (!std::isfinite(d) || d != std::trunc(d) || d >= 9223372036854775808.0 ||
        d < -9223372036854775808.0) {
      Fail(Field(key) + " must be an integer");
      return std::nullopt;
    }
    n = static_cast<int64_t>(d);
  } else {
    Fail(Field(key) + " must be an integer, not " + v->type_name());
    return std::nullopt;
  }
  if (min && n < *min) {
    Fail(Field(key) + " must be >= " + std::to_string(*min));
    return std::nullopt;
  }
  if (max && n > *max) {
    Fail(Field(key) + " must be <= " + std::to_string(*max));
    return std::nullopt;
  }
  return n;
}

std::optional<std::vector<std::string>> ParamReader::StringArray(std::string_view key,
                                                                 bool required) {
  const json* v = Get(key, required);
  if (v == nullptr) return std::nullopt;
  if (!v->is_array()) {
    Fail(Field(key) + " must be an array of strings, not " + v->type_name());
    return std::nullopt;
  }
  std::vector<std::string> out;
  out.reserve(v->size());
  for (size_t i = 0; i < v->size(); ++i) {
    const json& e = (*v)[i];
    std::string field = Field(key) + "[" + std::to_string(i) + "]";
    if (!e.is_string()) {
      Fail(field + " must be a string, not " + e.type_name());
      return std::nullopt;
    }
    if (!CheckString(e.get_ref<const std::string&>(), field)) return std::nullopt;
    out.push_back(e.get<std::string>());
  }
  return out;
}

std::optional<std::map<std::string, std::string>> ParamReader::StringMap(std::string_view key,
                                                                         bool required) {
  const json* v = Get(key, required);
  if (v == nullptr) return std::nullopt;
  if (!v->is_object()) {
    Fail(Field(key) + " must be an object of strings, not " + v->type_name());
    return std::nullopt;
  }
  std::map<std::string, std::string> out;
  for (const auto& [k, e] : v->items()) {
    std::string field = Field(key) + "." + k;
    if (!e.is_string()) {
      Fail(field + " must be a string, not " + e.type_name());
      return std::nullopt;
    }
    if (!CheckString(k, Field(key) + " key `" + k + "`")) return std::nullopt;
    if (!CheckString(e.get_ref<const std::string&>(), field)) return std::nullopt;
    out.emplace(k, e.get<std::string>());
  }
  return out;
}

ParamReader ParamReader::Object(std::string_view key, bool required) {
  const json* v = Get(key, required);
  if (v != nullptr && !v->is_object()) {
    Fail(Field(key) + " must be an object, not " + v->type_name());
    v = nullptr;
  }
  return ParamReader(v, Field(key), error_);
}

void ParamReader::RejectUnknown(std::initializer_list<std::string_view> known) {
  if (!ok() || obj_ == nullptr) return;
  for (const auto& [k, unused] : obj_->items()) {
    bool found = false;
    for (std::string_view name : known) found = found || name == k;
    if (!found) {
      Fail(Field(k) + " is not a known parameter");
      return;
    }
  }
}

}  // namespace corral::jsonrpc
