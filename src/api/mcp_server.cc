#include "api/mcp_server.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "cell/result_json.h"
#include "sys/clock.h"

namespace corral {

using jsonrpc::json;
using jsonrpc::RpcError;

namespace {

constexpr size_t kReadChunk = size_t{64} << 10;
// While more than this is waiting to be written, requests are not read: a client that sends
// without reading cannot make the server hold unbounded answers.
constexpr size_t kOutputHighWater = size_t{16} << 20;
// After the last cell of a shutdown closed, how long a client that does not read gets to take
// the remaining answers.
constexpr int64_t kFlushTimeoutNs = 2 * kNsPerSec;
constexpr uint64_t kDefaultReadBytes = uint64_t{64} << 10;
constexpr double kMaxWaitS = 3600;
constexpr double kDefaultWaitS = 30;

double Seconds(int64_t ns) { return static_cast<double>(ns) / kNsPerSec; }

// Nullable JSON Schema types (draft 2020-12 / 07 both accept a type array).
json Nullable(const char* type) { return json{{"type", json::array({type, "null"})}}; }

// The result object of DESIGN.md, as ResultToJson writes it.
json ResultSchema() {
  json props = {
      {"id", {{"type", "string"}}},
      {"argv", {{"type", "array"}, {"items", {{"type", "string"}}}}},
      {"state",
       {{"type", "string"},
        {"enum", {"exited", "timed_out", "killed", "cancelled", "failed_to_start"}}}},
      {"exit_code", Nullable("integer")},
      {"signal", Nullable("string")},
      {"duration_s", {{"type", "number"}}},
      {"stdout", {{"type", "string"}}},
      {"stderr", {{"type", "string"}}},
      {"stdout_truncated", {{"type", "boolean"}}},
      {"stderr_truncated", {{"type", "boolean"}}},
      {"stdout_bytes", {{"type", "integer"}}},
      {"stderr_bytes", {{"type", "integer"}}},
      {"peak_memory_bytes", Nullable("integer")},
      {"cpu_user_s", Nullable("number")},
      {"cpu_system_s", Nullable("number")},
      {"pids_peak", Nullable("integer")},
      {"leftover",
       {{"type", "object"},
        {"properties", {{"killed", {{"type", "integer"}}}, {"stuck", {{"type", "integer"}}}}},
        {"required", {"killed", "stuck"}}}},
      {"containment", {{"type", "string"}}},
      {"reason", Nullable("string")},
      {"limits_hit", {{"type", "array"}, {"items", {{"type", "string"}}}}},
      {"error", Nullable("string")},
  };
  return {{"type", "object"},
          {"properties", props},
          {"required",
           {"id", "argv", "state", "exit_code", "signal", "duration_s", "stdout", "stderr",
            "stdout_truncated", "stderr_truncated", "stdout_bytes", "stderr_bytes", "leftover",
            "containment", "reason"}}};
}

json CommandInputSchema() {
  return {{"type", "object"},
          {"properties",
           {{"command",
             {{"type", "string"},
              {"description", "a shell command line, run with /bin/sh -c (give this or argv)"}}},
            {"argv",
             {{"type", "array"},
              {"items", {{"type", "string"}}},
              {"minItems", 1},
              {"description", "the program and its arguments, no shell (give this or command)"}}},
            {"cwd", {{"type", "string"}, {"description", "working directory"}}},
            {"env",
             {{"type", "object"},
              {"additionalProperties", {{"type", "string"}}},
              {"description", "variables to set, on top of the few the server passes through"}}},
            {"stdin", {{"type", "string"}, {"description", "bytes for stdin (default: empty)"}}},
            {"timeout_s",
             {{"type", "number"},
              {"exclusiveMinimum", 0},
              {"description",
               "end the whole process tree after this many seconds (default: the server's)"}}},
            {"max_output_bytes",
             {{"type", "integer"},
              {"minimum", 0},
              {"description", "keep at most this many bytes per stream; the rest is counted"}}}}},
          {"additionalProperties", false}};
}

json IdInputSchema(const json& extra = json::object(), const json& required = json::array({"id"})) {
  json props = {{"id", {{"type", "string"}, {"description", "the id start_command returned"}}}};
  props.update(extra);
  return {{"type", "object"},
          {"properties", props},
          {"required", required},
          {"additionalProperties", false}};
}

json StatusSchema() {
  return {{"type", "object"},
          {"properties",
           {{"id", {{"type", "string"}}},
            {"done", {{"type", "boolean"}}},
            {"state", {{"type", "string"}}},
            {"running_s", {{"type", "number"}}},
            {"result", {{"anyOf", json::array({ResultSchema(), {{"type", "null"}}})}}}}},
          {"required", {"id", "done", "state", "result"}}};
}

json SummarySchema() {
  return {{"type", "object"},
          {"properties",
           {{"id", {{"type", "string"}}},
            {"argv", {{"type", "array"}, {"items", {{"type", "string"}}}}},
            {"state", {{"type", "string"}}},
            {"pid", Nullable("integer")},
            {"background", {{"type", "boolean"}}},
            {"running_s", {{"type", "number"}}},
            {"stdout_bytes", {{"type", "integer"}}},
            {"stderr_bytes", {{"type", "integer"}}}}},
          {"required", {"id", "argv", "state"}}};
}

json ToolList(const McpOptions& o) {
  char limits[200];
  if (o.default_timeout_ns > 0) {
    std::snprintf(limits, sizeof limits, "Default timeout %g s", Seconds(o.default_timeout_ns));
  } else {
    std::snprintf(limits, sizeof limits, "No default timeout");
  }
  std::string text = limits;
  if (o.max_timeout_ns > 0) {
    std::snprintf(limits, sizeof limits, ", at most %g s", Seconds(o.max_timeout_ns));
    text += limits;
  }
  text += "; output kept up to " + std::to_string(o.max_output_bytes) + " bytes per stream.";
  json tools = json::array();
  tools.push_back(
      {{"name", "run_command"},
       {"title", "Run a command"},
       {"description",
        "Runs a command in a cell (its whole process tree is contained, killed as a whole on "
        "timeout or cancellation, and reaped) and returns when the tree is gone: exit code or "
        "signal, stdout, stderr, duration, peak memory, CPU time, leftover processes. " +
            text + " For commands longer than your tool-call timeout, use start_command."},
       {"inputSchema", CommandInputSchema()},
       {"outputSchema", ResultSchema()},
       {"annotations", {{"destructiveHint", true}, {"openWorldHint", true}}}});
  tools.push_back(
      {{"name", "start_command"},
       {"title", "Start a background command"},
       {"description",
        "Starts a command in a cell and returns its id at once. Follow it with read_output, "
        "wait_command and kill_command. It ends at its timeout or when the server stops. " +
            text},
       {"inputSchema", CommandInputSchema()},
       {"outputSchema", SummarySchema()},
       {"annotations", {{"destructiveHint", true}, {"openWorldHint", true}}}});
  tools.push_back(
      {{"name", "read_output"},
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
       {"annotations", {{"readOnlyHint", true}}}});
  tools.push_back(
      {{"name", "wait_command"},
       {"title", "Wait for a command"},
       {"description",
        "Waits up to timeout_s seconds (default 30) for a started command to end. Returns "
        "done: true and its result, or done: false while it is still running."},
       {"inputSchema", IdInputSchema({{"timeout_s", {{"type", "number"}, {"minimum", 0}}}})},
       {"outputSchema", StatusSchema()},
       {"annotations", {{"readOnlyHint", true}}}});
  tools.push_back(
      {{"name", "kill_command"},
       {"title", "Kill a command"},
       {"description",
        "Ends a started command's whole process tree (SIGTERM, then SIGKILL after the grace "
        "period) and returns its result once the tree is gone."},
       {"inputSchema", IdInputSchema()},
       {"outputSchema", StatusSchema()},
       {"annotations", {{"destructiveHint", true}}}});
  tools.push_back({{"name", "list_commands"},
                   {"title", "List commands"},
                   {"description",
                    "Lists the commands running now and the started commands that ended recently."},
                   {"inputSchema", {{"type", "object"}, {"properties", json::object()}}},
                   {"outputSchema",
                    {{"type", "object"},
                     {"properties",
                      {{"commands", {{"type", "array"}, {"items", SummarySchema()}}},
                       {"running", {{"type", "integer"}}},
                       {"max_concurrent", {{"type", "integer"}}}}},
                     {"required", {"commands", "running", "max_concurrent"}}}},
                   {"annotations", {{"readOnlyHint", true}}}});
  return tools;
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

bool IsUnderDir(const std::string& path, const std::string& dir) {
  if (dir == "/") return true;
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         path[dir.size()] == '/');
}

}  // namespace

std::vector<std::string> McpOptions::DefaultEnvPass() {
  return {"PATH",   "HOME",     "USER", "LOGNAME", "SHELL", "LANG",
          "LC_ALL", "LC_CTYPE", "TERM", "TZ",      "TMPDIR"};
}

const std::vector<std::string>& McpServer::SupportedVersions() {
  static const std::vector<std::string> v = {"2025-11-25", "2025-06-18", "2025-03-26",
                                             "2024-11-05"};
  return v;
}

McpServer::McpServer(EventLoop* loop, CellHost* host, McpOptions options, int in_fd, int out_fd)
    : loop_(loop),
      host_(host),
      options_(std::move(options)),
      in_fd_(in_fd),
      out_fd_(out_fd),
      framer_(options_.max_line_bytes) {
  for (const std::string& name : options_.env_pass) {
    if (name == "*") pass_all_env_ = true;
    if (const char* v = getenv(name.c_str())) passed_env_.emplace_back(name, v);
  }
}

McpServer::~McpServer() {
  if (in_token_ != 0) loop_->Remove(in_token_);
  if (out_token_ != 0) loop_->Remove(out_token_);
  for (EventLoop::Token t : {pump_timer_, flush_timer_}) {
    if (t != 0) loop_->CancelTimer(t);
  }
  for (auto& [key, p] : pending_) {
    if (p.progress_timer != 0) loop_->CancelTimer(p.progress_timer);
    if (p.deadline_timer != 0) loop_->CancelTimer(p.deadline_timer);
  }
  if (in_flags_ >= 0) fcntl(in_fd_, F_SETFL, in_flags_);
  if (out_flags_ >= 0) fcntl(out_fd_, F_SETFL, out_flags_);
}

Status McpServer::Start() {
  in_flags_ = fcntl(in_fd_, F_GETFL);
  out_flags_ = fcntl(out_fd_, F_GETFL);
  if (in_flags_ < 0) return Error::FromErrno("fcntl(F_GETFL)", "stdin");
  if (out_flags_ < 0) return Error::FromErrno("fcntl(F_GETFL)", "stdout");
  TRY(SetNonBlocking(in_fd_, true));
  TRY(SetNonBlocking(out_fd_, true));
  auto token = loop_->Add(in_fd_, EPOLLIN, [this](uint32_t) { OnReadable(); });
  if (token.ok()) {
    in_token_ = *token;
  } else if (token.error().code() == EPERM) {
    in_pollable_ = false;  // a regular file or /dev/null: reads never block
    pump_timer_ = loop_->AddTimer(MonotonicNs(), [this] { PumpInput(); });
  } else {
    return token.error().Wrap("watch the input fd");
  }
  return {};
}

// ---- input ----

void McpServer::OnReadable() {
  char buf[kReadChunk];
  ssize_t n = read(in_fd_, buf, sizeof buf);
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return;
    std::fprintf(stderr, "corral mcp: read stdin: %s\n", std::strerror(errno));
    n = 0;  // unreadable input ends the session like EOF
  }
  if (n == 0) {
    in_eof_ = true;
    framer_.Append("\n");  // a last message without its '\n' still counts
  } else {
    framer_.Append(std::string_view(buf, static_cast<size_t>(n)));
  }
  ProcessLines();
  if (in_eof_) Shutdown("stdin closed");
  UpdateInputWatch();
}

