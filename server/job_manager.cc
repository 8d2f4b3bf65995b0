#include "server/job_manager.h"

#include <google/protobuf/util/message_differencer.h>
#include <malloc.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <random>
#include <set>

#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/train/checkpoint.h"
#include "core/score/thread_budget.h"
#include "core/train/trainer.h"
#include "core/util/status_macros.h"
#include "server/logging.h"
#include "server/proto_time.h"
#include "server/server_metrics.h"
#include "server/validation.h"

namespace verdict::server {
namespace {

namespace fs = std::filesystem;

std::string NewJobId() {
  static std::mutex mutex;
  static std::mt19937_64 rng(std::random_device{}());
  std::lock_guard<std::mutex> lock(mutex);
  return absl::StrFormat("job-%016x", rng());
}

absl::Status ValidateRequestId(const std::string& id) {
  if (id.size() > 128) return absl::InvalidArgumentError("request_id: longer than 128 bytes");
  for (char c : id) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == ':' ||
          c == '-')) {
      return absl::InvalidArgumentError(
          absl::StrCat("request_id: must be characters of [A-Za-z0-9._:-], got \"", id, "\""));
    }
  }
  return absl::OkStatus();
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
  return manager;
}

void JobManager::StartWorkers() {
  if (!workers_.empty()) return;
  const int workers = std::max(1, config_.max_concurrent_jobs);
  for (int i = 0; i < workers; ++i) workers_.emplace_back([this] { WorkerLoop(); });
  if (deps_.metrics != nullptr) reaper_ = std::thread([this] { ReapLoop(); });
}

JobManager::~JobManager() {
  Drain();
  for (std::thread& worker : workers_) worker.join();
  if (reaper_.joinable()) reaper_.join();
}

absl::Status JobManager::Recover() {
  ASSIGN_OR_RETURN(std::vector<v1::Job> jobs,
                   deps_.store->ListJobsInStates(
                       {v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING, v1::JOB_STATE_CANCELLING}));
  SweepEndedRuns();
  std::vector<v1::Job> queued;
  for (v1::Job& job : jobs) {
    if (job.state() == v1::JOB_STATE_CANCELLING) {
      // Cancelled while the server went down: honour it.
      RemoveRunDirectory(job.id());
      RETURN_IF_ERROR(
          ChangeState(job.id(), {v1::JOB_STATE_CANCELLING}, v1::JOB_STATE_CANCELLED,
                      "cancelled before the server restarted",
                      [](v1::Job& j) { JobRunner::ApplyStateRules(v1::JOB_STATE_CANCELLED, j); })
              .status());
      continue;
    }
    if (job.state() == v1::JOB_STATE_RUNNING) {
      const std::vector<int64_t> checkpoints =
          ListCheckpoints(JobRunner::RunDirectory(config_, job.id()));
      const int64_t resume_step = checkpoints.empty() ? 0 : checkpoints.back();
      ASSIGN_OR_RETURN(
          job, ChangeState(job.id(), {v1::JOB_STATE_RUNNING}, v1::JOB_STATE_QUEUED,
                           absl::StrCat("the server stopped while the job ran; it resumes from ",
                                        resume_step > 0 ? absl::StrCat("step ", resume_step)
                                                        : std::string("the start")),
                           [resume_step](v1::Job& j) {
                             j.mutable_progress()->set_step(resume_step);
                             JobRunner::ApplyStateRules(v1::JOB_STATE_QUEUED, j);
                           }));
    }
    queued.push_back(std::move(job));
  }
  {
    absl::MutexLock lock(&mutex_);
    for (const v1::Job& job : queued) Enqueue(job);
  }
  CountJobsByState();
  return absl::OkStatus();
}

void JobManager::Enqueue(const v1::Job& job) {
  queue_.push_back({job.spec().priority(), next_order_++, job.id()});
  std::push_heap(queue_.begin(), queue_.end());
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
  return SubmitNormalized(request.request_id(), std::move(job));
}

absl::StatusOr<v1::Job> JobManager::SubmitEvaluation(const v1::EvaluateModelRequest& request) {
  RETURN_IF_ERROR(ValidateRequestId(request.request_id()));
  v1::Job job;
  *job.mutable_evaluation_spec() = request.spec();
  RETURN_IF_ERROR(
      NormalizeEvaluationJobSpec(config_, deps_.resolvers, job.mutable_evaluation_spec()));
  return SubmitNormalized(request.request_id(), std::move(job));
}

