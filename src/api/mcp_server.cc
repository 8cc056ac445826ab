#include "api/mcp_server.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "api/mcp/tool.h"
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

json ToolList(const McpOptions& o) {
  json tools = json::array();
  for (const mcp::Tool& t : mcp::Tools()) tools.push_back(t.describe(o));
  return tools;
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

McpServer::McpServer(EventLoop* loop, Supervisor* sup, McpOptions options, int in_fd, int out_fd)
    : loop_(loop),
      sup_(sup),
      options_(std::move(options)),
      in_fd_(in_fd),
      out_fd_(out_fd),
      framer_(options_.max_line_bytes) {
  for (const std::string& name : options_.env_pass) {
    if (name == "*") pass_all_env_ = true;
    if (const char* v = getenv(name.c_str())) passed_env_.emplace_back(name, v);
  }
  if (options_.verbose) {
    sup_->on_cell_done = [](const CellResult& r) {
      std::fprintf(stderr, "corral mcp: %s ended: %s\n", r.id.c_str(), CellStateName(r.state));
    };
  }
}

McpServer::~McpServer() {
  if (in_token_ != 0) loop_->Remove(in_token_);
  if (out_token_ != 0) loop_->Remove(out_token_);
  for (EventLoop::Token t : {pump_timer_, flush_timer_}) {
    if (t != 0) loop_->CancelTimer(t);
  }
  while (!pending_.empty()) DropPending(pending_.begin()->first);
  if (options_.verbose) sup_->on_cell_done = nullptr;
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
  // run_command's and start_command's (one not answered yet would leave a command whose id the
  // client never learnt) cells end with the request.
  if (it->second.kill_on_cancel)
    (void)sup_->Kill(Caller::System(), it->second.command, "cancelled");
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

  const auto& tools = mcp::Tools();
  auto tool =
      std::find_if(tools.begin(), tools.end(), [&](const mcp::Tool& t) { return *name == t.name; });
  if (tool == tools.end()) {
    return Send(
        jsonrpc::MakeError(req.id, RpcError::InvalidParams("unknown tool `" + *name + "`")));
  }
  mcp::ToolCall call{req.id, req.id.dump(), nullptr, *args};
  if (const json* meta = p.Raw("_meta"); meta != nullptr && meta->is_object()) {
    auto tok = meta->find("progressToken");
    if (tok != meta->end() && (tok->is_string() || tok->is_number_integer())) {
      call.progress_token = *tok;
    }
  }
  if (tool->holds && pending_.count(call.key) != 0) {
    return Send(jsonrpc::MakeError(
        req.id, RpcError::InvalidRequest("request id " + call.key + " is already in use")));
  }
  tool->call(*this, call);
}

// ---- for the tools ----

std::optional<std::string> McpServer::StartCommand(const mcp::ToolCall& call, Retention retention) {
  if (shutting_down_) {
    ReplyToolError(call.id, "the server is shutting down");
    return std::nullopt;
  }
  CellSpec spec;
  if (auto err = BuildSpec(call.args, &spec)) {
    ReplyToolError(call.id, *err);
    return std::nullopt;
  }
  std::vector<std::string> argv = options_.verbose ? spec.argv : std::vector<std::string>();
  auto started = sup_->Start(Caller::System(), std::move(spec), nullptr, retention);
  if (const Refusal* no = std::get_if<Refusal>(&started)) {
    size_t running = sup_->running();
    ReplyToolError(call.id, running < sup_->max_running()
                                ? no->message  // the host is near a limit
                                : "too many commands running (" + std::to_string(running) +
                                      ", the server's --max-concurrent); wait for one to end or "
                                      "kill one");
    return std::nullopt;
  }
  std::string id = std::get<std::string>(started);
  if (options_.verbose) {
    std::fprintf(stderr, "corral mcp: %s: %s\n", id.c_str(), DumpJson(argv).c_str());
  }
  return id;
}

std::string McpServer::Hold(const mcp::ToolCall& call, const std::string& command,
                            bool kill_on_cancel) {
  Pending& p = pending_[call.key];  // CallTool made sure it was not held yet
  p.id = call.id;
  p.command = command;
  p.kill_on_cancel = kill_on_cancel;
  p.progress_token = call.progress_token;
  return call.key;
}

void McpServer::AnswerWhenDone(const std::string& key, AnswerDone answer) {
  auto it = pending_.find(key);
  if (it == pending_.end()) return;
  uint64_t waiter = 0;
  auto refusal = sup_->Wait(
      Caller::System(), it->second.command,
      [this, key, answer = std::move(answer)](const CellResult& r) {
        auto pit = pending_.find(key);
        if (pit == pending_.end()) return;
        pit->second.waiter = 0;  // it ran: nothing to withdraw
        Reply(key, answer(r));
      },
      &waiter);
  if (refusal) return;      // gone already: AnswerAt has the say
  it = pending_.find(key);  // the answer may have run and dropped it
  if (it != pending_.end()) it->second.waiter = waiter;
}

void McpServer::AnswerAt(const std::string& key, int64_t at_ns, Answer answer) {
  auto it = pending_.find(key);
  if (it == pending_.end()) return;
  it->second.deadline_timer = loop_->AddTimer(at_ns, [this, key, answer = std::move(answer)] {
    auto pit = pending_.find(key);
    if (pit == pending_.end()) return;
    pit->second.deadline_timer = 0;
    Reply(key, answer());
  });
}

void McpServer::Progress(const std::string& key) {
  auto it = pending_.find(key);
  if (it != pending_.end() && !it->second.progress_token.is_null()) SendProgress(key);
}

// Answers a held request (nullopt: drops it unanswered) and withdraws what it registered.
void McpServer::Reply(const std::string& key, const std::optional<json>& structured) {
  auto it = pending_.find(key);
  if (it == pending_.end()) return;
  json id = it->second.id;
  DropPending(key);
  if (structured) ReplyToolResult(id, *structured);
}

void McpServer::DropPending(const std::string& key) {
  auto it = pending_.find(key);
  if (it == pending_.end()) return;
  Pending& p = it->second;
  if (p.progress_timer != 0) loop_->CancelTimer(p.progress_timer);
  if (p.deadline_timer != 0) loop_->CancelTimer(p.deadline_timer);
  if (p.waiter != 0) sup_->Unwait(p.command, p.waiter);
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
    auto c = sup_->Find(Caller::System(), pit->second.command);
    if (!c || c->result) return;
    char msg[200];
    std::snprintf(msg, sizeof msg, "%s running for %.1f s; stdout %llu bytes, stderr %llu bytes",
                  c->id.c_str(), c->age_s, static_cast<unsigned long long>(c->stdout_bytes),
                  static_cast<unsigned long long>(c->stderr_bytes));
    Send(jsonrpc::MakeRequest(std::nullopt, "notifications/progress",
                              {{"progressToken", pit->second.progress_token},
                               {"progress", std::round(c->age_s * 1000) / 1000},
                               {"message", msg}}));
    SendProgress(key);
  });
}

