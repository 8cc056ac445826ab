#include "sys/param_reader.h"

#include <cmath>
#include <cstring>
#include <limits>

namespace corral {
namespace {

// 0 rather than 0.0 in messages about bounds.
std::string FormatNumber(double d) {
  if (d == std::trunc(d) && std::fabs(d) < 1e15) return std::to_string(static_cast<int64_t>(d));
  return json(d).dump();
}

}  // namespace

ParamReader::ParamReader(const json& params, std::string prefix)
    : prefix_(std::move(prefix)), error_(std::make_shared<std::optional<std::string>>()) {
  if (params.is_object()) {
    obj_ = &params;
    present_ = true;
  } else if (!params.is_null()) {
    Fail(prefix_ + " must be an object, not " + params.type_name());
  }
}

ParamReader::ParamReader(const json* obj, std::string prefix,
                         std::shared_ptr<std::optional<std::string>> err)
    : obj_(obj), present_(obj != nullptr), prefix_(std::move(prefix)), error_(std::move(err)) {}

std::string ParamReader::Field(std::string_view key) const {
  return prefix_ + "." + std::string(key);
}

void ParamReader::Fail(std::string message) {
  if (!error_->has_value()) *error_ = std::move(message);
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

const json* ParamReader::GetKind(std::string_view key, bool required, bool (json::*is_kind)() const,
                                 const char* kind) {
  const json* v = Get(key, required);
  if (v != nullptr && !(v->*is_kind)()) {
    Fail(Field(key) + " must be " + kind + ", not " + v->type_name());
    return nullptr;
  }
  return v;
}

bool ParamReader::CheckString(const std::string& s, const std::string& field) {
  if (std::memchr(s.data(), '\0', s.size()) != nullptr) {
    Fail(field + " must not contain a NUL byte");
    return false;
  }
  return true;
}

const std::string* ParamReader::AsString(const json& v, const std::string& field) {
  if (!v.is_string()) {
    Fail(field + " must be a string, not " + v.type_name());
    return nullptr;
  }
  const std::string& s = v.get_ref<const std::string&>();
  return CheckString(s, field) ? &s : nullptr;
}

std::optional<std::string> ParamReader::String(std::string_view key, bool required) {
  const json* v = Get(key, required);
  if (v == nullptr) return std::nullopt;
  const std::string* s = AsString(*v, Field(key));
  if (s == nullptr) return std::nullopt;
  return *s;
}

std::optional<bool> ParamReader::Bool(std::string_view key, bool required) {
  const json* v = GetKind(key, required, &json::is_boolean, "a boolean");
  if (v == nullptr) return std::nullopt;
  return v->get<bool>();
}

std::optional<double> ParamReader::Number(std::string_view key, std::optional<double> min,
                                          std::optional<double> max, bool required) {
  const json* v = GetKind(key, required, &json::is_number, "a number");
  if (v == nullptr) return std::nullopt;
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
  const json* v = GetKind(key, required, &json::is_array, "an array of strings");
  if (v == nullptr) return std::nullopt;
  std::vector<std::string> out;
  out.reserve(v->size());
  for (size_t i = 0; i < v->size(); ++i) {
    const std::string* s = AsString((*v)[i], Field(key) + "[" + std::to_string(i) + "]");
    if (s == nullptr) return std::nullopt;
    out.push_back(*s);
  }
  return out;
}

std::optional<std::map<std::string, std::string>> ParamReader::StringMap(std::string_view key,
                                                                         bool required) {
  const json* v = GetKind(key, required, &json::is_object, "an object of strings");
  if (v == nullptr) return std::nullopt;
  std::map<std::string, std::string> out;
  for (const auto& [k, e] : v->items()) {
    const std::string* s = AsString(e, Field(key) + "." + k);
    if (s == nullptr || !CheckString(k, Field(key) + " key `" + k + "`")) return std::nullopt;
    out.emplace(k, *s);
  }
  return out;
}

ParamReader ParamReader::Object(std::string_view key, bool required) {
  return ParamReader(GetKind(key, required, &json::is_object, "an object"), Field(key), error_);
}

void ParamReader::RejectUnknown(std::initializer_list<std::string_view> known) {
  RejectUnknown(std::vector<std::string_view>(known));
}

void ParamReader::RejectUnknown(const std::vector<std::string_view>& known) {
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

}  // namespace corral
