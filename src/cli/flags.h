// Parsing of the command line's value types (DESIGN.md): DUR is `500ms`, `30s`, `2m`, `1h` or
// plain seconds (fractions allowed); BYTES takes `K`, `M`, `G` (powers of 1024).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cell/spec.h"

namespace corral::cli {

std::optional<int64_t> ParseDurationNs(const std::string& s);
std::optional<uint64_t> ParseBytes(const std::string& s);
// A whole base-10 number within [min, max]: "1.5", "1e9", "12abc" and out-of-range values are
// refused rather than cut or wrapped.
std::optional<int64_t> ParseInteger(const std::string& s, int64_t min, int64_t max);
// A finite decimal number >= 0 ("0.8", "2"); nan, inf and trailing text are refused.
std::optional<double> ParseNonNegative(const std::string& s);

// An option as given: "--name=value" carries its value; "--name" and "-x" do not (a value, if the
// option takes one, is the next argument).
struct OptionArg {
  std::string name;
  std::optional<std::string> inline_value;
};
OptionArg SplitOption(const std::string& arg);

// The options `run` and `exec` share, parsed into a CellSpec. Parsing stops at `--` or at the
// first argument that is not an option; the rest is the command.
struct CellFlags {
  CellSpec spec;
  bool json = false;
  bool help = false;
  std::string containment;  // run only: forced backend
  std::string socket;       // exec only
};
// Returns an error sentence for bad input ("--timeout: '5x' is not a duration (...)").
std::optional<std::string> ParseCellFlags(int argc, char** argv, bool allow_containment,
                                          CellFlags* out);

}  // namespace corral::cli
