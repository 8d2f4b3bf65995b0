#include "server/job_manager.h"

#include <algorithm>
#include <filesystem>
#include <random>

#include <google/protobuf/util/message_differencer.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/model/model_config.h"
#include "core/train/checkpoint.h"
#include "core/train/trainer.h"
#include "core/util/status_macros.h"
#include "server/logging.h"
#include "server/proto_time.h"
#include "server/server_metrics.h"
#include "server/validation.h"

namespace verdict::server {
namespace {

namespace fs = std::filesystem;

bool IsTerminal(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}

std::string StateName(v1::JobState state) {
  std::string name = v1::JobState_Name(state);
  return name.substr(std::string("JOB_STATE_").size());
}

std::string NewJobId() {
  static std::mutex mutex;
  static std::mt19937_64 rng(std::random_device{}());
  std::lock_guard<std::mutex> lock(mutex);
  return absl::StrFormat("job-%016x", rng());
}

absl::Status ValidateRequestId(const std::string& id) {
  if (id.size() > 128) return absl::InvalidArgumentError("request_id: longer than 128 bytes");
  for (char c : id) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == ':' || c == '-')) {
      return absl::InvalidArgumentError(
          absl::StrCat("request_id: must be characters of [A-Za-z0-9._:-], got \"", id, "\""));
    }
  }
  return absl::OkStatus();
}

void CopyTrainMetrics(const TrainStepMetrics& m, v1::TrainStepMetrics* out) {
  out->set_loss(m.loss);
  out->set_accuracy(m.accuracy);
  out->set_margin(m.margin);
  out->set_reward_mean(m.reward_mean);
  out->set_reward_min(m.reward_min);
  out->set_reward_max(m.reward_max);
  out->set_chosen_reward_mean(m.chosen_reward_mean);
  out->set_rejected_reward_mean(m.rejected_reward_mean);
  out->set_learning_rate(m.learning_rate);
  out->set_grad_norm(m.grad_norm);
  out->set_pairs(m.pairs);
  out->set_tokens(m.tokens);
  out->set_pairs_per_second(m.pairs_per_second);
  out->set_tokens_per_second(m.tokens_per_second);
  out->set_padding_fraction(m.padding_fraction);
  out->set_epoch(m.epoch);
}

void CopyEvalMetrics(const EvalMetrics& m, v1::EvalMetrics* out) {
  out->set_loss(m.loss);
  out->set_accuracy(m.accuracy);
  out->set_margin(m.margin);
  out->set_reward_mean(m.reward_mean);
  out->set_reward_std(m.reward_std);
  out->set_pairs(m.pairs);
  SetDuration(absl::Seconds(m.seconds), out->mutable_duration());
}

}  // namespace

bool JobManager::QueueEntry::operator<(const QueueEntry& other) const {
  // std::push_heap keeps the largest on top: higher priority, then earlier submission.
  if (priority != other.priority) return priority < other.priority;
  return order > other.order;
}

JobManager::JobManager(const ServerConfig& config, Dependencies dependencies)
    : config_(config), deps_(std::move(dependencies)) {}

absl::StatusOr<std::unique_ptr<JobManager>> JobManager::Create(const ServerConfig& config,
                                                               Dependencies dependencies) {
  if (dependencies.store == nullptr || dependencies.events == nullptr) {
    return absl::InvalidArgumentError("JobManager needs a store and an event hub");
  }
  std::unique_ptr<JobManager> manager(new JobManager(config, std::move(dependencies)));
  RETURN_IF_ERROR(manager->Recover());
  const int workers = std::max(1, config.max_concurrent_jobs);
  for (int i = 0; i < workers; ++i) {
    manager->workers_.emplace_back([m = manager.get()] { m->WorkerLoop(); });
  }
  return manager;
}

JobManager::~JobManager() {
  Drain();
  for (std::thread& worker : workers_) worker.join();
}

