#pragma once

#include <nlohmann/json.hpp>

#include "cell/spec.h"

namespace corral {

nlohmann::json ResultToJson(const CellResult& r);
// dump() that never throws on invalid UTF-8 in captured output (bytes become U+FFFD).
std::string DumpJson(const nlohmann::json& j, int indent = -1);

}  // namespace corral
