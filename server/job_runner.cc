#include "server/job_runner.h"

#include <algorithm>
#include <filesystem>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/model/model_config.h"
#include "core/data/preference_reader.h"
#include "core/score/scoring_model.h"
#include "core/train/checkpoint.h"
#include "core/train/pair_evaluation.h"
#include "core/train/trainer.h"
#include "core/util/cancellable.h"
#include "core/util/compute_priority.h"
#include "core/util/crash_point.h"
#include "core/util/status_macros.h"
#include "server/logging.h"
#include "server/proto_conversion.h"
#include "server/proto_time.h"
#include "server/rank_group.h"
#include "server/server_metrics.h"

namespace verdict::server {
namespace {

namespace fs = std::filesystem;

// Attempts a data-parallel job gets when a rank dies (killed from outside): each resumes from
// the last checkpoint; the last one's failure fails the job.
constexpr int64_t kMaxRankGroupAttempts = 3;

// The registry entry for a trained model in `output_dir`.
absl::StatusOr<v1::Model> DescribeModel(const ServerConfig& config, const v1::Job& job,
                                        const std::string& output_dir, int64_t parameters,
                                        double reward_mean, double reward_std, int64_t eval_pairs) {
  ASSIGN_OR_RETURN(ModelConfig model_config, ReadModelDirectoryConfig(output_dir));
  v1::Model model;
  model.set_name(job.spec().output_model_name());
  DescribeArchitecture(model_config, &model);
  model.set_parameter_count(parameters);
  model.set_max_length(job.spec().hyperparameters().max_length());
  model.set_truncation(job.spec().hyperparameters().truncation());
  model.set_chat_format(job.spec().data_options().chat_format());
  model.set_input_rule(job.spec().data_options().input_rule());
  model.set_training_job_id(job.id());
  SetTimestamp(absl::Now(), model.mutable_create_time());
  model.mutable_reward_stats()->set_mean(reward_mean);
  model.mutable_reward_stats()->set_std(reward_std);
  model.mutable_reward_stats()->set_count(2 * eval_pairs);  // both responses of each pair
  int64_t size = 0;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(output_dir, error)) {
    if (entry.is_regular_file()) size += static_cast<int64_t>(entry.file_size());
  }
  if (error) {
    return absl::InternalError(absl::StrCat("cannot list ", output_dir, ": ", error.message()));
  }
  model.set_size_bytes(size);
  model.set_storage_path(fs::relative(output_dir, config.state_dir).string());
  return model;
}

}  // namespace

JobRunner::JobRunner(Dependencies dependencies, std::string job_id)
    : deps_(std::move(dependencies)), job_id_(std::move(job_id)) {}

void JobRunner::ApplyStateRules(v1::JobState to, v1::Job& job) {
  if (to != v1::JOB_STATE_RUNNING && to != v1::JOB_STATE_CANCELLING) {
    // Not running any more: no phase, no time left to estimate.
    job.mutable_progress()->set_phase(v1::TRAINING_PHASE_UNSPECIFIED);
    job.mutable_progress()->clear_estimated_remaining();
  }
  if (IsTerminal(to) && !job.has_end_time()) SetTimestamp(absl::Now(), job.mutable_end_time());
}

std::string JobRunner::RunDirectory(const ServerConfig& config, const std::string& job_id) {
  return (fs::path(config.state_dir) / "runs" / job_id).string();
}

std::string JobRunner::CompletingDirectory(const ServerConfig& config, const std::string& job_id) {
  return RunDirectory(config, job_id) + ".completing";
}

void JobRunner::Run() {
  if (!Start()) return;
  if (job_.has_evaluation_spec()) {
    Evaluate();
    return;
  }
  // A data-parallel attempt whose rank died goes back to QUEUED and resumes here, on the same
  // worker, from its checkpoint (a drain meanwhile leaves it QUEUED for the next start).
  while (Train()) {
    if (deps_.host->InterruptedForDrain(job_id_) || !Start()) return;
  }
}

