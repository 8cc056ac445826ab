// read_output: a page of a command's captured stdout or stderr, from a byte offset, while it runs
// or after its end (as long as the Supervisor keeps its record). Pages end on a UTF-8 character
// boundary, so each one is valid text on its own.
#include <algorithm>

#include "api/mcp/tool.h"

namespace corral::mcp {
namespace {

constexpr uint64_t kDefaultReadBytes = uint64_t{64} << 10;
constexpr uint64_t kMaxUtf8Continuation = 3;

json Describe(const McpOptions& o) {
  return {
      {"name", "read_output"},
      {"title", "Read a command's output"},
      {"description",
       "Reads a started command's stdout or stderr from a byte offset, at most max_bytes (pages "
       "end "
       "on a UTF-8 character boundary). "
       "Returns the data, next_offset for the next call, and whether the command is done "
       "(eof: nothing more will come)."},
      {"inputSchema",
       IdInputSchema({{"stream", {{"type", "string"}, {"enum", {"stdout", "stderr"}}}},
                      {"offset", {{"type", "integer"}, {"minimum", 0}}},
                      {"max_bytes",
                       {{"type", "integer"}, {"minimum", 1}, {"maximum", o.max_output_bytes}}}})},
      {"outputSchema",
       {{"type", "object"},
        {"properties",
         {{"id", {{"type", "string"}}},
          {"stream", {{"type", "string"}}},
          {"offset", {{"type", "integer"}}},
          {"data", {{"type", "string"}}},
          {"next_offset", {{"type", "integer"}}},
          {"kept_bytes", {{"type", "integer"}}},
          {"total_bytes", {{"type", "integer"}}},
          {"truncated", {{"type", "boolean"}}},
          {"done", {{"type", "boolean"}}},
          {"eof", {{"type", "boolean"}}},
          {"state", {{"type", "string"}}}}},
        {"required", {"id", "stream", "data", "next_offset", "done", "eof", "state"}}}},
      {"annotations", {{"readOnlyHint", true}}}};
}

// A chunk [off, end) of captured output, with `end` moved back to the start of a UTF-8 sequence
// it would cut, so that each page is valid text on its own. When that would leave the page
// empty (max_bytes smaller than one character), `end` moves forward past the character instead.
// A sequence cut by the output cap itself stays cut.
size_t Utf8SafeEnd(const std::string& s, size_t off, size_t end) {
  auto continuation = [&](size_t i) {
    return i < s.size() && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80;
  };
  if (end >= s.size()) return s.size();
  size_t e = end;
  for (int i = 0; i < 3 && e > off && continuation(e); ++i) --e;  // at most 3 trailing bytes
  if (e > off) return e;
  for (int i = 0; i < 3 && continuation(end); ++i) ++end;
  return end;
}

void Call(McpServer& s, const ToolCall& call) {
  jsonrpc::ParamReader p(call.args, "arguments");
  auto cid = p.String("id", /*required=*/true);
  auto stream = p.String("stream");
  auto offset = p.Integer("offset", 0);
  auto max_bytes = p.Integer("max_bytes", 1, static_cast<int64_t>(s.options().max_output_bytes));
  p.RejectUnknown({"id", "stream", "offset", "max_bytes"});
  if (p.ok() && stream && *stream != "stdout" && *stream != "stderr") {
    p.Fail("arguments.stream must be \"stdout\" or \"stderr\"");
  }
  if (!p.ok()) return s.ReplyToolError(call.id, p.error().message);
  bool err = stream.value_or("stdout") == "stderr";
  uint64_t want = max_bytes ? static_cast<uint64_t>(*max_bytes) : kDefaultReadBytes;
  // A few bytes past the page, for Utf8SafeEnd to finish a character the page would cut.
  auto out =
      s.supervisor().Output(Caller::System(), *cid, err, static_cast<uint64_t>(offset.value_or(0)),
                            want + kMaxUtf8Continuation);
  if (std::holds_alternative<Refusal>(out)) {
    return s.ReplyToolError(call.id, "no command `" + *cid + "`");
  }
  const Supervisor::OutputChunk& c = std::get<Supervisor::OutputChunk>(out);
  size_t n = Utf8SafeEnd(c.data, 0, std::min<size_t>(c.data.size(), want));
  uint64_t end = c.offset + n;
  s.ReplyToolResult(call.id, {{"id", *cid},
                              {"stream", err ? "stderr" : "stdout"},
                              {"offset", c.offset},
                              {"data", c.data.substr(0, n)},
                              {"next_offset", end},
                              {"kept_bytes", c.kept_bytes},
                              {"total_bytes", c.total_bytes},
                              {"truncated", c.truncated},
                              {"done", c.done},
                              {"eof", c.done && end == c.kept_bytes},
                              {"state", c.state}});
}

}  // namespace

extern const Tool kReadOutput = {"read_output", Describe, Call, /*holds=*/false};

}  // namespace corral::mcp