// ---- shutdown ----

void McpServer::Shutdown(const std::string& why) {
  if (shutting_down_) return;
  shutting_down_ = true;
  size_t running = sup_->running();
  if (running > 0 || options_.verbose) {
    std::fprintf(stderr, "corral mcp: %s: ending %zu running command(s)\n", why.c_str(), running);
  }
  UpdateInputWatch();
  if (pump_timer_ != 0) {
    loop_->CancelTimer(pump_timer_);
    pump_timer_ = 0;
  }
  // Pending run_commands are answered (reason "shutdown") as their cells close.
  sup_->Shutdown([this] {
    cells_closed_ = true;
    MaybeFinishShutdown();
  });
}

void McpServer::MaybeFinishShutdown() {
  if (!shutting_down_ || !cells_closed_ || flush_timer_ != 0 || flush_expired_) return;
  if (out_off_ < out_buf_.size() && !out_broken_) {
    flush_timer_ = loop_->AddTimer(MonotonicNs() + kFlushTimeoutNs, [this] {
      flush_timer_ = 0;
      flush_expired_ = true;
    });
  }
}

bool McpServer::finished() const {
  return shutting_down_ && cells_closed_ &&
         (out_broken_ || flush_expired_ || out_off_ >= out_buf_.size());
}

}  // namespace corral
