#include "api/unix_server.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <unordered_set>

#include "sys/clock.h"

namespace corral {

// ---- LineFramer ----

void LineFramer::Compact() {
  size_t shift = 0;
  if (start_ == buf_.size()) {
    shift = start_;
    // A buffer that grew for one big line goes back to the allocator once that line is done, so
    // an idle connection does not keep megabytes.
    if (buf_.capacity() > 64 * 1024) {
      std::string().swap(buf_);
    } else {
      buf_.clear();
    }
  } else if (start_ >= 64 * 1024 && start_ * 2 >= buf_.size()) {
    shift = start_;
    buf_.erase(0, start_);
  } else {
    return;
  }
  start_ -= shift;
  tail_start_ -= shift;
  for (size_t& p : too_long_at_) p -= shift;
}

void LineFramer::Grow(size_t more) {
  size_t need = buf_.size() + more;
  if (need <= buf_.capacity()) return;
  // Doubling, but never past what the limit allows to be held: otherwise a 4 MiB line could
  // leave an 8 MiB allocation behind.
  size_t cap = std::max(need, std::min(buf_.capacity() * 2, tail_start_ + max_line_));
  buf_.reserve(cap);
}

void LineFramer::Append(std::string_view bytes) {
  Compact();
  while (!bytes.empty()) {
    size_t nl = bytes.find('\n');
    if (discarding_) {
      if (nl == std::string_view::npos) return;
      bytes.remove_prefix(nl + 1);
      discarding_ = false;
      continue;
    }
    size_t tail_len = buf_.size() - tail_start_;
    size_t segment = nl == std::string_view::npos ? bytes.size() : nl;
    if (tail_len + segment > max_line_) {
      // Drop what is held of this line and note where its one error event goes.
      buf_.resize(tail_start_);
      too_long_at_.push_back(tail_start_);
      Compact();
      if (nl == std::string_view::npos) {
        discarding_ = true;
        return;
      }
      bytes.remove_prefix(nl + 1);
      continue;
    }
    if (nl == std::string_view::npos) {
      Grow(bytes.size());
      buf_.append(bytes);
      return;
    }
    Grow(nl + 1);
    buf_.append(bytes.substr(0, nl + 1));
    tail_start_ = buf_.size();
    bytes.remove_prefix(nl + 1);
  }
}

bool LineFramer::HasItem() const {
  return (!too_long_at_.empty() && too_long_at_.front() == start_) || start_ < tail_start_;
}

LineFramer::Item LineFramer::Next() {
  if (!too_long_at_.empty() && too_long_at_.front() == start_) {
    too_long_at_.pop_front();
    return {Kind::kTooLong, {}};
  }
  if (start_ >= tail_start_) return {};
  // Between start_ and tail_start_ every line is complete, and a too-long event sits only on a
  // line boundary, so the first '\n' from start_ ends the next item.
  size_t nl = buf_.find('\n', start_);
  std::string_view line(buf_.data() + start_, nl - start_);
  start_ = nl + 1;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return {Kind::kLine, line};
}

// ---- listening socket ----

namespace {

std::string ParentDir(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Creates missing components 0755 (whatever the umask) and checks that the final directory is
// owned by us or root and writable by nobody else (sticky directories such as /tmp excepted).
Status EnsureSafeDir(const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    if (errno != ENOENT) return Error::FromErrno("stat", dir);
    std::string parent = ParentDir(dir);
    if (parent != dir) TRY(EnsureSafeDir(parent));
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return Error::FromErrno("mkdir", dir).Wrap("create the socket's directory");
    }
    if (::chmod(dir.c_str(), 0755) != 0) return Error::FromErrno("chmod 0755", dir);
    if (::stat(dir.c_str(), &st) != 0) return Error::FromErrno("stat", dir);
  }
  if (!S_ISDIR(st.st_mode)) {
    return Error::Msg("`" + dir + "` is not a directory (it should hold the daemon's socket)",
                      ENOTDIR);
  }
  if (st.st_uid != ::geteuid() && st.st_uid != 0) {
    return Error::Msg("the socket's directory `" + dir + "` belongs to uid " +
                          std::to_string(st.st_uid) +
                          ", not to this user or root: someone else could replace the socket; "
                          "choose another --socket",
                      EPERM);
  }
  if ((st.st_mode & 022) != 0 && (st.st_mode & S_ISVTX) == 0) {
    return Error::Msg("the socket's directory `" + dir +
                          "` is writable by group or others: someone else could replace the "
                          "socket; chmod go-w it or choose another --socket",
                      EPERM);
  }
  return Ok();
}

Status FillAddr(const std::string& path, sockaddr_un* addr) {
  std::memset(addr, 0, sizeof(*addr));
  addr->sun_family = AF_UNIX;
  if (path.empty()) return Error::Msg("socket path is empty", EINVAL);
  if (path.size() >= sizeof(addr->sun_path)) {
    return Error::Msg("socket path `" + path + "` is too long (" + std::to_string(path.size()) +
                          " bytes; a Unix socket path holds at most " +
                          std::to_string(sizeof(addr->sun_path) - 1) + ")",
                      ENAMETOOLONG);
  }
  std::memcpy(addr->sun_path, path.data(), path.size());
  return Ok();
}

// Whether something accepts connections on path: 1 yes, 0 no (refused: a dead daemon's file).
Result<bool> SomeoneListens(const std::string& path) {
  sockaddr_un addr;
  TRY(FillAddr(path, &addr));
  UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s) return Error::FromErrno("socket(AF_UNIX)");
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) return true;
  if (errno == EAGAIN) return true;  // backlog full: very much alive
  if (errno == ECONNREFUSED) return false;
  return Error::FromErrno("connect (probing the existing socket)", path);
}

}  // namespace

