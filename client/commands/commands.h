// The `verdict` subcommands. Each takes the arguments after its name and returns the process
// exit code (see client/output.h); it prints its own --help, usage errors and server errors.
//
// Called from main's thread, one command per process.
#ifndef VERDICT_CLIENT_COMMANDS_COMMANDS_H_
#define VERDICT_CLIENT_COMMANDS_COMMANDS_H_

#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "client/connection.h"
#include "client/flag_parser.h"

namespace verdict::client {

// What every command gets: the global options (already holding what came before the
// command's name; the command's own parser may override them), and the process's streams.
struct CommandEnv {
  GlobalOptions options;
  std::istream* in;
  std::ostream* out;
  std::ostream* err;
  bool out_is_terminal = false;  // stdout is a TTY (progress bars, colours of nothing)
  int terminal_width = 80;
};

using CommandFunction = int (*)(const std::vector<std::string>& args, CommandEnv& env);

struct Command {
  const char* name;
  const char* summary;  // one line for `verdict --help`
  CommandFunction run;
};

// Every command, in the order `verdict --help` lists them.
const std::vector<Command>& AllCommands();

int RunSubmit(const std::vector<std::string>& args, CommandEnv& env);
int RunWatch(const std::vector<std::string>& args, CommandEnv& env);
int RunJobs(const std::vector<std::string>& args, CommandEnv& env);
int RunGet(const std::vector<std::string>& args, CommandEnv& env);
int RunCancel(const std::vector<std::string>& args, CommandEnv& env);
int RunDatasets(const std::vector<std::string>& args, CommandEnv& env);
int RunUpload(const std::vector<std::string>& args, CommandEnv& env);
int RunScore(const std::vector<std::string>& args, CommandEnv& env);
int RunModels(const std::vector<std::string>& args, CommandEnv& env);
int RunImport(const std::vector<std::string>& args, CommandEnv& env);
int RunAlias(const std::vector<std::string>& args, CommandEnv& env);
int RunExport(const std::vector<std::string>& args, CommandEnv& env);
int RunEval(const std::vector<std::string>& args, CommandEnv& env);
int RunHealth(const std::vector<std::string>& args, CommandEnv& env);

// ---- shared by the commands ----

// Adds the global flags to `flags`, parses `args`, and checks that between min and max
// positional arguments remain. Returns an exit code when the command must stop here (0 after
// printing --help; kExitUsage after printing the problem and the usage line), or nullopt to go
// on with `positional` filled.
std::optional<int> ParseCommandArgs(FlagParser& flags, const std::vector<std::string>& args,
                                    CommandEnv& env, size_t min_positional, size_t max_positional,
                                    std::vector<std::string>* positional);

// The connection for env.options, or nullptr after printing why not (exit code in *exit_code).
std::unique_ptr<Connection> Connect(CommandEnv& env, int* exit_code);

// Follows a job's events to its end (reconnecting when the stream drops) and returns the exit
// code for its final state. Used by `watch` and `submit --watch`.
struct WatchArgs {
  std::optional<int64_t> from_step;
  bool progress_bar = true;        // when stdout is a terminal and the output is text
  double reconnect_seconds = 300;  // give up after this long without a working stream
};
int WatchJob(Connection& connection, const std::string& job_id, const WatchArgs& watch,
             CommandEnv& env);

}  // namespace verdict::client

#endif  // VERDICT_CLIENT_COMMANDS_COMMANDS_H_