absl::Status JobManager::Recover() {
  ASSIGN_OR_RETURN(std::vector<v1::Job> jobs,
                   deps_.store->ListJobsInStates({v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING,
                                                  v1::JOB_STATE_CANCELLING}));
  absl::MutexLock lock(&mutex_);
  for (v1::Job& job : jobs) {
    if (job.state() == v1::JOB_STATE_CANCELLING) {
      // Cancelled while the server went down: honour it.
      RemoveRunDirectory(job.id());
      RETURN_IF_ERROR(ChangeState(job, v1::JOB_STATE_CANCELLED, "cancelled before the server restarted"));
      continue;
    }
    if (job.state() == v1::JOB_STATE_RUNNING) {
      const std::vector<int64_t> checkpoints = ListCheckpoints(RunDirectory(job.id()));
      const int64_t resume_step = checkpoints.empty() ? 0 : checkpoints.back();
      job.mutable_progress()->set_step(resume_step);
      job.mutable_progress()->set_phase(v1::TRAINING_PHASE_UNSPECIFIED);
      RETURN_IF_ERROR(ChangeState(job, v1::JOB_STATE_QUEUED,
                                  absl::StrCat("the server stopped while the job ran; it resumes from ",
                                               resume_step > 0 ? absl::StrCat("step ", resume_step)
                                                               : std::string("the start"))));
    }
    RETURN_IF_ERROR(Enqueue(job));
  }
  CountJobsByState();
  return absl::OkStatus();
}

absl::Status JobManager::Enqueue(const v1::Job& job) {
  queue_.push_back({job.spec().priority(), next_order_++, job.id()});
  std::push_heap(queue_.begin(), queue_.end());
  return absl::OkStatus();
}

int JobManager::QueuedCount() {
  absl::MutexLock lock(&mutex_);
  return static_cast<int>(queue_.size());
}

absl::StatusOr<v1::Job> JobManager::Submit(const v1::SubmitTrainingJobRequest& request) {
  RETURN_IF_ERROR(ValidateRequestId(request.request_id()));
  v1::Job job;
  *job.mutable_spec() = request.spec();
  RETURN_IF_ERROR(NormalizeTrainingJobSpec(config_, deps_.resolvers, job.mutable_spec()));
  if (request.validate_only()) return job;

  if (!request.request_id().empty()) {
    auto existing = deps_.store->FindJobByRequestId(request.request_id());
    if (existing.ok()) {
      if (google::protobuf::util::MessageDifferencer::Equals(existing->spec(), job.spec())) {
        SetQueuePosition(*existing);
        return existing;
      }
      return absl::AlreadyExistsError(absl::StrCat("request_id \"", request.request_id(),
                                                   "\" was used for job ", existing->id(),
                                                   " with a different spec"));
    }
    if (!absl::IsNotFound(existing.status())) return existing.status();
  }

  absl::MutexLock lock(&mutex_);
  if (draining_) return absl::UnavailableError("the server is shutting down");
  if (static_cast<int>(queue_.size()) >= config_.max_queued_jobs) {
    return absl::ResourceExhaustedError(absl::StrCat("the job queue is full (", config_.max_queued_jobs,
                                                     " jobs queued); retry later"));
  }
  job.set_id(NewJobId());
  job.set_request_id(request.request_id());
  job.set_state(v1::JOB_STATE_QUEUED);
  SetTimestamp(absl::Now(), job.mutable_create_time());
  job.set_attempt(0);  // counted when a worker starts it
  absl::Status created = deps_.store->CreateJob(job);
  if (absl::IsAlreadyExists(created) && !job.request_id().empty()) {
    // A concurrent submit with the same request_id won the race.
    return deps_.store->FindJobByRequestId(job.request_id());
  }
  RETURN_IF_ERROR(created);
  if (deps_.metrics) deps_.metrics->RecordJobStateChange("", StateName(v1::JOB_STATE_QUEUED));
  v1::MetricsEvent event;
  event.mutable_state_change()->set_to_state(v1::JOB_STATE_QUEUED);
  event.mutable_state_change()->set_message("submitted");
  RETURN_IF_ERROR(Emit(job.id(), event));
  RETURN_IF_ERROR(Enqueue(job));
  if (deps_.logger) {
    deps_.logger->Info("job.submitted").With("job_id", job.id()).With("model", job.spec().output_model_name());
  }
  ASSIGN_OR_RETURN(v1::Job stored, deps_.store->GetJob(job.id()));
  SetQueuePositionLocked(stored);
  return stored;
}

absl::StatusOr<v1::Job> JobManager::GetJob(const std::string& job_id) {
  RETURN_IF_ERROR(ValidateId("job_id", job_id));
  ASSIGN_OR_RETURN(v1::Job job, deps_.store->GetJob(job_id));
  SetQueuePosition(job);
  return job;
}

void JobManager::SetQueuePosition(v1::Job& job) {
  absl::MutexLock lock(&mutex_);
  SetQueuePositionLocked(job);
}

