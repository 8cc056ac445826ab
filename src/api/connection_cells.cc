#include "api/connection_cells.h"

namespace corral::api {

void ConnectionCells::Bind(ConnectionId conn, const std::string& cell_id) {
  cells_[conn].insert(cell_id);
}

void ConnectionCells::Unbind(ConnectionId conn, const std::string& cell_id) {
  auto it = cells_.find(conn);
  if (it == cells_.end()) return;
  it->second.erase(cell_id);
  if (it->second.empty()) cells_.erase(it);
}

std::set<std::string> ConnectionCells::TakeAll(ConnectionId conn) {
  auto it = cells_.find(conn);
  if (it == cells_.end()) return {};
  std::set<std::string> ids = std::move(it->second);
  cells_.erase(it);
  return ids;
}

}  // namespace corral::api
