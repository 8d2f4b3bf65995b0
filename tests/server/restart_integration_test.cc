// Restart tests of the real verdictd binary, run as a subprocess on a scratch --state_dir:
// SIGKILL in the middle of a training job, then a restart that resumes the job from its last
// checkpoint and leaves a history with every step exactly once; and SIGTERM, which drains
// (the job checkpoints and goes back to QUEUED, watchers get UNAVAILABLE) and exits 0 well
// within the grace period, after which a restart finishes the job. The crash-window tests
// SIGKILL verdictd at fixed points of a job's end (VERDICT_TEST_KILL_AT, core/util/
// crash_point.h) and check that the restart completes the job exactly once: one SUCCEEDED,
// one model version whose directory is not rewritten, no event stored twice.
#include <signal.h>

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/sqlite_job_store.h"
#include "tests/server/server_test_util.h"
#include "tests/server/verdictd_process.h"
#include "tests/testing/test_paths.h"

namespace verdict::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// verdictd with the roots under `root`, one worker thread; `kill_at`, when set, is the crash
// point (VERDICT_TEST_KILL_AT) at which it SIGKILLs itself.
std::unique_ptr<VerdictdProcess> StartVerdictd(const fs::path& root,
                                               const std::vector<std::string>& extra_flags = {},
                                               const std::string& kill_at = "") {
  std::vector<std::string> flags = {"--threads=1"};
  flags.insert(flags.end(), extra_flags.begin(), extra_flags.end());
  std::map<std::string, std::string> env;
  if (!kill_at.empty()) env["VERDICT_TEST_KILL_AT"] = kill_at;
  return VerdictdProcess::Start(VERDICTD_PATH, root, flags, env);
}

class RestartIntegrationTest : public ::testing::Test {
 protected:
  std::string UploadPairs(Clients& clients, int lines) {
    v1::Dataset dataset;
    grpc::Status status = UploadWithChecks(
        *clients.datasets, FirstLines(TestDataPath("synthetic/helpful-concise.jsonl"), lines), "pairs", &dataset);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return dataset.id();
  }

  v1::Job Submit(Clients& clients, const v1::TrainingJobSpec& spec) {
    v1::SubmitTrainingJobRequest request;
    *request.mutable_spec() = spec;
    v1::Job job;
    auto context = NewContext();
    grpc::Status status = clients.training->SubmitTrainingJob(context.get(), request, &job);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return job;
  }

  // Every step 1..steps appears exactly once among the train events; the sequence numbers
  // increase; the steps never go back.
  static void ExpectCompleteHistory(const std::vector<v1::MetricsEvent>& events, int64_t steps) {
    std::map<int64_t, int> seen;
    for (size_t i = 0; i < events.size(); ++i) {
      if (events[i].has_train()) ++seen[events[i].step()];
      if (i > 0) {
        EXPECT_GT(events[i].sequence(), events[i - 1].sequence());
        EXPECT_GE(events[i].step(), events[i - 1].step())
            << events[i - 1].ShortDebugString() << "\n then " << events[i].ShortDebugString();
      }
    }
    for (int64_t step = 1; step <= steps; ++step) {
      EXPECT_EQ(seen[step], 1) << "step " << step;
    }
    EXPECT_EQ(seen.size(), static_cast<size_t>(steps));
  }

  static std::vector<v1::JobState> States(const std::vector<v1::MetricsEvent>& events) {
    std::vector<v1::JobState> states;
    for (const auto& event : events) {
      if (event.has_state_change()) states.push_back(event.state_change().to_state());
    }
    return states;
  }

  // SIGTERM after the client has closed its channel: verdictd exits 0 promptly.
  static void ExpectCleanExit(VerdictdProcess& process, std::unique_ptr<Clients> clients) {
    clients.reset();
    process.Signal(SIGTERM);
    EXPECT_EQ(process.Wait(absl::Seconds(30)), 0) << process.Logs();
  }

