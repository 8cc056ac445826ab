// A caller's request for a cell, as the daemon takes it: the protocol's cell params
// (cell/spec_json.h) with the caller's identity applied. JSON-RPC `run` and `start` and every
// attempt of a queued task come through here, so a task is rebuilt at each attempt exactly as a
// `run` of the same params by the same caller would be.
//
// Identity: a command runs with its caller's uid, gid and groups (the caller as SO_PEERCRED saw
// it); only root may name another `user`. A daemon that is not root cannot change identity and
// serves its own user only.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <variant>

#include "cell/spec.h"
#include "supervisor/supervisor.h"

namespace corral {

// params of `run`/`start` -> the spec to start for `caller`, or why not (kBadInput for a bad
// field or an unknown user, kNotAllowed for a user the caller may not be).
std::variant<CellSpec, Refusal> SpecForCaller(const nlohmann::json& params, const Caller& caller);

// The same from a task's stored params (their JSON text), at each attempt; a sentence when they no
// longer build (the user was deleted since): the attempt then fails to start.
std::variant<CellSpec, std::string> SpecFromStored(const std::string& spec_json,
                                                   const Caller& owner);

// Sets spec's uid, gid and groups for `caller`, or for `user` where the caller may be that user.
std::optional<Refusal> ApplyIdentity(const Caller& caller, const std::optional<std::string>& user,
                                     CellSpec* spec);

}  // namespace corral