Result<gid_t> ResolveGroup(const std::string& name_or_gid) {
  if (name_or_gid.empty()) return Error::Msg("empty group name", EINVAL);
  if (name_or_gid.find_first_not_of("0123456789") == std::string::npos && name_or_gid.size() < 10) {
    return static_cast<gid_t>(std::stoul(name_or_gid));
  }
  long size = ::sysconf(_SC_GETGR_R_SIZE_MAX);
  std::string buf(size > 0 ? size : 16384, '\0');
  group grp;
  group* found = nullptr;
  int rc;
  while ((rc = ::getgrnam_r(name_or_gid.c_str(), &grp, buf.data(), buf.size(), &found)) == ERANGE) {
    buf.resize(buf.size() * 2);
  }
  if (rc != 0) return Error::FromErrno(rc, "getgrnam_r", name_or_gid);
  if (found == nullptr) return Error::Msg("unknown group `" + name_or_gid + "`", ENOENT);
  return grp.gr_gid;
}

Result<ListenedSocket> ListenUnixSocket(const std::string& path, std::optional<gid_t> group,
                                        mode_t mode, int backlog) {
  sockaddr_un addr;
  TRY(FillAddr(path, &addr));
  TRY(EnsureSafeDir(ParentDir(path)));

  ListenedSocket out;
  // The lock closes the race between two daemons that both find a dead socket and both unlink
  // and bind: only the lock holder goes on.
  std::string lock_path = path + ".lock";
  ASSIGN_OR_RETURN(out.lock_fd, OpenFile(lock_path, O_RDWR | O_CREAT | O_NOFOLLOW, 0600));
  if (::flock(out.lock_fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return Error::Msg(
          "another corral daemon is running on `" + path + "` (it holds `" + lock_path + "`)",
          EADDRINUSE);
    }
    return Error::FromErrno("flock", lock_path);
  }

  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Error::Msg("`" + path +
                            "` exists and is not a socket; not removing it (move it away or "
                            "choose another --socket)",
                        EEXIST);
    }
    ASSIGN_OR_RETURN(bool live, SomeoneListens(path));
    if (live) {
      return Error::Msg("another corral daemon is already listening on `" + path + "`", EADDRINUSE);
    }
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return Error::FromErrno("unlink (stale socket)", path);
    }
  } else if (errno != ENOENT) {
    return Error::FromErrno("lstat", path);
  }

  out.fd = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!out.fd) return Error::FromErrno("socket(AF_UNIX)");
  // Bound 0600 whatever the umask; opened up to `mode` only after the group is right, and
  // connectable only after listen().
  mode_t old_umask = ::umask(0177);
  int rc = ::bind(out.fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  int bind_errno = errno;
  ::umask(old_umask);
  if (rc != 0) return Error::FromErrno(bind_errno, "bind", path);

  auto fail = [&](Error e) {
    ::unlink(path.c_str());
    return e;
  };
  if (group && ::chown(path.c_str(), static_cast<uid_t>(-1), *group) != 0) {
    return fail(Error::FromErrno("chown", path)
                    .Wrap("give the socket to group " + std::to_string(*group) +
                          " (the daemon must run as root or as a member of that group)"));
  }
  if (::chmod(path.c_str(), mode) != 0) return fail(Error::FromErrno("chmod", path));
  if (::lstat(path.c_str(), &st) != 0) return fail(Error::FromErrno("lstat", path));
  out.dev = st.st_dev;
  out.ino = st.st_ino;
  if (::listen(out.fd.get(), backlog) != 0) return fail(Error::FromErrno("listen", path));
  return out;
}