  static std::map<int64_t, double> LossByStep(const std::vector<v1::MetricsEvent>& events) {
    std::map<int64_t, double> losses;
    for (const auto& event : events) {
      if (event.has_train()) losses[event.step()] = event.train().loss();
    }
    return losses;
  }

  // Each file under `dir` (relative path) with its contents and modification time.
  struct FileState {
    std::string contents;
    fs::file_time_type mtime;
    bool operator==(const FileState& other) const {
      return contents == other.contents && mtime == other.mtime;
    }
  };
  static std::map<std::string, FileState> Snapshot(const fs::path& dir) {
    std::map<std::string, FileState> files;
    std::error_code error;
    for (const auto& entry : fs::recursive_directory_iterator(dir, error)) {
      if (!entry.is_regular_file()) continue;
      std::ifstream in(entry.path(), std::ios::binary);
      FileState state{std::string((std::istreambuf_iterator<char>(in)),
                                  std::istreambuf_iterator<char>()),
                      entry.last_write_time()};
      files[fs::relative(entry.path(), dir).string()] = std::move(state);
    }
    return files;
  }

  static constexpr int64_t kCrashSteps = 20;

  // Runs a tiny job (checkpoints every 5 steps, eval at 10 and at the end) on a verdictd that
  // SIGKILLs itself at `kill_at`; returns the job's id once the process is dead.
  std::string RunUntilKilledAt(const std::string& kill_at) {
    auto process = StartVerdictd(scratch_.path(), {}, kill_at);
    if (process == nullptr) return "";
    std::string job_id;
    {
      Clients clients(process->address());
      const std::string dataset_id = UploadPairs(clients, 200);
      v1::TrainingJobSpec spec = TinyJobSpec(dataset_id, kCrashSteps);
      spec.set_save_steps(5);
      spec.set_eval_steps(10);
      job_id = Submit(clients, spec).id();
    }
    const std::optional<int> code = process->Wait(absl::Seconds(120));
    EXPECT_EQ(code, -SIGKILL) << "verdictd did not die at " << kill_at << "\n" << process->Logs();
    return job_id;
  }

  // What a restart after the crash left: the job and its history (through a verdictd that
  // ran the job to its end and exited), and the model versions registered for the job.
  struct AfterRestart {
    v1::Job job;
    std::vector<v1::MetricsEvent> events;
    std::vector<v1::Model> versions;  // of the job's output model, training_job_id == the job
  };
  AfterRestart RestartAndFinish(const std::string& job_id) {
    AfterRestart after;
    {
      auto process = StartVerdictd(scratch_.path());
      if (process == nullptr) return after;
      auto clients = std::make_unique<Clients>(process->address());
      auto job = WaitForTerminal(*clients->training, job_id);
      EXPECT_TRUE(job.ok()) << job.status() << "\n" << process->Logs();
      if (!job.ok()) return after;
      after.job = *job;
      // Followed to its end, as a watcher reads it: the SUCCEEDED event is stored just after
      // the state commits (a restart records it if a crash comes between).
      v1::StreamMetricsRequest request;
      request.set_job_id(job_id);
      StreamResult history = ReadMetrics(*clients->training, request, absl::Seconds(30));
      EXPECT_TRUE(history.status.ok()) << history.status.error_message();
      after.events = std::move(history.events);
      ExpectCleanExit(*process, std::move(clients));
    }
    auto store = server::SqliteJobStore::Open((scratch_.path() / "state" / "verdict.db").string());
    EXPECT_TRUE(store.ok()) << store.status();
    if (!store.ok()) return after;
    auto models = (*store)->ListModels(after.job.spec().output_model_name(), {});
    EXPECT_TRUE(models.ok()) << models.status();
    if (!models.ok()) return after;
    for (const v1::Model& model : models->items) {
      if (model.training_job_id() == job_id) after.versions.push_back(model);
    }
    return after;
  }

