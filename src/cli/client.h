// What the daemon's command-line clients share: finding the socket, one call, error printing,
// and the command-line options -> `run`/`start`/`submit` params mapping.
#pragma once

#include <optional>
#include <string>

#include "api/jsonrpc.h"
#include "api/unix_client.h"
#include "cell/spec.h"
#include "cli/flags.h"

namespace corral::cli {

// Pulls "--socket PATH" / "--socket=PATH" out of argv (in place); returns the path to use.
std::string TakeSocketFlag(int* argc, char** argv);
// Connects and makes one call. On failure prints "corral VERB: ..." and returns nullopt;
// *exit_code is set to 125 then.
std::optional<jsonrpc::json> CallOnce(const char* verb, const std::string& socket,
                                      const std::string& method, const jsonrpc::json& params,
                                      int* exit_code);
// A daemon client's request for a cell (exec, start, submit): its socket (--socket or
// $CORRAL_SOCKET), the options of `corral run`, and from them the params of the request -- the
// command as `corral run` would run it here (this working directory, environment and umask; a
// --stdin file read now).
struct CellRequest {
  std::string socket;
  CellFlags flags;
  jsonrpc::json params;
};
// Parses argv into *req. Returns false with *exit_code set after printing `help` (--help: 0) or
// "corral VERB: ..." (bad input: 125).
bool ParseCellRequest(const char* verb, const char* help, int argc, char** argv, CellRequest* req,
                      int* exit_code);
// False, after "corral VERB: which cell? (corral VERB ID; see `corral ps`)", when id is empty.
bool HaveCellId(const char* verb, const std::string& id);
// Prints a command's usage text: to stdout when it was `asked` for (--help; returns 0), to stderr
// after bad usage (returns 125).
int Usage(const char* text, bool asked);
// `corral VERB [--socket PATH] ID [--json]` for the task methods that take one id and answer
// {id, state}: prints "ID STATE" (or the JSON), or `help` on bad usage.
int TaskIdCommand(const char* verb, const char* help, int argc, char** argv);
// The exit code a result object stands for (coreutils timeout conventions).
int ExitCodeOf(const jsonrpc::json& result);

}  // namespace corral::cli