void McpServer::PumpInput() {
  pump_timer_ = 0;
  if (shutting_down_ || in_eof_) return;
  OnReadable();
}

void McpServer::ProcessLines() {
  while (framer_.HasItem() && !shutting_down_) {
    LineFramer::Item item = framer_.Next();
    if (item.kind == LineFramer::Kind::kTooLong) {
      Send(jsonrpc::MakeError(
          nullptr, RpcError::InvalidRequest("message larger than " +
                                            std::to_string(options_.max_line_bytes) + " bytes")));
      continue;
    }
    // Blank lines between messages are tolerated (some clients send "\r\n\r\n").
    if (item.line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    OnLine(item.line);
  }
}

void McpServer::UpdateInputWatch() {
  bool want = !shutting_down_ && !in_eof_ && out_buf_.size() - out_off_ <= kOutputHighWater;
  if (!in_pollable_) {
    if (want && pump_timer_ == 0) {
      pump_timer_ = loop_->AddTimer(MonotonicNs(), [this] { PumpInput(); });
    }
    return;
  }
  if (want && in_token_ == 0) {
    auto token = loop_->Add(in_fd_, EPOLLIN, [this](uint32_t) { OnReadable(); });
    if (token.ok()) in_token_ = *token;
  } else if (!want && in_token_ != 0) {
    loop_->Remove(in_token_);
    in_token_ = 0;
  }
}

// ---- output ----

void McpServer::Send(const json& message) {
  if (out_broken_) return;
  out_buf_ += jsonrpc::Serialize(message);
  FlushOutput();
}

void McpServer::FlushOutput() {
  while (out_off_ < out_buf_.size()) {
    ssize_t n = write(out_fd_, out_buf_.data() + out_off_, out_buf_.size() - out_off_);
    if (n > 0) {
      out_off_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      if (out_off_ > (1u << 20) && out_off_ * 2 > out_buf_.size()) {
        out_buf_.erase(0, out_off_);  // keep what is waiting at the front, amortised
        out_off_ = 0;
      }
      if (out_token_ == 0) {
        auto token = loop_->Add(out_fd_, EPOLLOUT, [this](uint32_t) { FlushOutput(); });
        if (token.ok()) out_token_ = *token;
      }
      return;
    }
    // EPIPE (SIGPIPE is blocked) or worse: nobody will read our answers any more.
    std::fprintf(stderr, "corral mcp: write stdout: %s\n", std::strerror(n < 0 ? errno : EIO));
    out_broken_ = true;
    out_buf_.clear();
    out_off_ = 0;
    if (out_token_ != 0) loop_->Remove(out_token_);
    out_token_ = 0;
    Shutdown("stdout closed");
    return;
  }
  out_buf_.clear();
  out_off_ = 0;
  if (out_token_ != 0) {
    loop_->Remove(out_token_);
    out_token_ = 0;
  }
  if (!shutting_down_) UpdateInputWatch();
  MaybeFinishShutdown();
}

// ---- protocol ----

void McpServer::OnLine(std::string_view line) {
  jsonrpc::ParseOutcome parsed = jsonrpc::ParseRequest(line);
  if (!parsed.ok()) {
    // A response from the client (we never send requests, but a client may answer a ping we
    // never sent, or echo): answering it with an error could start a ping-pong, so drop it.
    json doc = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
    if (doc.is_object() && !doc.contains("method") &&
        (doc.contains("result") || doc.contains("error"))) {
      return;
    }
    Send(parsed.error_response());
    return;
  }
  jsonrpc::Request& req = parsed.request();
  if (options_.verbose) std::fprintf(stderr, "corral mcp: <- %s\n", req.method.c_str());
  if (req.notification) {
    HandleNotification(req);
  } else {
    HandleRequest(req);
  }
}

void McpServer::HandleNotification(const jsonrpc::Request& req) {
  if (req.method != "notifications/cancelled") return;  // initialized, roots/list_changed, ...
  if (!req.params.is_object()) return;
  auto rid = req.params.find("requestId");
  if (rid == req.params.end()) return;
  std::string key = rid->dump();
  auto it = pending_.find(key);
  if (it == pending_.end()) return;  // already answered, or never ours: ignore (spec)
  Pending& p = it->second;
  // A start_command cancelled before its answer went out would leave a command whose id the
  // client never learnt: it is killed like a run_command.
  if (p.kind == PendingKind::kRun || p.kind == PendingKind::kStart) {
    auto c = commands_.find(p.command);
    if (c != commands_.end() && c->second.cell != nullptr) c->second.cell->Cancel("cancelled");
  }
  // No response is sent for a cancelled request; its cell's end is recorded but not reported.
  DropPending(key);
}

void McpServer::HandleRequest(jsonrpc::Request& req) {
  if (req.method == "ping") return Send(jsonrpc::MakeResult(req.id, json::object()));
  if (req.method == "initialize") {
    std::optional<RpcError> err;
    json result = InitializeResult(req, &err);
    if (err) return Send(jsonrpc::MakeError(req.id, *err));
    initialize_answered_ = true;
    return Send(jsonrpc::MakeResult(req.id, std::move(result)));
  }
  if (!initialize_answered_) {
    return Send(jsonrpc::MakeError(
        req.id, RpcError::InvalidRequest("server not initialized: send `initialize` first")));
  }
  if (req.method == "tools/list") {
    return Send(jsonrpc::MakeResult(req.id, {{"tools", ToolList(options_)}}));
  }
  if (req.method == "tools/call") return CallTool(req);
  Send(jsonrpc::MakeError(req.id, RpcError::MethodNotFound(req.method)));
}

json McpServer::InitializeResult(const jsonrpc::Request& req, std::optional<RpcError>* err) {
  if (initialize_answered_) {
    *err = RpcError::InvalidRequest("already initialized");
    return nullptr;
  }
  jsonrpc::ParamReader p(req.params);
  auto version = p.String("protocolVersion", /*required=*/true);
  if (!p.ok()) {
    *err = p.error();
    return nullptr;
  }
  // Negotiation: echo the client's version when we speak it, else offer our latest and let the
  // client decide whether to disconnect.
  const auto& supported = SupportedVersions();
  protocol_version_ = supported.front();
  for (const std::string& v : supported) {
    if (v == *version) protocol_version_ = v;
  }
  return {{"protocolVersion", protocol_version_},
          {"capabilities", {{"tools", {{"listChanged", false}}}}},
          {"serverInfo",
           {{"name", "corral"}, {"title", "corral: contained commands"}, {"version", "0.1.0"}}},
          {"instructions",
           "Every command runs in a cell: its whole process tree is killed at its timeout, on "
           "cancellation and when this server stops, and nothing it starts outlives it. Use "
           "run_command for commands that finish within your tool timeout, start_command + "
           "wait_command/read_output for longer ones."}};
}

void McpServer::ReplyToolResult(const json& id, const json& structured) {
  json result = {{"content", json::array({{{"type", "text"}, {"text", DumpJson(structured)}}})},
                 {"structuredContent", structured},
                 {"isError", false}};
  Send(jsonrpc::MakeResult(id, std::move(result)));
}

void McpServer::ReplyToolError(const json& id, const std::string& message) {
  if (options_.verbose) std::fprintf(stderr, "corral mcp: tool error: %s\n", message.c_str());
  json result = {{"content", json::array({{{"type", "text"}, {"text", message}}})},
                 {"isError", true}};
  Send(jsonrpc::MakeResult(id, std::move(result)));
}

void McpServer::CallTool(jsonrpc::Request& req) {
  jsonrpc::ParamReader p(req.params);
  auto name = p.String("name", /*required=*/true);
  const json* args = p.Raw("arguments");
  if (p.ok() && args != nullptr && !args->is_object()) p.Fail("params.arguments must be an object");
  if (!p.ok()) return Send(jsonrpc::MakeError(req.id, p.error()));
  static const json kNoArgs = json::object();
  if (args == nullptr) args = &kNoArgs;

  Pending pending;
  pending.id = req.id;
  pending.started_ns = MonotonicNs();
  if (const json* meta = p.Raw("_meta"); meta != nullptr && meta->is_object()) {
    auto tok = meta->find("progressToken");
    if (tok != meta->end() && (tok->is_string() || tok->is_number_integer())) {
      pending.progress_token = *tok;
    }
  }
  std::string key = req.id.dump();

  if (*name == "run_command" || *name == "start_command" || *name == "wait_command" ||
      *name == "kill_command") {
    if (pending_.count(key) != 0) {
      return Send(jsonrpc::MakeError(
          req.id, RpcError::InvalidRequest("request id " + key + " is already in use")));
    }
  }
  if (*name == "run_command") {
    pending.kind = PendingKind::kRun;
    return RunOrStart(key, std::move(pending), *args);
  }
  if (*name == "start_command") {
    pending.kind = PendingKind::kStart;
    return RunOrStart(key, std::move(pending), *args);
  }
  if (*name == "wait_command") {
    pending.kind = PendingKind::kWait;
    return WaitOrKill(key, std::move(pending), *args);
  }
  if (*name == "kill_command") {
    pending.kind = PendingKind::kKill;
    return WaitOrKill(key, std::move(pending), *args);
  }
  if (*name == "read_output") return ReadOutput(req.id, *args);
  if (*name == "list_commands") return ListCommands(req.id);
  Send(jsonrpc::MakeError(req.id, RpcError::InvalidParams("unknown tool `" + *name + "`")));
}

// ---- tools ----

std::optional<std::string> McpServer::BuildSpec(const json& args, CellSpec* spec) {
  jsonrpc::ParamReader p(args, "arguments");
  auto command = p.String("command");
  auto argv = p.StringArray("argv");
  auto cwd = p.String("cwd");
  auto env = p.StringMap("env");
  auto stdin_data = p.String("stdin");
  auto timeout_s = p.Number("timeout_s", 0);
  auto max_output = p.Integer("max_output_bytes", 0);
  p.RejectUnknown({"command", "argv", "cwd", "env", "stdin", "timeout_s", "max_output_bytes"});
  if (!p.ok()) return p.error().message;

  if (command.has_value() == argv.has_value()) {
    return "give either `command` (a shell string) or `argv` (an array), exactly one of them";
  }
  if (command) {
    spec->argv = {"/bin/sh", "-c", *command};
  } else {
    if (argv->empty()) return "arguments.argv must hold at least the program";
    spec->argv = std::move(*argv);
  }

  // Working directory: canonical, an existing directory, and inside an allowed one.
  std::string dir;
  if (cwd) {
    if (cwd->empty()) return "arguments.cwd is empty";
    char resolved[PATH_MAX];
    if (realpath(cwd->c_str(), resolved) == nullptr) {
      return "cwd `" + *cwd + "`: " + std::strerror(errno);
    }
    struct stat st {};
    if (stat(resolved, &st) != 0 || !S_ISDIR(st.st_mode))
      return "cwd `" + *cwd + "` is not a directory";
    dir = resolved;
  } else if (!options_.allow_cwd.empty()) {
    dir = options_.allow_cwd.front();  // the first allowed directory is the default
  }
  if (!options_.allow_cwd.empty() && !dir.empty()) {
    bool allowed = false;
    for (const std::string& a : options_.allow_cwd) allowed = allowed || IsUnderDir(dir, a);
    if (!allowed) {
      std::string list;
      for (const std::string& a : options_.allow_cwd) list += (list.empty() ? "" : ", ") + a;
      return "cwd `" + dir + "` is not allowed by this server (allowed: " + list + ")";
    }
  }
  spec->cwd = dir;

  // Environment: only the passed-through variables of ours, then the caller's.
  spec->clear_env = !pass_all_env_;
  if (!pass_all_env_) spec->env = passed_env_;
  if (env) {
    for (auto& [k, v] : *env) {
      if (k.empty() || k.find('=') != std::string::npos) {
        return "arguments.env: `" + k + "` is not a valid variable name";
      }
      spec->env.emplace_back(k, v);
    }
  }

  if (stdin_data) {
    spec->stdin_mode = StdinMode::kBytes;
    spec->stdin_data = std::move(*stdin_data);
  } else {
    spec->stdin_mode = StdinMode::kNull;  // never ours: our stdin carries the protocol
  }
  spec->output = OutputMode::kCapture;  // never ours: our stdout carries the protocol

  if (timeout_s) {
    if (*timeout_s <= 0) return "arguments.timeout_s must be above 0";
    double max_s = Seconds(options_.max_timeout_ns);
    if (options_.max_timeout_ns > 0 && *timeout_s > max_s) {
      char msg[160];
      std::snprintf(msg, sizeof msg,
                    "arguments.timeout_s %g is above this server's maximum of %g s "
                    "(--max-timeout)",
                    *timeout_s, max_s);
      return std::string(msg);
    }
    if (*timeout_s > 1e9) return "arguments.timeout_s is too large";
    spec->timeout_ns = static_cast<int64_t>(std::llround(*timeout_s * kNsPerSec));
  } else {
    spec->timeout_ns = options_.default_timeout_ns;
  }
  if (max_output) {
    if (static_cast<uint64_t>(*max_output) > options_.max_output_bytes) {
      return "arguments.max_output_bytes " + std::to_string(*max_output) +
             " is above this server's maximum of " + std::to_string(options_.max_output_bytes) +
             " (--max-output)";
    }
    spec->max_output_bytes = static_cast<uint64_t>(*max_output);
  } else {
    spec->max_output_bytes = options_.max_output_bytes;
  }
  spec->grace_ns = options_.grace_ns;
  spec->kill_wait_ns = options_.kill_wait_ns;
  spec->isolation = options_.isolation;
  return std::nullopt;
}

void McpServer::RunOrStart(const std::string& key, Pending pending, const json& args) {
  if (shutting_down_) return ReplyToolError(pending.id, "the server is shutting down");
  CellSpec spec;
  if (auto err = BuildSpec(args, &spec)) return ReplyToolError(pending.id, *err);
  if (running_ >= options_.max_concurrent) {
    return ReplyToolError(pending.id,
                          "too many commands running (" + std::to_string(running_) +
                              ", the server's --max-concurrent); wait for one to end or kill one");
  }
  // The owner pid in the id lets SweepOrphanedCells clean up after a crashed server.
  std::string cid = "mcp-" + std::to_string(getpid()) + "-" + std::to_string(next_command_++);
  spec.id = cid;
  Command& c = commands_[cid];
  c.id = cid;
  c.background = pending.kind == PendingKind::kStart;
  c.argv = spec.argv;
  c.started_ns = MonotonicNs();
  c.waiters.push_back(key);
  pending.command = cid;
  ++running_;
  if (options_.verbose)
    std::fprintf(stderr, "corral mcp: %s: %s\n", cid.c_str(), DumpJson(c.argv).c_str());

  bool background = c.background;
  json progress = pending.progress_token;
  pending_[key] = std::move(pending);
  // The done callback runs from the loop, never inside Start(), so the record exists by then.
  Cell* cell =
      host_->Start(std::move(spec), [this, cid](const CellResult& r) { OnCellDone(cid, r); });
  c.cell = cell;
  c.pid = cell->leader_pid();
  if (background) {
    // Answered on the next loop turn, after a start failure (reported from a zero-delay timer
    // queued by Start) has landed, so that the answer can say failed_to_start right away.
    pending_[key].deadline_timer = loop_->AddTimer(MonotonicNs(), [this, key] {
      auto it = pending_.find(key);
      if (it == pending_.end()) return;
      it->second.deadline_timer = 0;
      auto c = commands_.find(it->second.command);
      if (c != commands_.end()) {
        auto& w = c->second.waiters;
        w.erase(std::remove(w.begin(), w.end(), key), w.end());
        ReplyToolResult(it->second.id, CommandSummary(c->second));
      }
      DropPending(key);
    });
  } else if (!progress.is_null()) {
    SendProgress(key);
  }
}

void McpServer::WaitOrKill(const std::string& key, Pending pending, const json& args) {
  jsonrpc::ParamReader p(args, "arguments");
  auto id = p.String("id", /*required=*/true);
  std::optional<double> timeout_s;
  if (pending.kind == PendingKind::kWait) {
    timeout_s = p.Number("timeout_s", 0, kMaxWaitS);
    p.RejectUnknown({"id", "timeout_s"});
  } else {
    p.RejectUnknown({"id"});
  }
  if (!p.ok()) return ReplyToolError(pending.id, p.error().message);
  auto it = commands_.find(*id);
  if (it == commands_.end()) {
    return ReplyToolError(pending.id, "no command `" + *id +
                                          "` (ids come from start_command; finished ones are "
                                          "kept for the last " +
                                          std::to_string(options_.keep_finished) + ")");
  }
  Command& c = it->second;
  if (c.result) return ReplyToolResult(pending.id, StatusOf(c));
  if (pending.kind == PendingKind::kKill) {
    c.cell->Cancel("cancelled");
  } else {
    double wait = timeout_s.value_or(kDefaultWaitS);
    if (wait == 0) return ReplyToolResult(pending.id, StatusOf(c));
    pending.deadline_timer =
        loop_->AddTimer(MonotonicNs() + static_cast<int64_t>(wait * kNsPerSec), [this, key] {
          auto pit = pending_.find(key);
          if (pit == pending_.end()) return;
          pit->second.deadline_timer = 0;
          auto cit = commands_.find(pit->second.command);
          if (cit != commands_.end()) {
            auto& w = cit->second.waiters;
            w.erase(std::remove(w.begin(), w.end(), key), w.end());
            ReplyToolResult(pit->second.id, StatusOf(cit->second));
          }
          DropPending(key);
        });
  }
  pending.command = c.id;
  c.waiters.push_back(key);
  bool progress = !pending.progress_token.is_null();
  pending_[key] = std::move(pending);
  if (progress) SendProgress(key);
}

void McpServer::ReadOutput(const json& id, const json& args) {
  jsonrpc::ParamReader p(args, "arguments");
  auto cid = p.String("id", /*required=*/true);
  auto stream = p.String("stream");
  auto offset = p.Integer("offset", 0);
  auto max_bytes = p.Integer("max_bytes", 1, static_cast<int64_t>(options_.max_output_bytes));
  p.RejectUnknown({"id", "stream", "offset", "max_bytes"});
  if (p.ok() && stream && *stream != "stdout" && *stream != "stderr") {
    p.Fail("arguments.stream must be \"stdout\" or \"stderr\"");
  }
  if (!p.ok()) return ReplyToolError(id, p.error().message);
  auto it = commands_.find(*cid);
  if (it == commands_.end()) return ReplyToolError(id, "no command `" + *cid + "`");
  const Command& c = it->second;
  bool err = stream.value_or("stdout") == "stderr";

  const std::string* data;
  uint64_t total;
  bool truncated;
  if (c.result) {
    data = err ? &c.result->stderr_data : &c.result->stdout_data;
    total = err ? c.result->stderr_bytes : c.result->stdout_bytes;
    truncated = err ? c.result->stderr_truncated : c.result->stdout_truncated;
  } else {
    const OutputStream& s = err ? c.cell->err() : c.cell->out();
    data = &s.data;
    total = s.total;
    truncated = s.truncated;
  }
  size_t off = std::min<size_t>(static_cast<size_t>(offset.value_or(0)), data->size());
  size_t end = std::min<size_t>(data->size(), off + max_bytes.value_or(kDefaultReadBytes));
  end = Utf8SafeEnd(*data, off, end);
  bool done = c.result.has_value();
  json out = {{"id", c.id},
              {"stream", err ? "stderr" : "stdout"},
              {"offset", off},
              {"data", data->substr(off, end - off)},
              {"next_offset", end},
              {"kept_bytes", data->size()},
              {"total_bytes", total},
              {"truncated", truncated},
              {"done", done},
              {"eof", done && end == data->size()},
              {"state", done ? CellStateName(c.result->state) : "running"}};
  ReplyToolResult(id, out);
}

void McpServer::ListCommands(const json& id) {
  json list = json::array();
  for (const auto& [cid, c] : commands_) list.push_back(CommandSummary(c));
  ReplyToolResult(
      id, {{"commands", list}, {"running", running_}, {"max_concurrent", options_.max_concurrent}});
}

json McpServer::CommandSummary(const Command& c) const {
  json j = {{"id", c.id},
            {"argv", c.argv},
            {"background", c.background},
            {"pid", c.pid > 0 ? json(c.pid) : json(nullptr)}};
  if (c.result) {
    j["state"] = CellStateName(c.result->state);
    j["running_s"] = c.result->duration_s;
    j["stdout_bytes"] = c.result->stdout_bytes;
    j["stderr_bytes"] = c.result->stderr_bytes;
    if (!c.result->error.empty()) j["error"] = c.result->error;
  } else {
    j["state"] = "running";
    j["running_s"] = Seconds(MonotonicNs() - c.started_ns);
    j["stdout_bytes"] = c.cell->out().total;
    j["stderr_bytes"] = c.cell->err().total;
  }
  return j;
}

json McpServer::StatusOf(const Command& c) const {
  if (c.result) {
    return {{"id", c.id},
            {"done", true},
            {"state", CellStateName(c.result->state)},
            {"running_s", c.result->duration_s},
            {"result", ResultToJson(*c.result)}};
  }
  return {{"id", c.id},
          {"done", false},
          {"state", "running"},
          {"running_s", Seconds(MonotonicNs() - c.started_ns)},
          {"result", nullptr}};
}

// ---- completion, progress, cancellation ----

void McpServer::OnCellDone(const std::string& command_id, const CellResult& r) {
  auto it = commands_.find(command_id);
  if (it == commands_.end()) return;
  Command& c = it->second;
  c.cell = nullptr;  // the host destroys it after this callback
  c.result = r;
  --running_;
  if (options_.verbose) {
    std::fprintf(stderr, "corral mcp: %s ended: %s\n", command_id.c_str(), CellStateName(r.state));
  }
  std::vector<std::string> waiters = std::move(c.waiters);
  c.waiters.clear();
  for (const std::string& key : waiters) AnswerPending(key, c);
  if (c.background) {
    finished_order_.push_back(command_id);
    while (finished_order_.size() > options_.keep_finished) {
      commands_.erase(finished_order_.front());
      finished_order_.pop_front();
    }
  } else {
    commands_.erase(it);
  }
  MaybeFinishShutdown();
}

void McpServer::AnswerPending(const std::string& key, const Command& c) {
  auto it = pending_.find(key);
  if (it == pending_.end()) return;  // cancelled
  const Pending& p = it->second;
  switch (p.kind) {
    case PendingKind::kRun:
      ReplyToolResult(p.id, ResultToJson(*c.result));
      break;
    case PendingKind::kStart:
      ReplyToolResult(p.id, CommandSummary(c));
      break;
    case PendingKind::kWait:
    case PendingKind::kKill:
      ReplyToolResult(p.id, StatusOf(c));
      break;
  }
  DropPending(key);
}

void McpServer::DropPending(const std::string& key) {
  auto it = pending_.find(key);
  if (it == pending_.end()) return;
  if (it->second.progress_timer != 0) loop_->CancelTimer(it->second.progress_timer);
  if (it->second.deadline_timer != 0) loop_->CancelTimer(it->second.deadline_timer);
  auto c = commands_.find(it->second.command);
  if (c != commands_.end()) {
    auto& w = c->second.waiters;
    w.erase(std::remove(w.begin(), w.end(), key), w.end());
  }
  pending_.erase(it);
}

// Schedules the next progress notification of a pending request; the first one is sent one
// interval after the request arrived. `progress` is the elapsed time in seconds, which only
// grows, as the spec requires of it.
void McpServer::SendProgress(const std::string& key) {
  auto it = pending_.find(key);
  if (it == pending_.end()) return;
  Pending& p = it->second;
  p.progress_timer = loop_->AddTimer(MonotonicNs() + options_.progress_interval_ns, [this, key] {
    auto pit = pending_.find(key);
    if (pit == pending_.end()) return;
    pit->second.progress_timer = 0;
    auto cit = commands_.find(pit->second.command);
    if (cit == commands_.end() || cit->second.cell == nullptr) return;
    const Command& c = cit->second;
    double elapsed = Seconds(MonotonicNs() - c.started_ns);
    char msg[200];
    std::snprintf(msg, sizeof msg, "%s running for %.1f s; stdout %llu bytes, stderr %llu bytes",
                  c.id.c_str(), elapsed, static_cast<unsigned long long>(c.cell->out().total),
                  static_cast<unsigned long long>(c.cell->err().total));
    Send(jsonrpc::MakeRequest(std::nullopt, "notifications/progress",
                              {{"progressToken", pit->second.progress_token},
                               {"progress", std::round(elapsed * 1000) / 1000},
                               {"message", msg}}));
    SendProgress(key);
  });
}

// ---- shutdown ----

void McpServer::Shutdown(const std::string& why) {
  if (shutting_down_) return;
  shutting_down_ = true;
  if (running_ > 0 || options_.verbose) {
    std::fprintf(stderr, "corral mcp: %s: ending %zu running command(s)\n", why.c_str(), running_);
  }
  UpdateInputWatch();
  if (pump_timer_ != 0) {
    loop_->CancelTimer(pump_timer_);
    pump_timer_ = 0;
  }
  for (auto& [id, c] : commands_) {
    if (c.cell != nullptr) c.cell->Cancel("shutdown");
  }
  MaybeFinishShutdown();
}

void McpServer::MaybeFinishShutdown() {
  if (!shutting_down_ || running_ != 0 || flush_timer_ != 0 || flush_expired_) return;
  if (out_off_ < out_buf_.size() && !out_broken_) {
    flush_timer_ = loop_->AddTimer(MonotonicNs() + kFlushTimeoutNs, [this] {
      flush_timer_ = 0;
      flush_expired_ = true;
    });
  }
}

bool McpServer::finished() const {
  return shutting_down_ && running_ == 0 &&
         (out_broken_ || flush_expired_ || out_off_ >= out_buf_.size());
}

}  // namespace corral
