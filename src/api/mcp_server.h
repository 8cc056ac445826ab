// An MCP (Model Context Protocol) server on a pair of fds (stdin/stdout of `corral mcp`): the
// transport and the tools/call dispatch. The tools themselves live one per file in src/api/mcp/
// and are registered in one table (mcp/tools.cc); every command runs in a cell of the Supervisor it
// is given, in-process, on the one EventLoop. The Supervisor owns the cells and their records
// (retention, concurrency, output, kill); this server keeps only the requests it has not
// answered yet.
//
// Transport (MCP "stdio"): newline-delimited JSON-RPC 2.0, one message per line, UTF-8, nothing
// but protocol messages on the output fd (logs go to stderr). Both fds are made non-blocking and
// watched by the loop, so a long command never stops other requests from being served:
// - Input goes through a LineFramer (4 MiB per line); a longer line is dropped as it arrives and
//   answered with one -32600 (id null). Reading pauses while more than kOutputHighWater bytes of
//   answers are waiting for a client that does not read them.
// - An fd that epoll refuses (EPERM: a regular file or /dev/null given as stdin or stdout) is
//   read from a zero-delay timer / written directly instead: such files never block.
// - The original file status flags of both fds are restored on destruction (O_NONBLOCK is a
//   property of the open file description, which a shell or terminal may share with us).
//
// Protocol: `initialize` (version negotiation: the client's version when we speak it, else our
// latest), `notifications/initialized`, `ping`, `tools/list`, `tools/call`,
// `notifications/cancelled` (kills the cell of a cancelled run_command, or of a start_command not
// answered yet; a cancelled wait or kill just stops waiting), `notifications/progress` every
// progress_interval for a request that carries `_meta.progressToken`. Problems with a tool's
// arguments or with policy are tool results with `isError: true`; only protocol problems (malformed
// JSON-RPC, unknown method or tool, requests before `initialize`) are JSON-RPC errors. A response
// to a cancelled request is never sent. Messages from the client that are responses (we send no
// requests) are ignored.
//
// Commands: run_command answers when its cell closes; start_command answers at once with an id
// whose output stays readable (read_output, bounded by max_output_bytes per stream) and whose
// result stays available (wait_command) until the Supervisor's keep_finished newer commands have
// finished. At most its max_running cells run at once; with max_queued 0, one more is a tool
// error, never a queue.
//
// Shutdown (stdin EOF, a broken stdout, or Shutdown() on SIGTERM/SIGINT/SIGHUP): input stops,
// every cell is cancelled (SIGTERM, grace, SIGKILL to the whole tree), pending run_commands are
// answered with their results where stdout still works, and finished() turns true once every
// cell has closed and the output is written (or could not be within kFlushTimeout).
//
// Not thread-safe: every call comes from the loop's thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "api/jsonrpc.h"
#include "api/unix_server.h"  // LineFramer, kMaxLineBytes
#include "cell/spec.h"
#include "supervisor/supervisor.h"
#include "sys/error.h"
#include "sys/event_loop.h"

namespace corral {

// The policy of the tools. How many commands run and how many finished ones are kept are the
// Supervisor's (SupervisorOptions::max_running, keep_finished).
struct McpOptions {
  int64_t default_timeout_ns = 60 * kNsPerSec;  // when a call gives no timeout_s
  int64_t max_timeout_ns = 0;                   // 0: no maximum
  std::vector<std::string> allow_cwd;           // canonical paths; empty: any directory
  // Names of our environment variables that commands inherit; {"*"}: all of them.
  std::vector<std::string> env_pass = DefaultEnvPass();
  uint64_t max_output_bytes = 1 << 20;  // default and maximum per stream
  int64_t grace_ns = 2 * kNsPerSec;
  int64_t kill_wait_ns = 1 * kNsPerSec;
  int64_t progress_interval_ns = 1 * kNsPerSec;
  size_t max_line_bytes = kMaxLineBytes;
  bool verbose = false;  // one stderr line per request
  // --isolate / --profile: every command runs isolated (docs/isolation.md); the model cannot
  // ask for less.
  Isolation isolation;

  static std::vector<std::string> DefaultEnvPass();
};

namespace mcp {
struct ToolCall;
}

class McpServer {
 public:
  // The protocol versions we speak, newest first.
  static const std::vector<std::string>& SupportedVersions();

