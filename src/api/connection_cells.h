// Cells bound to the client connection that asked for them: a `run` call's cell is cancelled
// (reason "client_gone") when its client disconnects before the answer; cells from `start` are
// meant to outlive their caller's connection and are never bound.
//
// Bounded by construction: an entry exists only for an open connection with a bound cell still
// running. Unbind (the cell ended) never creates one, so a cell that ends after its connection
// closed -- every cell cancelled by TakeAll ends that way -- leaves nothing behind.
#pragma once

#include <cstddef>
#include <map>
#include <set>
#include <string>

#include "api/unix_server.h"

namespace corral::api {

class ConnectionCells {
 public:
  void Bind(ConnectionId conn, const std::string& cell_id);
  void Unbind(ConnectionId conn, const std::string& cell_id);
  // The cells still bound to a connection that closed; it holds none afterwards.
  std::set<std::string> TakeAll(ConnectionId conn);
  // Connections holding at least one bound cell.
  size_t connections() const { return cells_.size(); }

 private:
  std::map<ConnectionId, std::set<std::string>> cells_;
};

}  // namespace corral::api