void JobManager::SetQueuePositionLocked(v1::Job& job) {
  job.set_queue_position(0);
  if (job.state() != v1::JOB_STATE_QUEUED) return;
  const auto mine = std::find_if(queue_.begin(), queue_.end(),
                                 [&](const QueueEntry& e) { return e.job_id == job.id(); });
  if (mine == queue_.end()) return;  // being picked up by a worker
  // The heap's order: an entry runs before ours if ours compares less.
  job.set_queue_position(static_cast<int32_t>(
      std::count_if(queue_.begin(), queue_.end(), [&](const QueueEntry& e) { return *mine < e; })));
}

absl::StatusOr<v1::Job> JobManager::Cancel(const std::string& job_id, const std::string& reason) {
  RETURN_IF_ERROR(ValidateId("job_id", job_id));
  if (reason.size() > 1024) return absl::InvalidArgumentError("reason: longer than 1 KiB");
  absl::MutexLock lock(&mutex_);
  ASSIGN_OR_RETURN(v1::Job job, deps_.store->GetJob(job_id));
  const std::string message = reason.empty() ? "cancelled by request" : absl::StrCat("cancelled: ", reason);
  switch (job.state()) {
    case v1::JOB_STATE_QUEUED: {
      queue_.erase(std::remove_if(queue_.begin(), queue_.end(),
                                  [&](const QueueEntry& e) { return e.job_id == job_id; }),
                   queue_.end());
      std::make_heap(queue_.begin(), queue_.end());
      SetTimestamp(absl::Now(), job.mutable_end_time());
      RemoveRunDirectory(job_id);
      RETURN_IF_ERROR(ChangeState(job, v1::JOB_STATE_CANCELLED, message));
      break;
    }
    case v1::JOB_STATE_RUNNING: {
      RETURN_IF_ERROR(ChangeState(job, v1::JOB_STATE_CANCELLING, message));
      auto it = running_.find(job_id);
      if (it != running_.end() && it->second != nullptr) it->second->Cancel();
      break;
    }
    case v1::JOB_STATE_CANCELLING:
    case v1::JOB_STATE_CANCELLED:
      break;
    default:
      return absl::FailedPreconditionError(
          absl::StrCat("job ", job_id, " is already ", StateName(job.state())));
  }
  return deps_.store->GetJob(job_id);  // no longer QUEUED: queue_position stays 0
}

void JobManager::Drain() {
  {
    absl::MutexLock lock(&mutex_);
    draining_ = true;
    for (auto& [id, trainer] : running_) {
      interrupted_for_drain_[id] = true;
      if (trainer != nullptr) trainer->Cancel();
    }
  }
  absl::MutexLock lock(&mutex_);
  mutex_.Await(absl::Condition(
      +[](std::map<std::string, Trainer*>* running) { return running->empty(); }, &running_));
}

void JobManager::WorkerLoop() {
  while (true) {
    std::string job_id;
    {
      absl::MutexLock lock(&mutex_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) { return draining_ || !queue_.empty(); };
      mutex_.Await(absl::Condition(&ready));
      if (draining_) return;
      std::pop_heap(queue_.begin(), queue_.end());
      job_id = queue_.back().job_id;
      queue_.pop_back();
      running_[job_id] = nullptr;  // claimed; the trainer appears once built
    }
    RunJob(job_id);
    absl::MutexLock lock(&mutex_);
    running_.erase(job_id);
    interrupted_for_drain_.erase(job_id);
  }
}

absl::Status JobManager::Emit(const std::string& job_id, v1::MetricsEvent event) {
  absl::MutexLock lock(&events_mutex_);
  auto it = last_sequence_.find(job_id);
  if (it == last_sequence_.end()) {
    ASSIGN_OR_RETURN(int64_t last, deps_.store->LastSequence(job_id));
    it = last_sequence_.emplace(job_id, last).first;
  }
  event.set_job_id(job_id);
  event.set_sequence(it->second + 1);
  SetTimestamp(absl::Now(), event.mutable_time());
  RETURN_IF_ERROR(deps_.store->AppendEvents(job_id, {event}));
  it->second = event.sequence();
  deps_.events->Publish(job_id, event);
  return absl::OkStatus();
}