  // Exactly once: SUCCEEDED with one version, every train step and eval once, the sequence
  // increasing, the history ending in SUCCEEDED, the checkpoints gone.
  void ExpectCompletedOnce(const AfterRestart& after) {
    EXPECT_EQ(after.job.state(), v1::JOB_STATE_SUCCEEDED) << after.job.error_message();
    ASSERT_EQ(after.versions.size(), 1u);
    EXPECT_EQ(after.job.result_model().version(), after.versions[0].version());
    const fs::path storage = fs::path("models") / after.job.spec().output_model_name();
    EXPECT_EQ(after.versions[0].storage_path(), (storage / after.job.id()).string());
    ExpectCompleteHistory(after.events, kCrashSteps);
    std::vector<int64_t> evals;
    for (const auto& event : after.events) {
      if (event.has_eval()) evals.push_back(event.step());
    }
    EXPECT_EQ(evals, std::vector<int64_t>({10, kCrashSteps}));
    const std::vector<v1::JobState> states = States(after.events);
    ASSERT_FALSE(states.empty());
    EXPECT_EQ(states.back(), v1::JOB_STATE_SUCCEEDED);
    EXPECT_EQ(std::count(states.begin(), states.end(), v1::JOB_STATE_SUCCEEDED), 1);
    EXPECT_FALSE(fs::exists(scratch_.path() / "state" / "runs" / after.job.id()));
    EXPECT_FALSE(fs::exists(scratch_.path() / "state" / "runs" / (after.job.id() + ".completing")));
  }

  fs::path ModelDir(const std::string& job_id) const {
    return scratch_.path() / "state" / "models" / "tiny" / job_id;
  }

  ScratchDir scratch_;
};

