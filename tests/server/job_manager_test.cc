// JobManager and JobRunner on a real SqliteJobStore in a scratch directory, with tiny real
// training runs (encoder-tiny on tests/data) and, where a test needs a seam, a store wrapper
// that holds or fails one call.
#include "server/job_manager.h"

#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"
#include "server/event_hub.h"
#include "server/job_runner.h"
#include "server/server_metrics.h"
#include "server/sqlite_job_store.h"
#include "tests/server/forwarding_job_store.h"
#include "tests/server/server_test_util.h"
#include "tests/testing/test_paths.h"

namespace verdict::server {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using ::verdict::testing::ForwardingJobStore;
using ::verdict::testing::MetricSum;
using ::verdict::testing::ScratchDir;
using ::verdict::testing::TestDataPath;
using ::verdict::testing::TinyJobSpec;

constexpr char kDataset[] = "ds-helpful";

std::string Serialize(prometheus::Registry& registry) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry.Collect());
  return out.str();
}

// Holds the first progress save of a train step until release_, and tells when it is held
// (held_) and when it has been written (written_). A progress save is UpdateJobProgress, or a
// whole-job UpdateJob of a RUNNING job (how the manager saved progress before; it must not
// come back).
class HoldingStore : public ForwardingJobStore {
 public:
  using ForwardingJobStore::ForwardingJobStore;

  absl::Status UpdateJobProgress(absl::string_view job_id,
                                 const v1::JobProgress& progress) override {
    return Held(progress, [&] { return ForwardingJobStore::UpdateJobProgress(job_id, progress); });
  }
  absl::Status UpdateJob(const v1::Job& job) override {
    if (job.state() != v1::JOB_STATE_RUNNING) return ForwardingJobStore::UpdateJob(job);
    return Held(job.progress(), [&] { return ForwardingJobStore::UpdateJob(job); });
  }

  absl::Notification held_, release_, written_;

 private:
  absl::Status Held(const v1::JobProgress& progress, const std::function<absl::Status()>& write) {
    bool hold = false;
    {
      absl::MutexLock lock(&mutex_);
      if (!holding_done_ && progress.step() >= 1) hold = holding_done_ = true;
    }
    if (hold) {
      held_.Notify();
      release_.WaitForNotification();
    }
    absl::Status status = write();
    if (hold) written_.Notify();
    return status;
  }

  absl::Mutex mutex_;
  bool holding_done_ ABSL_GUARDED_BY(mutex_) = false;
};

// Fails every move to `fail_to` (TransitionJob, or a whole-job UpdateJob writing that state)
// with UNAVAILABLE.
class FailingTransitionStore : public ForwardingJobStore {
 public:
  FailingTransitionStore(JobStore* store, v1::JobState fail_to)
      : ForwardingJobStore(store), fail_to_(fail_to) {}
  absl::StatusOr<v1::Job> TransitionJob(absl::string_view job_id,
                                        const std::vector<v1::JobState>& from, v1::JobState to,
                                        const JobEdit& edit,
                                        const TransitionEvent& event) override {
    if (to == fail_to_) return absl::UnavailableError("injected: the disk is gone");
    return ForwardingJobStore::TransitionJob(job_id, from, to, edit, event);
  }
  absl::Status UpdateJob(const v1::Job& job) override {
    if (job.state() == fail_to_) return absl::UnavailableError("injected: the disk is gone");
    return ForwardingJobStore::UpdateJob(job);
  }

 private:
  const v1::JobState fail_to_;
};

// Records every state change whose event was appended on its own, after the state it reports
// was already stored: a window in which a reader sees the job SUCCEEDED (or CANCELLED, ...)
// and a history that does not say so.
class EventAfterStateStore : public ForwardingJobStore {
 public:
  using ForwardingJobStore::ForwardingJobStore;