absl::StatusOr<v1::Job> JobManager::SubmitNormalized(const std::string& request_id,
                                                     v1::Job job) {
  if (!request_id.empty()) {
    auto existing = deps_.store->FindJobByRequestId(request_id);
    if (existing.ok()) {
      if (google::protobuf::util::MessageDifferencer::Equals(existing->spec(), job.spec()) &&
          google::protobuf::util::MessageDifferencer::Equals(existing->evaluation_spec(),
                                                             job.evaluation_spec())) {
        SetQueuePosition(*existing);
        return existing;
      }
      return absl::AlreadyExistsError(absl::StrCat("request_id \"", request_id,
                                                   "\" was used for job ", existing->id(),
                                                   " with a different spec"));
    }
    if (!absl::IsNotFound(existing.status())) return existing.status();
  }

  {
    // A queue place is reserved here and released below once the job is in the queue (or
    // has failed to get there): the store writes run without the queue lock, and concurrent
    // submits still cannot overshoot max_queued_jobs.
    absl::MutexLock lock(&mutex_);
    if (draining_) return absl::UnavailableError("the server is shutting down");
    if (static_cast<int>(queue_.size()) + reserved_places_ >= config_.max_queued_jobs) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the job queue is full (", config_.max_queued_jobs, " jobs queued); retry later"));
    }
    ++reserved_places_;
  }
  absl::StatusOr<v1::Job> submitted = StoreAndEnqueue(request_id, std::move(job));
  absl::MutexLock lock(&mutex_);
  --reserved_places_;
  return submitted;
}

absl::StatusOr<v1::Job> JobManager::StoreAndEnqueue(const std::string& request_id, v1::Job job) {
  job.set_id(NewJobId());
  job.set_request_id(request_id);
  job.set_state(v1::JOB_STATE_QUEUED);
  SetTimestamp(absl::Now(), job.mutable_create_time());
  job.set_attempt(0);  // counted when a worker starts it
  absl::Status created = deps_.store->CreateJob(job);
  if (absl::IsAlreadyExists(created) && !job.request_id().empty()) {
    // A concurrent submit with the same request_id won the race.
    return deps_.store->FindJobByRequestId(job.request_id());
  }
  RETURN_IF_ERROR(created);
  if (deps_.metrics) deps_.metrics->RecordJobStateChange("", JobStateName(v1::JOB_STATE_QUEUED));
  v1::MetricsEvent event;
  event.mutable_state_change()->set_to_state(v1::JOB_STATE_QUEUED);
  event.mutable_state_change()->set_message("submitted");
  if (absl::Status emitted = Emit(job.id(), event); !emitted.ok() && deps_.logger) {
    // The job is stored and will run; only its first log line is missing.
    deps_.logger->Warning("job.event_not_stored").With("job_id", job.id()).With("error", emitted);
  }
  if (deps_.logger) {
    deps_.logger->Info("job.submitted")
        .With("job_id", job.id())
        .With("model", job.has_evaluation_spec() ? job.evaluation_spec().model().name()
                                                 : job.spec().output_model_name());
  }
  ASSIGN_OR_RETURN(v1::Job stored, deps_.store->GetJob(job.id()));
  absl::MutexLock lock(&mutex_);
  // Once draining, the job stays QUEUED in the store and runs after the next start.
  if (!draining_) Enqueue(job);
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
  const std::string message =
      reason.empty() ? "cancelled by request" : absl::StrCat("cancelled: ", reason);
  // A worker may move the job QUEUED -> RUNNING (or a run may finish) between the read and the
  // compare-and-set: then the set fails and the next round sees the new state. Each failed
  // round means the job moved forward, and it moves at most a few times.
  for (int round = 0; round < 8; ++round) {
    ASSIGN_OR_RETURN(v1::Job job, deps_.store->GetJob(job_id));
    absl::StatusOr<v1::Job> changed;
    switch (job.state()) {
      case v1::JOB_STATE_QUEUED:
        changed =
            ChangeState(job_id, {v1::JOB_STATE_QUEUED}, v1::JOB_STATE_CANCELLED, message,
                        [](v1::Job& j) { JobRunner::ApplyStateRules(v1::JOB_STATE_CANCELLED, j); });
        if (changed.ok()) {
          {
            absl::MutexLock lock(&mutex_);
            queue_.erase(std::remove_if(queue_.begin(), queue_.end(),
                                        [&](const QueueEntry& e) { return e.job_id == job_id; }),
                         queue_.end());
            std::make_heap(queue_.begin(), queue_.end());
          }
          RemoveRunDirectory(job_id);  // no runner can start it now
        }
        break;
      case v1::JOB_STATE_RUNNING:
        changed = ChangeState(job_id, {v1::JOB_STATE_RUNNING}, v1::JOB_STATE_CANCELLING, message,
                              nullptr);
        if (changed.ok()) {
          absl::MutexLock lock(&mutex_);
          auto it = running_.find(job_id);
          if (it != running_.end()) {
            it->second.cancel_requested = true;
            if (it->second.trainer != nullptr) it->second.trainer->Cancel();
          }
        }
        break;
      case v1::JOB_STATE_CANCELLING:
      case v1::JOB_STATE_CANCELLED:
        return job;
      default:
        return absl::FailedPreconditionError(
            absl::StrCat("job ", job_id, " is already ", JobStateName(job.state())));
    }
    if (changed.ok()) return *std::move(changed);  // no longer QUEUED: queue_position stays 0
    if (!absl::IsFailedPrecondition(changed.status())) return changed.status();
  }
  return absl::AbortedError(absl::StrCat("job ", job_id, " kept changing state; retry the cancel"));
}

