// verdict eval: evaluates a registered model version on held-out preference pairs as a server
// job (TrainingService.EvaluateModel), optionally following it to its end.
#include <cmath>
#include <optional>
#include <ostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/commands/commands.h"
#include "client/dataset_upload.h"
#include "client/output.h"
#include "client/scoring.h"

namespace verdict::client {

// The table `verdict eval --watch` and `verdict get` readers want: the headline numbers, then
// calibration and subsets.
void PrintEvaluationResult(const verdict::v1::EvaluationResult& r, std::ostream& out) {
  out << absl::StrFormat("%s version %d on %s: accuracy %.4f (%d pairs", r.model_name(),
                         r.model_version(),
                         r.data_case() == verdict::v1::EvaluationResult::kDatasetId
                             ? absl::StrCat("dataset ", r.dataset_id())
                             : r.data_path(),
                         r.accuracy(), r.pairs());
  if (r.ties() > 0) out << ", " << r.ties() << " ties";
  if (r.too_long_pairs_dropped() > 0) out << ", " << r.too_long_pairs_dropped() << " too long";
  out << absl::StrFormat("), mean margin %.4f, reward mean %.4f std %.4f, loss %.4f\n",
                         r.mean_margin(), r.reward_mean(), r.reward_std(), r.loss());
  TextTable calibration({"|MARGIN|", "PAIRS", "ACCURACY"});
  for (const auto& b : r.calibration()) {
    calibration.AddRow({std::isinf(b.high()) ? absl::StrFormat(">= %g", b.low())
                                             : absl::StrFormat("[%g, %g)", b.low(), b.high()),
                        absl::StrCat(b.pairs()),
                        b.pairs() > 0 ? absl::StrFormat("%.4f", b.accuracy()) : "-"});
  }
  out << calibration.Render();
  if (r.subsets_size() > 0) {
    TextTable subsets({"SUBSET", "PAIRS", "ACCURACY"});
    for (const auto& s : r.subsets()) {
      subsets.AddRow({s.subset(), absl::StrCat(s.pairs()), absl::StrFormat("%.4f", s.accuracy())});
    }
    out << subsets.Render();
  }
}

int RunEval(const std::vector<std::string>& args, CommandEnv& env) {
  FlagParser flags(
      "verdict eval MODEL[:VERSION|:ALIAS] (--data FILE | --dataset ID | --data-path PATH) [flags]",
      "Evaluates a model version on held-out preference pairs as a server job (accuracy, mean\n"
      "margin, ties, reward mean/std, accuracy by margin bucket and by subset) and prints the\n"
      "job id. The result is stored with the version (see `verdict models`). Example:\n"
      "  verdict eval helpful-rm:3 --data test.jsonl.gz --watch");
  std::optional<std::string> data_file, dataset_id, data_path, request_id;
  int64_t max_pairs = 0, batch_size = 0;
  bool watch = false, no_progress = false;
  flags.AddString("data", &data_file, "FILE", "A local pairs file, uploaded first.");
  flags.AddString("dataset", &dataset_id, "ID", "A dataset uploaded earlier.");
  flags.AddString("data-path", &data_path, "PATH", "A file under the server's --data_dir.");
  flags.AddInt("max-pairs", &max_pairs, "N", "Only the first N pairs (default 0: all).");
  flags.AddInt("batch-size", &batch_size, "N", "Pairs per forward pass (default 16).");
  flags.AddString("request-id", &request_id, "ID", "Makes a retried submit return the same job.");
  flags.AddBool("watch", &watch, "Follow the job until it ends, then print the result.");
  flags.AddBool("no-progress", &no_progress, "With --watch: plain lines even on a terminal.");
  std::vector<std::string> positional;
  if (auto exit = ParseCommandArgs(flags, args, env, 1, 1, &positional)) return *exit;
  const int sources = (data_file ? 1 : 0) + (dataset_id ? 1 : 0) + (data_path ? 1 : 0);
  if (sources != 1) {
    *env.err << "verdict: give exactly one of --data, --dataset, --data-path\nUsage: "
             << flags.usage() << "\n";
    return kExitUsage;
  }
  verdict::v1::EvaluateModelRequest request;
  absl::StatusOr<verdict::v1::ModelRef> model = ParseModelRef(positional[0]);
  if (!model.ok()) {
    *env.err << "verdict: MODEL: " << model.status().message() << "\n";
    return kExitUsage;
  }
  *request.mutable_spec()->mutable_model() = *model;
  request.mutable_spec()->set_max_pairs(max_pairs);
  request.mutable_spec()->set_batch_size(static_cast<int32_t>(batch_size));
  if (dataset_id) request.mutable_spec()->mutable_data()->set_dataset_id(*dataset_id);
  if (data_path) request.mutable_spec()->mutable_data()->set_path(*data_path);
  if (request_id) request.set_request_id(*request_id);

  int exit_code = kExitOk;
  std::unique_ptr<Connection> connection = Connect(env, &exit_code);
  if (connection == nullptr) return exit_code;
  if (data_file) {
    absl::StatusOr<verdict::v1::Dataset> dataset =
        UploadDatasetFile(*connection, *data_file, UploadOptions{});
    if (!dataset.ok()) return ReportRpcError(dataset.status(), env.options.server, *env.err);
    *env.err << "uploaded " << *data_file << " as dataset " << dataset->id() << " ("
             << dataset->pairs() << " pairs)\n";
    request.mutable_spec()->mutable_data()->set_dataset_id(dataset->id());
  }
  verdict::v1::Job job;
  {
    std::unique_ptr<grpc::ClientContext> context = connection->NewContext();
    grpc::Status status = connection->training().EvaluateModel(context.get(), request, &job);
    if (!status.ok()) return ReportRpcError(status, env.options.server, *env.err);
  }
  if (env.options.format() == OutputFormat::kJson && !watch) {
    *env.out << ToJson(job) << "\n";
    return kExitOk;
  }
  *env.err << "submitted evaluation job " << job.id() << " (" << job.evaluation_spec().model().name()
           << " version " << job.evaluation_spec().model().version() << ")\n";
  if (!watch) {
    *env.out << job.id() << "\n";
    return kExitOk;
  }
  WatchArgs watch_args;
  watch_args.progress_bar = !no_progress;
  const int watched = WatchJob(*connection, job.id(), watch_args, env);
  if (watched != kExitOk) return watched;
  verdict::v1::GetJobRequest get;
  get.set_job_id(job.id());
  std::unique_ptr<grpc::ClientContext> context = connection->NewContext();
  grpc::Status status = connection->training().GetJob(context.get(), get, &job);
  if (!status.ok()) return ReportRpcError(status, env.options.server, *env.err);
  if (env.options.format() == OutputFormat::kJson) {
    *env.out << ToJson(job.evaluation_result()) << "\n";
  } else {
    PrintEvaluationResult(job.evaluation_result(), *env.out);
  }
  return kExitOk;
}

}  // namespace verdict::client
