#include "server/sqlite_job_store.h"

#include <sqlite3.h>

#include <atomic>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"

namespace verdict::server {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::verdict::testing::ScratchDir;

// ---- Fixtures -------------------------------------------------------------------------------

v1::Job MakeJob(const std::string& id, int64_t create_seconds,
                v1::JobState state = v1::JOB_STATE_QUEUED, const std::string& request_id = "",
                const std::string& output_model_name = "reward-model") {
  v1::Job job;
  job.set_id(id);
  job.set_request_id(request_id);
  job.set_state(state);
  job.mutable_create_time()->set_seconds(create_seconds);
  job.mutable_spec()->set_output_model_name(output_model_name);
  job.mutable_spec()->mutable_train_data()->set_path("hh-rlhf/train.jsonl");
  return job;
}

v1::MetricsEvent TrainEvent(int64_t sequence, int64_t step, double loss) {
  v1::MetricsEvent event;
  event.set_sequence(sequence);
  event.set_step(step);
  event.mutable_train()->set_loss(loss);
  return event;
}

v1::MetricsEvent EvalEvent(int64_t sequence, int64_t step, double accuracy) {
  v1::MetricsEvent event;
  event.set_sequence(sequence);
  event.set_step(step);
  event.mutable_eval()->set_accuracy(accuracy);
  return event;
}

v1::MetricsEvent StateEvent(int64_t sequence, int64_t step, v1::JobState from,
                            v1::JobState to) {
  v1::MetricsEvent event;
  event.set_sequence(sequence);
  event.set_step(step);
  event.mutable_state_change()->set_from_state(from);
  event.mutable_state_change()->set_to_state(to);
  return event;
}

v1::MetricsEvent LogEvent(int64_t sequence, int64_t step, const std::string& text) {
  v1::MetricsEvent event;
  event.set_sequence(sequence);
  event.set_step(step);
  event.mutable_log()->set_text(text);
  return event;
}

v1::Dataset MakeDataset(const std::string& id, int64_t create_seconds) {
  v1::Dataset dataset;
  dataset.set_id(id);
  dataset.set_name("hh-rlhf " + id);
  dataset.set_pairs(1000);
  dataset.mutable_create_time()->set_seconds(create_seconds);
  return dataset;
}

v1::Model MakeModel(const std::string& name, const std::string& job_id) {
  v1::Model model;
  model.set_name(name);
  model.set_family(v1::MODEL_FAMILY_ENCODER);
  model.set_model_type("distilbert");
  model.set_parameter_count(66955010);
  model.set_training_job_id(job_id);
  return model;
}

std::unique_ptr<SqliteJobStore> OpenOrDie(const std::string& path) {
  absl::StatusOr<std::unique_ptr<SqliteJobStore>> store = SqliteJobStore::Open(path);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? std::move(store).value() : nullptr;
}

std::vector<std::string> JobIds(const std::vector<v1::Job>& jobs) {
  std::vector<std::string> ids;
  for (const v1::Job& job : jobs) ids.push_back(job.id());
  return ids;
}

std::vector<int64_t> Sequences(const std::vector<v1::MetricsEvent>& events) {
  std::vector<int64_t> sequences;
  for (const v1::MetricsEvent& event : events) sequences.push_back(event.sequence());
  return sequences;
}

std::vector<std::string> Aliases(const v1::Model& model) {
  return {model.aliases().begin(), model.aliases().end()};
}

// Every job ListJobs returns for `filter`, page by page, failing the test if a call fails.
std::vector<std::string> ListAllJobIds(JobStore& store, const JobFilter& filter, int32_t page_size,
                                       int* pages) {
  std::vector<std::string> ids;
  PageRequest page{page_size, ""};
  *pages = 0;
  do {
    absl::StatusOr<Page<v1::Job>> result = store.ListJobs(filter, page);
    EXPECT_TRUE(result.ok()) << result.status();
    if (!result.ok()) break;
    ++*pages;
    for (const v1::Job& job : result->items) ids.push_back(job.id());
    page.page_token = result->next_page_token;
  } while (!page.page_token.empty() && *pages < 100);
  return ids;
}

// Runs `sql` on the database file directly, returning the first column of the first row.
std::string QueryDirectly(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  std::string value;
  sqlite3_stmt* stmt = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK)
      << sqlite3_errmsg(db);
  if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_text(stmt, 0) != nullptr) {
    value = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return value;
}

class SqliteJobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = scratch_.Path("verdict.db");
    store_ = OpenOrDie(path_);
    ASSERT_NE(store_, nullptr);
  }

  ScratchDir scratch_;
  std::string path_;
  std::unique_ptr<SqliteJobStore> store_;
};

// ---- Opening and schema ---------------------------------------------------------------------

TEST(SqliteJobStoreOpenTest, CreatesTheDirectoryAndAWalDatabaseAtTheCurrentSchemaVersion) {
  ScratchDir scratch;
  const std::string path = scratch.Path("nested/data/verdict.db");
  {
    std::unique_ptr<SqliteJobStore> store = OpenOrDie(path);
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->CreateJob(MakeJob("j1", 100)).ok());
  }
  EXPECT_TRUE(std::filesystem::exists(path));
  EXPECT_EQ(QueryDirectly(path, "PRAGMA user_version"),
            std::to_string(SqliteJobStore::kSchemaVersion));
  EXPECT_EQ(QueryDirectly(path, "PRAGMA journal_mode"), "wal");
  EXPECT_EQ(QueryDirectly(path, "SELECT id FROM jobs"), "j1");
}

