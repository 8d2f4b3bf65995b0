// verdict jobs / get / cancel.
#include <ostream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/commands/commands.h"
#include "client/output.h"
#include "client/scoring.h"

namespace verdict::client {
namespace {

using verdict::v1::Job;

std::string Progress(const Job& job) {
  const auto& p = job.progress();
  if (p.total_steps() > 0) return absl::StrCat(p.step(), "/", p.total_steps());
  if (job.state() == verdict::v1::JOB_STATE_RUNNING)
    return absl::AsciiStrToLower(PhaseName(p.phase()));
  return "-";
}

std::string ModelColumn(const Job& job) {
  if (job.has_result_model()) return ModelRefToString(job.result_model());
  return job.spec().output_model_name();
}

std::string BaseText(const verdict::v1::TrainingJobSpec& spec) {
  switch (spec.base_case()) {
    case verdict::v1::TrainingJobSpec::kBaseModel:
      return absl::StrCat("base model ", spec.base_model());
    case verdict::v1::TrainingJobSpec::kPreset:
      return absl::StrCat("preset ", spec.preset());
    case verdict::v1::TrainingJobSpec::kRegisteredModel:
      return absl::StrCat("registered model ", ModelRefToString(spec.registered_model()));
    default:
      return "-";
  }
}

std::string DataText(const verdict::v1::DatasetRef& data) {
  switch (data.source_case()) {
    case verdict::v1::DatasetRef::kDatasetId:
      return absl::StrCat("dataset ", data.dataset_id());
    case verdict::v1::DatasetRef::kPath:
      return absl::StrCat("path ", data.path());
    default:
      return "-";
  }
}

std::string DescribeJob(const Job& job) {
  const auto& p = job.progress();
  std::string text;
  auto row = [&text](absl::string_view key, absl::string_view value) {
    absl::StrAppend(&text, absl::StrFormat("%-11s %s\n", absl::StrCat(key, ":"), value));
  };
  row("job", job.id());
  std::string state = JobStateName(job.state());
  if (job.state() == verdict::v1::JOB_STATE_RUNNING) {
    absl::StrAppend(&state, " (", absl::AsciiStrToLower(PhaseName(p.phase())), ")");
  }
  if (job.state() == verdict::v1::JOB_STATE_QUEUED) {
    absl::StrAppend(&state, " (", job.queue_position(), " ahead)");
  }
  row("state", state);
  if (!job.request_id().empty()) row("request id", job.request_id());
  row("model", job.has_result_model()
                   ? ModelRefToString(job.result_model())
                   : absl::StrCat(job.spec().output_model_name(), " (not yet registered)"));
  row("base", BaseText(job.spec()));
  row("data", DataText(job.spec().train_data()));
  if (job.spec().eval().has_dataset()) row("eval data", DataText(job.spec().eval().dataset()));
  row("device", job.spec().device());
  if (p.total_steps() > 0) {
    row("progress",
        absl::StrFormat("step %d/%d, epoch %.2f", p.step(), p.total_steps(), p.epoch()));
  }
  if (p.train_pairs() > 0) {
    std::string pairs = absl::StrCat(p.train_pairs(), " train, ", p.eval_pairs(), " eval");
    if (p.invalid_lines() > 0) absl::StrAppend(&pairs, ", ", p.invalid_lines(), " invalid lines");
    if (p.identical_pairs_dropped() > 0) {
      absl::StrAppend(&pairs, ", ", p.identical_pairs_dropped(), " identical dropped");
    }
    if (p.too_long_pairs_dropped() > 0) {
      absl::StrAppend(&pairs, ", ", p.too_long_pairs_dropped(), " too long dropped");
    }
    if (p.truncated_pairs() > 0) absl::StrAppend(&pairs, ", ", p.truncated_pairs(), " truncated");
    row("pairs", pairs);
  }
  if (p.has_last_train_metrics()) {
    const auto& m = p.last_train_metrics();
    row("train", absl::StrFormat("loss %.4f, accuracy %.3f, margin %.3f, %.1f pairs/s", m.loss(),
                                 m.accuracy(), m.margin(), m.pairs_per_second()));
  }
  if (p.has_last_eval_metrics()) {
    const auto& m = p.last_eval_metrics();
    row("eval", absl::StrFormat("loss %.4f, accuracy %.3f, margin %.3f (%d pairs)", m.loss(),
                                m.accuracy(), m.margin(), m.pairs()));
  }
  row("created", FormatTimestamp(job.create_time()));
  if (job.has_start_time()) row("started", FormatTimestamp(job.start_time()));
  if (job.has_end_time()) row("ended", FormatTimestamp(job.end_time()));
  if (p.has_elapsed()) row("elapsed", FormatDuration(p.elapsed()));
  if (p.has_estimated_remaining()) row("remaining", FormatDuration(p.estimated_remaining()));
  if (job.attempt() > 1) {
    row("attempt",
        absl::StrCat(job.attempt(), " (resumed from step ", job.resumed_from_step(), ")"));
  }
  if (job.error_code() != 0 || !job.error_message().empty()) {
    row("error", absl::StrCat(StatusCodeName(static_cast<grpc::StatusCode>(job.error_code())), ": ",
                              job.error_message()));
  }
  return text;
}

absl::StatusOr<std::vector<verdict::v1::JobState>> ParseStates(absl::string_view text) {
  std::vector<verdict::v1::JobState> states;
  for (absl::string_view piece : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    std::string name = absl::AsciiStrToUpper(absl::StripAsciiWhitespace(piece));
    if (!absl::StartsWith(name, "JOB_STATE_")) name = absl::StrCat("JOB_STATE_", name);
    verdict::v1::JobState state;
    if (!verdict::v1::JobState_Parse(name, &state) || state == verdict::v1::JOB_STATE_UNSPECIFIED) {
      return absl::InvalidArgumentError(
          absl::StrCat("--state: unknown state '", piece,
                       "' (queued, running, cancelling, succeeded, failed, cancelled)"));
    }
    states.push_back(state);
  }
  return states;
}

}  // namespace

int RunJobs(const std::vector<std::string>& args, CommandEnv& env) {
  FlagParser flags("verdict jobs [flags]", "Lists training jobs, newest first.");
  std::string states_text, model;
  int64_t limit = 50;
  flags.AddString("state", &states_text, "S[,S...]",
                  "Only jobs in these states (queued, running, cancelling, succeeded,\n"
                  "failed, cancelled).");
  flags.AddString("model", &model, "NAME", "Only jobs whose output model is NAME.");
  flags.AddInt("limit", &limit, "N", "At most N jobs (default 50; 0: all).");
  std::vector<std::string> positional;
  if (auto exit = ParseCommandArgs(flags, args, env, 0, 0, &positional)) return *exit;
  absl::StatusOr<std::vector<verdict::v1::JobState>> states = ParseStates(states_text);
  if (!states.ok() || limit < 0) {
    *env.err << "verdict: " << (states.ok() ? "--limit: must be >= 0" : states.status().message())
             << "\n";
    return kExitUsage;
  }
  int exit_code = kExitOk;
  std::unique_ptr<Connection> connection = Connect(env, &exit_code);
  if (connection == nullptr) return exit_code;

  verdict::v1::ListJobsResponse all;
  verdict::v1::ListJobsRequest request;
  for (auto state : *states) request.add_states(state);
  request.set_output_model_name(model);
  do {
    if (limit > 0)
      request.set_page_size(static_cast<int32_t>(std::min<int64_t>(limit - all.jobs_size(), 1000)));
    verdict::v1::ListJobsResponse page;
    std::unique_ptr<grpc::ClientContext> context = connection->NewContext();
    grpc::Status status = connection->training().ListJobs(context.get(), request, &page);
    if (!status.ok()) return ReportRpcError(status, env.options.server, *env.err);
    for (auto& job : *page.mutable_jobs()) *all.add_jobs() = std::move(job);
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty() && (limit == 0 || all.jobs_size() < limit));

  if (env.options.format() == OutputFormat::kJson) {
    *env.out << ToJson(all) << "\n";
    return kExitOk;
  }
  if (all.jobs_size() == 0) {
    *env.out << "no jobs\n";
    return kExitOk;
  }
  TextTable table({"ID", "STATE", "STEP", "MODEL", "EVAL ACC", "CREATED"});
  for (const Job& job : all.jobs()) {
    table.AddRow({job.id(), JobStateName(job.state()), Progress(job), ModelColumn(job),
                  job.progress().has_last_eval_metrics()
                      ? absl::StrFormat("%.3f", job.progress().last_eval_metrics().accuracy())
                      : "-",
                  FormatTimestamp(job.create_time())});
  }
  *env.out << table.Render();
  return kExitOk;
}

int RunGet(const std::vector<std::string>& args, CommandEnv& env) {
  FlagParser flags("verdict get JOB [flags]",
                   "Shows one job: state, progress, latest metrics, result or error.");
  std::vector<std::string> positional;
  if (auto exit = ParseCommandArgs(flags, args, env, 1, 1, &positional)) return *exit;
  int exit_code = kExitOk;
  std::unique_ptr<Connection> connection = Connect(env, &exit_code);
  if (connection == nullptr) return exit_code;
  verdict::v1::GetJobRequest request;
  request.set_job_id(positional[0]);
  Job job;
  std::unique_ptr<grpc::ClientContext> context = connection->NewContext();
  grpc::Status status = connection->training().GetJob(context.get(), request, &job);
  if (!status.ok()) return ReportRpcError(status, env.options.server, *env.err);
  *env.out << (env.options.format() == OutputFormat::kJson ? ToJson(job) + "\n" : DescribeJob(job));
  return kExitOk;
}

int RunCancel(const std::vector<std::string>& args, CommandEnv& env) {
  FlagParser flags("verdict cancel JOB [flags]",
                   "Asks a job to stop. A queued job is cancelled at once; a running one stops at\n"
                   "its next micro-batch (watch it to see it end). Nothing is registered.");
  std::string reason;
  flags.AddString("reason", &reason, "TEXT", "Why, recorded in the job's events.");
  std::vector<std::string> positional;
  if (auto exit = ParseCommandArgs(flags, args, env, 1, 1, &positional)) return *exit;
  int exit_code = kExitOk;
  std::unique_ptr<Connection> connection = Connect(env, &exit_code);
  if (connection == nullptr) return exit_code;
  verdict::v1::CancelJobRequest request;
  request.set_job_id(positional[0]);
  request.set_reason(reason);
  Job job;
  std::unique_ptr<grpc::ClientContext> context = connection->NewContext();
  grpc::Status status = connection->training().CancelJob(context.get(), request, &job);
  if (!status.ok()) return ReportRpcError(status, env.options.server, *env.err);
  if (env.options.format() == OutputFormat::kJson) {
    *env.out << ToJson(job) << "\n";
  } else {
    *env.out << "job " << job.id() << " " << JobStateName(job.state()) << "\n";
  }
  return kExitOk;
}

}  // namespace verdict::client