absl::Status JobManager::ChangeState(v1::Job& job, v1::JobState to, const std::string& message) {
  const v1::JobState from = job.state();
  job.set_state(to);
  if (to != v1::JOB_STATE_RUNNING && to != v1::JOB_STATE_CANCELLING) {
    // Not running any more: no phase, no time left to estimate.
    job.mutable_progress()->set_phase(v1::TRAINING_PHASE_UNSPECIFIED);
    job.mutable_progress()->clear_estimated_remaining();
  }
  if (IsTerminal(to) && !job.has_end_time()) SetTimestamp(absl::Now(), job.mutable_end_time());
  // The jobs-by-state gauge moves before the new state is visible in the store or the event
  // log, so a scrape that follows anything a client saw counts the job in its new state.
  if (deps_.metrics) deps_.metrics->RecordJobStateChange(StateName(from), StateName(to));
  if (absl::Status stored = deps_.store->UpdateJob(job); !stored.ok()) {
    if (deps_.metrics) deps_.metrics->RecordJobStateChange(StateName(to), StateName(from));
    return stored;
  }
  v1::MetricsEvent event;
  event.set_step(job.progress().step());
  event.mutable_state_change()->set_from_state(from);
  event.mutable_state_change()->set_to_state(to);
  event.mutable_state_change()->set_message(message);
  RETURN_IF_ERROR(Emit(job.id(), event));
  if (deps_.logger) {
    deps_.logger->Info("job.state").With("job_id", job.id()).With("from", StateName(from))
        .With("to", StateName(to)).With("message", message);
  }
  return absl::OkStatus();
}

std::string JobManager::RunDirectory(const std::string& job_id) const {
  return (fs::path(config_.state_dir) / "runs" / job_id).string();
}

void JobManager::RemoveRunDirectory(const std::string& job_id) {
  std::error_code error;
  fs::remove_all(RunDirectory(job_id), error);
  if (error && deps_.logger) {
    deps_.logger->Warning("job.cleanup_failed").With("job_id", job_id).With("error", error.message());
  }
}

void JobManager::CountJobsByState() {
  if (deps_.metrics == nullptr) return;
  for (v1::JobState state : {v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING, v1::JOB_STATE_CANCELLING,
                             v1::JOB_STATE_SUCCEEDED, v1::JOB_STATE_FAILED, v1::JOB_STATE_CANCELLED}) {
    JobFilter filter;
    filter.states = {state};
    PageRequest page;
    page.page_size = PageRequest::kMaxPageSize;
    int64_t count = 0;
    // Counting pages keeps the store interface small; job counts are modest.
    while (true) {
      auto listed = deps_.store->ListJobs(filter, page);
      if (!listed.ok()) return;
      count += static_cast<int64_t>(listed->items.size());
      if (listed->next_page_token.empty()) break;
      page.page_token = listed->next_page_token;
    }
    deps_.metrics->SetJobCount(StateName(state), count);
  }
}

absl::StatusOr<v1::Model> JobManager::RegisterModel(const v1::Job& job, const std::string& output_dir,
                                                    int64_t parameters, double reward_mean,
                                                    double reward_std, int64_t eval_pairs) {
  ASSIGN_OR_RETURN(ModelConfig model_config, LoadModelConfig((fs::path(output_dir) / "config.json").string()));
  v1::Model model;
  model.set_name(job.spec().output_model_name());
  model.set_family(model_config.family == ModelFamily::kEncoder ? v1::MODEL_FAMILY_ENCODER
                                                               : v1::MODEL_FAMILY_DECODER);
  model.set_model_type(model_config.model_type);
  model.set_parameter_count(parameters);
  model.set_vocab_size(model_config.vocab_size);
  model.set_max_position_embeddings(model_config.max_position_embeddings);
  model.set_max_length(job.spec().hyperparameters().max_length());
  model.set_truncation(job.spec().hyperparameters().truncation());
  model.set_chat_format(job.spec().data_options().chat_format());
  model.set_training_job_id(job.id());
  SetTimestamp(absl::Now(), model.mutable_create_time());
  model.mutable_reward_stats()->set_mean(reward_mean);
  model.mutable_reward_stats()->set_std(reward_std);
  model.mutable_reward_stats()->set_count(2 * eval_pairs);  // both responses of each pair
  int64_t size = 0;
  for (const auto& entry : fs::directory_iterator(output_dir)) {
    if (entry.is_regular_file()) size += static_cast<int64_t>(entry.file_size());
  }
  model.set_size_bytes(size);
  model.set_storage_path(fs::relative(output_dir, config_.state_dir).string());
  ASSIGN_OR_RETURN(v1::Model stored, deps_.store->AddModelVersion(model));
  if (deps_.on_model_registered) deps_.on_model_registered(stored);
  return stored;
}