TEST(SqliteJobStoreOpenTest, MigratesAnEmptyFile) {
  ScratchDir scratch;
  const std::string path = scratch.Path("verdict.db");
  std::ofstream(path).close();  // Zero bytes: SQLite treats it as a new database.
  std::unique_ptr<SqliteJobStore> store = OpenOrDie(path);
  ASSERT_NE(store, nullptr);
  absl::StatusOr<Page<v1::Job>> jobs = store->ListJobs({}, {});
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  EXPECT_THAT(jobs->items, IsEmpty());
  EXPECT_EQ(QueryDirectly(path, "PRAGMA user_version"),
            std::to_string(SqliteJobStore::kSchemaVersion));
}

TEST(SqliteJobStoreOpenTest, RefusesADatabaseWithANewerSchema) {
  ScratchDir scratch;
  const std::string path = scratch.Path("verdict.db");
  ASSERT_NE(OpenOrDie(path), nullptr);
  QueryDirectly(path, "PRAGMA user_version = " +
                          std::to_string(SqliteJobStore::kSchemaVersion + 1));

  absl::StatusOr<std::unique_ptr<SqliteJobStore>> store = SqliteJobStore::Open(path);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(), HasSubstr("newer"));
}

TEST(SqliteJobStoreOpenTest, RefusesAFileThatIsNotADatabase) {
  ScratchDir scratch;
  const std::string path = scratch.Path("verdict.db");
  std::ofstream(path) << std::string(4096, 'x');
  absl::StatusOr<std::unique_ptr<SqliteJobStore>> store = SqliteJobStore::Open(path);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss) << store.status();
}

TEST_F(SqliteJobStoreTest, ClosedStoreRefusesCallsAndClosesOnlyOnce) {
  ASSERT_TRUE(store_->Close().ok());
  EXPECT_EQ(store_->GetJob("j1").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->CreateJob(MakeJob("j1", 1)).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(store_->Close().ok());
}

// ---- Jobs -----------------------------------------------------------------------------------

TEST_F(SqliteJobStoreTest, CreatesGetsAndReplacesJobs) {
  v1::Job job = MakeJob("job-1", 1700000000);
  job.mutable_spec()->mutable_hyperparameters()->set_learning_rate(1e-5);
  ASSERT_TRUE(store_->CreateJob(job).ok());

  absl::StatusOr<v1::Job> stored = store_->GetJob("job-1");
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*stored, job)) << stored->DebugString();

  job.set_state(v1::JOB_STATE_RUNNING);
  job.set_attempt(1);
  job.mutable_progress()->set_step(40);
  ASSERT_TRUE(store_->UpdateJob(job).ok());
  stored = store_->GetJob("job-1");
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*stored, job)) << stored->DebugString();
}

TEST_F(SqliteJobStoreTest, MissingJobsAreNotFoundByName) {
  absl::Status status = store_->GetJob("no-such-job").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr("no-such-job"));

  status = store_->UpdateJob(MakeJob("ghost", 1));
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr("ghost"));
}

TEST_F(SqliteJobStoreTest, CreateJobRefusesATakenIdAndAnEmptyOne) {
  ASSERT_TRUE(store_->CreateJob(MakeJob("job-1", 1)).ok());
  absl::Status status = store_->CreateJob(MakeJob("job-1", 2));
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(status.message(), HasSubstr("job-1"));
  EXPECT_EQ(store_->CreateJob(MakeJob("", 2)).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SqliteJobStoreTest, ReusedRequestIdIsAlreadyExistsAndFindsTheFirstJob) {
  ASSERT_TRUE(store_->CreateJob(MakeJob("first", 1, v1::JOB_STATE_QUEUED, "req-1")).ok());
  absl::Status status = store_->CreateJob(MakeJob("second", 2, v1::JOB_STATE_QUEUED, "req-1"));
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(status.message(), HasSubstr("\"first\""));
  EXPECT_EQ(store_->GetJob("second").status().code(), absl::StatusCode::kNotFound);

  absl::StatusOr<v1::Job> found = store_->FindJobByRequestId("req-1");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->id(), "first");
  EXPECT_EQ(store_->FindJobByRequestId("req-2").status().code(), absl::StatusCode::kNotFound);

  // Jobs without a request_id never conflict with each other.
  EXPECT_TRUE(store_->CreateJob(MakeJob("anonymous-1", 3)).ok());
  EXPECT_TRUE(store_->CreateJob(MakeJob("anonymous-2", 4)).ok());
}