void JobManager::Drain() {
  {
    absl::MutexLock lock(&mutex_);
    draining_ = true;
    for (auto& [id, running] : running_) {
      running.interrupted_for_drain = true;
      if (running.trainer != nullptr) running.trainer->Cancel();
    }
  }
  absl::MutexLock lock(&mutex_);
  mutex_.Await(absl::Condition(
      +[](std::map<std::string, Running>* running) { return running->empty(); }, &running_));
}

void JobManager::WorkerLoop() {
  // This thread's budget, for every job it runs (forward and backward run on it).
  if (config_.training_threads > 0) SetIntraOpThreadsOfThisThread(config_.training_threads);
  if (config_.training_nice > 0) {
    if (absl::Status lowered = LowerPriorityOfThisThread(config_.training_nice);
        !lowered.ok() && deps_.logger != nullptr) {
      deps_.logger->Warning("threads.training_nice_failed").With("error", lowered.ToString());
    }
  }
  while (true) {
    std::string job_id;
    {
      absl::MutexLock lock(&mutex_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
        return draining_ || !queue_.empty();
      };
      mutex_.Await(absl::Condition(&ready));
      if (draining_) return;
      std::pop_heap(queue_.begin(), queue_.end());
      job_id = queue_.back().job_id;
      queue_.pop_back();
      running_[job_id] = Running();  // claimed; the trainer appears once built
    }
    JobRunner::Dependencies runner_deps;
    runner_deps.config = &config_;
    runner_deps.store = deps_.store;
    runner_deps.resolvers = &deps_.resolvers;
    runner_deps.host = this;
    runner_deps.logger = deps_.logger;
    runner_deps.metrics = deps_.metrics;
    runner_deps.priority = deps_.priority;
    JobRunner(std::move(runner_deps), job_id).Run();
    // The job's model, optimizer state and data are freed by now, into this thread's malloc
    // arena, which glibc would keep for the thread's next job: hand the pages back instead
    // (the soak test's RSS after the load; ~170 MB kept otherwise).
    malloc_trim(0);
    absl::MutexLock lock(&mutex_);
    running_.erase(job_id);
  }
}

bool JobManager::AttachTrainer(const std::string& job_id, Cancellable* trainer) {
  absl::MutexLock lock(&mutex_);
  Running& running = running_[job_id];
  running.trainer = trainer;
  if (draining_) running.interrupted_for_drain = true;
  return draining_ || running.cancel_requested;
}

void JobManager::DetachTrainer(const std::string& job_id) {
  absl::MutexLock lock(&mutex_);
  auto it = running_.find(job_id);
  if (it != running_.end()) it->second.trainer = nullptr;
}

bool JobManager::InterruptedForDrain(const std::string& job_id) {
  absl::MutexLock lock(&mutex_);
  auto it = running_.find(job_id);
  return it != running_.end() && it->second.interrupted_for_drain;
}

void JobManager::RetireJobSeries(const std::string& job_id) {
  absl::MutexLock lock(&mutex_);
  retired_series_.emplace(absl::Now() + config_.job_series_retention, job_id);
  reaper_wake_ = true;
}