bool JobRunner::Start() {
  // The checkpoint to resume from is read before the job is claimed; a cancel that wins the
  // race below removes the directory, and this runner then does nothing with it.
  const std::vector<int64_t> checkpoints = ListCheckpoints(RunDirectory(*deps_.config, job_id_));
  const int64_t resume_step = checkpoints.empty() ? 0 : checkpoints.back();
  auto started = deps_.host->ChangeState(
      job_id_, {v1::JOB_STATE_QUEUED}, v1::JOB_STATE_RUNNING,
      resume_step > 0 ? absl::StrCat("resuming from step ", resume_step) : "started",
      [resume_step](v1::Job& job) {
        job.set_resumed_from_step(resume_step);
        job.set_attempt(job.attempt() + 1);
        job.mutable_progress()->set_step(resume_step);
        job.mutable_progress()->set_phase(v1::TRAINING_PHASE_PREPARING);
        if (!job.has_start_time()) SetTimestamp(absl::Now(), job.mutable_start_time());
      });
  if (absl::IsFailedPrecondition(started.status())) return false;  // cancelled while queued
  if (!started.ok()) {
    LogStoreFailure("start", started.status());
    Fail(started.status());
    return false;
  }
  job_ = *std::move(started);
  started_ = true;
  // A resumed run replays its steps after the checkpoint: drop their old events.
  if (auto deleted = deps_.store->DeleteEventsAfterStep(job_id_, resume_step); !deleted.ok()) {
    Fail(deleted.status());
    return false;
  }
  return true;
}