const char* CloseReasonName(CloseReason r) {
  switch (r) {
    case CloseReason::kPeerGone: return "peer_gone";
    case CloseReason::kDone: return "done";
    case CloseReason::kStuck: return "stuck";
    case CloseReason::kClosedByOwner: return "closed_by_owner";
    case CloseReason::kShutdown: return "shutdown";
  }
  return "unknown";
}

// ---- UnixServer ----

struct UnixServer::Connection {
  ConnectionId id = 0;
  UniqueFd fd;
  EventLoop::Token token = 0;
  uint32_t interest = 0;
  PeerCred peer;
  LineFramer framer;
  std::deque<std::string> out;
  size_t out_offset = 0;  // bytes of out.front() already sent
  size_t out_bytes = 0;   // unsent bytes in out
  std::unordered_set<uint64_t> pending;
  uint64_t next_seq = 1;
  bool closed = false;
  bool read_eof = false;  // the peer will send nothing more (half-close or EOF)
  EventLoop::Token continue_timer = 0;
  EventLoop::Token stuck_timer = 0;
  int64_t last_progress_ns = 0;

  explicit Connection(size_t max_line) : framer(max_line) {}
};

UnixServer::UnixServer(EventLoop* loop, Options opts, ListenedSocket sock)
    : loop_(loop), opts_(std::move(opts)), sock_(std::move(sock)) {
  scratch_.resize(opts_.read_chunk_bytes);
}

Result<std::unique_ptr<UnixServer>> UnixServer::Start(EventLoop* loop, Options opts) {
  ASSIGN_OR_RETURN(ListenedSocket sock, ListenUnixSocket(opts.path, opts.group, opts.mode));
  std::unique_ptr<UnixServer> server(new UnixServer(loop, std::move(opts), std::move(sock)));
  TRY(server->Register());
  return server;
}

Status UnixServer::Register() {
  ASSIGN_OR_RETURN(listen_token_,
                   loop_->Add(sock_.fd.get(), EPOLLIN, [this](uint32_t) { OnListenReady(); }));
  return Ok();
}

UnixServer::~UnixServer() {
  std::vector<std::shared_ptr<Connection>> all;
  for (auto& [id, c] : conns_) all.push_back(c);
  for (auto& c : all) CloseConnection(c, CloseReason::kShutdown, /*notify=*/false);
  if (accept_pause_timer_ != 0) loop_->CancelTimer(accept_pause_timer_);
  if (notify_timer_ != 0) loop_->CancelTimer(notify_timer_);
  if (listen_token_ != 0) loop_->Remove(listen_token_);
  RemoveSocketFile();
}

void UnixServer::Handle(std::string method, MethodHandler handler) {
  methods_[std::move(method)] = std::move(handler);
}

void UnixServer::RemoveSocketFile() {
  if (!sock_.fd) return;
  struct stat st;
  if (::lstat(opts_.path.c_str(), &st) == 0 && st.st_dev == sock_.dev && st.st_ino == sock_.ino) {
    ::unlink(opts_.path.c_str());
  }
  sock_.fd.reset();
  sock_.lock_fd.reset();
}

void UnixServer::StopAccepting() {
  if (listen_token_ != 0) loop_->Remove(listen_token_);
  listen_token_ = 0;
  if (accept_pause_timer_ != 0) loop_->CancelTimer(accept_pause_timer_);
  accept_pause_timer_ = 0;
  RemoveSocketFile();
}