void JobManager::ReapLoop() {
  absl::MutexLock lock(&mutex_);
  while (true) {
    const absl::Time next =
        retired_series_.empty() ? absl::InfiniteFuture() : retired_series_.begin()->first;
    auto wake = [this]()
                    ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) { return draining_ || reaper_wake_; };
    mutex_.AwaitWithDeadline(absl::Condition(&wake), next);
    if (draining_) return;
    reaper_wake_ = false;
    std::vector<std::string> due;
    const absl::Time now = absl::Now();
    while (!retired_series_.empty() && retired_series_.begin()->first <= now) {
      due.push_back(std::move(retired_series_.begin()->second));
      retired_series_.erase(retired_series_.begin());
    }
    if (due.empty()) continue;
    mutex_.Unlock();
    for (const std::string& job_id : due) deps_.metrics->RemoveJob(job_id);
    mutex_.Lock();
  }
}

absl::Status JobManager::Emit(const std::string& job_id, v1::MetricsEvent event) {
  absl::MutexLock lock(&events_mutex_);
  ASSIGN_OR_RETURN(int64_t* last, LastSequenceLocked(job_id));
  event.set_job_id(job_id);
  event.set_sequence(*last + 1);
  SetTimestamp(absl::Now(), event.mutable_time());
  RETURN_IF_ERROR(deps_.store->AppendEvents(job_id, {event}));
  *last = event.sequence();
  deps_.events->Publish(job_id, event);  // only enqueues (event_hub.h)
  return absl::OkStatus();
}

absl::StatusOr<int64_t*> JobManager::LastSequenceLocked(const std::string& job_id) {
  auto it = last_sequence_.find(job_id);
  if (it == last_sequence_.end()) {
    ASSIGN_OR_RETURN(int64_t last, deps_.store->LastSequence(job_id));
    it = last_sequence_.emplace(job_id, last).first;
  }
  return &it->second;
}