bool JobRunner::Train() {
  const std::string run_dir = RunDirectory(*deps_.config, job_id_);
  const std::string output_dir =
      (fs::path(deps_.config->state_dir) / "models" / job_.spec().output_model_name() / job_id_)
          .string();
  absl::StatusOr<TrainingConfig> config =
      ToTrainingConfig(*deps_.config, *deps_.resolvers, job_.spec(), run_dir, output_dir);
  if (!config.ok()) {
    Fail(config.status());
    return false;
  }
  CrashPoint("preparing");

  TrainerCallbacks callbacks;
  int64_t parameters = 0;
  callbacks.on_start = [&](const DataSummary& s) {
    parameters = s.parameters;
    v1::JobProgress* p = job_.mutable_progress();
    p->set_phase(v1::TRAINING_PHASE_TRAINING);
    p->set_total_steps(s.total_steps);
    p->set_train_pairs(s.train_pairs);
    p->set_eval_pairs(s.eval_pairs);
    p->set_invalid_lines(s.invalid_lines);
    p->set_identical_pairs_dropped(s.identical_dropped);
    p->set_too_long_pairs_dropped(s.too_long_dropped);
    p->set_truncated_pairs(s.truncated);
    SaveProgress();
  };
  const int64_t logging_steps = std::max<int64_t>(1, config->logging_steps);
  callbacks.on_step = [&](const TrainStepMetrics& m) {
    v1::MetricsEvent event;
    event.set_step(m.step);
    ToProto(m, event.mutable_train());
    v1::JobProgress* p = job_.mutable_progress();
    p->set_step(m.step);
    p->set_total_steps(m.total_steps);
    p->set_epoch(m.epoch);
    *p->mutable_last_train_metrics() = event.train();
    SetDuration(absl::Now() - FromTimestamp(job_.start_time()), p->mutable_elapsed());
    if (m.pairs_per_second > 0 && m.total_steps > m.step && m.pairs > 0) {
      const double seconds_per_step =
          m.pairs / m.pairs_per_second / static_cast<double>(logging_steps);
      SetDuration(absl::Seconds(seconds_per_step * (m.total_steps - m.step)),
                  p->mutable_estimated_remaining());
    }
    SaveProgress();
    EmitOrLog(event);
    if (deps_.metrics) {
      TrainingStepMetrics metric;
      metric.step = m.step;
      metric.epoch = m.epoch;
      metric.loss = m.loss;
      metric.accuracy = m.accuracy;
      metric.pairs_per_second = m.pairs_per_second;
      metric.tokens_per_second = m.tokens_per_second;
      deps_.metrics->RecordTrainingStep(job_id_, metric);
    }
  };
  callbacks.on_eval = [&](const EvalMetrics& m) {
    v1::MetricsEvent event;
    event.set_step(m.step);
    ToProto(m, event.mutable_eval());
    *job_.mutable_progress()->mutable_last_eval_metrics() = event.eval();
    SaveProgress();
    EmitOrLog(event);
    if (deps_.metrics) deps_.metrics->RecordTrainingEval(job_id_, m.accuracy);
  };
  callbacks.on_log = [&](const std::string& line) {
    v1::MetricsEvent event;
    event.set_step(job_.progress().step());
    event.mutable_log()->set_level(v1::LogLine::LEVEL_INFO);
    event.mutable_log()->set_text(line);
    EmitOrLog(event);
    if (deps_.logger) deps_.logger->Info("job.log").With("job_id", job_id_).With("text", line);
  };
  absl::Time checkpoint_started = absl::InfinitePast();
  if (deps_.priority != nullptr && deps_.config->training_yield > absl::ZeroDuration()) {
    callbacks.before_micro_batch = [priority = deps_.priority,
                                    max_wait = deps_.config->training_yield] {
      priority->YieldToScoring(max_wait);
    };
  }
  callbacks.on_checkpoint_started = [&](int64_t) { checkpoint_started = absl::Now(); };
  callbacks.on_checkpoint = [&](int64_t, const std::string&) {
    if (deps_.metrics && checkpoint_started != absl::InfinitePast()) {
      deps_.metrics->RecordCheckpoint(absl::Now() - checkpoint_started);
    }
    checkpoint_started = absl::InfinitePast();
  };

  absl::StatusOr<TrainingResult> result;
  if (config->world_size > 1) {
    // verdict-train processes, one per rank (rank_group.h); rank 0's progress arrives through
    // the same callbacks.
    Cancellable cancel;
    if (deps_.host->AttachTrainer(job_id_, &cancel)) cancel.Cancel();
    RankGroupOptions options;
    options.binary = deps_.config->train_worker_binary.empty() ? TrainWorkerBesideSelf()
                                                               : deps_.config->train_worker_binary;
    options.grace = deps_.config->drain_grace;
    result = RunRankGroup(*config, options, callbacks, cancel);
    deps_.host->DetachTrainer(job_id_);
  } else {
    absl::StatusOr<std::unique_ptr<Trainer>> trainer = Trainer::Create(*config, callbacks);
    if (!trainer.ok()) {
      Fail(trainer.status());
      return false;
    }
    // A cancel or drain that arrived while the job was being prepared.
    if (deps_.host->AttachTrainer(job_id_, trainer->get())) (*trainer)->Cancel();
    result = (*trainer)->Run();
    deps_.host->DetachTrainer(job_id_);
  }

  if (result.ok()) {
    FinishSucceeded(result->output_dir, parameters, result->reward_mean, result->reward_std,
                    result->final_eval.pairs);
  } else if (absl::IsCancelled(result.status())) {
    FinishInterrupted(result.status());
  } else if (absl::IsUnavailable(result.status()) && config->world_size > 1 &&
             job_.attempt() < kMaxRankGroupAttempts) {
    return RequeueAfterRankFailure(result.status());
  } else {
    Fail(result.status());
  }
  return false;
}

bool JobRunner::RequeueAfterRankFailure(const absl::Status& error) {
  auto requeued = deps_.host->ChangeState(
      job_id_, {v1::JOB_STATE_RUNNING}, v1::JOB_STATE_QUEUED,
      absl::StrCat(error.message(), "; attempt ", job_.attempt(), " of ", kMaxRankGroupAttempts,
                   " failed, resuming from the last checkpoint"),
      [](v1::Job& job) { ApplyStateRules(v1::JOB_STATE_QUEUED, job); });
  if (absl::IsFailedPrecondition(requeued.status())) {
    // A cancel came meanwhile (CANCELLING): it wins.
    FinishInterrupted(absl::CancelledError(error.message()));
    return false;
  }
  if (!requeued.ok()) {
    // Still RUNNING in the store: recovery re-queues it at the next start.
    LogStoreFailure("requeue", requeued.status());
    RecordEnd(v1::JOB_STATE_UNSPECIFIED);
    return false;
  }
  job_ = *std::move(requeued);
  if (deps_.logger) {
    deps_.logger->Warning("job.rank_failed").With("job_id", job_id_).With("error", error);
  }
  RecordEnd(v1::JOB_STATE_QUEUED);
  return true;
}