  absl::Status AppendEvents(absl::string_view job_id,
                            const std::vector<v1::MetricsEvent>& events) override {
    for (const v1::MetricsEvent& event : events) {
      // The "submitted" event follows CreateJob, which has no event of its own to record.
      if (!event.has_state_change() ||
          event.state_change().from_state() == v1::JOB_STATE_UNSPECIFIED) {
        continue;
      }
      absl::StatusOr<v1::Job> job = ForwardingJobStore::GetJob(job_id);
      if (job.ok() && job->state() == event.state_change().to_state()) {
        absl::MutexLock lock(&mutex_);
        late_.push_back(v1::JobState_Name(job->state()));
      }
    }
    return ForwardingJobStore::AppendEvents(job_id, events);
  }

  std::vector<std::string> late() {
    absl::MutexLock lock(&mutex_);
    return late_;
  }

 private:
  absl::Mutex mutex_;
  std::vector<std::string> late_ ABSL_GUARDED_BY(mutex_);
};

class JobManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.state_dir = scratch_.Path("state");
    config_.data_dir = scratch_.Path("data");
    config_.model_dir = scratch_.Path("models");
    config_.max_concurrent_jobs = 1;
    config_.job_series_retention = absl::ZeroDuration();
    auto store = SqliteJobStore::Open(scratch_.Path("state/verdict.db"));
    ASSERT_TRUE(store.ok()) << store.status();
    sqlite_ = *std::move(store);
    v1::Dataset dataset;
    dataset.set_id(kDataset);
    dataset.set_name("helpful-concise");
    ASSERT_TRUE(sqlite_->CreateDataset(dataset).ok());
    metrics_ =
        std::make_unique<ServerMetrics>(registry_, ServerMetrics::BuildInfo{"t", "t", "cpu"});
  }

  void TearDown() override { manager_.reset(); }

  JobManager::Dependencies Deps(JobStore* store) {
    JobManager::Dependencies deps;
    deps.store = store;
    deps.events = &hub_;
    deps.metrics = metrics_.get();
    deps.resolvers.dataset_file = [this](const std::string& id) -> absl::StatusOr<std::string> {
      if (id == kDataset) return TestDataPath("synthetic/helpful-concise.jsonl");
      if (id == "ds-garbage") return garbage_path_;
      return absl::NotFoundError(absl::StrCat("dataset ", id));
    };
    return deps;
  }

  void StartManager(JobStore* store) {
    auto manager = JobManager::Create(config_, Deps(store));
    if (manager.ok()) (*manager)->StartWorkers();
    ASSERT_TRUE(manager.ok()) << manager.status();
    manager_ = *std::move(manager);
  }

  absl::StatusOr<v1::Job> Submit(const v1::TrainingJobSpec& spec) {
    v1::SubmitTrainingJobRequest request;
    *request.mutable_spec() = spec;
    return manager_->Submit(request);
  }

  // Polls the store until `done` holds (60 s at most).
  v1::Job WaitFor(const std::string& job_id, const std::function<bool(const v1::Job&)>& done) {
    const absl::Time give_up = absl::Now() + absl::Seconds(120);
    v1::Job job;
    while (absl::Now() < give_up) {
      absl::StatusOr<v1::Job> read = sqlite_->GetJob(job_id);
      EXPECT_TRUE(read.ok()) << read.status();
      if (!read.ok()) return job;
      job = *read;
      if (done(job)) return job;
      absl::SleepFor(absl::Milliseconds(20));
    }
    ADD_FAILURE() << "job " << job_id << " stuck in " << v1::JobState_Name(job.state());
    return job;
  }
  v1::Job WaitForTerminal(const std::string& job_id) {
    return WaitFor(job_id, [](const v1::Job& job) { return testing::IsTerminal(job.state()); });
  }

  int64_t VersionsOf(const std::string& name) {
    PageRequest page;
    auto listed = sqlite_->ListModels(name, page);
    EXPECT_TRUE(listed.ok()) << listed.status();
    return listed.ok() ? static_cast<int64_t>(listed->items.size()) : -1;
  }

  ScratchDir scratch_;
  ServerConfig config_;
  std::unique_ptr<SqliteJobStore> sqlite_;
  EventHub hub_;
  prometheus::Registry registry_;
  std::unique_ptr<ServerMetrics> metrics_;
  std::string garbage_path_;
  std::unique_ptr<JobManager> manager_;
};

