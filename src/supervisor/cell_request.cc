#include "supervisor/cell_request.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "cell/spec_json.h"

namespace corral {

std::optional<Refusal> ApplyIdentity(const Caller& caller, const std::optional<std::string>& user,
                                     CellSpec* spec) {
  bool daemon_is_root = geteuid() == 0;
  uid_t uid = caller.uid;
  gid_t gid = caller.gid;
  std::string name;
  char buf[16384];
  struct passwd pw, *found = nullptr;
  if (user) {
    if (getpwnam_r(user->c_str(), &pw, buf, sizeof buf, &found) != 0 || found == nullptr) {
      return Refusal{Refusal::kBadInput, "params.user: no such user '" + *user + "'"};
    }
    if (!caller.root() && found->pw_uid != caller.uid) {
      return Refusal{Refusal::kNotAllowed,
                     "only root may run commands as another user (asked for '" + *user + "')"};
    }
    uid = found->pw_uid;
    gid = found->pw_gid;
    name = found->pw_name;
  }
  if (!daemon_is_root) {
    // A daemon that is not root cannot change identity: it serves its own user only.
    if (uid != geteuid()) {
      return Refusal{Refusal::kNotAllowed, "this daemon runs as uid " + std::to_string(geteuid()) +
                                               " and can only run commands for that user"};
    }
    return std::nullopt;
  }
  if (uid == 0 && !user) return std::nullopt;  // root for root: keep everything as it is
  // The caller's own name, for its groups (read only here: /etc/passwd is opened and parsed on
  // each lookup, twice a task when it was done for every caller).
  if (!user && getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found != nullptr) {
    name = found->pw_name;
  }
  spec->uid = uid;
  spec->gid = gid;
  spec->groups.clear();
  if (!name.empty()) {
    int n = 64;
    std::vector<gid_t> groups(static_cast<size_t>(n));
    if (getgrouplist(name.c_str(), gid, groups.data(), &n) < 0) {
      groups.resize(static_cast<size_t>(n));
      getgrouplist(name.c_str(), gid, groups.data(), &n);
    }
    groups.resize(static_cast<size_t>(std::max(n, 0)));
    for (gid_t g : groups) spec->groups.push_back(g);
  } else {
    spec->groups.push_back(gid);
  }
  return std::nullopt;
}

std::variant<CellSpec, Refusal> SpecForCaller(const nlohmann::json& params, const Caller& caller) {
  CellParams parsed;
  if (auto err = ParseCellParams(params, CellParamsSyntax{}, &parsed)) {
    return Refusal{Refusal::kBadInput, *err};
  }
  if (auto refusal = ApplyIdentity(caller, parsed.user, &parsed.spec)) return *refusal;
  return std::move(parsed.spec);
}

std::variant<CellSpec, std::string> SpecFromStored(const std::string& spec_json,
                                                   const Caller& owner) {
  nlohmann::json params = nlohmann::json::parse(spec_json, nullptr, false);
  if (params.is_discarded()) return std::string("the stored task spec is not JSON");
  auto spec = SpecForCaller(params, owner);
  if (auto* refusal = std::get_if<Refusal>(&spec)) return refusal->message;
  return std::get<CellSpec>(std::move(spec));
}

}  // namespace corral