absl::StatusOr<v1::EvaluationResult> JobRunner::RunEvaluation(Cancellable& cancel) {
  const v1::EvaluationJobSpec& spec = job_.evaluation_spec();
  ASSIGN_OR_RETURN(const auto model_dir, deps_.resolvers->registered_model(spec.model()));
  ASSIGN_OR_RETURN(const std::string data_file,
                   EvaluationDataFile(*deps_.config, *deps_.resolvers, spec));
  ModelOptions options;
  options.device = deps_.config->default_device;
  // The job's own copy of the version: the scoring registry's memory budget and LRU stay
  // as they are, and the copy is freed when the job ends.
  ASSIGN_OR_RETURN(std::shared_ptr<ScoringModel> model,
                   ScoringModel::Load(model_dir.first, options));
  PreferenceReaderOptions read_options;
  read_options.chat_format = model->settings().chat_format;
  ASSIGN_OR_RETURN(PreferenceData data, ReadPreferenceFile(data_file, read_options));
  if (spec.max_pairs() > 0 && data.pairs.size() > static_cast<size_t>(spec.max_pairs())) {
    data.pairs.resize(spec.max_pairs());
  }
  std::vector<EncodedPair> encoded;
  std::vector<std::string> subsets;
  int64_t too_long = 0;
  for (const PreferencePair& pair : data.pairs) {
    const TextOrigin origin = pair.conversational ? TextOrigin::kRendered : TextOrigin::kPlain;
    auto chosen = model->EncodePairSide(pair.prompt, pair.chosen, origin);
    auto rejected = model->EncodePairSide(pair.prompt, pair.rejected, origin);
    if (!chosen.ok() || !rejected.ok()) {
      const absl::Status& status = chosen.ok() ? rejected.status() : chosen.status();
      if (absl::IsOutOfRange(status)) {  // too long under truncation "drop", as training
        ++too_long;
        continue;
      }
      return absl::InvalidArgumentError(
          absl::StrCat(data_file, ":", pair.line, ": ", status.message()));
    }
    EncodedPair e;
    e.chosen = std::move(chosen->ids);
    e.rejected = std::move(rejected->ids);
    e.margin = static_cast<float>(pair.margin.value_or(0.0));
    encoded.push_back(std::move(e));
    subsets.push_back(pair.subset);
  }
  if (encoded.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.data: no pair to evaluate in ", data_file,
        too_long > 0 ? absl::StrCat(" (", too_long, " dropped as too long)") : std::string()));
  }

  v1::JobProgress* progress = job_.mutable_progress();
  progress->set_phase(v1::TRAINING_PHASE_EVALUATING);
  progress->set_total_steps(static_cast<int64_t>(encoded.size()));
  progress->set_eval_pairs(static_cast<int64_t>(encoded.size()));
  progress->set_invalid_lines(data.stats.invalid_lines);
  progress->set_identical_pairs_dropped(data.stats.identical_dropped);
  progress->set_too_long_pairs_dropped(too_long);
  SaveProgress();
  {
    v1::MetricsEvent event;
    event.mutable_log()->set_level(v1::LogLine::LEVEL_INFO);
    event.mutable_log()->set_text(absl::StrCat("evaluating ", spec.model().name(), " version ",
                                               spec.model().version(), " on ", encoded.size(),
                                               " pairs"));
    EmitOrLog(event);
  }

  const absl::Time start = absl::Now();
  PairEvalOptions eval_options;
  eval_options.batch_size = spec.batch_size() > 0 ? spec.batch_size() : 16;
  eval_options.pad_id = model->pad_id();
  eval_options.cancelled = [&cancel] { return cancel.cancelled(); };
  eval_options.on_progress = [&](int64_t done, int64_t total) {
    progress->set_step(done);
    SetDuration(absl::Now() - start, progress->mutable_elapsed());
    if (done < total) {
      SetDuration((absl::Now() - start) * (static_cast<double>(total - done) / done),
                  progress->mutable_estimated_remaining());
    }
    SaveProgress();
  };
  ASSIGN_OR_RETURN(PairScores scores,
                   ScoreEncodedPairs(model->reward_model(), model->torch_device(), encoded,
                                     eval_options));
  const PairEvalReport report = DescribePairScores(scores, subsets);

  v1::EvaluationResult result;
  result.set_model_name(spec.model().name());
  result.set_model_version(spec.model().version());
  if (spec.data().source_case() == v1::DatasetRef::kDatasetId) {
    result.set_dataset_id(spec.data().dataset_id());
  } else {
    result.set_data_path(spec.data().path());
  }
  result.set_job_id(job_id_);
  SetTimestamp(absl::Now(), result.mutable_create_time());
  result.set_pairs(report.metrics.pairs);
  result.set_too_long_pairs_dropped(too_long);
  result.set_accuracy(report.metrics.accuracy);
  result.set_mean_margin(report.metrics.margin);
  result.set_ties(report.ties);
  result.set_reward_mean(report.metrics.reward_mean);
  result.set_reward_std(report.metrics.reward_std);
  result.set_loss(report.metrics.loss);
  for (const MarginBucket& b : report.calibration) {
    auto* out = result.add_calibration();
    out->set_low(b.low);
    out->set_high(b.high);
    out->set_pairs(b.pairs);
    out->set_accuracy(b.accuracy);
  }
  for (const SubsetAccuracy& subset : report.subsets) {
    auto* out = result.add_subsets();
    out->set_subset(subset.subset);
    out->set_pairs(subset.pairs);
    out->set_accuracy(subset.accuracy);
  }

  // The same eval event a training job's evaluation produces, so watchers show the result.
  EvalMetrics metrics = report.metrics;
  metrics.step = static_cast<int64_t>(encoded.size());
  metrics.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  v1::MetricsEvent event;
  event.set_step(metrics.step);
  ToProto(metrics, event.mutable_eval());
  *progress->mutable_last_eval_metrics() = event.eval();
  SaveProgress();
  EmitOrLog(event);
  return result;
}