  // The fds and the supervisor stay owned by the caller and must outlive the server.
  McpServer(EventLoop* loop, Supervisor* sup, McpOptions options, int in_fd, int out_fd);
  ~McpServer();
  McpServer(const McpServer&) = delete;
  McpServer& operator=(const McpServer&) = delete;

  // Starts reading requests.
  Status Start();
  // Stops reading, cancels every cell. Idempotent. `why` goes to stderr.
  void Shutdown(const std::string& why);
  // True once a shutdown has finished its work: no cell left, output written or given up on.
  bool finished() const;

  // ---- for the tools (src/api/mcp/) ----
  Supervisor& supervisor() const { return *sup_; }
  const McpOptions& options() const { return options_; }
  bool shutting_down() const { return shutting_down_; }
  void ReplyToolResult(const jsonrpc::json& id, const jsonrpc::json& structured);
  void ReplyToolError(const jsonrpc::json& id, const std::string& message);
  // Returns an error sentence, or fills *spec from the arguments of run/start_command.
  std::optional<std::string> BuildSpec(const jsonrpc::json& args, CellSpec* spec);
  // run_command and start_command: the call's arguments as a cell (BuildSpec), started. Returns
  // its id, or nullopt after answering the call with why not, in words for the model.
  std::optional<std::string> StartCommand(const mcp::ToolCall& call, Retention retention);

  // A request answered later (run_command, start_command, wait_command, kill_command), named by
  // its key. `command` is the cell it is about: its progress is reported, and a cancelled
  // request ends it if kill_on_cancel. The answer goes out once, from whichever of
  // AnswerWhenDone and AnswerAt comes first; an answer function that returns nullopt drops the
  // request unanswered. Once answered or cancelled, every callback it registered is withdrawn.
  using Answer = std::function<std::optional<jsonrpc::json>()>;
  using AnswerDone = std::function<std::optional<jsonrpc::json>(const CellResult&)>;
  std::string Hold(const mcp::ToolCall& call, const std::string& command, bool kill_on_cancel);
  void AnswerWhenDone(const std::string& key, AnswerDone answer);
  void AnswerAt(const std::string& key, int64_t at_ns, Answer answer);
  // Progress notifications every progress_interval while held, if the call asked for them.
  void Progress(const std::string& key);

 private:
  struct Pending {
    jsonrpc::json id;
    std::string command;
    bool kill_on_cancel = false;
    jsonrpc::json progress_token;  // null: the caller asked for no progress
    EventLoop::Token progress_timer = 0;
    EventLoop::Token deadline_timer = 0;  // AnswerAt
    uint64_t waiter = 0;                  // AnswerWhenDone's Supervisor::Wait, 0: none
  };

  // I/O.
  void OnReadable();
  void PumpInput();  // for an input fd epoll refused
  void ProcessLines();
  void UpdateInputWatch();
  void Send(const jsonrpc::json& message);
  void FlushOutput();
  void OnLine(std::string_view line);

  // Protocol.
  void HandleRequest(jsonrpc::Request& req);
  void HandleNotification(const jsonrpc::Request& req);
  jsonrpc::json InitializeResult(const jsonrpc::Request& req,
                                 std::optional<jsonrpc::RpcError>* err);
  void CallTool(jsonrpc::Request& req);

  void Reply(const std::string& key, const std::optional<jsonrpc::json>& structured);
  void DropPending(const std::string& key);
  void SendProgress(const std::string& key);
  void MaybeFinishShutdown();

  EventLoop* loop_;
  Supervisor* sup_;
  McpOptions options_;
  std::vector<std::pair<std::string, std::string>> passed_env_;  // read once at start-up
  bool pass_all_env_ = false;

  int in_fd_, out_fd_;
  int in_flags_ = -1, out_flags_ = -1;  // original O_* status flags, restored on destruction
  EventLoop::Token in_token_ = 0;       // while watching input
  bool in_pollable_ = true;             // false: epoll refused the input fd (regular file)
  EventLoop::Token pump_timer_ = 0;
  bool in_eof_ = false;
  LineFramer framer_;

  std::string out_buf_;
  size_t out_off_ = 0;
  EventLoop::Token out_token_ = 0;
  bool out_broken_ = false;

  bool initialize_answered_ = false;
  std::string protocol_version_;

  std::map<std::string, Pending> pending_;  // key: the request id's JSON text

  bool shutting_down_ = false;
  bool cells_closed_ = false;  // the Supervisor's shutdown is done
  bool flush_expired_ = false;
  EventLoop::Token flush_timer_ = 0;
};

}  // namespace corral
