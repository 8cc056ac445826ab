// What the daemon's command-line clients share: finding the socket, one call, error printing,
// and the command-line options -> `run`/`start`/`submit` params mapping.
#pragma once

#include <optional>
#include <string>

#include "api/jsonrpc.h"
#include "api/unix_client.h"
#include "cell/spec.h"

namespace corral::cli {

struct CellFlags;  // cli/flags.h

// Pulls "--socket PATH" / "--socket=PATH" out of argv (in place); returns the path to use.
std::string TakeSocketFlag(int* argc, char** argv);
// Connects and makes one call. On failure prints "corral VERB: ..." and returns nullopt;
// *exit_code is set to 125 then.
std::optional<jsonrpc::json> CallOnce(const char* verb, const std::string& socket,
                                      const std::string& method, const jsonrpc::json& params,
                                      int* exit_code);
// The options of `corral run` parsed for a daemon client (exec, start, submit) into the params of
// its request: the command as `corral run` would run it here (this working directory, environment
// and umask; a --stdin file read now). Returns nullopt, as CallOnce does, when there is nothing to
// send: after --help (`help` printed to stdout, *exit_code 0) or bad input ("corral VERB: ..."
// printed, *exit_code 125).
std::optional<jsonrpc::json> ClientCellParams(const char* verb, const char* help, int argc,
                                              char** argv, CellFlags* flags, int* exit_code);
// Prints a command's usage text: to stdout when it was `asked` for (--help; returns 0), to stderr
// after bad usage (returns 125).
int Usage(const char* text, bool asked);
// `corral VERB [--socket PATH] ID [--json]` for the task methods that take one id and answer
// {id, state}: prints "ID STATE" (or the JSON), or `help` on bad usage.
int TaskIdCommand(const char* verb, const char* help, int argc, char** argv);
// The exit code a result object stands for (coreutils timeout conventions).
int ExitCodeOf(const jsonrpc::json& result);

}  // namespace corral::cli