void UnixServer::Shutdown() {
  StopAccepting();
  std::vector<std::shared_ptr<Connection>> all;
  for (auto& [id, c] : conns_) all.push_back(c);
  for (auto& c : all) CloseConnection(c, CloseReason::kShutdown);
  DeliverCloseNotifications();
}

void UnixServer::Close(ConnectionId conn) {
  auto it = conns_.find(conn);
  if (it == conns_.end()) return;
  std::shared_ptr<Connection> c = it->second;
  CloseConnection(c, CloseReason::kClosedByOwner);
}

std::optional<PeerCred> UnixServer::Peer(ConnectionId conn) const {
  auto it = conns_.find(conn);
  if (it == conns_.end()) return std::nullopt;
  return it->second->peer;
}

std::optional<UnixServer::ConnectionStats> UnixServer::Stats(ConnectionId conn) const {
  auto it = conns_.find(conn);
  if (it == conns_.end()) return std::nullopt;
  const Connection& c = *it->second;
  return ConnectionStats{c.framer.buffered_bytes(), c.out_bytes, c.pending.size(),
                         (c.interest & EPOLLIN) != 0};
}

std::vector<ConnectionId> UnixServer::connections() const {
  std::vector<ConnectionId> ids;
  for (const auto& [id, c] : conns_) ids.push_back(id);
  return ids;
}

void UnixServer::OnListenReady() {
  // A bounded number per turn so that a connect storm does not starve established clients.
  for (int i = 0; i < 64; ++i) {
    int fd = ::accept4(sock_.fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN) return;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // The pending connection stays in the backlog and would wake us at once, forever:
        // stop listening for a moment instead of spinning.
        std::fprintf(stderr, "corral daemon: accept on %s: %s; pausing accepts for 100 ms\n",
                     opts_.path.c_str(), std::strerror(errno));
        if (loop_->Modify(listen_token_, 0).ok()) {
          accept_pause_timer_ = loop_->AddTimer(MonotonicNs() + 100 * kNsPerMs, [this] {
            accept_pause_timer_ = 0;
            if (listen_token_ != 0) (void)loop_->Modify(listen_token_, EPOLLIN);
          });
        }
        return;
      }
      std::fprintf(stderr, "corral daemon: accept on %s: %s\n", opts_.path.c_str(),
                   std::strerror(errno));
      return;
    }
    UniqueFd cfd(fd);
    if (conns_.size() >= opts_.max_connections) {
      std::string line = jsonrpc::Serialize(jsonrpc::MakeError(
          nullptr, jsonrpc::RpcError::Overloaded("too many connections (" +
                                                 std::to_string(opts_.max_connections) + ")")));
      (void)!::send(cfd.get(), line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      continue;
    }
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (::getsockopt(cfd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      std::fprintf(stderr, "corral daemon: getsockopt(SO_PEERCRED): %s; dropping connection\n",
                   std::strerror(errno));
      continue;
    }
    auto c = std::make_shared<Connection>(opts_.max_line_bytes);
    c->id = next_conn_++;
    c->peer = PeerCred{cred.pid, cred.uid, cred.gid};
    c->interest = EPOLLIN | EPOLLRDHUP;
    std::weak_ptr<Connection> weak = c;
    auto token = loop_->Add(cfd.get(), c->interest, [this, weak](uint32_t events) {
      if (auto conn = weak.lock()) OnConnectionReady(conn, events);
    });
    if (!token.ok()) {
      std::fprintf(stderr, "corral daemon: %s\n", token.error().message().c_str());
      continue;
    }
    c->token = *token;
    c->fd = std::move(cfd);
    conns_.emplace(c->id, std::move(c));
  }
}

void UnixServer::OnConnectionReady(const std::shared_ptr<Connection>& c, uint32_t events) {
  if (c->closed) return;
  if ((events & (EPOLLHUP | EPOLLERR)) != 0) {
    // Full close (Unix stream sockets report HUP only when both directions are shut): nobody is
    // left to answer, so what the client sent and we have not read is dropped, not run.
    CloseConnection(c, CloseReason::kPeerGone);
    return;
  }
  if ((events & EPOLLOUT) != 0 && !Flush(c)) return;
  if ((events & (EPOLLIN | EPOLLRDHUP)) != 0) {
    Serve(c);
  } else {
    Settle(c);
  }
}