TEST_F(SqliteJobStoreTest, ConcurrentSubmitsWithOneRequestIdCreateOneJob) {
  constexpr int kThreads = 8;
  std::atomic<int> created{0};
  std::atomic<int> already_exists{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      absl::Status status = store_->CreateJob(
          MakeJob("job-" + std::to_string(i), 10 + i, v1::JOB_STATE_QUEUED, "same-request"));
      if (status.ok()) ++created;
      if (absl::IsAlreadyExists(status)) ++already_exists;
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(created.load(), 1);
  EXPECT_EQ(already_exists.load(), kThreads - 1);
  absl::StatusOr<std::vector<v1::Job>> jobs = store_->ListJobsInStates({});
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  EXPECT_EQ(jobs->size(), 1u);
}

TEST_F(SqliteJobStoreTest, UpdateJobRefusesToChangeRequestIdOrCreateTime) {
  v1::Job job = MakeJob("job-1", 100, v1::JOB_STATE_QUEUED, "req-1");
  ASSERT_TRUE(store_->CreateJob(job).ok());
  v1::Job changed = job;
  changed.set_request_id("req-2");
  EXPECT_EQ(store_->UpdateJob(changed).code(), absl::StatusCode::kInvalidArgument);
  changed = job;
  changed.mutable_create_time()->set_seconds(200);
  EXPECT_EQ(store_->UpdateJob(changed).code(), absl::StatusCode::kInvalidArgument);
}

// ---- Job state: compare-and-set, progress, exactly-once completion ---------------------------

TEST_F(SqliteJobStoreTest, TransitionJobMovesOnlyFromTheNamedStates) {
  ASSERT_TRUE(store_->CreateJob(MakeJob("j1", 100)).ok());
  absl::StatusOr<v1::Job> running = store_->TransitionJob(
      "j1", {v1::JOB_STATE_QUEUED}, v1::JOB_STATE_RUNNING, [](v1::Job& job) {
        EXPECT_EQ(job.state(), v1::JOB_STATE_QUEUED);  // the edit sees the stored state
        job.set_attempt(job.attempt() + 1);
      }, nullptr);
  ASSERT_TRUE(running.ok()) << running.status();
  EXPECT_EQ(running->state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(running->attempt(), 1);

  // From a state the job is not in: refused, naming the actual state, nothing written.
  absl::StatusOr<v1::Job> refused = store_->TransitionJob(
      "j1", {v1::JOB_STATE_QUEUED}, v1::JOB_STATE_CANCELLED,
      [](v1::Job& job) { job.set_attempt(99); }, nullptr);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("JOB_STATE_RUNNING"));
  absl::StatusOr<v1::Job> stored = store_->GetJob("j1");
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(stored->attempt(), 1);
  EXPECT_THAT(JobIds(*store_->ListJobsInStates({v1::JOB_STATE_RUNNING})), ElementsAre("j1"));

  EXPECT_EQ(store_->TransitionJob("nope", {v1::JOB_STATE_QUEUED}, v1::JOB_STATE_RUNNING, nullptr, nullptr)
                .status()
                .code(),
            absl::StatusCode::kNotFound);
  // An edit may not touch the job's identity or state.
  EXPECT_EQ(store_->TransitionJob("j1", {v1::JOB_STATE_RUNNING}, v1::JOB_STATE_CANCELLING,
                                  [](v1::Job& job) { job.set_request_id("other"); }, nullptr)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->GetJob("j1")->state(), v1::JOB_STATE_RUNNING);
}

TEST_F(SqliteJobStoreTest, ProgressUpdatesNeverWriteTheState) {
  ASSERT_TRUE(store_->CreateJob(MakeJob("j1", 100, v1::JOB_STATE_RUNNING)).ok());
  // A cancel lands between the worker's read of the job and its progress save.
  ASSERT_TRUE(store_->TransitionJob("j1", {v1::JOB_STATE_RUNNING}, v1::JOB_STATE_CANCELLING,
                                    nullptr, nullptr)
                  .ok());
  v1::JobProgress progress;
  progress.set_step(7);
  progress.set_phase(v1::TRAINING_PHASE_TRAINING);
  ASSERT_TRUE(store_->UpdateJobProgress("j1", progress).ok());
  absl::StatusOr<v1::Job> stored = store_->GetJob("j1");
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->state(), v1::JOB_STATE_CANCELLING);
  EXPECT_EQ(stored->progress().step(), 7);

  // A finished job's progress is final.
  ASSERT_TRUE(store_->TransitionJob("j1", {v1::JOB_STATE_CANCELLING}, v1::JOB_STATE_CANCELLED,
                                    nullptr, nullptr)
                  .ok());
  progress.set_step(8);
  EXPECT_EQ(store_->UpdateJobProgress("j1", progress).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->GetJob("j1")->progress().step(), 7);
}

TEST_F(SqliteJobStoreTest, CompleteJobWithModelRegistersAndSucceedsTogetherOrNotAtAll) {
  ASSERT_TRUE(store_->CreateJob(MakeJob("queued", 100, v1::JOB_STATE_QUEUED, "", "rm")).ok());
  ASSERT_TRUE(store_->CreateJob(MakeJob("running", 101, v1::JOB_STATE_RUNNING, "", "rm")).ok());

  // A job that is not running: neither the version nor the state change happens.
  absl::StatusOr<CompletedJob> refused =
      store_->CompleteJobWithModel("queued", MakeModel("rm", "queued"), nullptr, nullptr);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store_->ListModels("rm", PageRequest())->items, IsEmpty());
  EXPECT_EQ(store_->GetJob("queued")->state(), v1::JOB_STATE_QUEUED);
  // A model that names another job is refused too.
  EXPECT_EQ(store_->CompleteJobWithModel("running", MakeModel("rm", "queued"), nullptr, nullptr)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);

  absl::StatusOr<CompletedJob> done = store_->CompleteJobWithModel(
      "running", MakeModel("rm", "running"),
      [](v1::Job& job) { job.mutable_end_time()->set_seconds(200); }, nullptr);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->from_state, v1::JOB_STATE_RUNNING);
  EXPECT_EQ(done->model.version(), 1);
  EXPECT_EQ(done->job.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(done->job.result_model().name(), "rm");
  EXPECT_EQ(done->job.result_model().version(), 1);
  absl::StatusOr<v1::Job> stored = store_->GetJob("running");
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(stored->result_model().version(), 1);
  EXPECT_EQ(stored->end_time().seconds(), 200);

  // Completing it again is refused and registers nothing.
  EXPECT_EQ(store_->CompleteJobWithModel("running", MakeModel("rm", "running"), nullptr, nullptr)
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->ListModels("rm", PageRequest())->items.size(), 1u);
}

