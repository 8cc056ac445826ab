// An MCP (Model Context Protocol) server on a pair of fds (stdin/stdout of `corral mcp`) that runs
// every command it is asked for in a cell of its own, in-process, on the one EventLoop.
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
// result stays available (wait_command) until keep_finished newer commands have finished.
// At most max_concurrent cells run at once; one more is a tool error, never a queue.
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
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/jsonrpc.h"
#include "api/unix_server.h"  // LineFramer, kMaxLineBytes
#include "cell/cell.h"
#include "sys/error.h"
#include "sys/event_loop.h"

namespace corral {

struct McpOptions {
  int64_t default_timeout_ns = 60 * kNsPerSec;  // when a call gives no timeout_s
  int64_t max_timeout_ns = 0;                   // 0: no maximum
  std::vector<std::string> allow_cwd;           // canonical paths; empty: any directory
  size_t max_concurrent = 16;                   // running cells
  // Names of our environment variables that commands inherit; {"*"}: all of them.
  std::vector<std::string> env_pass = DefaultEnvPass();
  uint64_t max_output_bytes = 1 << 20;  // default and maximum per stream
  int64_t grace_ns = 2 * kNsPerSec;
  int64_t kill_wait_ns = 1 * kNsPerSec;
  int64_t progress_interval_ns = 1 * kNsPerSec;
  size_t keep_finished = 64;  // finished start_commands whose results stay readable
  size_t max_line_bytes = kMaxLineBytes;
  bool verbose = false;  // one stderr line per request
  // --isolate / --profile: every command runs isolated (docs/isolation.md); the model cannot
  // ask for less.
  Isolation isolation;

  static std::vector<std::string> DefaultEnvPass();
};

class McpServer {
 public:
  // The protocol versions we speak, newest first.
  static const std::vector<std::string>& SupportedVersions();

  // The fds stay owned by the caller and must outlive the server.
  McpServer(EventLoop* loop, CellHost* host, McpOptions options, int in_fd, int out_fd);
  ~McpServer();
  McpServer(const McpServer&) = delete;
  McpServer& operator=(const McpServer&) = delete;

  // Starts reading requests.
  Status Start();
  // Stops reading, cancels every cell. Idempotent. `why` goes to stderr.
  void Shutdown(const std::string& why);
  // True once a shutdown has finished its work: no cell left, output written or given up on.
  bool finished() const;

 private:
  struct Command {
    std::string id;
    bool background = false;  // start_command: kept after it ends
    Cell* cell = nullptr;     // while running; the host destroys it after the done callback
    std::optional<CellResult> result;
    std::vector<std::string> argv;
    pid_t pid = -1;
    int64_t started_ns = 0;
    std::vector<std::string> waiters;  // keys of pending requests answered when it ends
  };
  enum class PendingKind { kRun, kStart, kWait, kKill };
  struct Pending {
    jsonrpc::json id;
    PendingKind kind = PendingKind::kRun;
    std::string command;
    jsonrpc::json progress_token;  // null: the caller asked for no progress
    EventLoop::Token progress_timer = 0;
    EventLoop::Token deadline_timer = 0;  // wait_command's timeout
    int64_t started_ns = 0;
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
  void ReplyToolResult(const jsonrpc::json& id, const jsonrpc::json& structured);
  void ReplyToolError(const jsonrpc::json& id, const std::string& message);

  // Tools. Each either answers at once or registers a Pending answered later.
  void RunOrStart(const std::string& key, Pending pending, const jsonrpc::json& args);
  void ReadOutput(const jsonrpc::json& id, const jsonrpc::json& args);
  void WaitOrKill(const std::string& key, Pending pending, const jsonrpc::json& args);
  void ListCommands(const jsonrpc::json& id);

  // Returns an error sentence, or fills *spec from the arguments of run/start_command.
  std::optional<std::string> BuildSpec(const jsonrpc::json& args, CellSpec* spec);
  void OnCellDone(const std::string& command_id, const CellResult& r);
  void AnswerPending(const std::string& key, const Command& c);
  void DropPending(const std::string& key);
  void SendProgress(const std::string& key);
  jsonrpc::json CommandSummary(const Command& c) const;
  jsonrpc::json StatusOf(const Command& c) const;  // wait_command's structured content
  void MaybeFinishShutdown();

  EventLoop* loop_;
  CellHost* host_;
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

  uint64_t next_command_ = 1;
  std::map<std::string, Command> commands_;
  std::list<std::string> finished_order_;   // background commands that ended, oldest first
  std::map<std::string, Pending> pending_;  // key: the request id's JSON text
  size_t running_ = 0;

  bool shutting_down_ = false;
  bool flush_expired_ = false;
  EventLoop::Token flush_timer_ = 0;
};

}  // namespace corral
