// Every subcommand is one function in its own file, listed once in main.cc's table.
// argv[0] is the subcommand's name; the return value is the process's exit code.
#pragma once

namespace corral::cli {

int Run(int argc, char** argv);
int Doctor(int argc, char** argv);
int Init(int argc, char** argv);
int Daemon(int argc, char** argv);
int Exec(int argc, char** argv);
int Start(int argc, char** argv);
int Wait(int argc, char** argv);
int Ps(int argc, char** argv);
int Kill(int argc, char** argv);
int Logs(int argc, char** argv);
int Submit(int argc, char** argv);
int Tasks(int argc, char** argv);
int Cancel(int argc, char** argv);
int Retry(int argc, char** argv);
int Group(int argc, char** argv);
int Scan(int argc, char** argv);
int Mcp(int argc, char** argv);

// corral's own failure (bad option, cannot create a cell), as coreutils `timeout` uses it.
constexpr int kExitCorralError = 125;

}  // namespace corral::cli