TEST_F(SqliteJobStoreTest, EvaluationsAreStoredWithTheirJobAndShownNewestPerDataset) {
  ASSERT_TRUE(store_->AddModelVersion(MakeModel("rm", "t")).ok());
  auto evaluation_job = [](const std::string& id, int64_t seconds, v1::JobState state) {
    v1::Job job;
    job.set_id(id);
    job.set_state(state);
    job.mutable_create_time()->set_seconds(seconds);
    job.mutable_evaluation_spec()->mutable_model()->set_name("rm");
    job.mutable_evaluation_spec()->mutable_model()->set_version(1);
    job.mutable_evaluation_spec()->mutable_data()->set_dataset_id("ds-1");
    return job;
  };
  auto result = [](const std::string& job_id, const std::string& dataset, int64_t seconds,
                   double accuracy) {
    v1::EvaluationResult r;
    r.set_model_name("rm");
    r.set_model_version(1);
    r.set_dataset_id(dataset);
    r.set_job_id(job_id);
    r.mutable_create_time()->set_seconds(seconds);
    r.set_accuracy(accuracy);
    return r;
  };
  ASSERT_TRUE(store_->CreateDataset(MakeDataset("ds-1", 1)).ok());
  ASSERT_TRUE(store_->CreateJob(evaluation_job("queued", 10, v1::JOB_STATE_QUEUED)).ok());
  for (const char* id : {"e1", "e2", "e3"}) {
    ASSERT_TRUE(store_->CreateJob(evaluation_job(id, 11, v1::JOB_STATE_RUNNING)).ok());
  }
  // The dataset a live evaluation reads cannot be deleted.
  EXPECT_EQ(store_->DeleteDataset("ds-1").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->CompleteEvaluationJob("queued", result("queued", "ds-1", 20, 0.5), nullptr, nullptr)
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->CompleteEvaluationJob("e1", result("e2", "ds-1", 20, 0.5), nullptr, nullptr)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::IsNotFound(store_->FindEvaluation("rm", 1, "ds-1").status()));

  absl::StatusOr<v1::Job> done =
      store_->CompleteEvaluationJob("e1", result("e1", "ds-1", 20, 0.5), nullptr, nullptr);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(done->evaluation_result().accuracy(), 0.5);
  ASSERT_TRUE(store_->CompleteEvaluationJob("e2", result("e2", "ds-1", 30, 0.75), nullptr, nullptr).ok());
  ASSERT_TRUE(store_->CompleteEvaluationJob("e3", result("e3", "ds-2", 25, 0.6), nullptr, nullptr).ok());
  EXPECT_EQ(store_->FindEvaluation("rm", 1, "ds-1")->accuracy(), 0.75);  // the newer one
  EXPECT_EQ(store_->FindEvaluation("rm", 1, "ds-2")->job_id(), "e3");

  // Reopened: the model carries the newest evaluation per dataset, newest first.
  store_.reset();
  store_ = OpenOrDie(path_);
  absl::StatusOr<v1::Model> model = store_->GetModelVersion("rm", 1);
  ASSERT_TRUE(model.ok()) << model.status();
  ASSERT_EQ(model->evaluations_size(), 2);
  EXPECT_EQ(model->evaluations(0).job_id(), "e2");
  EXPECT_EQ(model->evaluations(1).job_id(), "e3");
  EXPECT_EQ(store_->ListModels("rm", PageRequest())->items[0].evaluations_size(), 2);
}

TEST_F(SqliteJobStoreTest, CompleteJobWithModelReusesAVersionTheJobRegisteredBefore) {
  // What an older verdictd left behind: the version registered, the job still RUNNING (its
  // SUCCEEDED write failed), so the restarted server trained it again.
  ASSERT_TRUE(store_->AddModelVersion(MakeModel("rm", "other-job")).ok());
  ASSERT_TRUE(store_->AddModelVersion(MakeModel("rm", "j1")).ok());
  ASSERT_TRUE(store_->CreateJob(MakeJob("j1", 100, v1::JOB_STATE_CANCELLING, "", "rm")).ok());
  absl::StatusOr<CompletedJob> done =
      store_->CompleteJobWithModel("j1", MakeModel("rm", "j1"), nullptr, nullptr);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->from_state, v1::JOB_STATE_CANCELLING);
  EXPECT_EQ(done->model.version(), 2);
  EXPECT_EQ(done->job.result_model().version(), 2);
  EXPECT_THAT(Aliases(done->model), ElementsAre("latest"));
  EXPECT_EQ(store_->ListModels("rm", PageRequest())->items.size(), 2u);
}

TEST_F(SqliteJobStoreTest, ListsJobsNewestFirstAcrossPagesWithoutRepeats) {
  // Two pairs share a create_time: the id breaks the tie, and paging must not split them badly.
  for (const auto& [id, seconds] : std::vector<std::pair<std::string, int64_t>>{
           {"a", 10}, {"b", 20}, {"c", 20}, {"d", 30}, {"e", 40}, {"f", 40}, {"g", 50}}) {
    ASSERT_TRUE(store_->CreateJob(MakeJob(id, seconds)).ok());
  }
  int pages = 0;
  EXPECT_THAT(ListAllJobIds(*store_, {}, 3, &pages),
              ElementsAre("g", "f", "e", "d", "c", "b", "a"));
  EXPECT_EQ(pages, 3);
  EXPECT_THAT(ListAllJobIds(*store_, {}, 7, &pages),
              ElementsAre("g", "f", "e", "d", "c", "b", "a"));
  EXPECT_EQ(pages, 1);  // An exactly full page has no next page.
}

TEST_F(SqliteJobStoreTest, JobsCreatedWhilePagingAppearAtMostOnce) {
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(store_->CreateJob(MakeJob("old-" + std::to_string(i), 10 + i)).ok());
  }
  absl::StatusOr<Page<v1::Job>> first = store_->ListJobs({}, {2, ""});
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(store_->CreateJob(MakeJob("new", 100)).ok());
  absl::StatusOr<Page<v1::Job>> rest = store_->ListJobs({}, {10, first->next_page_token});
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_THAT(JobIds(first->items), ElementsAre("old-3", "old-2"));
  EXPECT_THAT(JobIds(rest->items), ElementsAre("old-1", "old-0"));
  EXPECT_TRUE(rest->next_page_token.empty());
}

