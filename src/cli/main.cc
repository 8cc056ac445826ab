// corral: run commands in cells (contained, time-limited process trees that are always killed as
// a whole, always reaped, always measured) and watch the host for the damage unmanaged children
// do. main only picks the subcommand; each one lives in its own file.
#include <cstdio>
#include <cstring>

#include "cli/commands.h"

namespace {

struct Subcommand {
  const char* name;
  int (*fn)(int, char**);
  const char* summary;
};

constexpr Subcommand kSubcommands[] = {
    {"run", corral::cli::Run, "run one command in a cell, no daemon needed"},
    {"init", corral::cli::Init, "PID 1 for containers: reap every zombie, forward signals"},
    {"daemon", corral::cli::Daemon, "serve cells to local clients over a Unix socket"},
    {"exec", corral::cli::Exec, "like run, through the daemon"},
    {"start", corral::cli::Start, "start a command in the daemon, print its id"},
    {"wait", corral::cli::Wait, "wait for a started command or task, print its result"},
    {"ps", corral::cli::Ps, "list the daemon's cells"},
    {"kill", corral::cli::Kill, "kill a cell's whole tree"},
    {"logs", corral::cli::Logs, "print a cell's or task's output"},
    {"submit", corral::cli::Submit, "queue a task in the durable task queue"},
    {"tasks", corral::cli::Tasks, "list queued, running and finished tasks"},
    {"cancel", corral::cli::Cancel, "cancel a task"},
    {"retry", corral::cli::Retry, "run a finished task again"},
    {"group", corral::cli::Group, "set a task group's concurrency limit"},
    {"scan", corral::cli::Scan, "report zombies, D-state processes, PID/fd/GPU pressure"},
    {"mcp", corral::cli::Mcp, "an MCP server on stdio exposing the run tools"},
    {"doctor", corral::cli::Doctor, "what this host supports and what corral will use"},
};

void PrintUsage(FILE* out) {
  std::fputs(
      "usage: corral COMMAND [OPTIONS] [-- CMD [ARG...]]\n\n"
      "Runs commands in cells: contained, time-limited process trees that are always killed\n"
      "as a whole, always reaped and always measured.\n\ncommands:\n",
      out);
  for (const Subcommand& c : kSubcommands) std::fprintf(out, "  %-8s %s\n", c.name, c.summary);
  std::fputs(
      "\n`corral COMMAND --help` explains each one. Example:\n"
      "  corral run --timeout 10s -- make test\n",
      out);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    PrintUsage(stderr);
    return corral::cli::kExitCorralError;
  }
  if (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0 ||
      std::strcmp(argv[1], "help") == 0) {
    PrintUsage(stdout);
    return 0;
  }
  for (const Subcommand& c : kSubcommands) {
    if (std::strcmp(argv[1], c.name) == 0) return c.fn(argc - 1, argv + 1);
  }
  std::fprintf(stderr, "corral: unknown command '%s' (see `corral --help`)\n", argv[1]);
  return corral::cli::kExitCorralError;
}