TEST_F(RestartIntegrationTest, AJobKilledMidTrainingResumesFromItsCheckpointWithEveryStepOnce) {
  constexpr int64_t kSteps = 40;
  auto first = StartVerdictd(scratch_.path());
  ASSERT_NE(first, nullptr);
  std::string job_id;
  int64_t last_seen_sequence = 0;
  int64_t last_seen_step = 0;
  {
    Clients clients(first->address());
    const std::string dataset_id = UploadPairs(clients, 300);
    v1::TrainingJobSpec spec = TinyJobSpec(dataset_id, kSteps);
    spec.set_save_steps(5);
    spec.set_eval_steps(20);
    job_id = Submit(clients, spec).id();
    ASSERT_FALSE(job_id.empty());
    v1::StreamMetricsRequest request;
    request.set_job_id(job_id);
    StreamResult stream = ReadMetrics(*clients.training, request, absl::Seconds(90),
                                      [&](const v1::MetricsEvent& event) {
                                        last_seen_sequence = event.sequence();
                                        if (!event.has_train() || event.step() < 12) return true;
                                        first->Signal(SIGKILL);
                                        last_seen_step = event.step();
                                        return false;
                                      });
    ASSERT_GE(last_seen_step, 12) << "the job ended before it could be killed: "
                                  << stream.status.error_message() << "\n" << first->Logs();
  }
  ASSERT_EQ(first->Wait(absl::Seconds(30)), -SIGKILL);
  const fs::path run_dir = scratch_.path() / "state" / "runs" / job_id;
  ASSERT_TRUE(fs::exists(run_dir)) << "no checkpoints were written";

  auto second = StartVerdictd(scratch_.path());
  ASSERT_NE(second, nullptr);
  auto clients_owner = std::make_unique<Clients>(second->address());
  Clients& clients = *clients_owner;
  // A watcher that saw events up to last_seen_sequence picks up where it left off.
  v1::StreamMetricsRequest request;
  request.set_job_id(job_id);
  request.set_after_sequence(last_seen_sequence);
  StreamResult resumed = ReadMetrics(*clients.training, request);
  ASSERT_TRUE(resumed.status.ok()) << resumed.status.error_message() << "\n" << second->Logs();
  ASSERT_FALSE(resumed.events.empty());
  EXPECT_GT(resumed.events.front().sequence(), last_seen_sequence);
  for (size_t i = 1; i < resumed.events.size(); ++i) {
    EXPECT_GT(resumed.events[i].sequence(), resumed.events[i - 1].sequence());
  }
  ASSERT_TRUE(resumed.events.back().has_state_change());
  EXPECT_EQ(resumed.events.back().state_change().to_state(), v1::JOB_STATE_SUCCEEDED);

  auto job = WaitForTerminal(*clients.training, job_id);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED) << job->error_message();
  EXPECT_EQ(job->attempt(), 2);
  EXPECT_EQ(job->progress().step(), kSteps);
  // Resumed from a checkpoint written before the kill, not from scratch.
  EXPECT_GE(job->resumed_from_step(), 10);
  EXPECT_LE(job->resumed_from_step(), last_seen_step + 5);
  EXPECT_EQ(job->resumed_from_step() % 5, 0);
  EXPECT_TRUE(job->has_result_model());

  // The stored history: each step once, eval at 20 and at the end, the restart recorded.
  const std::vector<v1::MetricsEvent> history = StoredEvents(*clients.training, job_id);
  ExpectCompleteHistory(history, kSteps);
  std::vector<int64_t> evals;
  for (const auto& event : history) {
    if (event.has_eval()) evals.push_back(event.step());
  }
  EXPECT_EQ(evals, std::vector<int64_t>({20, 40}));
  EXPECT_EQ(States(history),
            std::vector<v1::JobState>({v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING, v1::JOB_STATE_QUEUED,
                                       v1::JOB_STATE_RUNNING, v1::JOB_STATE_SUCCEEDED}));

  // The resumed run continued exactly where the checkpoint was: an uninterrupted run of the
  // same spec logs the same losses at every step.
  v1::Job reference = Submit(clients, job->spec());
  auto reference_done = WaitForTerminal(*clients.training, reference.id());
  ASSERT_TRUE(reference_done.ok());
  ASSERT_EQ(reference_done->state(), v1::JOB_STATE_SUCCEEDED);
  const std::map<int64_t, double> expected = LossByStep(StoredEvents(*clients.training, reference.id()));
  const std::map<int64_t, double> actual = LossByStep(history);
  ASSERT_EQ(actual.size(), expected.size());
  for (const auto& [step, loss] : expected) {
    EXPECT_NEAR(actual.at(step), loss, 1e-5 * std::max(1.0, std::abs(loss))) << "step " << step;
  }

  ExpectCleanExit(*second, std::move(clients_owner));
}

