// verdict health: grpc.health.v1 Check for the server and each of its services.
#include <nlohmann/json.hpp>
#include <ostream>

#include "absl/strings/str_cat.h"
#include "client/commands/commands.h"
#include "client/health_check.h"
#include "client/output.h"

namespace verdict::client {

int RunHealth(const std::vector<std::string>& args, CommandEnv& env) {
  FlagParser flags(
      "verdict health [flags]",
      "Asks the server's standard health service (grpc.health.v1) about the server as a whole\n"
      "and each verdict service, or about one --service. ScoringService is NOT_SERVING until\n"
      "a model is loaded, and everything is NOT_SERVING while the server drains.\n"
      "Exit code: 0 SERVING, 1 anything else, 3 unreachable.");
  std::optional<std::string> service;
  flags.AddString("service", &service, "NAME",
                  "Only this service, e.g. verdict.v1.ScoringService (\"\": the server).");
  std::vector<std::string> positional;
  if (auto exit = ParseCommandArgs(flags, args, env, 0, 0, &positional)) return *exit;
  int exit_code = kExitOk;
  std::unique_ptr<Connection> connection = Connect(env, &exit_code);
  if (connection == nullptr) return exit_code;

  std::vector<std::string> services;
  if (service) {
    services = {*service};
  } else {
    services = {"", "verdict.v1.TrainingService", "verdict.v1.DatasetService",
                "verdict.v1.ModelService", "verdict.v1.ScoringService"};
  }
  TextTable table({"SERVICE", "STATUS"});
  nlohmann::ordered_json json = nlohmann::ordered_json::object();
  for (size_t i = 0; i < services.size(); ++i) {
    absl::StatusOr<ServingStatus> status = CheckHealth(*connection, services[i]);
    std::string name;
    if (status.ok()) {
      name = ServingStatusName(*status);
    } else if (status.status().code() == absl::StatusCode::kNotFound) {
      name = "SERVICE_UNKNOWN";
    } else {
      return ReportRpcError(status.status(), env.options.server, *env.err);
    }
    // The first answer (the server's, or the one service asked about) sets the exit code.
    if (i == 0 && name != "SERVING") exit_code = kExitError;
    table.AddRow({services[i].empty() ? "(server)" : services[i], name});
    json[services[i]] = name;
  }
  if (env.options.format() == OutputFormat::kJson) {
    *env.out << json.dump() << "\n";
  } else {
    *env.out << table.Render();
  }
  return exit_code;
}

}  // namespace verdict::client