absl::Status JobManager::TransitionRecorded(
    const std::string& job_id, const TransitionEvent& event,
    const std::function<absl::Status(const TransitionEvent&)>& transition) {
  absl::MutexLock lock(&events_mutex_);
  ASSIGN_OR_RETURN(int64_t* last, LastSequenceLocked(job_id));
  std::optional<v1::MetricsEvent> recorded;
  RETURN_IF_ERROR(transition([&](const v1::Job& stored) {
    recorded = event(stored);
    recorded->set_job_id(job_id);
    recorded->set_sequence(*last + 1);
    SetTimestamp(absl::Now(), recorded->mutable_time());
    return *recorded;
  }));
  if (recorded.has_value()) {  // it was not if the transition had nothing to record
    *last = recorded->sequence();
    deps_.events->Publish(job_id, *recorded);  // only enqueues (event_hub.h)
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Job> JobManager::ChangeState(const std::string& job_id,
                                                const std::vector<v1::JobState>& from,
                                                v1::JobState to, const std::string& message,
                                                const JobEdit& edit) {
  // The jobs-by-state gauge moves before the new state is visible in the store or the event
  // log, so a scrape that follows anything a client saw counts the job in its new state. Which
  // of `from` the job leaves is known once the store has checked it: the gauge takes the first
  // and is corrected if it was another.
  const v1::JobState assumed = from.front();
  if (deps_.metrics) deps_.metrics->RecordJobStateChange(JobStateName(assumed), JobStateName(to));
  v1::JobState actual = assumed;
  absl::StatusOr<v1::Job> stored;
  const absl::Status changed = TransitionRecorded(
      job_id,
      [&](const v1::Job& job) {
        v1::MetricsEvent event;
        event.set_step(job.progress().step());
        event.mutable_state_change()->set_from_state(actual);
        event.mutable_state_change()->set_to_state(to);
        event.mutable_state_change()->set_message(message);
        return event;
      },
      [&](const TransitionEvent& event) {
        stored = deps_.store->TransitionJob(
            job_id, from, to,
            [&](v1::Job& job) {
              actual = job.state();
              if (edit) edit(job);
            },
            event);
        return stored.status();
      });
  if (!changed.ok()) {
    if (deps_.metrics) deps_.metrics->RecordJobStateChange(JobStateName(to), JobStateName(assumed));
    return changed;
  }
  if (deps_.metrics && actual != assumed) {
    deps_.metrics->RecordJobStateChange(JobStateName(actual), JobStateName(assumed));
  }
  if (deps_.logger) {
    deps_.logger->Info("job.state")
        .With("job_id", job_id)
        .With("from", JobStateName(actual))
        .With("to", JobStateName(to))
        .With("message", message);
  }
  return stored;
}

void JobManager::RemoveRunDirectory(const std::string& job_id) {
  std::error_code error;
  fs::remove_all(JobRunner::RunDirectory(config_, job_id), error);
  if (!error) fs::remove_all(JobRunner::CompletingDirectory(config_, job_id), error);
  if (error && deps_.logger) {
    deps_.logger->Warning("job.cleanup_failed")
        .With("job_id", job_id)
        .With("error", error.message());
  }
}

void JobManager::SweepEndedRuns() {
  std::set<std::string> job_ids;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(fs::path(config_.state_dir) / "runs", error)) {
    const std::string name = entry.path().filename().string();
    job_ids.insert(std::string(absl::StripSuffix(name, ".completing")));
  }
  for (const std::string& job_id : job_ids) {
    absl::StatusOr<v1::Job> job = deps_.store->GetJob(job_id);
    if (!job.ok()) continue;  // not ours
    const std::string run_dir = JobRunner::RunDirectory(config_, job_id);
    const std::string completing = JobRunner::CompletingDirectory(config_, job_id);
    if (job->state() == v1::JOB_STATE_RUNNING) {
      // Its completion did not commit: the checkpoints go back, and it resumes from them.
      if (fs::exists(completing, error) && !fs::exists(run_dir, error)) {
        fs::rename(completing, run_dir, error);
        if (error && deps_.logger) {
          deps_.logger->Warning("job.cleanup_failed")
              .With("job_id", job_id)
              .With("error", error.message());
        }
      }
      continue;
    }
    if (!IsTerminal(job->state())) continue;  // QUEUED or CANCELLING: settled by Recover
    if (job->state() == v1::JOB_STATE_SUCCEEDED) {
      // The last state change the history records: RUNNING or CANCELLING in a state directory
      // from a verdictd that stored the SUCCEEDED event after the completion, not with it, and
      // crashed between the two.
      auto events = deps_.store->ReadEvents(job_id, 0, 0);
      v1::JobState last = v1::JOB_STATE_UNSPECIFIED;
      if (events.ok()) {
        for (const v1::MetricsEvent& event : *events) {
          if (event.has_state_change()) last = event.state_change().to_state();
        }
      }
      if (events.ok() && last != v1::JOB_STATE_SUCCEEDED) {
        v1::MetricsEvent event;
        event.set_step(job->progress().step());
        event.mutable_state_change()->set_from_state(last);
        event.mutable_state_change()->set_to_state(v1::JOB_STATE_SUCCEEDED);
        event.mutable_state_change()->set_message(
            absl::StrCat("registered ", job->result_model().name(), " version ",
                         job->result_model().version(), " (recorded at restart)"));
        if (absl::Status emitted = Emit(job_id, event); !emitted.ok() && deps_.logger) {
          deps_.logger->Warning("job.event_not_stored")
              .With("job_id", job_id)
              .With("error", emitted);
        }
      }
    }
    RemoveRunDirectory(job_id);
  }
}

void JobManager::CountJobsByState() {
  if (deps_.metrics == nullptr) return;
  for (v1::JobState state :
       {v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING, v1::JOB_STATE_CANCELLING,
        v1::JOB_STATE_SUCCEEDED, v1::JOB_STATE_FAILED, v1::JOB_STATE_CANCELLED}) {
    JobFilter filter;
    filter.states = {state};
    PageRequest page;
    page.page_size = PageRequest::kMaxPageSize;
    int64_t count = 0;
    // Counting pages keeps the store interface small; job counts are modest.
    while (true) {
      auto listed = deps_.store->ListJobs(filter, page);
      if (!listed.ok()) {
        if (deps_.logger) {
          deps_.logger->Warning("jobs.count_failed").With("error", listed.status());
        }
        return;
      }
      count += static_cast<int64_t>(listed->items.size());
      if (listed->next_page_token.empty()) break;
      page.page_token = listed->next_page_token;
    }
    deps_.metrics->SetJobCount(JobStateName(state), count);
  }
}

}  // namespace verdict::server
