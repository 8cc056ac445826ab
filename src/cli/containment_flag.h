// `--containment` of `corral run` and `corral mcp`.
#pragma once

#include <optional>
#include <string>

#include "cell/containment.h"

namespace corral::cli {

// The backend `--containment` names (empty: the best this host offers), chosen and its roots
// prepared; nullopt after "corral VERB: ..." on stderr.
std::optional<ContainmentConfig> ContainmentFromFlag(const char* verb, const std::string& flag);

}  // namespace corral::cli