TEST_F(RestartIntegrationTest, SigtermDrainsTheRunningJobAndExitsCleanly) {
  constexpr int64_t kSteps = 40;
  constexpr int kGraceSeconds = 20;
  auto first = StartVerdictd(scratch_.path(), {absl::StrCat("--drain_grace_seconds=", kGraceSeconds)});
  ASSERT_NE(first, nullptr);
  std::string job_id;
  StreamResult watcher;
  absl::Duration exit_time;
  absl::Time signalled;
  {
    Clients clients(first->address());
    const std::string dataset_id = UploadPairs(clients, 300);
    v1::TrainingJobSpec spec = TinyJobSpec(dataset_id, kSteps);
    spec.set_save_steps(1000);  // the only checkpoint is the one the drain writes
    job_id = Submit(clients, spec).id();
    ASSERT_FALSE(job_id.empty());
    // The watcher stays connected through the shutdown.
    v1::StreamMetricsRequest request;
    request.set_job_id(job_id);
    watcher = ReadMetrics(*clients.training, request, absl::Seconds(90), [&](const v1::MetricsEvent& event) {
      if (event.has_train() && event.step() == 8) {
        signalled = absl::Now();
        first->Signal(SIGTERM);
      }
      return true;
    });
    ASSERT_NE(signalled, absl::Time()) << "never saw step 8: " << watcher.status.error_message();
  }
  // The watcher's stream has ended and its channel is closed (an idle channel would keep the
  // server waiting until the client noticed the GOAWAY).
  const std::optional<int> code = first->Wait(absl::Seconds(kGraceSeconds + 10));
  ASSERT_TRUE(code.has_value()) << "verdictd still running after SIGTERM\n" << first->Logs();
  EXPECT_EQ(*code, 0) << first->Logs();
  exit_time = absl::Now() - signalled;
  // The open stream did not hold the server for the grace period.
  EXPECT_LT(exit_time, absl::Seconds(kGraceSeconds / 2)) << first->Logs();
  // The watcher was told to come back (UNAVAILABLE), after the job's return to the queue.
  EXPECT_EQ(watcher.status.error_code(), grpc::StatusCode::UNAVAILABLE) << watcher.status.error_message();
  ASSERT_FALSE(watcher.events.empty());
  ASSERT_TRUE(watcher.events.back().has_state_change()) << watcher.events.back().ShortDebugString();
  EXPECT_EQ(watcher.events.back().state_change().to_state(), v1::JOB_STATE_QUEUED);

  // On disk: the job is QUEUED again, with a checkpoint at the step it stopped at.
  int64_t drained_step = 0;
  {
    auto store = server::SqliteJobStore::Open((scratch_.path() / "state" / "verdict.db").string());
    ASSERT_TRUE(store.ok()) << store.status();
    auto job = (*store)->GetJob(job_id);
    ASSERT_TRUE(job.ok()) << job.status();
    EXPECT_EQ(job->state(), v1::JOB_STATE_QUEUED);
    drained_step = job->progress().step();
    EXPECT_GE(drained_step, 8);
    EXPECT_LT(drained_step, kSteps);
  }
  std::vector<int64_t> checkpoint_steps;
  for (const auto& entry : fs::directory_iterator(scratch_.path() / "state" / "runs" / job_id)) {
    const std::string name = entry.path().filename().string();
    int64_t step = 0;
    if (absl::StartsWith(name, "checkpoint-") && absl::SimpleAtoi(name.substr(11), &step)) {
      checkpoint_steps.push_back(step);
    }
  }
  EXPECT_THAT(checkpoint_steps, ::testing::ElementsAre(drained_step));

  auto second = StartVerdictd(scratch_.path());
  ASSERT_NE(second, nullptr);
  auto clients_owner = std::make_unique<Clients>(second->address());
  Clients& clients = *clients_owner;
  v1::StreamMetricsRequest request;
  request.set_job_id(job_id);
  request.set_after_sequence(watcher.events.back().sequence());
  StreamResult rest = ReadMetrics(*clients.training, request);
  ASSERT_TRUE(rest.status.ok()) << rest.status.error_message() << "\n" << second->Logs();
  auto job = WaitForTerminal(*clients.training, job_id);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED) << job->error_message();
  EXPECT_EQ(job->resumed_from_step(), drained_step);
  EXPECT_EQ(job->attempt(), 2);
  // Nothing was logged twice: the drain checkpoint was at the last logged step, so the
  // watcher's events and the rest make up the whole history.
  std::vector<v1::MetricsEvent> combined = watcher.events;
  combined.insert(combined.end(), rest.events.begin(), rest.events.end());
  ExpectCompleteHistory(combined, kSteps);
  ExpectCompleteHistory(StoredEvents(*clients.training, job_id), kSteps);
  EXPECT_EQ(States(combined),
            std::vector<v1::JobState>({v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING, v1::JOB_STATE_QUEUED,
                                       v1::JOB_STATE_RUNNING, v1::JOB_STATE_SUCCEEDED}));
  ExpectCleanExit(*second, std::move(clients_owner));
}

