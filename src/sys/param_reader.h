// Field-by-field reading of an untrusted JSON object (a JSON-RPC method's params, an MCP tool's
// arguments, a task's stored cell params). Every front end reads its input through this one class,
// so a field is refused the same way wherever it comes from, with a sentence that names it:
// "params.limits.pids must be an integer". The JSON-RPC layer turns that sentence into a -32602
// error (api/jsonrpc.h); MCP into a tool error.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace corral {

using json = nlohmann::json;

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
  // params must be an object or null (absent); anything else is an error.
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
  void RejectUnknown(const std::vector<std::string_view>& known);

  bool ok() const { return !error_->has_value(); }
  // Only when !ok(): the first problem, a sentence naming the field.
  const std::string& error() const { return **error_; }
  std::string Field(std::string_view key) const;  // "params.limits.pids"

 private:
  ParamReader(const json* obj, std::string prefix, std::shared_ptr<std::optional<std::string>> err);
  // nullptr when absent/null (or a required one missing, which fails); also nullptr after a
  // failure, so nothing reads past the first error.
  const json* Get(std::string_view key, bool required);
  // Get, then nullptr and a failure ("FIELD must be KIND, not TYPE") unless (v->*is_kind)().
  const json* GetKind(std::string_view key, bool required, bool (json::*is_kind)() const,
                      const char* kind);
  bool CheckString(const std::string& s, const std::string& field);
  // v's string, or nullptr once the failure is recorded (not a string, or holds a NUL byte).
  const std::string* AsString(const nlohmann::json& v, const std::string& field);

  const json* obj_ = nullptr;  // nullptr: absent (reads as empty) or not an object (failed)
  bool present_ = false;
  std::string prefix_;
  std::shared_ptr<std::optional<std::string>> error_;
};

}  // namespace corral