TEST_F(JobManagerTest, RunsATinyJobToOneRegisteredVersionAndTimesEachCheckpoint) {
  StartManager(sqlite_.get());
  v1::TrainingJobSpec spec = TinyJobSpec(kDataset, 6);
  spec.set_save_steps(2);
  absl::StatusOr<v1::Job> submitted = Submit(spec);
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  EXPECT_EQ(submitted->state(), v1::JOB_STATE_QUEUED);

  const v1::Job done = WaitForTerminal(submitted->id());
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error_message();
  EXPECT_EQ(done.attempt(), 1);
  EXPECT_EQ(done.result_model().name(), "tiny");
  EXPECT_EQ(done.result_model().version(), 1);
  EXPECT_EQ(done.progress().step(), 6);
  EXPECT_EQ(VersionsOf("tiny"), 1);
  EXPECT_FALSE(fs::exists(JobRunner::RunDirectory(config_, submitted->id())));

  // The trainer logs how long each checkpoint write took; the histogram must agree with it
  // (before, every observation was the time since the job started).
  auto events = sqlite_->ReadEvents(submitted->id(), 0, 0);
  ASSERT_TRUE(events.ok());
  int checkpoints = 0;
  double logged_seconds = 0;
  for (const v1::MetricsEvent& event : *events) {
    if (!event.has_log()) continue;
    absl::string_view text = event.log().text();
    const size_t at = text.find(" written in ");
    if (!absl::StartsWith(text, "checkpoint ") || at == absl::string_view::npos) continue;
    absl::string_view number = text.substr(at + 12);
    number = absl::StripSuffix(number, " s");
    double seconds = 0;
    ASSERT_TRUE(absl::SimpleAtod(number, &seconds)) << text;
    ++checkpoints;
    logged_seconds += seconds;
  }
  ASSERT_GE(checkpoints, 3);  // steps 2 and 4, and the final one
  // The job's own series go once the job has ended (retention 0 here); its last values are in
  // the store.
  const std::string job_label = absl::StrCat("job_id=\"", submitted->id(), "\"");
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (absl::StrContains(Serialize(registry_), job_label) && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  const std::string exposition = Serialize(registry_);
  EXPECT_THAT(exposition, Not(HasSubstr(job_label)));
  EXPECT_TRUE(done.progress().has_last_train_metrics());
  EXPECT_EQ(MetricSum(exposition, "verdict_checkpoint_duration_seconds_count"), checkpoints);
  const double observed = MetricSum(exposition, "verdict_checkpoint_duration_seconds_sum");
  EXPECT_GE(observed, logged_seconds * 0.9);
  EXPECT_LE(observed, logged_seconds + 0.05 * checkpoints + 0.05)
      << "checkpoint durations should time the writes, not the job";

  EXPECT_EQ(MetricSum(exposition, "verdict_job_duration_seconds_count", {{"state", "succeeded"}}),
            1);
  EXPECT_LT(MetricSum(exposition, "verdict_job_duration_seconds_sum", {{"state", "succeeded"}}),
            600);
  EXPECT_EQ(MetricSum(exposition, "verdict_jobs", {{"state", "succeeded"}}), 1);
  EXPECT_EQ(MetricSum(exposition, "verdict_jobs", {{"state", "running"}}), 0);
}

// Before: the SUCCEEDED, RUNNING and CANCELLED events were appended after the state change had
// committed, so GetJob could say SUCCEEDED while the history (StreamMetrics with no_follow)
// still ended in RUNNING. Each is now stored in the transaction that changes the state.
TEST_F(JobManagerTest, EveryStateChangeIsStoredWithItsEvent) {
  EventAfterStateStore store(sqlite_.get());
  StartManager(&store);
  absl::StatusOr<v1::Job> trained = Submit(TinyJobSpec(kDataset, 2));
  ASSERT_TRUE(trained.ok()) << trained.status();
  absl::StatusOr<v1::Job> cancelled = Submit(TinyJobSpec(kDataset, 2));
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  // Queued behind the first: QUEUED -> CANCELLED.
  ASSERT_TRUE(manager_->Cancel(cancelled->id(), "test").ok());
  for (const std::string& id : {trained->id(), cancelled->id()}) {
    const v1::Job done = WaitForTerminal(id);
    auto events = sqlite_->ReadEvents(id, 0, 0);
    ASSERT_TRUE(events.ok()) << events.status();
    ASSERT_FALSE(events->empty());
    ASSERT_TRUE(events->back().has_state_change());
    EXPECT_EQ(events->back().state_change().to_state(), done.state());
    EXPECT_EQ(events->back().sequence(), done.last_sequence());
  }
  EXPECT_EQ(sqlite_->GetJob(trained->id())->state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(sqlite_->GetJob(cancelled->id())->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_THAT(store.late(), ::testing::IsEmpty());
}

// Before: the progress save read the job, copied it and wrote it back whole, so a cancel that
// landed in between was overwritten with RUNNING, and a restart resumed the cancelled job.
TEST_F(JobManagerTest, ACancelDuringAProgressSaveIsNeverUndone) {
  HoldingStore store(sqlite_.get());
  StartManager(&store);
  absl::StatusOr<v1::Job> submitted = Submit(TinyJobSpec(kDataset, 100000));
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  const std::string id = submitted->id();
  ASSERT_TRUE(store.held_.WaitForNotificationWithTimeout(absl::Seconds(120)));

  // The training thread is inside its progress save; the user cancels.
  absl::StatusOr<v1::Job> cancelled = manager_->Cancel(id, "changed my mind");
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state(), v1::JOB_STATE_CANCELLING);
  store.release_.Notify();
  ASSERT_TRUE(store.written_.WaitForNotificationWithTimeout(absl::Seconds(30)));
  absl::StatusOr<v1::Job> after_save = sqlite_->GetJob(id);
  ASSERT_TRUE(after_save.ok());
  EXPECT_NE(after_save->state(), v1::JOB_STATE_RUNNING) << "the progress save undid the cancel";

  // The server goes down at once; the restarted one must not run the job again.
  manager_.reset();
  absl::StatusOr<v1::Job> at_shutdown = sqlite_->GetJob(id);
  ASSERT_TRUE(at_shutdown.ok());
  EXPECT_EQ(at_shutdown->state(), v1::JOB_STATE_CANCELLED);
  StartManager(sqlite_.get());
  absl::SleepFor(absl::Milliseconds(300));
  absl::StatusOr<v1::Job> restarted = sqlite_->GetJob(id);
  ASSERT_TRUE(restarted.ok());
  EXPECT_EQ(restarted->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(restarted->attempt(), 1);
  EXPECT_EQ(manager_->QueuedCount(), 0);
}

// Before: if the SUCCEEDED write failed after the model was registered, the job stayed
// RUNNING, the restart trained it again and registered a second version of one job.
TEST_F(JobManagerTest, ARestartedJobThatRegisteredBeforeEndsWithOneVersion) {
  StartManager(sqlite_.get());
  v1::SubmitTrainingJobRequest preview;
  *preview.mutable_spec() = TinyJobSpec(kDataset, 3);
  preview.set_validate_only(true);
  absl::StatusOr<v1::Job> normalized = manager_->Submit(preview);
  ASSERT_TRUE(normalized.ok()) << normalized.status();
  manager_.reset();

  // What the crashed server left: the job RUNNING, its model already registered.
  v1::Job job = *normalized;
  job.set_id("job-registered-once");
  job.set_state(v1::JOB_STATE_RUNNING);
  job.set_attempt(1);
  job.mutable_create_time()->set_seconds(1700000000);
  ASSERT_TRUE(sqlite_->CreateJob(job).ok());
  v1::Model model;
  model.set_name("tiny");
  model.set_training_job_id(job.id());
  model.set_storage_path("models/tiny/job-registered-once");
  ASSERT_TRUE(sqlite_->AddModelVersion(model).ok());

  StartManager(sqlite_.get());
  const v1::Job done = WaitForTerminal(job.id());
  ASSERT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED) << done.error_message();
  EXPECT_EQ(done.attempt(), 2);
  EXPECT_EQ(done.result_model().version(), 1);
  EXPECT_EQ(VersionsOf("tiny"), 1);
}

// Before: a job that failed before it started observed now - 1970 (56 years) as its duration.
TEST_F(JobManagerTest, AJobFailingBeforeItStartsRecordsNoDuration) {
  FailingTransitionStore store(sqlite_.get(), v1::JOB_STATE_RUNNING);
  StartManager(&store);
  absl::StatusOr<v1::Job> submitted = Submit(TinyJobSpec(kDataset, 3));
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  const v1::Job failed = WaitForTerminal(submitted->id());
  EXPECT_EQ(failed.state(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(failed.error_message(), HasSubstr("injected"));
  EXPECT_FALSE(failed.has_start_time());
  EXPECT_EQ(failed.attempt(), 0);
  manager_.reset();
  const std::string exposition = Serialize(registry_);
  EXPECT_EQ(MetricSum(exposition, "verdict_job_duration_seconds_count", {{"state", "failed"}}), 0);
  EXPECT_EQ(MetricSum(exposition, "verdict_jobs", {{"state", "failed"}}), 1);
  EXPECT_EQ(MetricSum(exposition, "verdict_jobs", {{"state", "queued"}}), 0);
}

TEST_F(JobManagerTest, ABadDatasetFailsTheJobWithItsErrorAndAShortDuration) {
  garbage_path_ = scratch_.Path("data/garbage.jsonl");
  fs::create_directories(scratch_.Path("data"));
  std::ofstream(garbage_path_) << "this is not json\n{\"also\": \"not a pair\"}\n";
  v1::Dataset dataset;
  dataset.set_id("ds-garbage");
  ASSERT_TRUE(sqlite_->CreateDataset(dataset).ok());
  StartManager(sqlite_.get());
  absl::StatusOr<v1::Job> submitted = Submit(TinyJobSpec("ds-garbage", 3));
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  const v1::Job failed = WaitForTerminal(submitted->id());
  EXPECT_EQ(failed.state(), v1::JOB_STATE_FAILED);
  EXPECT_FALSE(failed.error_message().empty());
  EXPECT_NE(failed.error_code(), 0);
  EXPECT_EQ(failed.progress().phase(), v1::TRAINING_PHASE_UNSPECIFIED);
  EXPECT_FALSE(fs::exists(JobRunner::RunDirectory(config_, submitted->id())));
  manager_.reset();
  const std::string exposition = Serialize(registry_);
  EXPECT_EQ(MetricSum(exposition, "verdict_job_duration_seconds_count", {{"state", "failed"}}), 1);
  EXPECT_LT(MetricSum(exposition, "verdict_job_duration_seconds_sum", {{"state", "failed"}}), 600);
  EXPECT_EQ(VersionsOf("tiny"), 0);
}

TEST_F(JobManagerTest, CancelsAQueuedJobBeforeItRunsAndARunningOneAfterItsStep) {
  StartManager(sqlite_.get());
  absl::StatusOr<v1::Job> running = Submit(TinyJobSpec(kDataset, 100000));
  ASSERT_TRUE(running.ok()) << running.status();
  absl::StatusOr<v1::Job> queued = Submit(TinyJobSpec(kDataset, 3));
  ASSERT_TRUE(queued.ok()) << queued.status();
  WaitFor(running->id(), [](const v1::Job& job) { return job.progress().step() >= 1; });

  absl::StatusOr<v1::Job> cancelled = manager_->Cancel(queued->id(), "");
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(manager_->QueuedCount(), 0);

  cancelled = manager_->Cancel(running->id(), "enough");
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state(), v1::JOB_STATE_CANCELLING);
  const v1::Job stopped = WaitForTerminal(running->id());
  EXPECT_EQ(stopped.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_FALSE(stopped.has_result_model());

  absl::StatusOr<v1::Job> never_ran = sqlite_->GetJob(queued->id());
  ASSERT_TRUE(never_ran.ok());
  EXPECT_EQ(never_ran->attempt(), 0);
  EXPECT_FALSE(never_ran->has_start_time());
  // A finished job cannot be cancelled; a cancelled one can, as a no-op.
  EXPECT_EQ(manager_->Cancel(running->id(), "").status().code(), absl::StatusCode::kOk);
  EXPECT_EQ(VersionsOf("tiny"), 0);
}

// What SIGTERM does to training (verdictd drains its jobs before it exits), in one process so
// that the ThreadSanitizer tree runs it (scripts/sanitize.sh tsan): the running job stops after
// its step, checkpoints there and goes back to QUEUED; a queued job is not started; the next
// manager resumes the first from that checkpoint, and every step is recorded once.
TEST_F(JobManagerTest, DrainRequeuesTheRunningJobWhichTheNextManagerResumesAtItsStep) {
  StartManager(sqlite_.get());
  v1::TrainingJobSpec spec = TinyJobSpec(kDataset, 100000);
  spec.set_save_steps(100000);  // the only checkpoint is the one the drain writes
  absl::StatusOr<v1::Job> running = Submit(spec);
  ASSERT_TRUE(running.ok()) << running.status();
  absl::StatusOr<v1::Job> queued = Submit(TinyJobSpec(kDataset, 3));
  ASSERT_TRUE(queued.ok()) << queued.status();
  WaitFor(running->id(), [](const v1::Job& job) { return job.progress().step() >= 2; });

  manager_->Drain();
  absl::StatusOr<v1::Job> drained = sqlite_->GetJob(running->id());
  ASSERT_TRUE(drained.ok()) << drained.status();
  EXPECT_EQ(drained->state(), v1::JOB_STATE_QUEUED);
  const int64_t drained_step = drained->progress().step();
  EXPECT_GE(drained_step, 2);
  absl::StatusOr<v1::Job> not_started = sqlite_->GetJob(queued->id());
  ASSERT_TRUE(not_started.ok()) << not_started.status();
  EXPECT_EQ(not_started->attempt(), 0);
  manager_.reset();

  StartManager(sqlite_.get());
  const v1::Job resumed = WaitFor(running->id(), [drained_step](const v1::Job& job) {
    return job.attempt() == 2 && job.progress().step() >= drained_step + 2;
  });
  EXPECT_EQ(resumed.resumed_from_step(), drained_step);
  ASSERT_TRUE(manager_->Cancel(running->id(), "enough").ok());
  EXPECT_EQ(WaitForTerminal(running->id()).state(), v1::JOB_STATE_CANCELLED);

  absl::StatusOr<std::vector<v1::MetricsEvent>> events =
      sqlite_->ReadEvents(running->id(), /*after_sequence=*/0, /*limit=*/0);
  ASSERT_TRUE(events.ok()) << events.status();
  std::vector<int64_t> steps;
  for (const v1::MetricsEvent& event : *events) {
    if (event.has_train()) steps.push_back(event.step());
  }
  ASSERT_GE(steps.size(), static_cast<size_t>(drained_step + 2));
  for (size_t i = 0; i < steps.size(); ++i) {
    ASSERT_EQ(steps[i], static_cast<int64_t>(i) + 1) << "train events out of order or repeated";
  }
}

}  // namespace
}  // namespace verdict::server
