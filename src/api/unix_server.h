// The daemon's transport: newline-delimited JSON-RPC 2.0 over a Unix stream socket, served from
// the one EventLoop. It knows nothing of cells: methods are registered by name, get a parsed
// request plus the caller's SO_PEERCRED, and answer whenever they like through a ReplyTo handle
// (`run` answers when its cell ends; answering a connection that is gone does nothing).
//
// Mechanism, per connection (level-triggered epoll, the fd is non-blocking):
// - Credentials are read once at accept (SO_PEERCRED: pid, uid, gid of the connecting process).
// - Input goes through a LineFramer: a line may hold max_line_bytes (4 MiB); once the unfinished
//   line passes that, its bytes are dropped as they arrive until the next '\n' and the client
//   gets one -32600 "message too large" (id null) while the connection stays usable. What the
//   server holds for a client is therefore at most max_line_bytes + read_chunk_bytes.
// - Fairness: each loop turn reads at most read_chunk_bytes and dispatches at most
//   lines_per_turn requests per connection; a connection with more work left re-arms itself with
//   a zero-delay timer, so other ready sockets in the same turn are served first.
// - Back-pressure: answers queue per connection and are written with send(MSG_NOSIGNAL). While a
//   client has more than output_high_water bytes unsent, or max_pending_per_connection requests
//   unanswered, its requests are not read (the kernel buffer fills and the client's writes
//   block). If its queue stays over the high water with no byte written for stuck_timeout, it is
//   closed. The queue can exceed the high water only by the answers to requests already taken.
// - End of a client: EPOLLHUP/EPOLLERR or a failed send (EPIPE/ECONNRESET) mean the peer is gone;
//   the connection is closed at once, bytes it sent and nobody read are dropped, and OnClose's
//   callback runs (the owner cancels the `run`s of that connection). A half-close (EPOLLRDHUP
//   without HUP: `shutdown(SHUT_WR)`, what `socat` does at EOF of its input) is not a
//   disconnect: the requests already sent are served and the connection closes once all of them
//   are answered and written.
// - Accept: at most 64 per turn; past max_connections a newcomer gets one -32001 line and is
//   closed; on EMFILE/ENFILE accepting pauses for 100 ms instead of spinning on the listener.
//
// The listening socket (ListenUnixSocket) is created so that two daemons never share a path: an
// flock on PATH.lock is held for the server's lifetime, an existing socket file is removed only
// when connect() to it is refused (a dead daemon's), a live one is an error, and a file that is
// not a socket is never removed. The parent directory is created 0755 if missing and must not be
// writable by anyone but its owner (the daemon's user or root), or another user could replace the
// socket. The socket is bound under umask 0177, given its group, chmod'ed to its mode (0660) and
// only then listen()ed on, so nobody can connect while its permissions are still wrong.
//
// Not thread-safe: every call comes from the loop's thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "api/jsonrpc.h"
#include "sys/error.h"
#include "sys/event_loop.h"
#include "sys/fd.h"

namespace corral {

constexpr size_t kMaxLineBytes = 4 * 1024 * 1024;

// Splits a byte stream into lines without ever holding more than max_line bytes of one unfinished
// line. Items come out in stream order; a line's trailing "\r" is dropped ("\r\n" framing works).
class LineFramer {
 public:
  enum class Kind { kNone, kLine, kTooLong };
  struct Item {
    Kind kind = Kind::kNone;
    std::string_view line;  // kLine: valid until the next Append() or Next()
  };

  explicit LineFramer(size_t max_line = kMaxLineBytes) : max_line_(max_line) {}

  void Append(std::string_view bytes);
  // The next complete line or too-long event; kNone when more input is needed.
  Item Next();
  // True when Next() would return something without more input.
  bool HasItem() const;

  // Memory held for this stream (the buffer's capacity).
  size_t buffered_bytes() const { return buf_.capacity(); }
  bool discarding() const { return discarding_; }

 private:
  void Compact();
  void Grow(size_t more);

