// verdict datasets / upload.
#include <unistd.h>

#include <algorithm>
#include <ostream>

#include "absl/strings/str_cat.h"
#include "client/commands/commands.h"
#include "client/dataset_upload.h"
#include "client/output.h"

namespace verdict::client {

int RunDatasets(const std::vector<std::string>& args, CommandEnv& env) {
  FlagParser flags("verdict datasets [flags]", "Lists uploaded datasets, newest first.");
  int64_t limit = 50;
  flags.AddInt("limit", &limit, "N", "At most N datasets (default 50; 0: all).");
  std::vector<std::string> positional;
  if (auto exit = ParseCommandArgs(flags, args, env, 0, 0, &positional)) return *exit;
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