TEST_F(SqliteJobStoreTest, ListJobsFiltersByStateAndOutputModelName) {
  ASSERT_TRUE(store_->CreateJob(MakeJob("q1", 1, v1::JOB_STATE_QUEUED)).ok());
  ASSERT_TRUE(store_->CreateJob(MakeJob("r1", 2, v1::JOB_STATE_RUNNING)).ok());
  ASSERT_TRUE(store_->CreateJob(MakeJob("s1", 3, v1::JOB_STATE_SUCCEEDED, "", "other")).ok());
  ASSERT_TRUE(store_->CreateJob(MakeJob("q2", 4, v1::JOB_STATE_QUEUED, "", "other")).ok());
  ASSERT_TRUE(store_->CreateJob(MakeJob("f1", 5, v1::JOB_STATE_FAILED)).ok());

  int pages = 0;
  EXPECT_THAT(ListAllJobIds(*store_, {{v1::JOB_STATE_QUEUED}, ""}, 1, &pages),
              ElementsAre("q2", "q1"));
  EXPECT_THAT(
      ListAllJobIds(*store_, {{v1::JOB_STATE_RUNNING, v1::JOB_STATE_SUCCEEDED}, ""}, 1, &pages),
      ElementsAre("s1", "r1"));
  EXPECT_THAT(ListAllJobIds(*store_, {{}, "other"}, 1, &pages), ElementsAre("q2", "s1"));
  EXPECT_THAT(ListAllJobIds(*store_, {{v1::JOB_STATE_QUEUED}, "other"}, 1, &pages),
              ElementsAre("q2"));
  EXPECT_THAT(ListAllJobIds(*store_, {{v1::JOB_STATE_CANCELLED}, ""}, 1, &pages), IsEmpty());
}