void JobRunner::Evaluate() {
  Cancellable cancel;
  // A cancel or drain that arrived while the job was being started.
  if (deps_.host->AttachTrainer(job_id_, &cancel)) cancel.Cancel();
  absl::StatusOr<v1::EvaluationResult> result = RunEvaluation(cancel);
  deps_.host->DetachTrainer(job_id_);
  if (!result.ok()) {
    if (absl::IsCancelled(result.status())) {
      FinishInterrupted(result.status());
    } else {
      Fail(result.status());
    }
    return;
  }
  if (deps_.metrics) deps_.metrics->RecordJobStateChange("RUNNING", "SUCCEEDED");
  absl::StatusOr<v1::Job> completed;
  const absl::Status recorded = deps_.host->TransitionRecorded(
      job_id_,
      [&](const v1::Job& job) {
        v1::MetricsEvent event;
        event.set_step(job.progress().step());
        event.mutable_state_change()->set_from_state(v1::JOB_STATE_RUNNING);
        event.mutable_state_change()->set_to_state(v1::JOB_STATE_SUCCEEDED);
        event.mutable_state_change()->set_message(absl::StrFormat(
            "evaluated %s version %d: accuracy %.4f on %d pairs", result->model_name(),
            result->model_version(), result->accuracy(), result->pairs()));
        return event;
      },
      [&](const TransitionEvent& event) {
        completed = deps_.store->CompleteEvaluationJob(
            job_id_, *result,
            [](v1::Job& job) { ApplyStateRules(v1::JOB_STATE_SUCCEEDED, job); }, event);
        return completed.status();
      });
  if (!recorded.ok()) {
    if (deps_.metrics) deps_.metrics->RecordJobStateChange("SUCCEEDED", "RUNNING");
    LogStoreFailure("complete", recorded);
    Fail(recorded);
    return;
  }
  job_ = *std::move(completed);
  if (deps_.logger) {
    deps_.logger->Info("job.state")
        .With("job_id", job_id_)
        .With("to", "SUCCEEDED")
        .With("model", result->model_name())
        .With("version", result->model_version())
        .With("accuracy", result->accuracy());
  }
  RemoveRunDirectory();
  RecordEnd(v1::JOB_STATE_SUCCEEDED);
}