  size_t max_line_;
  std::string buf_;
  size_t start_ = 0;                // first byte not yet returned
  size_t tail_start_ = 0;           // first byte of the unfinished line (after the last '\n')
  std::deque<size_t> too_long_at_;  // positions in buf_ where a dropped line's event sits
  bool discarding_ = false;         // dropping bytes up to the next '\n'
};

struct PeerCred {
  pid_t pid = 0;
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
};

using ConnectionId = uint64_t;  // never reused within one server; 0 is never valid

// Where an answer goes. Copyable; holds no pointer into the server.
struct ReplyTo {
  ConnectionId conn = 0;
  uint64_t seq = 0;           // the server's number for this request on that connection
  jsonrpc::json id;           // the request's id
  bool notification = false;  // replies to a notification are dropped (JSON-RPC: never answered)
};

struct Call {
  jsonrpc::Request request;
  ReplyTo reply_to;
  PeerCred peer;
};

enum class CloseReason {
  kPeerGone,  // hang-up, reset or a failed write
  kDone,      // the client half-closed and every request was answered
  kStuck,     // never read its answers (over the high water past stuck_timeout)
  kClosedByOwner,
  kShutdown,  // Shutdown()
};
const char* CloseReasonName(CloseReason r);

// Creates the listening socket as described at the top of this file. group: nullopt leaves the
// daemon's own group. Keeps the lock fd in `lock_fd`.
struct ListenedSocket {
  UniqueFd fd;
  UniqueFd lock_fd;
  dev_t dev = 0;  // identity of the socket file, so that only our own file is removed at the end
  ino_t ino = 0;
};
Result<ListenedSocket> ListenUnixSocket(const std::string& path, std::optional<gid_t> group,
                                        mode_t mode = 0660, int backlog = 512);
// A group name or a number to a gid (getgrnam_r).
Result<gid_t> ResolveGroup(const std::string& name_or_gid);

class UnixServer {
 public:
  struct Options {
    std::string path;
    std::optional<gid_t> group;  // --socket-group; nullopt: the daemon's group
    mode_t mode = 0660;
    size_t max_line_bytes = kMaxLineBytes;
    size_t read_chunk_bytes = 64 * 1024;        // per connection per loop turn
    size_t lines_per_turn = 32;                 // requests dispatched per connection per loop turn
    size_t output_high_water = 1024 * 1024;     // stop reading a client with more unsent than this
    size_t max_pending_per_connection = 1024;   // ... or with this many requests unanswered
    int64_t stuck_timeout_ns = 30'000'000'000;  // close a client that reads nothing for this long
    size_t max_connections = 4096;
  };
  // Called for each request whose method was registered. May reply synchronously or later.
  using MethodHandler = std::function<void(Call call)>;
  using CloseHandler = std::function<void(ConnectionId, CloseReason)>;

  // Listens on opts.path and registers with loop (which must outlive the server).
  static Result<std::unique_ptr<UnixServer>> Start(EventLoop* loop, Options opts);
  // Closes every connection (without calling the close handler: the owner may be half-destroyed),
  // the listener, and removes the socket file if it is still ours.
  ~UnixServer();
  UnixServer(const UnixServer&) = delete;
  UnixServer& operator=(const UnixServer&) = delete;

  // Unknown methods are answered -32601 by the server; a handler that throws is answered -32603.
  void Handle(std::string method, MethodHandler handler);
  // Runs once per closed connection, whatever the reason, from a zero-delay timer (never from
  // inside Reply/ReplyError/Close); Shutdown() delivers before it returns; the destructor never.
  void OnClose(CloseHandler handler) { on_close_ = std::move(handler); }

  // Answer a request. false (and nothing sent) when the connection is gone, the request was a
  // notification, or it was already answered.
  bool Reply(const ReplyTo& to, jsonrpc::json result);
  bool ReplyError(const ReplyTo& to, const jsonrpc::RpcError& error);

  // Shutdown: stop accepting and remove the socket file; then close every connection, calling the
  // close handler with kShutdown.
  void StopAccepting();
  void Shutdown();
  void Close(ConnectionId conn);  // kClosedByOwner

  bool IsOpen(ConnectionId conn) const { return conns_.count(conn) != 0; }
  std::optional<PeerCred> Peer(ConnectionId conn) const;

  // Introspection for tests, metrics and `stats`.
  struct ConnectionStats {
    size_t input_buffered;  // bytes of memory held by the line framer
    size_t output_queued;   // bytes of answers not yet written
    size_t pending;         // requests handed to handlers and not yet answered
    bool reading;           // false while back-pressure holds the client's input
  };
  std::optional<ConnectionStats> Stats(ConnectionId conn) const;
  std::vector<ConnectionId> connections() const;
  size_t connection_count() const { return conns_.size(); }
  const std::string& path() const { return opts_.path; }

 private:
  struct Connection;

  UnixServer(EventLoop* loop, Options opts, ListenedSocket sock);
  Status Register();
  void OnListenReady();
  void OnConnectionReady(const std::shared_ptr<Connection>& c, uint32_t events);
  // Dispatches buffered lines and reads, within this turn's budget.
  void Serve(const std::shared_ptr<Connection>& c);
  void Dispatch(const std::shared_ptr<Connection>& c, std::string_view line);
  void Send(const std::shared_ptr<Connection>& c, std::string data);
  bool Flush(const std::shared_ptr<Connection>& c);  // false when the connection was closed
  bool Held(const Connection& c) const;              // back-pressure: do not take requests
  // After any change: closes a finished half-closed client, sets the epoll interest, schedules
  // the continuation of an unfinished turn, arms the stuck timer.
  void Settle(const std::shared_ptr<Connection>& c);
  void ArmStuckTimer(const std::shared_ptr<Connection>& c, int64_t deadline_ns);
  void CloseConnection(const std::shared_ptr<Connection>& c, CloseReason why, bool notify = true);
  void DeliverCloseNotifications();
  bool Answer(const ReplyTo& to, const jsonrpc::json& message);
  void RemoveSocketFile();

  EventLoop* loop_;
  Options opts_;
  ListenedSocket sock_;
  EventLoop::Token listen_token_ = 0;
  EventLoop::Token accept_pause_timer_ = 0;
  EventLoop::Token notify_timer_ = 0;
  std::vector<std::pair<ConnectionId, CloseReason>> closed_;  // close notifications not yet sent
  ConnectionId next_conn_ = 1;
  std::unordered_map<ConnectionId, std::shared_ptr<Connection>> conns_;
  std::unordered_map<std::string, MethodHandler> methods_;
  CloseHandler on_close_;
  std::string scratch_;  // read buffer shared by all connections (one thread)
};

}  // namespace corral