void JobManager::RunJob(const std::string& job_id) {
  v1::Job job;
  const fs::path run_dir = RunDirectory(job_id);
  // Checkpoints go before the terminal state is announced: whoever sees it sees them gone.
  const auto fail = [&](const absl::Status& status) {
    RemoveRunDirectory(job_id);
    job.set_error_code(static_cast<int>(status.code()));
    job.set_error_message(std::string(status.message()));
    absl::Status stored = ChangeState(job, v1::JOB_STATE_FAILED, std::string(status.message()));
    if (!stored.ok() && deps_.logger) deps_.logger->Error("job.store_failed").With("job_id", job_id).With("error", stored);
    if (deps_.metrics) {
      deps_.metrics->RecordJobFinished("FAILED", FromTimestamp(job.end_time()) - FromTimestamp(job.start_time()));
    }
  };
  {
    // QUEUED -> RUNNING under the queue lock, as Cancel() changes states: a cancel either
    // finds the job QUEUED (it becomes CANCELLED and is not started here) or RUNNING (it
    // becomes CANCELLING and the trainer is stopped once it exists, below). Without the lock
    // a cancel between the check and the change was overwritten and the job ran anyway.
    absl::MutexLock lock(&mutex_);
    auto loaded = deps_.store->GetJob(job_id);
    if (!loaded.ok()) {
      if (deps_.logger) deps_.logger->Error("job.load_failed").With("job_id", job_id).With("error", loaded.status());
      return;
    }
    job = *loaded;
    if (job.state() != v1::JOB_STATE_QUEUED) return;  // cancelled while waiting

    // A resumed run replays its steps after the checkpoint: drop their old events first.
    const std::vector<int64_t> checkpoints = ListCheckpoints(run_dir.string());
    const int64_t resume_step = checkpoints.empty() ? 0 : checkpoints.back();
    if (auto deleted = deps_.store->DeleteEventsAfterStep(job_id, resume_step); !deleted.ok()) {
      fail(deleted.status());
      return;
    }
    job.set_resumed_from_step(resume_step);
    job.set_attempt(job.attempt() + 1);
    job.mutable_progress()->set_step(resume_step);
    job.mutable_progress()->set_phase(v1::TRAINING_PHASE_PREPARING);
    if (!job.has_start_time()) SetTimestamp(absl::Now(), job.mutable_start_time());
    if (absl::Status s = ChangeState(job, v1::JOB_STATE_RUNNING,
                                     resume_step > 0 ? absl::StrCat("resuming from step ", resume_step)
                                                     : "started");
        !s.ok()) {
      fail(s);
      return;
    }
  }
  const fs::path output_dir =
      fs::path(config_.state_dir) / "models" / job.spec().output_model_name() / job_id;

  auto config = ToTrainingConfig(config_, deps_.resolvers, job.spec(), run_dir.string(), output_dir.string());
  if (!config.ok()) {
    fail(config.status());
    return;
  }

  // Progress lives in the job message; callbacks run on this thread.
  absl::Mutex job_mutex;
  const auto save_progress = [&]() {
    absl::MutexLock lock(&job_mutex);
    v1::Job current = job;
    auto stored = deps_.store->GetJob(job_id);
    if (stored.ok()) current.set_state(stored->state());  // a concurrent Cancel may have moved it
    job.set_state(current.state());
    (void)deps_.store->UpdateJob(current);
  };
  TrainerCallbacks callbacks;
  int64_t parameters = 0;
  callbacks.on_start = [&](const DataSummary& s) {
    parameters = s.parameters;
    v1::JobProgress* p = job.mutable_progress();
    p->set_phase(v1::TRAINING_PHASE_TRAINING);
    p->set_total_steps(s.total_steps);
    p->set_train_pairs(s.train_pairs);
    p->set_eval_pairs(s.eval_pairs);
    p->set_invalid_lines(s.invalid_lines);
    p->set_identical_pairs_dropped(s.identical_dropped);
    p->set_too_long_pairs_dropped(s.too_long_dropped);
    p->set_truncated_pairs(s.truncated);
    save_progress();
  };
  callbacks.on_step = [&](const TrainStepMetrics& m) {
    v1::MetricsEvent event;
    event.set_step(m.step);
    CopyTrainMetrics(m, event.mutable_train());
    v1::JobProgress* p = job.mutable_progress();
    p->set_step(m.step);
    p->set_total_steps(m.total_steps);
    p->set_epoch(m.epoch);
    *p->mutable_last_train_metrics() = event.train();
    const absl::Duration elapsed = absl::Now() - FromTimestamp(job.start_time());
    SetDuration(elapsed, p->mutable_elapsed());
    if (m.pairs_per_second > 0 && m.total_steps > m.step && m.pairs > 0) {
      const double seconds_per_step = m.pairs / m.pairs_per_second / std::max<double>(1, config->logging_steps);
      SetDuration(absl::Seconds(seconds_per_step * (m.total_steps - m.step)), p->mutable_estimated_remaining());
    }
    save_progress();
    (void)Emit(job_id, event);
    if (deps_.metrics) {
      TrainingStepMetrics metric;
      metric.step = m.step;
      metric.epoch = m.epoch;
      metric.loss = m.loss;
      metric.accuracy = m.accuracy;
      metric.pairs_per_second = m.pairs_per_second;
      metric.tokens_per_second = m.tokens_per_second;
      deps_.metrics->RecordTrainingStep(job_id, metric);
    }
  };
  callbacks.on_eval = [&](const EvalMetrics& m) {
    v1::MetricsEvent event;
    event.set_step(m.step);
    CopyEvalMetrics(m, event.mutable_eval());
    *job.mutable_progress()->mutable_last_eval_metrics() = event.eval();
    save_progress();
    (void)Emit(job_id, event);
    if (deps_.metrics) deps_.metrics->RecordTrainingEval(job_id, m.accuracy);
  };
  callbacks.on_log = [&](const std::string& line) {
    v1::MetricsEvent event;
    event.set_step(job.progress().step());
    event.mutable_log()->set_level(v1::LogLine::LEVEL_INFO);
    event.mutable_log()->set_text(line);
    (void)Emit(job_id, event);
    if (deps_.logger) deps_.logger->Info("job.log").With("job_id", job_id).With("text", line);
  };
  const absl::Time checkpoint_started = absl::Now();
  callbacks.on_checkpoint = [&](int64_t, const std::string&) {
    if (deps_.metrics) deps_.metrics->RecordCheckpoint(absl::Now() - checkpoint_started);
  };

  auto trainer = Trainer::Create(*config, callbacks);
  if (!trainer.ok()) {
    fail(trainer.status());
    return;
  }
  {
    absl::MutexLock lock(&mutex_);
    running_[job_id] = trainer->get();
    // A cancel or drain that arrived while the job was being prepared.
    if (draining_) interrupted_for_drain_[job_id] = true;
    auto stored = deps_.store->GetJob(job_id);
    if (draining_ || (stored.ok() && stored->state() == v1::JOB_STATE_CANCELLING)) (*trainer)->Cancel();
  }
  absl::StatusOr<TrainingResult> result = (*trainer)->Run();
  {
    absl::MutexLock lock(&mutex_);
    running_[job_id] = nullptr;
  }

  auto stored = deps_.store->GetJob(job_id);
  if (stored.ok()) {
    job.set_state(stored->state());
    job.set_last_sequence(stored->last_sequence());
  }
  bool drained = false;
  {
    absl::MutexLock lock(&mutex_);
    drained = interrupted_for_drain_.count(job_id) > 0;
  }
  const absl::Duration duration = absl::Now() - FromTimestamp(job.start_time());
  if (result.ok()) {
    job.mutable_progress()->set_phase(v1::TRAINING_PHASE_SAVING);
    auto model = RegisterModel(job, result->output_dir, parameters, result->reward_mean,
                               result->reward_std, result->final_eval.pairs);
    if (!model.ok()) {
      fail(model.status());
      return;
    }
    job.mutable_result_model()->set_name(model->name());
    job.mutable_result_model()->set_version(model->version());
    RemoveRunDirectory(job_id);
    (void)ChangeState(job, v1::JOB_STATE_SUCCEEDED,
                      absl::StrCat("registered ", model->name(), " version ", model->version()));
    if (deps_.metrics) deps_.metrics->RecordJobFinished("SUCCEEDED", duration);
  } else if (absl::IsCancelled(result.status()) && drained && job.state() != v1::JOB_STATE_CANCELLING) {
    (void)ChangeState(job, v1::JOB_STATE_QUEUED, "interrupted by server shutdown; resumes at next start");
  } else if (absl::IsCancelled(result.status())) {
    RemoveRunDirectory(job_id);
    (void)ChangeState(job, v1::JOB_STATE_CANCELLED, std::string(result.status().message()));
    if (deps_.metrics) deps_.metrics->RecordJobFinished("CANCELLED", duration);
  } else {
    fail(result.status());
  }
}

}  // namespace verdict::server