void JobRunner::FinishSucceeded(const std::string& output_dir, int64_t parameters,
                                double reward_mean, double reward_std, int64_t eval_pairs) {
  job_.mutable_progress()->set_phase(v1::TRAINING_PHASE_SAVING);
  SaveProgress();
  absl::StatusOr<v1::Model> model = DescribeModel(*deps_.config, job_, output_dir, parameters,
                                                  reward_mean, reward_std, eval_pairs);
  if (!model.ok()) {
    Fail(model.status());
    return;
  }
  // The checkpoints leave the run directory before the terminal state is visible (whoever sees
  // it sees them gone) but are kept, set aside, until the job is SUCCEEDED and its history says
  // so. After a crash, JobManager::Recover puts them back if the completion did not commit (the
  // job resumes from the last checkpoint, which records the final eval: no training, no eval,
  // and the model directory, written whole, is kept as it is), or else records the SUCCEEDED
  // event if it is missing and removes them.
  std::error_code error;
  fs::rename(RunDirectory(*deps_.config, job_id_), CompletingDirectory(*deps_.config, job_id_),
             error);
  if (error) {
    Fail(absl::InternalError(absl::StrCat("cannot set the checkpoints of job ", job_id_,
                                          " aside: ", error.message())));
    return;
  }
  CrashPoint("before_complete");
  // The jobs-by-state gauge moves before the new state is visible (as in ChangeState).
  if (deps_.metrics) deps_.metrics->RecordJobStateChange("RUNNING", "SUCCEEDED");
  absl::StatusOr<CompletedJob> completed;
  v1::JobState from_state = v1::JOB_STATE_RUNNING;
  const absl::Status recorded = deps_.host->TransitionRecorded(
      job_id_,
      [&](const v1::Job& job) {
        v1::MetricsEvent event;
        event.set_step(job.progress().step());
        event.mutable_state_change()->set_from_state(from_state);
        event.mutable_state_change()->set_to_state(v1::JOB_STATE_SUCCEEDED);
        event.mutable_state_change()->set_message(
            absl::StrCat("registered ", job.result_model().name(), " version ",
                         job.result_model().version()));
        return event;
      },
      [&](const TransitionEvent& event) {
        completed = deps_.store->CompleteJobWithModel(
            job_id_, *model,
            [&](v1::Job& job) {
              from_state = job.state();  // RUNNING, or CANCELLING if a cancel came after the end
              ApplyStateRules(v1::JOB_STATE_SUCCEEDED, job);
            },
            event);
        return completed.status();
      });
  if (!recorded.ok()) {
    if (deps_.metrics) deps_.metrics->RecordJobStateChange("SUCCEEDED", "RUNNING");
    // Nothing was registered (one transaction); the job is failed if the store lets us (Fail
    // removes the checkpoints), else it stays RUNNING and the next start resumes it.
    LogStoreFailure("complete", recorded);
    Fail(recorded);
    return;
  }
  CrashPoint("after_complete");
  job_ = completed->job;
  if (deps_.metrics && completed->from_state != v1::JOB_STATE_RUNNING) {
    // A cancel came after the last step: it was CANCELLING, not RUNNING, that ended.
    deps_.metrics->RecordJobStateChange(JobStateName(completed->from_state), "RUNNING");
  }
  if (deps_.logger) {
    deps_.logger->Info("job.state")
        .With("job_id", job_id_)
        .With("to", "SUCCEEDED")
        .With("model", completed->model.name())
        .With("version", completed->model.version());
  }
  RemoveRunDirectory();
  RecordEnd(v1::JOB_STATE_SUCCEEDED);
}

