// verdict datasets [list | inspect | delete] / upload.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <ostream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/commands/commands.h"
#include "client/dataset_upload.h"
#include "client/job_file.h"
#include "client/local_inspection.h"
#include "client/output.h"
#include "client/scoring.h"

namespace verdict::client {
namespace {

int RunDatasetsInspect(const std::vector<std::string>& args, CommandEnv& env) {
  FlagParser flags(
      "verdict datasets inspect ID|FILE [flags]",
      "Reads a dataset as training would and reports its layout, its pairs and every invalid\n"
      "line with its number and reason. A FILE that exists here is read here (nothing is\n"
      "uploaded); anything else is an uploaded dataset's id, read by the server. With --model\n"
      "the server also measures the pairs in that model's tokens (a histogram) and the share\n"
      "over max_length: give an uploaded dataset's id, or --data-path for a file under the\n"
      "server's --data_dir. Exits 1 when the data has a problem. Example:\n"
      "  verdict datasets inspect pairs.jsonl\n"
      "  verdict datasets inspect ds-0123456789abcdef --model helpful-rm --max-length 512");
  std::optional<std::string> model, data_path, data_format, chat_format;
  std::optional<int64_t> max_length;
  int64_t max_invalid = 100;
  flags.AddString("model", &model, "NAME[:VERSION|ALIAS]",
                  "Measure token lengths with this model's tokenizer (server side).");
  flags.AddInt("max-length", &max_length, "N",
               "Count pairs over N tokens (default: the model's max_length).");
  flags.AddInt("max-invalid", &max_invalid, "N", "List at most N invalid lines (default 100).");
  flags.AddString("data-path", &data_path, "PATH",
                  "Inspect a file under the server's --data_dir instead of ID|FILE.");
  flags.AddString("data-format", &data_format, "FORMAT",
                  "Local files: read as auto (default), jsonl, json or sharegpt.");
  flags.AddString("chat-format", &chat_format, "FORMAT",
                  "Local files: how message lists become text (default hh).");
  std::vector<std::string> positional;
  if (auto exit = ParseCommandArgs(flags, args, env, 0, 1, &positional)) {
    return *exit;
  }
  auto usage = [&](absl::string_view problem) {
    *env.err << "verdict: " << problem << "\nUsage: " << flags.usage() << "\n";
    return kExitUsage;
  };
  if (positional.empty() == !data_path.has_value()) {
    return usage("give one of ID, FILE or --data-path PATH");
  }
  if (max_invalid < 1 || max_invalid > 10000) return usage("--max-invalid: must be in [1, 10000]");
  if (max_length && (*max_length < 1 || *max_length > (1 << 20))) {
    return usage("--max-length: must be in [1, 1048576]");
  }
  if (max_length && !model) return usage("--max-length counts tokens: give --model as well");

  const std::string target = positional.empty() ? "" : positional[0];
  std::error_code error;
  const bool local = !target.empty() && std::filesystem::exists(target, error);
  verdict::v1::DatasetInspection report;
  std::string name;
  if (local) {
    if (model) {
      return usage(absl::StrCat("--model: token lengths need the model's tokenizer, which is on ",
                                "the server; upload the file (verdict upload ", target,
                                ") and inspect the dataset id it prints"));
    }
    LocalInspectionOptions options;
    options.max_invalid_lines = static_cast<size_t>(max_invalid);
    if (data_format) {
      absl::StatusOr<int> value =
          ParseEnumValue(*verdict::v1::DataFormat_descriptor(), *data_format);
      if (!value.ok()) return usage(absl::StrCat("--data-format: ", value.status().message()));
      options.format = static_cast<verdict::v1::DataFormat>(*value);
    }
    if (chat_format) {
      absl::StatusOr<int> value =
          ParseEnumValue(*verdict::v1::ChatFormat_descriptor(), *chat_format);
      if (!value.ok()) return usage(absl::StrCat("--chat-format: ", value.status().message()));
      options.chat_format = static_cast<verdict::v1::ChatFormat>(*value);
    }
    absl::StatusOr<verdict::v1::DatasetInspection> inspected = InspectLocalFile(target, options);
    if (!inspected.ok()) return ReportLocalError(inspected.status(), *env.err);
    report = *std::move(inspected);
    name = target;
  } else {
    if (data_format || chat_format) {
      return usage(
          "--data-format and --chat-format are for local files: the server reads a "
          "dataset as any training job would (with --model: in its chat format)");
    }
    if (!target.empty() && !absl::StartsWith(target, "ds-")) {
      *env.err << "verdict: " << target << ": no such file (and not a dataset id, which starts "
               << "with ds-)\n";
      return kExitError;
    }
    verdict::v1::InspectDatasetRequest request;
    if (data_path) {
      request.set_path(*data_path);
      name = *data_path;
    } else {
      request.set_dataset_id(target);
      name = "dataset " + target;
    }
    if (model) {
      absl::StatusOr<verdict::v1::ModelRef> ref = ParseModelRef(*model);
      if (!ref.ok()) return usage(absl::StrCat("--model: ", ref.status().message()));
      *request.mutable_model() = *ref;
    }
    if (max_length) request.set_max_length(static_cast<int32_t>(*max_length));
    request.set_max_invalid_lines(static_cast<int32_t>(max_invalid));
    int exit_code = kExitOk;
    std::unique_ptr<Connection> connection = Connect(env, &exit_code);
    if (connection == nullptr) return exit_code;
    std::unique_ptr<grpc::ClientContext> context = connection->NewContext();
    grpc::Status status = connection->datasets().InspectDataset(context.get(), request, &report);
    if (!status.ok()) return ReportRpcError(status, env.options.server, *env.err);
  }
  if (env.options.format() == OutputFormat::kJson) {
    *env.out << ToJson(report) << "\n";
  } else {
    PrintInspection(report, name, *env.out);
  }
  return InspectionIsClean(report, /*skip_invalid=*/false) ? kExitOk : kExitError;
}

int RunDatasetsDelete(const std::vector<std::string>& args, CommandEnv& env) {
  FlagParser flags("verdict datasets delete ID...",
                   "Deletes uploaded datasets and their files. A dataset that a queued or\n"
                   "running job reads is refused (the job is named).");
  std::vector<std::string> positional;
  if (auto exit = ParseCommandArgs(flags, args, env, 1, 1000, &positional)) return *exit;
  int exit_code = kExitOk;
  std::unique_ptr<Connection> connection = Connect(env, &exit_code);
  if (connection == nullptr) return exit_code;
  int result = kExitOk;
  for (const std::string& id : positional) {
    verdict::v1::DeleteDatasetRequest request;
    request.set_dataset_id(id);
    google::protobuf::Empty empty;
    std::unique_ptr<grpc::ClientContext> context = connection->NewContext();
    grpc::Status status = connection->datasets().DeleteDataset(context.get(), request, &empty);
    if (!status.ok()) {
      result = ReportRpcError(status, env.options.server, *env.err);
      if (result == kExitUnreachable) return result;
      continue;
    }
    *env.err << "deleted dataset " << id << "\n";
  }
  return result;
}

}  // namespace

int RunDatasets(const std::vector<std::string>& args, CommandEnv& env) {
  if (!args.empty() && args[0] == "inspect") {
    return RunDatasetsInspect({args.begin() + 1, args.end()}, env);
  }
  if (!args.empty() && args[0] == "delete") {
    return RunDatasetsDelete({args.begin() + 1, args.end()}, env);
  }
  const bool list_word = !args.empty() && args[0] == "list";
  FlagParser flags(
      "verdict datasets [list] [flags]",
      "Lists uploaded datasets, newest first. Also:\n"
      "  verdict datasets inspect ID|FILE   layout, pairs, invalid lines, token lengths\n"
      "  verdict datasets delete ID...      delete uploaded datasets");
  int64_t limit = 50;
  flags.AddInt("limit", &limit, "N", "At most N datasets (default 50; 0: all).");
  std::vector<std::string> positional;
  if (auto exit = ParseCommandArgs(
          flags, list_word ? std::vector<std::string>(args.begin() + 1, args.end()) : args, env, 0,
          0, &positional)) {
    return *exit;
  }
  if (limit < 0) {
    *env.err << "verdict: --limit: must be >= 0\n";
    return kExitUsage;
  }
  int exit_code = kExitOk;
  std::unique_ptr<Connection> connection = Connect(env, &exit_code);
  if (connection == nullptr) return exit_code;

  verdict::v1::ListDatasetsResponse all;
  verdict::v1::ListDatasetsRequest request;
  do {
    if (limit > 0) {
      request.set_page_size(
          static_cast<int32_t>(std::min<int64_t>(limit - all.datasets_size(), 1000)));
    }
    verdict::v1::ListDatasetsResponse page;
    std::unique_ptr<grpc::ClientContext> context = connection->NewContext();
    grpc::Status status = connection->datasets().ListDatasets(context.get(), request, &page);
    if (!status.ok()) return ReportRpcError(status, env.options.server, *env.err);
    for (auto& dataset : *page.mutable_datasets()) *all.add_datasets() = std::move(dataset);
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty() && (limit == 0 || all.datasets_size() < limit));

  if (env.options.format() == OutputFormat::kJson) {
    *env.out << ToJson(all) << "\n";
    return kExitOk;
  }
  if (all.datasets_size() == 0) {
    *env.out << "no datasets\n";
    return kExitOk;
  }
  TextTable table({"ID", "NAME", "PAIRS", "SIZE", "CREATED"});
  for (const auto& d : all.datasets()) {
    std::string pairs = absl::StrCat(d.pairs());
    if (d.invalid_lines() > 0) absl::StrAppend(&pairs, " (+", d.invalid_lines(), " invalid)");
    table.AddRow(
        {d.id(), d.name(), pairs, FormatBytes(d.size_bytes()), FormatTimestamp(d.create_time())});
  }
  *env.out << table.Render();
  return kExitOk;
}

int RunUpload(const std::vector<std::string>& args, CommandEnv& env) {
  FlagParser flags(
      "verdict upload FILE [flags]",
      "Uploads a preference file (JSON Lines or a JSON array, plain or gzip) and prints the\n"
      "dataset id (details go to stderr). The server checks every record, the size and the\n"
      "SHA-256.");
  std::string name;
  bool skip_invalid = false;
  flags.AddString("name", &name, "NAME", "Name shown in listings (default: the file's name).");
  flags.AddBool("skip-invalid", &skip_invalid,
                "Accept and count invalid lines instead of failing.");
  std::vector<std::string> positional;
  if (auto exit = ParseCommandArgs(flags, args, env, 1, 1, &positional)) return *exit;
  int exit_code = kExitOk;
  std::unique_ptr<Connection> connection = Connect(env, &exit_code);
  if (connection == nullptr) return exit_code;

  UploadOptions options;
  options.name = name;
  options.skip_invalid = skip_invalid;
  const bool show_progress = env.options.format() == OutputFormat::kText && isatty(STDERR_FILENO);
  if (show_progress) {
    options.on_progress = [&env](int64_t sent, int64_t total) {
      *env.err << "\ruploading " << FormatBytes(sent) << " / " << FormatBytes(total) << std::flush;
    };
  }
  absl::StatusOr<verdict::v1::Dataset> dataset =
      UploadDatasetFile(*connection, positional[0], options);
  if (show_progress) *env.err << "\r\033[K";
  if (!dataset.ok()) return ReportRpcError(dataset.status(), env.options.server, *env.err);
  if (env.options.format() == OutputFormat::kJson) {
    *env.out << ToJson(*dataset) << "\n";
    return kExitOk;
  }
  *env.err << "uploaded " << positional[0] << " as dataset " << dataset->id() << ": "
           << dataset->pairs() << " pairs, " << FormatBytes(dataset->size_bytes())
           << (dataset->gzip() ? " (gzip)" : "");
  if (dataset->invalid_lines() > 0)
    *env.err << ", " << dataset->invalid_lines() << " invalid lines";
  if (dataset->identical_pairs_dropped() > 0) {
    *env.err << ", " << dataset->identical_pairs_dropped() << " identical pairs";
  }
  *env.err << "\n";
  *env.out << dataset->id() << "\n";
  return kExitOk;
}

}  // namespace verdict::client