TEST_F(RestartIntegrationTest, AKillWhilePreparingStartsTheJobAgain) {
  const std::string job_id = RunUntilKilledAt("preparing");
  ASSERT_FALSE(job_id.empty());
  const AfterRestart after = RestartAndFinish(job_id);
  ExpectCompletedOnce(after);
  EXPECT_EQ(after.job.attempt(), 2);
  EXPECT_EQ(after.job.resumed_from_step(), 0);
}

// The eval at step 10 comes before the checkpoint at 10: the restart resumes at 5, drops the
// events after it and reports that eval once more, once.
TEST_F(RestartIntegrationTest, AKillAfterAnEvalReportsItOnce) {
  const std::string job_id = RunUntilKilledAt("after_eval");
  ASSERT_FALSE(job_id.empty());
  const AfterRestart after = RestartAndFinish(job_id);
  ExpectCompletedOnce(after);
  EXPECT_EQ(after.job.attempt(), 2);
  EXPECT_EQ(after.job.resumed_from_step(), 5);
}

TEST_F(RestartIntegrationTest, AKillMidCheckpointResumesFromTheLastCompleteOne) {
  const std::string job_id = RunUntilKilledAt("mid_checkpoint");
  ASSERT_FALSE(job_id.empty());
  const AfterRestart after = RestartAndFinish(job_id);
  ExpectCompletedOnce(after);
  EXPECT_EQ(after.job.attempt(), 2);
}

// Old main: the last checkpoint was written before the final eval, so the restart resumed
// after it and reported the final eval a second time (evals 10, 20, 20).
TEST_F(RestartIntegrationTest, AKillAfterTheFinalEvalReportsItOnce) {
  const std::string job_id = RunUntilKilledAt("after_final_eval");
  ASSERT_FALSE(job_id.empty());
  const AfterRestart after = RestartAndFinish(job_id);
  ExpectCompletedOnce(after);
  EXPECT_EQ(after.job.attempt(), 2);
}

// Old main: the checkpoints were removed before the completion, so the restart trained the
// job again from step 0 and rewrote the model directory.
TEST_F(RestartIntegrationTest, AKillBeforeTheCompletionCompletesWithoutTraining) {
  const std::string job_id = RunUntilKilledAt("before_complete");
  ASSERT_FALSE(job_id.empty());
  const auto written = Snapshot(ModelDir(job_id));
  ASSERT_FALSE(written.empty());
  const AfterRestart after = RestartAndFinish(job_id);
  ExpectCompletedOnce(after);
  EXPECT_EQ(after.job.attempt(), 2);
  EXPECT_EQ(after.job.resumed_from_step(), kCrashSteps);
  // Nothing trained again: the second attempt reported no step.
  int64_t train_events_after_restart = 0, running = 0;
  for (const auto& event : after.events) {
    if (event.has_state_change() && event.state_change().to_state() == v1::JOB_STATE_RUNNING) {
      ++running;
    }
    if (running == 2 && event.has_train()) ++train_events_after_restart;
  }
  EXPECT_EQ(train_events_after_restart, 0);
  EXPECT_TRUE(Snapshot(ModelDir(job_id)) == written) << "the model directory was written again";
}

// Old main: the job was SUCCEEDED in the store but its history never said so (the kill came
// before the state-change event).
TEST_F(RestartIntegrationTest, AKillAfterTheCompletionLeavesTheVersionAndRecordsTheEnd) {
  const std::string job_id = RunUntilKilledAt("after_complete");
  ASSERT_FALSE(job_id.empty());
  const auto registered = Snapshot(ModelDir(job_id));
  ASSERT_FALSE(registered.empty());
  const AfterRestart after = RestartAndFinish(job_id);
  ExpectCompletedOnce(after);
  EXPECT_EQ(after.job.attempt(), 1);  // never ran again
  EXPECT_TRUE(Snapshot(ModelDir(job_id)) == registered) << "the registered directory was rewritten";
}

}  // namespace
}  // namespace verdict::testing