void JobRunner::FinishInterrupted(const absl::Status& cancelled) {
  if (deps_.host->InterruptedForDrain(job_id_)) {
    // Server shutdown: back to the queue with the checkpoint, unless the user cancelled too.
    auto requeued =
        deps_.host->ChangeState(job_id_, {v1::JOB_STATE_RUNNING}, v1::JOB_STATE_QUEUED,
                                "interrupted by server shutdown; resumes at next start",
                                [](v1::Job& job) { ApplyStateRules(v1::JOB_STATE_QUEUED, job); });
    if (requeued.ok()) {
      RecordEnd(v1::JOB_STATE_QUEUED);
      return;
    }
    if (!absl::IsFailedPrecondition(requeued.status())) {
      // Still RUNNING in the store: recovery re-queues it at the next start.
      LogStoreFailure("requeue", requeued.status());
      RecordEnd(v1::JOB_STATE_QUEUED);
      return;
    }
  }
  RemoveRunDirectory();
  auto stopped =
      deps_.host->ChangeState(job_id_, {v1::JOB_STATE_CANCELLING, v1::JOB_STATE_RUNNING},
                              v1::JOB_STATE_CANCELLED, std::string(cancelled.message()),
                              [](v1::Job& job) { ApplyStateRules(v1::JOB_STATE_CANCELLED, job); });
  if (!stopped.ok()) {
    // Left CANCELLING (or RUNNING): recovery cancels (or re-queues) it at the next start.
    LogStoreFailure("cancel", stopped.status());
    RecordEnd(v1::JOB_STATE_UNSPECIFIED);
    return;
  }
  job_ = *std::move(stopped);
  RecordEnd(v1::JOB_STATE_CANCELLED);
}

void JobRunner::Fail(const absl::Status& error) {
  RemoveRunDirectory();
  const std::vector<v1::JobState> from =
      started_ ? std::vector<v1::JobState>{v1::JOB_STATE_RUNNING, v1::JOB_STATE_CANCELLING}
               : std::vector<v1::JobState>{v1::JOB_STATE_QUEUED};
  auto failed = deps_.host->ChangeState(job_id_, from, v1::JOB_STATE_FAILED,
                                        std::string(error.message()), [&error](v1::Job& job) {
                                          job.set_error_code(static_cast<int>(error.code()));
                                          job.set_error_message(std::string(error.message()));
                                          ApplyStateRules(v1::JOB_STATE_FAILED, job);
                                        });
  if (!failed.ok()) {
    // The store refuses writes: the job keeps its state and recovery settles it at the next
    // start (a RUNNING job resumes; a QUEUED one is retried). It has not ended: no duration.
    LogStoreFailure("fail", failed.status());
    RecordEnd(v1::JOB_STATE_UNSPECIFIED);
    return;
  }
  job_ = *std::move(failed);
  RecordEnd(v1::JOB_STATE_FAILED);
}

void JobRunner::SaveProgress() {
  absl::Status saved = deps_.store->UpdateJobProgress(job_id_, job_.progress());
  if (!saved.ok() && deps_.logger) {
    deps_.logger->Warning("job.progress_not_saved").With("job_id", job_id_).With("error", saved);
  }
}

void JobRunner::EmitOrLog(v1::MetricsEvent event) {
  absl::Status emitted = deps_.host->Emit(job_id_, std::move(event));
  if (!emitted.ok() && deps_.logger) {
    deps_.logger->Warning("job.event_not_stored").With("job_id", job_id_).With("error", emitted);
  }
}

void JobRunner::RecordEnd(v1::JobState state) {
  if (deps_.metrics == nullptr) return;
  // A job that never started has no duration (its start_time is unset, not the epoch).
  if (IsTerminal(state) && job_.has_start_time()) {
    const absl::Time end = job_.has_end_time() ? FromTimestamp(job_.end_time()) : absl::Now();
    deps_.metrics->RecordJobFinished(JobStateName(state), end - FromTimestamp(job_.start_time()));
  }
  // The job's per-job series end with this attempt; its last values stay in the store.
  deps_.host->RetireJobSeries(job_id_);
}

void JobRunner::RemoveRunDirectory() {
  std::error_code error;
  fs::remove_all(RunDirectory(*deps_.config, job_id_), error);
  if (!error) fs::remove_all(CompletingDirectory(*deps_.config, job_id_), error);
  if (error && deps_.logger) {
    deps_.logger->Warning("job.cleanup_failed")
        .With("job_id", job_id_)
        .With("error", error.message());
  }
}

void JobRunner::LogStoreFailure(const char* what, const absl::Status& status) {
  if (deps_.logger) {
    deps_.logger->Error("job.store_failed")
        .With("job_id", job_id_)
        .With("step", what)
        .With("error", status);
  }
}

}  // namespace verdict::server
