// libFuzzer target for the command line's value parsers (cli/flags.h): DUR, BYTES, whole numbers,
// non-negative decimals, and ParseCellFlags over a whole argv. The input is split at NUL bytes
// into arguments, as the kernel hands them to main(): an argument never holds a NUL.
//
// Checked: no crash or sanitizer report (UBSan catches a float-to-int cast out of range); a
// duration is >= 0; a size never parses from text with a minus sign (it did: " -2" wrapped to
// 2^64-2, flags_test.cc); a whole number lies within the bounds asked for; a decimal is finite
// and >= 0; ParseCellFlags either gives an error sentence or a spec with a command.
//
// `--profile` arguments are dropped: a profile name may be a file path, and a fuzzer must not
// read the file system. Run: scripts/fuzz.sh 60 flags_fuzz.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "cli/flags.h"

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    __builtin_printf("flags_fuzz: invariant broken: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace corral::cli;
  std::vector<std::string> args{"corral"};
  std::string cur;
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == 0) {
      args.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(static_cast<char>(data[i]));
    }
  }
  args.push_back(cur);

  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& s = args[i];
    if (auto d = ParseDurationNs(s)) Check(*d >= 0, "a duration is not negative");
    // strtoull wraps "-5" (after any leading space) to 2^64-5: a size never comes from a '-'.
    if (ParseBytes(s)) Check(s.find('-') == std::string::npos, "a size is not negative");
    if (auto n = ParseInteger(s, 1, 4194304)) Check(*n >= 1 && *n <= 4194304, "within bounds");
    if (auto n = ParseInteger(s, INT64_MIN, INT64_MAX)) (void)n;
    if (auto v = ParseNonNegative(s)) Check(std::isfinite(*v) && *v >= 0, "finite and >= 0");
  }

  std::vector<char*> argv;
  for (std::string& a : args) {
    if (a.rfind("--profile", 0) == 0) continue;
    argv.push_back(a.data());
  }
  argv.push_back(nullptr);
  for (bool run : {true, false}) {
    CellFlags flags;
    auto err = ParseCellFlags(static_cast<int>(argv.size() - 1), argv.data(), run, &flags);
    if (!err && !flags.help) Check(!flags.spec.argv.empty(), "a parsed spec has a command");
    if (err) Check(!err->empty(), "an error says why");
  }
  return 0;
}
