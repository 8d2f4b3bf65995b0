// verdict: the command-line client of verdictd. Parses the global flags and the command name,
// then hands the rest of the arguments to the command (client/commands/).
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/commands/commands.h"
#include "client/output.h"

namespace verdict::client {
namespace {

std::string MainHelp(FlagParser& global_flags) {
  std::string text =
      "verdict: the command-line client of verdictd, which trains reward models from\n"
      "preference pairs and serves their scores.\n\n"
      "Usage: verdict [global flags] COMMAND [flags] [arguments]\n\nCommands:\n";
  for (const Command& command : AllCommands()) {
    absl::StrAppend(&text, "  ", command.name,
                    std::string(10 - std::string(command.name).size(), ' '), command.summary, "\n");
  }
  std::string flags = global_flags.Help();
  // The global flags' section, without the parser's own usage header.
  absl::StrAppend(&text, flags.substr(flags.find("\nGlobal flags:")), "\n");
  absl::StrAppend(
      &text,
      "Global flags are accepted before or after COMMAND. Environment: VERDICT_SERVER,\n"
      "VERDICT_TOKEN.\n\n"
      "Exit codes:\n"
      "  0  success (for watch and submit --watch: the job SUCCEEDED)\n"
      "  1  the server refused the request (the error is printed), or a local file error\n"
      "  2  bad flags or arguments\n"
      "  3  the server is unreachable (UNAVAILABLE)\n"
      "  4  the watched job FAILED\n"
      "  5  the watched job was CANCELLED\n\n"
      "Run `verdict COMMAND --help` for a command's flags.\n");
  return text;
}

int TerminalWidth() {
  winsize size{};
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  int columns;
  if (const char* env = std::getenv("COLUMNS"); env != nullptr && absl::SimpleAtoi(env, &columns)) {
    return columns;
  }
  return 80;
}

int Main(int argc, char** argv) {
  // gRPC's own log lines would repeat the errors verdict already reports in words.
  setenv("GRPC_VERBOSITY", "NONE", /*overwrite=*/0);

  CommandEnv env;
  env.options = GlobalOptions::FromEnvironment();
  env.in = &std::cin;
  env.out = &std::cout;
  env.err = &std::cerr;
  env.out_is_terminal = isatty(STDOUT_FILENO) != 0;
  env.terminal_width = TerminalWidth();

  std::vector<std::string> args(argv + 1, argv + argc);
  FlagParser global_flags("verdict [global flags] COMMAND", "");
  env.options.AddFlags(global_flags);
  absl::StatusOr<std::vector<std::string>> rest =
      global_flags.Parse(args, /*stop_at_first_positional=*/true);
  if (global_flags.help_requested()) {
    std::cout << MainHelp(global_flags);
    return kExitOk;
  }
  if (rest.ok() && rest->empty()) {
    std::cerr << "verdict: no command given\n\n" << MainHelp(global_flags);
    return kExitUsage;
  }
  if (!rest.ok()) {
    std::cerr << "verdict: " << rest.status().message()
              << "\nUsage: verdict [global flags] COMMAND [flags] (verdict --help lists them)\n";
    return kExitUsage;
  }
  std::string name = rest->front();
  std::vector<std::string> command_args(rest->begin() + 1, rest->end());
  if (name == "help") {
    if (command_args.empty()) {
      std::cout << MainHelp(global_flags);
      return kExitOk;
    }
    name = command_args.front();
    command_args = {"--help"};
  }
  for (const Command& command : AllCommands()) {
    if (name == command.name) return command.run(command_args, env);
  }
  std::cerr << "verdict: unknown command '" << name << "'\nCommands:";
  for (const Command& command : AllCommands()) std::cerr << " " << command.name;
  std::cerr << "\n(verdict --help for more)\n";
  return kExitUsage;
}

}  // namespace
}  // namespace verdict::client

int main(int argc, char** argv) { return verdict::client::Main(argc, argv); }
