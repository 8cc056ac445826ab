// libFuzzer target for the /proc parsers (scan/proc_parse.h, sys/proc.h). Their input is shaped by
// untrusted processes: a comm of up to 15 bytes of anything, set with prctl(PR_SET_NAME). Each
// parser gets the whole input; ParseProcStat also gets it wrapped as a real stat line around a
// comm taken from the input, so the fields after the comm are reached often.
//
// Checked: no crash or sanitizer report; a parsed stat line's comm lies within the input and its
// pid is positive; a failure always carries a message; ParseU64 accepts only digits.
//
// Run: scripts/fuzz.sh 60 proc_parse_fuzz.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "scan/proc_parse.h"
#include "sys/proc.h"

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    __builtin_printf("proc_parse_fuzz: invariant broken: %s\n", what);
    std::abort();
  }
}

void Stat(std::string_view text) {
  auto st = corral::ParseProcStat(text);
  if (st.ok()) {
    Check(st->pid > 0, "a parsed pid is positive");
    Check(st->comm.size() <= text.size(), "comm lies within the line");
  } else {
    Check(!st.error().message().empty(), "a failure says why");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  Stat(in);
  // A real line's shape around the first 15 bytes as comm; the rest as the fields after it.
  std::string_view comm = in.substr(0, 15), rest = in.substr(comm.size());
  Stat("4242 (" + std::string(comm) + ") " + std::string(rest));

  using namespace corral::scan;
  (void)ParseNofileLimit(in);
  (void)ParseSchedExecStartNs(in);
  (void)ParseLoadavgTasks(in);

  uint64_t v = 0;
  if (corral::ParseU64(in, &v)) {
    Check(!in.empty(), "an empty view is no number");
    for (char c : in) Check(c >= '0' && c <= '9', "ParseU64 accepts digits only");
  }
  std::string_view tokens = in, tok;
  size_t n = 0;
  while (corral::NextProcToken(&tokens, &tok) && n++ < in.size() + 1) {
    Check(tok.data() >= in.data() && tok.data() + tok.size() <= in.data() + in.size(),
          "a token lies within the text");
  }
  for (std::string_view f : corral::SplitFields(in)) Check(!f.empty(), "no empty field");
  (void)corral::ProcParseError("fuzz", in).message();
  return 0;
}