bool UnixServer::Held(const Connection& c) const {
  return c.out_bytes > opts_.output_high_water ||
         c.pending.size() >= opts_.max_pending_per_connection;
}

void UnixServer::Serve(const std::shared_ptr<Connection>& c) {
  size_t lines = 0;
  bool read_done = false;
  while (!c->closed && !Held(*c)) {
    if (c->framer.HasItem()) {
      if (lines >= opts_.lines_per_turn) break;
      ++lines;
      LineFramer::Item item = c->framer.Next();
      if (item.kind == LineFramer::Kind::kTooLong) {
        Send(c, jsonrpc::Serialize(jsonrpc::MakeError(
                    nullptr, jsonrpc::RpcError::InvalidRequest(
                                 "message too large: a line may hold at most " +
                                 std::to_string(opts_.max_line_bytes) + " bytes"))));
      } else {
        Dispatch(c, item.line);
      }
      continue;
    }
    if (read_done || c->read_eof) break;
    read_done = true;
    ssize_t n = ::recv(c->fd.get(), scratch_.data(), scratch_.size(), 0);
    if (n > 0) {
      c->framer.Append(std::string_view(scratch_.data(), n));
    } else if (n == 0) {
      c->read_eof = true;
      c->framer.Append("\n");  // a last request without its '\n' still counts
    } else if (errno != EAGAIN && errno != EINTR) {
      CloseConnection(c, CloseReason::kPeerGone);
      return;
    }
  }
  Settle(c);
}

void UnixServer::Dispatch(const std::shared_ptr<Connection>& c, std::string_view line) {
  if (line.find_first_not_of(" \t\r") == std::string_view::npos) return;  // blank: keep-alive
  jsonrpc::ParseOutcome parsed = jsonrpc::ParseRequest(line);
  if (!parsed.ok()) {
    Send(c, jsonrpc::Serialize(parsed.error_response()));
    return;
  }
  jsonrpc::Request& req = parsed.request();
  auto it = methods_.find(req.method);
  if (it == methods_.end()) {
    if (!req.notification) {
      Send(c, jsonrpc::Serialize(
                  jsonrpc::MakeError(req.id, jsonrpc::RpcError::MethodNotFound(req.method))));
    }
    return;
  }
  MethodHandler handler = it->second;  // a copy: the handler may re-register methods
  ReplyTo to{c->id, c->next_seq++, req.id, req.notification};
  if (!req.notification) c->pending.insert(to.seq);
  std::string method = req.method;
  try {
    handler(Call{std::move(req), to, c->peer});
  } catch (const std::exception& e) {
    // Handlers should not throw (nothing may unwind across the loop); a slip costs one answer.
    ReplyError(to, jsonrpc::RpcError::Internal("method `" + method + "`: " + e.what()));
  }
}

bool UnixServer::Reply(const ReplyTo& to, jsonrpc::json result) {
  return Answer(to, jsonrpc::MakeResult(to.id, std::move(result)));
}

bool UnixServer::ReplyError(const ReplyTo& to, const jsonrpc::RpcError& error) {
  return Answer(to, jsonrpc::MakeError(to.id, error));
}

bool UnixServer::Answer(const ReplyTo& to, const jsonrpc::json& message) {
  if (to.notification) return false;
  auto it = conns_.find(to.conn);
  if (it == conns_.end()) return false;
  std::shared_ptr<Connection> c = it->second;
  if (c->pending.erase(to.seq) == 0) return false;
  Send(c, jsonrpc::Serialize(message));
  return true;
}

void UnixServer::Send(const std::shared_ptr<Connection>& c, std::string data) {
  if (c->closed || data.empty()) return;
  c->out_bytes += data.size();
  c->out.push_back(std::move(data));
  if (c->out.size() == 1 && !Flush(c)) return;  // nothing was queued before: write at once
  Settle(c);
}