TEST_F(SqliteJobStoreTest, ListJobsRefusesBadTokensAndPageSizes) {
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(store_->CreateJob(MakeJob(std::to_string(i), i)).ok());
  const JobFilter queued{{v1::JOB_STATE_QUEUED}, ""};
  absl::StatusOr<Page<v1::Job>> page = store_->ListJobs(queued, {1, ""});
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_FALSE(page->next_page_token.empty());

  EXPECT_EQ(store_->ListJobs(queued, {1, "not a token!"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->ListJobs(queued, {1, page->next_page_token + "x"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::Status other_filter = store_->ListJobs({}, {1, page->next_page_token}).status();
  EXPECT_EQ(other_filter.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(other_filter.message(), HasSubstr("page_token"));
  EXPECT_EQ(store_->ListDatasets({1, page->next_page_token}).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::Status negative = store_->ListJobs({}, {-1, ""}).status();
  EXPECT_EQ(negative.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(negative.message(), HasSubstr("page_size"));
  EXPECT_EQ(store_->ListJobs({{static_cast<v1::JobState>(42)}, ""}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SqliteJobStoreTest, PageSizeZeroMeansFifty) {
  for (int i = 0; i < 51; ++i) {
    ASSERT_TRUE(store_->CreateJob(MakeJob("job-" + std::to_string(i), i)).ok());
  }
  absl::StatusOr<Page<v1::Job>> page = store_->ListJobs({}, {0, ""});
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->items.size(), 50u);
  EXPECT_FALSE(page->next_page_token.empty());
}

TEST_F(SqliteJobStoreTest, ListJobsInStatesReturnsOldestFirst) {
  ASSERT_TRUE(store_->CreateJob(MakeJob("late-queued", 30, v1::JOB_STATE_QUEUED)).ok());
  ASSERT_TRUE(store_->CreateJob(MakeJob("running", 20, v1::JOB_STATE_RUNNING)).ok());
  ASSERT_TRUE(store_->CreateJob(MakeJob("done", 5, v1::JOB_STATE_SUCCEEDED)).ok());
  ASSERT_TRUE(store_->CreateJob(MakeJob("early-queued", 10, v1::JOB_STATE_QUEUED)).ok());

  absl::StatusOr<std::vector<v1::Job>> jobs =
      store_->ListJobsInStates({v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING});
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  EXPECT_THAT(JobIds(*jobs), ElementsAre("early-queued", "running", "late-queued"));
  jobs = store_->ListJobsInStates({});
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  EXPECT_THAT(JobIds(*jobs), ElementsAre("done", "early-queued", "running", "late-queued"));
}

// ---- Metrics events -------------------------------------------------------------------------

TEST_F(SqliteJobStoreTest, AppendsAndReadsEventsInSequenceOrder) {
  ASSERT_TRUE(store_->CreateJob(MakeJob("job-1", 1)).ok());
  ASSERT_TRUE(store_->CreateJob(MakeJob("job-2", 2)).ok());
  ASSERT_TRUE(store_
                  ->AppendEvents("job-1", {StateEvent(1, 0, v1::JOB_STATE_UNSPECIFIED,
                                                      v1::JOB_STATE_QUEUED),
                                           StateEvent(2, 0, v1::JOB_STATE_QUEUED,
                                                      v1::JOB_STATE_RUNNING)})
                  .ok());
  ASSERT_TRUE(store_->AppendEvents("job-1", {TrainEvent(3, 10, 0.69), EvalEvent(4, 10, 0.5),
                                             TrainEvent(5, 20, 0.6)})
                  .ok());
  ASSERT_TRUE(store_->AppendEvents("job-2", {TrainEvent(1, 10, 0.7)}).ok());

  absl::StatusOr<std::vector<v1::MetricsEvent>> events = store_->ReadEvents("job-1", 0, 0);
  ASSERT_TRUE(events.ok()) << events.status();
  EXPECT_THAT(Sequences(*events), ElementsAre(1, 2, 3, 4, 5));
  EXPECT_EQ((*events)[2].job_id(), "job-1");  // Filled in by the store.
  EXPECT_DOUBLE_EQ((*events)[2].train().loss(), 0.69);
  EXPECT_TRUE((*events)[1].has_state_change());

  events = store_->ReadEvents("job-1", 2, 2);
  ASSERT_TRUE(events.ok()) << events.status();
  EXPECT_THAT(Sequences(*events), ElementsAre(3, 4));
  events = store_->ReadEvents("job-1", 5, 0);
  ASSERT_TRUE(events.ok()) << events.status();
  EXPECT_THAT(*events, IsEmpty());

  EXPECT_EQ(store_->LastSequence("job-1").value(), 5);
  EXPECT_EQ(store_->LastSequence("job-2").value(), 1);
  EXPECT_EQ(store_->GetJob("job-1")->last_sequence(), 5);

  EXPECT_EQ(store_->ReadEvents("nope", 0, 0).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->ReadEvents("job-1", 0, -1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->LastSequence("nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SqliteJobStoreTest, RefusesReusedOrDisorderedSequencesAndStoresNoneOfTheBatch) {
  ASSERT_TRUE(store_->CreateJob(MakeJob("job-1", 1)).ok());
  ASSERT_TRUE(store_->AppendEvents("job-1", {TrainEvent(1, 1, 1.0), TrainEvent(2, 2, 1.0)}).ok());

  absl::Status duplicate = store_->AppendEvents("job-1", {TrainEvent(2, 3, 1.0)});
  EXPECT_EQ(duplicate.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(duplicate.message(), HasSubstr("job-1"));
  EXPECT_EQ(store_->AppendEvents("job-1", {TrainEvent(3, 3, 1.0), TrainEvent(3, 4, 1.0)}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->AppendEvents("job-1", {TrainEvent(4, 3, 1.0), TrainEvent(3, 4, 1.0)}).code(),
            absl::StatusCode::kInvalidArgument);
  v1::MetricsEvent foreign = TrainEvent(3, 3, 1.0);
  foreign.set_job_id("job-2");
  EXPECT_EQ(store_->AppendEvents("job-1", {foreign}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->AppendEvents("ghost", {TrainEvent(1, 1, 1.0)}).code(),
            absl::StatusCode::kNotFound);

  // None of the refused batches left anything behind.
  EXPECT_THAT(Sequences(store_->ReadEvents("job-1", 0, 0).value()), ElementsAre(1, 2));
  EXPECT_EQ(store_->LastSequence("job-1").value(), 2);
  // Gaps are allowed: numbers only have to increase.
  EXPECT_TRUE(store_->AppendEvents("job-1", {TrainEvent(5, 3, 1.0)}).ok());
  EXPECT_EQ(store_->LastSequence("job-1").value(), 5);
}

TEST_F(SqliteJobStoreTest, DeleteEventsAfterStepKeepsStateChangesAndLogsAndNeverReusesNumbers) {
  ASSERT_TRUE(store_->CreateJob(MakeJob("job-1", 1)).ok());
  ASSERT_TRUE(
      store_
          ->AppendEvents(
              "job-1",
              {StateEvent(1, 0, v1::JOB_STATE_UNSPECIFIED, v1::JOB_STATE_QUEUED),
               StateEvent(2, 0, v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING),
               TrainEvent(3, 10, 0.69), EvalEvent(4, 10, 0.5), TrainEvent(5, 20, 0.6),
               LogEvent(6, 20, "checkpoint at step 20"), TrainEvent(7, 30, 0.5),
               EvalEvent(8, 30, 0.7), LogEvent(9, 30, "disk is slow"),
               StateEvent(10, 30, v1::JOB_STATE_RUNNING, v1::JOB_STATE_QUEUED)})
          .ok());

  absl::StatusOr<DeletedEvents> deleted = store_->DeleteEventsAfterStep("job-1", 20);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->deleted, 2);
  EXPECT_EQ(deleted->last_sequence, 10);
  EXPECT_THAT(Sequences(store_->ReadEvents("job-1", 0, 0).value()),
              ElementsAre(1, 2, 3, 4, 5, 6, 9, 10));

  // The resumed run continues after the highest number ever used, not after the last kept.
  EXPECT_EQ(store_->AppendEvents("job-1", {TrainEvent(7, 30, 0.5)}).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(store_->AppendEvents("job-1", {TrainEvent(11, 30, 0.5)}).ok());
  EXPECT_EQ(store_->DeleteEventsAfterStep("ghost", 0).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(SqliteJobStoreTest, SequenceBeforeStepStartsAReplayAtTheFirstEventOfThatStep) {
  ASSERT_TRUE(store_->CreateJob(MakeJob("job-1", 1)).ok());
  ASSERT_TRUE(store_
                  ->AppendEvents("job-1", {StateEvent(1, 0, v1::JOB_STATE_UNSPECIFIED,
                                                      v1::JOB_STATE_QUEUED),
                                           TrainEvent(2, 10, 0.7), EvalEvent(3, 10, 0.5),
                                           TrainEvent(4, 20, 0.6)})
                  .ok());
  EXPECT_EQ(store_->SequenceBeforeStep("job-1", 0).value(), 0);
  EXPECT_EQ(store_->SequenceBeforeStep("job-1", 5).value(), 1);
  EXPECT_EQ(store_->SequenceBeforeStep("job-1", 10).value(), 1);
  EXPECT_EQ(store_->SequenceBeforeStep("job-1", 11).value(), 3);
  EXPECT_EQ(store_->SequenceBeforeStep("job-1", 99).value(), 4);
  EXPECT_EQ(store_->SequenceBeforeStep("ghost", 0).status().code(), absl::StatusCode::kNotFound);
}

// ---- Datasets -------------------------------------------------------------------------------

TEST_F(SqliteJobStoreTest, CreatesGetsListsAndDeletesDatasets) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(store_->CreateDataset(MakeDataset("ds-" + std::to_string(i), 100 + i)).ok());
  }
  absl::Status duplicate = store_->CreateDataset(MakeDataset("ds-0", 1));
  EXPECT_EQ(duplicate.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(duplicate.message(), HasSubstr("ds-0"));

  absl::StatusOr<v1::Dataset> stored = store_->GetDataset("ds-3");
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*stored, MakeDataset("ds-3", 103)));

  std::vector<std::string> ids;
  PageRequest page{2, ""};
  do {
    absl::StatusOr<Page<v1::Dataset>> result = store_->ListDatasets(page);
    ASSERT_TRUE(result.ok()) << result.status();
    for (const v1::Dataset& dataset : result->items) ids.push_back(dataset.id());
    page.page_token = result->next_page_token;
  } while (!page.page_token.empty());
  EXPECT_THAT(ids, ElementsAre("ds-4", "ds-3", "ds-2", "ds-1", "ds-0"));

  ASSERT_TRUE(store_->DeleteDataset("ds-3").ok());
  absl::Status missing = store_->GetDataset("ds-3").status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.message(), HasSubstr("ds-3"));
  missing = store_->DeleteDataset("ds-3");
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.message(), HasSubstr("ds-3"));
}

TEST_F(SqliteJobStoreTest, DatasetsReadByLiveJobsCannotBeDeleted) {
  ASSERT_TRUE(store_->CreateDataset(MakeDataset("train-ds", 1)).ok());
  ASSERT_TRUE(store_->CreateDataset(MakeDataset("eval-ds", 2)).ok());
  v1::Job job = MakeJob("job-1", 10, v1::JOB_STATE_RUNNING);
  job.mutable_spec()->mutable_train_data()->set_dataset_id("train-ds");
  job.mutable_spec()->mutable_eval()->mutable_dataset()->set_dataset_id("eval-ds");
  ASSERT_TRUE(store_->CreateJob(job).ok());

  for (const char* id : {"train-ds", "eval-ds"}) {
    absl::Status status = store_->DeleteDataset(id);
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << id;
    EXPECT_THAT(status.message(), HasSubstr("job-1"));
  }
  job.set_state(v1::JOB_STATE_SUCCEEDED);
  ASSERT_TRUE(store_->UpdateJob(job).ok());
  EXPECT_TRUE(store_->DeleteDataset("train-ds").ok());
  EXPECT_TRUE(store_->DeleteDataset("eval-ds").ok());

  // A job cannot be created on a dataset that is gone.
  job.set_id("job-2");
  absl::Status status = store_->CreateJob(job);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr("spec.train_data.dataset_id"));
  EXPECT_THAT(status.message(), HasSubstr("train-ds"));
}

// ---- Model registry -------------------------------------------------------------------------

TEST_F(SqliteJobStoreTest, NumbersModelVersionsPerName) {
  for (int64_t expected : {1, 2, 3}) {
    absl::StatusOr<v1::Model> added = store_->AddModelVersion(MakeModel("rm-a", "job-a"));
    ASSERT_TRUE(added.ok()) << added.status();
    EXPECT_EQ(added->version(), expected);
    EXPECT_THAT(Aliases(*added), ElementsAre("latest"));
  }
  absl::StatusOr<v1::Model> other = store_->AddModelVersion(MakeModel("rm-b", "job-b"));
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(other->version(), 1);

  absl::StatusOr<v1::Model> second = store_->GetModelVersion("rm-a", 2);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->training_job_id(), "job-a");
  EXPECT_EQ(second->model_type(), "distilbert");
  EXPECT_THAT(Aliases(*second), IsEmpty());
  EXPECT_THAT(Aliases(store_->GetModelVersion("rm-a", 3).value()), ElementsAre("latest"));

  absl::Status missing = store_->GetModelVersion("rm-a", 4).status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.message(), HasSubstr("rm-a"));
  EXPECT_THAT(missing.message(), HasSubstr("4"));
  missing = store_->GetModelVersion("rm-z", 1).status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.message(), HasSubstr("rm-z"));

  v1::Model versioned = MakeModel("rm-a", "job-a");
  versioned.set_version(7);
  EXPECT_EQ(store_->AddModelVersion(versioned).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SqliteJobStoreTest, DoesNotStoreRuntimeFieldsOfModels) {
  v1::Model model = MakeModel("rm", "job");
  model.set_loaded(true);
  model.set_device("cuda:0");
  model.add_aliases("production");
  ASSERT_TRUE(store_->AddModelVersion(model).ok());
  v1::Model stored = store_->GetModelVersion("rm", 1).value();
  EXPECT_FALSE(stored.loaded());
  EXPECT_EQ(stored.device(), "");
  EXPECT_THAT(Aliases(stored), ElementsAre("latest"));
  EXPECT_EQ(store_->ResolveAlias("rm", "production").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(SqliteJobStoreTest, SetsMovesResolvesAndDeletesAliases) {
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(store_->AddModelVersion(MakeModel("rm", "j")).ok());

  absl::StatusOr<v1::Model> model = store_->SetAlias("rm", "production", 1);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->version(), 1);
  EXPECT_THAT(Aliases(*model), ElementsAre("production"));
  ASSERT_TRUE(store_->SetAlias("rm", "canary", 3).ok());
  EXPECT_THAT(Aliases(store_->GetModelVersion("rm", 3).value()), ElementsAre("canary", "latest"));
  EXPECT_EQ(store_->ResolveAlias("rm", "production").value(), 1);
  EXPECT_EQ(store_->ResolveAlias("rm", "latest").value(), 3);

  // Moving an alias takes it off its old version.
  model = store_->SetAlias("rm", "production", 2);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_THAT(Aliases(*model), ElementsAre("production"));
  EXPECT_THAT(Aliases(store_->GetModelVersion("rm", 1).value()), IsEmpty());
  EXPECT_EQ(store_->ResolveAlias("rm", "production").value(), 2);

  model = store_->DeleteAlias("rm", "production");
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->version(), 2);
  EXPECT_THAT(Aliases(*model), IsEmpty());
  absl::Status missing = store_->ResolveAlias("rm", "production").status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.message(), HasSubstr("production"));
  EXPECT_EQ(store_->DeleteAlias("rm", "production").status().code(), absl::StatusCode::kNotFound);

  // "latest" follows new versions and cannot be set or deleted.
  ASSERT_TRUE(store_->AddModelVersion(MakeModel("rm", "j")).ok());
  EXPECT_EQ(store_->ResolveAlias("rm", "latest").value(), 4);
  EXPECT_THAT(Aliases(store_->GetModelVersion("rm", 3).value()), ElementsAre("canary"));
  EXPECT_EQ(store_->SetAlias("rm", "latest", 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->DeleteAlias("rm", "latest").status().code(),
            absl::StatusCode::kInvalidArgument);

  // Unknown names and versions.
  missing = store_->SetAlias("rm", "production", 9).status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.message(), HasSubstr("9"));
  missing = store_->SetAlias("nope", "production", 1).status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.message(), HasSubstr("nope"));
  EXPECT_EQ(store_->ResolveAlias("nope", "latest").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SqliteJobStoreTest, GetModelResolvesVersionsAliasesAndLatest) {
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(store_->AddModelVersion(MakeModel("rm", "j")).ok());
  ASSERT_TRUE(store_->SetAlias("rm", "stable", 1).ok());
  v1::ModelRef ref;
  ref.set_name("rm");
  EXPECT_EQ(store_->GetModel(ref)->version(), 2);
  ref.set_alias("stable");
  EXPECT_EQ(store_->GetModel(ref)->version(), 1);
  ref.set_alias("latest");
  EXPECT_EQ(store_->GetModel(ref)->version(), 2);
  ref.set_version(1);
  EXPECT_EQ(store_->GetModel(ref)->version(), 1);
  ref.set_version(3);
  EXPECT_EQ(store_->GetModel(ref).status().code(), absl::StatusCode::kNotFound);
  ref.set_alias("missing");
  EXPECT_EQ(store_->GetModel(ref).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SqliteJobStoreTest, ListsModelsByNameThenNewestVersionAcrossPages) {
  for (const char* name : {"beta", "alpha", "beta", "alpha", "beta"}) {
    ASSERT_TRUE(store_->AddModelVersion(MakeModel(name, "j")).ok());
  }
  ASSERT_TRUE(store_->SetAlias("beta", "production", 2).ok());

  std::vector<std::string> listed;
  PageRequest page{2, ""};
  int pages = 0;
  do {
    absl::StatusOr<Page<v1::Model>> result = store_->ListModels("", page);
    ASSERT_TRUE(result.ok()) << result.status();
    ++pages;
    for (const v1::Model& model : result->items) {
      std::string entry = model.name() + "/" + std::to_string(model.version());
      for (const std::string& alias : model.aliases()) entry += ":" + alias;
      listed.push_back(entry);
    }
    page.page_token = result->next_page_token;
  } while (!page.page_token.empty());
  EXPECT_EQ(pages, 3);
  EXPECT_THAT(listed, ElementsAre("alpha/2:latest", "alpha/1", "beta/3:latest",
                                  "beta/2:production", "beta/1"));

  absl::StatusOr<Page<v1::Model>> beta = store_->ListModels("beta", {});
  ASSERT_TRUE(beta.ok()) << beta.status();
  ASSERT_EQ(beta->items.size(), 3u);
  EXPECT_EQ(beta->items[0].version(), 3);
  absl::StatusOr<Page<v1::Model>> first = store_->ListModels("beta", {1, ""});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(store_->ListModels("alpha", {1, first->next_page_token}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ---- Durability -----------------------------------------------------------------------------

TEST_F(SqliteJobStoreTest, EverythingSurvivesCloseAndReopen) {
  v1::Job job = MakeJob("job-1", 50, v1::JOB_STATE_RUNNING, "req-1");
  ASSERT_TRUE(store_->CreateDataset(MakeDataset("ds-1", 40)).ok());
  job.mutable_spec()->mutable_train_data()->set_dataset_id("ds-1");
  ASSERT_TRUE(store_->CreateJob(job).ok());
  ASSERT_TRUE(store_->AppendEvents("job-1", {TrainEvent(1, 10, 0.7), TrainEvent(2, 20, 0.6),
                                             TrainEvent(3, 30, 0.5)})
                  .ok());
  ASSERT_TRUE(store_->DeleteEventsAfterStep("job-1", 10).ok());
  ASSERT_TRUE(store_->AddModelVersion(MakeModel("rm", "job-0")).ok());
  ASSERT_TRUE(store_->AddModelVersion(MakeModel("rm", "job-1")).ok());
  ASSERT_TRUE(store_->SetAlias("rm", "production", 1).ok());
  ASSERT_TRUE(store_->Close().ok());
  store_.reset();

  std::unique_ptr<SqliteJobStore> reopened = OpenOrDie(path_);
  ASSERT_NE(reopened, nullptr);
  absl::StatusOr<v1::Job> stored = reopened->GetJob("job-1");
  ASSERT_TRUE(stored.ok()) << stored.status();
  job.set_last_sequence(3);
  EXPECT_TRUE(MessageDifferencer::Equals(*stored, job)) << stored->DebugString();
  EXPECT_EQ(reopened->FindJobByRequestId("req-1")->id(), "job-1");
  EXPECT_THAT(JobIds(reopened->ListJobsInStates({v1::JOB_STATE_RUNNING}).value()),
              ElementsAre("job-1"));
  EXPECT_THAT(Sequences(reopened->ReadEvents("job-1", 0, 0).value()), ElementsAre(1));
  EXPECT_EQ(reopened->LastSequence("job-1").value(), 3);
  EXPECT_EQ(reopened->AppendEvents("job-1", {TrainEvent(3, 20, 0.6)}).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(reopened->GetDataset("ds-1")->pairs(), 1000);
  EXPECT_EQ(reopened->DeleteDataset("ds-1").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(reopened->ResolveAlias("rm", "production").value(), 1);
  EXPECT_EQ(reopened->AddModelVersion(MakeModel("rm", "job-2"))->version(), 3);
}

}  // namespace
}  // namespace verdict::server
