// verdict models / import / alias.
#include <algorithm>
#include <ostream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/commands/commands.h"
#include "client/job_file.h"
#include "client/output.h"

namespace verdict::client {
namespace {

using verdict::v1::Model;

std::string ParameterCount(int64_t n) {
  if (n >= 1'000'000) return absl::StrFormat("%.1fM", n / 1e6);
  if (n >= 1'000) return absl::StrFormat("%.1fK", n / 1e3);
  return absl::StrCat(n);
}

// "concat/qwen3": the input rule and the chat format (a version registered before input rules
// existed scores by the pair rule).
std::string InputDescription(const Model& m) {
  const int rule = m.input_rule() == verdict::v1::INPUT_RULE_UNSPECIFIED
                       ? verdict::v1::INPUT_RULE_PAIR
                       : m.input_rule();
  return absl::AsciiStrToLower(
      absl::StrCat(EnumName(verdict::v1::InputRule_descriptor(), rule), "/",
                   EnumName(verdict::v1::ChatFormat_descriptor(), m.chat_format())));
}

std::string Source(const Model& m) {
  switch (m.source_case()) {
    case Model::kTrainingJobId:
      return absl::StrCat("job ", m.training_job_id());
    case Model::kImportPath:
      return absl::StrCat("import ", m.import_path());
    default:
      return "-";
  }
}

// "0.7312 ds-1a2b" / "0.7312 test.jsonl.gz": the newest evaluation (the server lists them
// newest first), with "+N" when the version has evaluations on N other datasets.
std::string EvalSummary(const Model& m) {
  if (m.evaluations_size() == 0) return "-";
  const verdict::v1::EvaluationResult& e = m.evaluations(0);
  std::string summary = absl::StrFormat(
      "%.4f %s", e.accuracy(),
      e.data_case() == verdict::v1::EvaluationResult::kDatasetId ? e.dataset_id() : e.data_path());
  if (m.evaluations_size() > 1) absl::StrAppend(&summary, " +", m.evaluations_size() - 1);
  return summary;
}

void PrintModel(const Model& m, CommandEnv& env) {
  if (env.options.format() == OutputFormat::kJson) {
    *env.out << ToJson(m) << "\n";
  } else {
    *env.out << m.name() << " version " << m.version();
    if (m.aliases_size() > 0) *env.out << " (" << absl::StrJoin(m.aliases(), ", ") << ")";
    *env.out << "\n";
  }
}

}  // namespace

int RunModels(const std::vector<std::string>& args, CommandEnv& env) {
  FlagParser flags("verdict models [NAME] [flags] | verdict models --delete NAME VERSION",
                   "Lists registered model versions, by name, newest version first; or deletes\n"
                   "one version (its files too) with --delete. The server refuses to delete a\n"
                   "version an alias points at, `latest` included: move the alias first.");
  bool loaded = false;
  bool remove = false;
  int64_t limit = 0;
  flags.AddBool("loaded", &loaded, "Only versions loaded in memory now.");
  flags.AddInt("limit", &limit, "N", "At most N versions (default 0: all).");
  flags.AddBool("delete", &remove, "Delete version VERSION of NAME instead.");
  std::vector<std::string> positional;
  if (auto exit = ParseCommandArgs(flags, args, env, 0, 2, &positional)) return *exit;
  int64_t version = 0;
  if (remove != (positional.size() == 2) ||
      (remove && !absl::SimpleAtoi(positional[1], &version))) {
    *env.err << "verdict: expected [NAME], or --delete NAME VERSION (VERSION a number)\n"
             << "Usage: " << flags.usage() << "\n";
    return kExitUsage;
  }
  if (limit < 0) {
    *env.err << "verdict: --limit: must be >= 0\n";
    return kExitUsage;
  }
  int exit_code = kExitOk;
  std::unique_ptr<Connection> connection = Connect(env, &exit_code);
  if (connection == nullptr) return exit_code;
  if (remove) {
    verdict::v1::DeleteModelVersionRequest request;
    request.set_name(positional[0]);
    request.set_version(version);
    Model deleted;
    std::unique_ptr<grpc::ClientContext> context = connection->NewContext();
    grpc::Status status = connection->models().DeleteModelVersion(context.get(), request, &deleted);
    if (!status.ok()) return ReportRpcError(status, env.options.server, *env.err);
    if (env.options.format() == OutputFormat::kText) *env.out << "deleted ";
    PrintModel(deleted, env);
    return kExitOk;
  }

  verdict::v1::ListModelsResponse all;
  verdict::v1::ListModelsRequest request;
  if (!positional.empty()) request.set_name(positional[0]);
  request.set_loaded_only(loaded);
  do {
    if (limit > 0) {
      request.set_page_size(
          static_cast<int32_t>(std::min<int64_t>(limit - all.models_size(), 1000)));
    }
    verdict::v1::ListModelsResponse page;
    std::unique_ptr<grpc::ClientContext> context = connection->NewContext();
    grpc::Status status = connection->models().ListModels(context.get(), request, &page);
    if (!status.ok()) return ReportRpcError(status, env.options.server, *env.err);
    for (auto& model : *page.mutable_models()) *all.add_models() = std::move(model);
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty() && (limit == 0 || all.models_size() < limit));

  if (env.options.format() == OutputFormat::kJson) {
    *env.out << ToJson(all) << "\n";
    return kExitOk;
  }
  if (all.models_size() == 0) {
    *env.out << "no models\n";
    return kExitOk;
  }
  TextTable table(
      {"NAME", "VERSION", "ALIASES", "TYPE", "PARAMS", "INPUT", "LOADED", "EVAL", "SOURCE",
       "CREATED"});
  for (const Model& m : all.models()) {
    table.AddRow({m.name(), absl::StrCat(m.version()),
                  m.aliases_size() > 0 ? absl::StrJoin(m.aliases(), ",") : "-", m.model_type(),
                  ParameterCount(m.parameter_count()), InputDescription(m),
                  m.loaded() ? m.device() : "-", EvalSummary(m), Source(m),
                  FormatTimestamp(m.create_time())});
  }
  *env.out << table.Render();
  return kExitOk;
}

int RunImport(const std::vector<std::string>& args, CommandEnv& env) {
  FlagParser flags(
      "verdict import DIR NAME [flags]",
      "Registers the Hugging Face reward-model directory DIR (relative to the server's\n"
      "--model_dir: config.json, model.safetensors, tokenizer) as the next version of NAME.");
  std::string alias, truncation, chat_format, input_rule;
  int64_t max_length = 0;
  flags.AddString("alias", &alias, "ALIAS", "Also point ALIAS at the new version.");
  flags.AddInt("max-length", &max_length, "N",
               "Longest sequence scored (default min(1024, positions)).");
  flags.AddString("truncation", &truncation, "truncate|drop", "Policy for longer items.");
  flags.AddString("chat-format", &chat_format, "FORMAT",
                  "How conversations are rendered: hh, chatml, llama2, qwen3, qwen2,\n"
                  "qwen2_5, llama3, llama3_1 (default: the directory's record, else its\n"
                  "chat template's).");
  flags.AddString("input-rule", &input_rule, "RULE",
                  "How prompt and response become input tokens: concat (default, as TRL\n"
                  "trains), pair ([CLS] prompt [SEP] response [SEP]) or chat.");
  std::vector<std::string> positional;
  if (auto exit = ParseCommandArgs(flags, args, env, 2, 2, &positional)) return *exit;
  verdict::v1::ImportModelRequest request;
  request.set_path(positional[0]);
  request.set_name(positional[1]);
  request.set_alias(alias);
  request.set_max_length(static_cast<int32_t>(max_length));
  for (const auto& [text, type, flag] :
       {std::tuple{truncation, verdict::v1::TruncationPolicy_descriptor(), "truncation"},
        std::tuple{chat_format, verdict::v1::ChatFormat_descriptor(), "chat-format"},
        std::tuple{input_rule, verdict::v1::InputRule_descriptor(), "input-rule"}}) {
    if (text.empty()) continue;
    absl::StatusOr<int> value = ParseEnumValue(*type, text);
    if (!value.ok()) {
      *env.err << "verdict: --" << flag << ": " << value.status().message() << "\n";
      return kExitUsage;
    }
    if (type == verdict::v1::TruncationPolicy_descriptor()) {
      request.set_truncation(static_cast<verdict::v1::TruncationPolicy>(*value));
    } else if (type == verdict::v1::ChatFormat_descriptor()) {
      request.set_chat_format(static_cast<verdict::v1::ChatFormat>(*value));
    } else {
      request.set_input_rule(static_cast<verdict::v1::InputRule>(*value));
    }
  }
  int exit_code = kExitOk;
  std::unique_ptr<Connection> connection = Connect(env, &exit_code);
  if (connection == nullptr) return exit_code;
  Model model;
  std::unique_ptr<grpc::ClientContext> context = connection->NewContext();
  grpc::Status status = connection->models().ImportModel(context.get(), request, &model);
  if (!status.ok()) return ReportRpcError(status, env.options.server, *env.err);
  if (env.options.format() == OutputFormat::kText) *env.out << "imported ";
  PrintModel(model, env);
  return kExitOk;
}

int RunAlias(const std::vector<std::string>& args, CommandEnv& env) {
  FlagParser flags("verdict alias NAME VERSION ALIAS | verdict alias --delete NAME ALIAS",
                   "Points ALIAS at version VERSION of NAME (moving it if it pointed elsewhere),\n"
                   "or removes it with --delete. Scoring with NAME:ALIAS then uses that version.\n"
                   "With --require-accuracy the server refuses the move unless the version's\n"
                   "newest evaluation (verdict eval) on --eval-dataset reaches that accuracy.");
  bool remove = false;
  double require_accuracy = 0;
  std::string eval_dataset;
  flags.AddBool("delete", &remove, "Remove the alias instead.");
  flags.AddDouble("require-accuracy", &require_accuracy, "F",
                  "Gate: refuse the move below this accuracy, in [0, 1] (default 0: no gate).");
  flags.AddString("eval-dataset", &eval_dataset, "ID",
                  "The uploaded dataset whose evaluation the gate reads.");
  std::vector<std::string> positional;
  if (auto exit = ParseCommandArgs(flags, args, env, 2, 3, &positional)) return *exit;
  int64_t version = 0;
  if (remove != (positional.size() == 2) ||
      (!remove && !absl::SimpleAtoi(positional[1], &version))) {
    *env.err << "verdict: expected NAME VERSION ALIAS (VERSION a number), or --delete NAME ALIAS\n"
             << "Usage: " << flags.usage() << "\n";
    return kExitUsage;
  }
  int exit_code = kExitOk;
  std::unique_ptr<Connection> connection = Connect(env, &exit_code);
  if (connection == nullptr) return exit_code;
  Model model;
  std::unique_ptr<grpc::ClientContext> context = connection->NewContext();
  grpc::Status status;
  if (remove) {
    verdict::v1::DeleteModelAliasRequest request;
    request.set_name(positional[0]);
    request.set_alias(positional[1]);
    status = connection->models().DeleteModelAlias(context.get(), request, &model);
  } else {
    verdict::v1::SetModelAliasRequest request;
    request.set_name(positional[0]);
    request.set_version(version);
    request.set_alias(positional[2]);
    request.set_require_accuracy(require_accuracy);
    request.set_eval_dataset_id(eval_dataset);
    status = connection->models().SetModelAlias(context.get(), request, &model);
  }
  if (!status.ok()) return ReportRpcError(status, env.options.server, *env.err);
  PrintModel(model, env);
  return kExitOk;
}

}  // namespace verdict::client