bool UnixServer::Flush(const std::shared_ptr<Connection>& c) {
  while (!c->out.empty()) {
    const std::string& front = c->out.front();
    ssize_t n = ::send(c->fd.get(), front.data() + c->out_offset, front.size() - c->out_offset,
                       MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return true;
      CloseConnection(c, CloseReason::kPeerGone);  // EPIPE, ECONNRESET
      return false;
    }
    c->last_progress_ns = MonotonicNs();
    c->out_bytes -= n;
    c->out_offset += n;
    if (c->out_offset == front.size()) {
      c->out.pop_front();
      c->out_offset = 0;
    }
  }
  return true;
}

void UnixServer::Settle(const std::shared_ptr<Connection>& c) {
  if (c->closed) return;
  bool held = Held(*c);
  if (c->read_eof && !c->framer.HasItem() && c->pending.empty() && c->out.empty()) {
    CloseConnection(c, CloseReason::kDone);
    return;
  }
  // Read only when nothing read is still waiting (that bounds the framer's buffer) and no
  // back-pressure holds the client. RDHUP goes with IN: while paused, a half-close would
  // otherwise wake the loop on every turn; HUP and ERR are always reported.
  bool want_read = !held && !c->read_eof && !c->framer.HasItem();
  uint32_t want = (want_read ? uint32_t{EPOLLIN | EPOLLRDHUP} : 0u) |
                  (c->out.empty() ? 0u : uint32_t{EPOLLOUT});
  if (want != c->interest) {
    if (loop_->Modify(c->token, want).ok()) c->interest = want;
  }
  if (!held && c->framer.HasItem() && c->continue_timer == 0) {
    // More lines are buffered than this turn's budget allowed: come back after the others.
    std::weak_ptr<Connection> weak = c;
    c->continue_timer = loop_->AddTimer(MonotonicNs(), [this, weak] {
      if (auto conn = weak.lock()) {
        conn->continue_timer = 0;
        if (!conn->closed) Serve(conn);
      }
    });
  }
  if (c->out_bytes > opts_.output_high_water && c->stuck_timer == 0) {
    c->last_progress_ns = MonotonicNs();
    ArmStuckTimer(c, c->last_progress_ns + opts_.stuck_timeout_ns);
  }
}

void UnixServer::ArmStuckTimer(const std::shared_ptr<Connection>& c, int64_t deadline_ns) {
  std::weak_ptr<Connection> weak = c;
  c->stuck_timer = loop_->AddTimer(deadline_ns, [this, weak] {
    auto conn = weak.lock();
    if (!conn || conn->closed) return;
    conn->stuck_timer = 0;
    if (conn->out_bytes <= opts_.output_high_water) return;  // drained meanwhile
    int64_t idle_until = conn->last_progress_ns + opts_.stuck_timeout_ns;
    if (MonotonicNs() >= idle_until) {
      CloseConnection(conn, CloseReason::kStuck);
    } else {
      ArmStuckTimer(conn, idle_until);  // it read some: watch again from its last progress
    }
  });
}

void UnixServer::CloseConnection(const std::shared_ptr<Connection>& c, CloseReason why,
                                 bool notify) {
  if (c->closed) return;
  c->closed = true;
  loop_->Remove(c->token);
  if (c->continue_timer != 0) loop_->CancelTimer(c->continue_timer);
  if (c->stuck_timer != 0) loop_->CancelTimer(c->stuck_timer);
  c->continue_timer = c->stuck_timer = 0;
  c->fd.reset();
  c->out.clear();
  c->out_bytes = 0;
  c->pending.clear();
  conns_.erase(c->id);
  if (!notify || !on_close_) return;
  // Delivered from a timer, never from inside Reply()/Close(): the owner may be in the middle of
  // its own bookkeeping for this very connection.
  closed_.emplace_back(c->id, why);
  if (notify_timer_ == 0) {
    notify_timer_ = loop_->AddTimer(MonotonicNs(), [this] {
      notify_timer_ = 0;
      DeliverCloseNotifications();
    });
  }
}

void UnixServer::DeliverCloseNotifications() {
  if (notify_timer_ != 0) loop_->CancelTimer(notify_timer_);
  notify_timer_ = 0;
  std::vector<std::pair<ConnectionId, CloseReason>> batch;
  batch.swap(closed_);
  for (const auto& [id, why] : batch) {
    if (on_close_) on_close_(id, why);
  }
}

}  // namespace corral
