#include <ostream>

#include "absl/strings/str_cat.h"
#include "client/commands/commands.h"
#include "client/output.h"

namespace verdict::client {

const std::vector<Command>& AllCommands() {
  static const auto* const commands = new std::vector<Command>{
      {"submit", "Submit a training job (from flags or a YAML/JSON job file)", RunSubmit},
      {"watch", "Follow a job's progress and metrics until it ends", RunWatch},
      {"jobs", "List training jobs", RunJobs},
      {"get", "Show one job", RunGet},
      {"cancel", "Cancel a job", RunCancel},
      {"upload", "Upload a preference dataset (JSONL or JSONL.GZ)", RunUpload},
      {"datasets", "List, inspect or delete datasets", RunDatasets},
      {"score", "Score prompt/response pairs with a model (one, or JSON lines)", RunScore},
      {"models", "List registered model versions (or --delete one)", RunModels},
      {"import", "Register a Hugging Face model directory from the server's --model_dir",
       RunImport},
      {"alias", "Point an alias at a model version (or --delete it)", RunAlias},
      {"export", "Download a model version's directory (checksummed)", RunExport},
      {"eval", "Evaluate a model version on held-out pairs (a server job)", RunEval},
      {"health", "Check the server's health (grpc.health.v1)", RunHealth},
  };
  return *commands;
}

std::optional<int> ParseCommandArgs(FlagParser& flags, const std::vector<std::string>& args,
                                    CommandEnv& env, size_t min_positional, size_t max_positional,
                                    std::vector<std::string>* positional) {
  env.options.AddFlags(flags);
  absl::StatusOr<std::vector<std::string>> parsed = flags.Parse(args);
  if (flags.help_requested()) {
    *env.out << flags.Help();
    return kExitOk;
  }
  absl::Status problem = parsed.status();
  if (problem.ok()) problem = env.options.Validate();
  if (problem.ok() && (parsed->size() < min_positional || parsed->size() > max_positional)) {
    problem = absl::InvalidArgumentError(
        parsed->size() < min_positional
            ? "missing arguments"
            : absl::StrCat("unexpected argument '", (*parsed)[max_positional], "'"));
  }
  if (!problem.ok()) {
    *env.err << "verdict: " << problem.message() << "\n"
             << "Usage: " << flags.usage() << "\n"
             << "(run with --help for the flags)\n";
    return kExitUsage;
  }
  *positional = *std::move(parsed);
  return std::nullopt;
}

std::unique_ptr<Connection> Connect(CommandEnv& env, int* exit_code) {
  absl::StatusOr<std::unique_ptr<Connection>> connection = Connection::Create(env.options);
  if (!connection.ok()) {
    *exit_code = ReportLocalError(connection.status(), *env.err);
    return nullptr;
  }
  return *std::move(connection);
}

}  // namespace verdict::client
