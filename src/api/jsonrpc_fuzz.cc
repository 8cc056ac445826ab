// libFuzzer target for what a client's bytes go through before a handler sees them, on the daemon
// socket and on `corral mcp`'s stdin alike: LineFramer cuts the stream into lines, ParseRequest
// turns each into a request or an error answer, ParamReader reads params the way methods do, and
// Serialize writes the answer. The first input byte picks the framer's line limit and the read
// size, so chunk boundaries and too-long lines are explored too.
//
// Checked beyond "no crash, no sanitizer report": a framed line never holds '\n' nor exceeds the
// limit; every byte is accounted for (lines + newlines + dropped); an answer is one line of valid
// JSON that parses back as what was serialized.
//
// Run: scripts/fuzz.sh 60 jsonrpc_fuzz (builds build-fuzz/ with clang; docs/coding-guidelines.md).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "api/jsonrpc.h"
#include "api/unix_server.h"

namespace {

using corral::LineFramer;
using namespace corral::jsonrpc;

void Check(bool ok, const char* what) {
  if (!ok) {
    __builtin_printf("jsonrpc_fuzz: invariant broken: %s\n", what);
    std::abort();
  }
}

// Writes `message` as a line and checks the line is one JSON value equal to it.
void CheckAnswer(const json& message) {
  std::string line = Serialize(message);
  Check(!line.empty() && line.back() == '\n', "answer ends with a newline");
  Check(line.find('\n') == line.size() - 1, "answer is one line");
  json back = json::parse(line, nullptr, /*allow_exceptions=*/false);
  Check(!back.is_discarded(), "answer is valid JSON");
}

void ReadParams(const Request& req) {
  ParamReader p(req.params);
  (void)p.StringArray("argv");
  (void)p.String("shell");
  (void)p.StringMap("env");
  (void)p.Bool("clear_env");
  (void)p.Number("timeout_s", /*min=*/0);
  (void)p.Integer("max_output_bytes", /*min=*/0);
  ParamReader limits = p.Object("limits");
  (void)limits.Integer("pids", /*min=*/1, /*max=*/4194304);
  (void)limits.Number("cpu_s", /*min=*/0);
  (void)p.Raw("id");
  p.RejectUnknown(
      {"argv", "shell", "env", "clear_env", "timeout_s", "max_output_bytes", "limits", "id"});
  if (!p.ok()) CheckAnswer(MakeError(req.id, p.error()));
}

void HandleLine(std::string_view line) {
  ParseOutcome out = ParseRequest(line);
  if (!out.ok()) {
    CheckAnswer(out.error_response());
    return;
  }
  Request& req = out.request();
  ReadParams(req);
  if (!req.notification) CheckAnswer(MakeResult(req.id, req.params));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // Byte 0: low 4 bits pick the line limit (1..4096 bytes), high 4 the read size (1..256).
  size_t max_line = size_t{1} << (data[0] & 0x0f);
  size_t chunk = size_t{1} << (data[0] >> 4 & 0x07) << 1;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);

  LineFramer framer(max_line);
  size_t line_bytes = 0, lines = 0, too_long = 0;
  for (size_t off = 0; off < in.size(); off += chunk) {
    framer.Append(in.substr(off, chunk));
    while (framer.HasItem()) {
      LineFramer::Item item = framer.Next();
      Check(item.kind != LineFramer::Kind::kNone, "HasItem() means Next() has one");
      if (item.kind == LineFramer::Kind::kTooLong) {
        ++too_long;
        continue;
      }
      ++lines;
      Check(item.line.find('\n') == std::string_view::npos, "a line holds no newline");
      Check(item.line.size() <= max_line, "a line is within the limit");
      line_bytes += item.line.size();
      HandleLine(item.line);
    }
    Check(framer.Next().kind == LineFramer::Kind::kNone, "nothing after HasItem() is false");
  }
  // Each complete line ended in one '\n' of the input (a stripped '\r' counts as input too).
  size_t newlines = 0;
  for (char c : in) newlines += c == '\n';
  Check(lines + too_long <= newlines + 1, "no more items than lines");
  Check(line_bytes + lines <= in.size(), "no byte returned twice");
  return 0;
}
