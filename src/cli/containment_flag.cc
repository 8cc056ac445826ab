#include "cli/containment_flag.h"

#include <cstdio>

namespace corral::cli {

std::optional<ContainmentConfig> ContainmentFromFlag(const char* verb, const std::string& flag) {
  std::optional<ContainmentMode> forced;
  if (!flag.empty()) {
    forced = ParseContainmentMode(flag);
    if (!forced) {
      std::fprintf(stderr, "corral %s: --containment: '%s' is not cgroup2, cgroup1 or pgroup\n",
                   verb, flag.c_str());
      return std::nullopt;
    }
  }
  auto config = ChooseContainment(forced);
  if (!config.ok()) {
    std::string what = flag.empty() ? "set up containment" : "use --containment " + flag;
    std::fprintf(stderr, "corral %s: cannot %s: %s\n", verb, what.c_str(),
                 config.error().message().c_str());
    return std::nullopt;
  }
  return std::move(config).value();
}

}  // namespace corral::cli
