// Integration tests of verdictd's TrainingService and DatasetService through real gRPC
// channels: uploads, the job life cycle and its metrics stream, cancellation, idempotent
// submits, the queue limit, the error code and field named for each class of bad request, and
// fifty concurrent watchers of one job, one of which never reads.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "google/protobuf/util/message_differencer.h"
#include "core/data/preference_reader.h"
#include "server/server.h"
#include "tests/server/server_test_util.h"
#include "tests/testing/test_paths.h"

namespace verdict::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const std::string& SyntheticPairs() {
  static const std::string* path =
      new std::string(TestDataPath("synthetic/helpful-concise.jsonl"));
  return *path;
}

class TrainingIntegrationTest : public ::testing::Test {
 protected:
  void StartServer(const server::ServerConfig& config) {
    auto server = server::VerdictServer::Start(config);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    clients_ = std::make_unique<Clients>(LoopbackAddress(server_->port()));
  }
  void StartServer() { StartServer(TestServerConfig(scratch_.path())); }

  // Uploads the first `lines` pairs of the synthetic data set; returns its id.
  std::string UploadPairs(int lines) {
    v1::Dataset dataset;
    grpc::Status status = UploadWithChecks(*clients_->datasets, FirstLines(SyntheticPairs(), lines),
                                           absl::StrCat("first-", lines), &dataset);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return dataset.id();
  }

  grpc::Status Submit(const v1::TrainingJobSpec& spec, v1::Job* job, const std::string& request_id = "",
                      bool validate_only = false) {
    v1::SubmitTrainingJobRequest request;
    *request.mutable_spec() = spec;
    request.set_request_id(request_id);
    request.set_validate_only(validate_only);
    auto context = NewContext();
    return clients_->training->SubmitTrainingJob(context.get(), request, job);
  }

  grpc::Status Cancel(const std::string& job_id, v1::Job* job) {
    v1::CancelJobRequest request;
    request.set_job_id(job_id);
    request.set_reason("test is done with it");
    auto context = NewContext();
    return clients_->training->CancelJob(context.get(), request, job);
  }

  // Blocks until the job has logged at least `step` train steps.
  void WaitForStep(const std::string& job_id, int64_t step) {
    auto job = WaitForJob(*clients_->training, job_id,
                          [step](const v1::Job& j) { return j.progress().step() >= step || IsTerminal(j.state()); });
    ASSERT_TRUE(job.ok()) << job.status();
    ASSERT_EQ(job->state(), v1::JOB_STATE_RUNNING) << job->error_message();
  }

  ScratchDir scratch_;
  std::unique_ptr<server::VerdictServer> server_;
  std::unique_ptr<Clients> clients_;
};

// ---- datasets ---------------------------------------------------------------------------------

TEST_F(TrainingIntegrationTest, UploadsAChunkedDatasetAndCountsItsPairs) {
  StartServer();
  const std::string bytes = ReadFileOrDie(SyntheticPairs());
  v1::UploadDatasetMetadata metadata;
  metadata.set_name("helpful-concise");
  metadata.set_expected_size_bytes(static_cast<int64_t>(bytes.size()));
  metadata.set_sha256(Sha256Hex(bytes));
  v1::Dataset dataset;
  // 20 KiB chunks: the file arrives in 27 messages.
  grpc::Status status = UploadBytes(*clients_->datasets, bytes, metadata, 20 << 10, &dataset);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_FALSE(dataset.id().empty());
  EXPECT_EQ(dataset.name(), "helpful-concise");
  EXPECT_EQ(dataset.size_bytes(), static_cast<int64_t>(bytes.size()));
  EXPECT_EQ(dataset.sha256(), Sha256Hex(bytes));
  EXPECT_FALSE(dataset.gzip());
  EXPECT_EQ(dataset.pairs() + dataset.identical_pairs_dropped(), 2000);
  EXPECT_GT(dataset.pairs(), 1900);
  EXPECT_EQ(dataset.invalid_lines(), 0);
  EXPECT_TRUE(dataset.has_create_time());

  v1::GetDatasetRequest get;
  get.set_dataset_id(dataset.id());
  v1::Dataset fetched;
  auto context = NewContext();
  ASSERT_TRUE(clients_->datasets->GetDataset(context.get(), get, &fetched).ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(fetched, dataset))
      << fetched.DebugString() << " vs " << dataset.DebugString();

  // A gzip-compressed upload is stored as sent and recognised by its magic bytes.
  const std::string gz = ReadFileOrDie(TestDataPath("hh-rlhf/helpful-base/test.jsonl.gz"));
  v1::Dataset hh;
  status = UploadWithChecks(*clients_->datasets, gz, "hh-rlhf helpful-base test", &hh);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(hh.gzip());
  EXPECT_EQ(hh.size_bytes(), static_cast<int64_t>(gz.size()));
  EXPECT_GT(hh.pairs(), 100);

  // LLaMA-Factory's layout: a JSON array of ShareGPT records, one with an empty response.
  const std::string sharegpt =
      ReadFileOrDie(TestDataPath("preference/llama-factory-sharegpt/hh-helpful-40.json"));
  v1::Dataset llama_factory;
  status = UploadWithChecks(*clients_->datasets, sharegpt, "llama-factory", &llama_factory);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_FALSE(llama_factory.gzip());
  EXPECT_EQ(llama_factory.pairs(), 40);
  EXPECT_EQ(llama_factory.invalid_lines(), 0);

  v1::ListDatasetsRequest list;
  v1::ListDatasetsResponse listed;
  context = NewContext();
  ASSERT_TRUE(clients_->datasets->ListDatasets(context.get(), list, &listed).ok());
  ASSERT_EQ(listed.datasets_size(), 3);
  EXPECT_EQ(listed.datasets(0).id(), llama_factory.id());  // newest first
  EXPECT_EQ(listed.datasets(1).id(), hh.id());
  EXPECT_EQ(listed.datasets(2).id(), dataset.id());
}

TEST_F(TrainingIntegrationTest, RejectsBrokenUploadsAndLeavesNothingBehind) {
  StartServer();
  const std::string good = FirstLines(SyntheticPairs(), 20);
  v1::UploadDatasetMetadata metadata;
  metadata.set_name("broken");
  v1::Dataset dataset;

  {  // The first message carries a chunk instead of metadata.
    auto context = NewContext();
    auto writer = clients_->datasets->UploadDataset(context.get(), &dataset);
    v1::UploadDatasetRequest request;
    request.set_chunk(good);
    writer->Write(request);
    writer->WritesDone();
    grpc::Status status = writer->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("metadata"));
  }
  {  // No message at all.
    auto context = NewContext();
    auto writer = clients_->datasets->UploadDataset(context.get(), &dataset);
    writer->WritesDone();
    grpc::Status status = writer->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("metadata"));
  }
  {  // A digest that does not match the bytes.
    v1::UploadDatasetMetadata wrong = metadata;
    wrong.set_sha256(Sha256Hex("something else"));
    grpc::Status status = UploadBytes(*clients_->datasets, good, wrong, 1000, &dataset);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(Sha256Hex(good)));
  }
  {  // A digest that is not 64 lowercase hex digits.
    v1::UploadDatasetMetadata wrong = metadata;
    wrong.set_sha256("ABC");
    grpc::Status status = UploadBytes(*clients_->datasets, good, wrong, 1000, &dataset);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("metadata.sha256"));
  }
  {  // Fewer bytes than announced.
    v1::UploadDatasetMetadata wrong = metadata;
    wrong.set_expected_size_bytes(static_cast<int64_t>(good.size()) + 1);
    grpc::Status status = UploadBytes(*clients_->datasets, good, wrong, 1000, &dataset);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("expected_size_bytes"));
  }
  {  // Line 3 is not JSON.
    std::string bytes = FirstLines(SyntheticPairs(), 2) + "{\"prompt\": \"unterminated\n" +
                        FirstLines(SyntheticPairs(), 2);
    grpc::Status status = UploadBytes(*clients_->datasets, bytes, metadata, 100, &dataset);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("line 3"));
    EXPECT_THAT(status.error_message(), ::testing::Not(HasSubstr(".upload")));
  }
  {  // A truncated gzip file: the client's bytes are at fault (DATA_LOSS is for a digest that
     // does not match what arrived).
    const std::string gz = ReadFileOrDie(TestDataPath("hh-rlhf/helpful-base/test.jsonl.gz"));
    grpc::Status status =
        UploadBytes(*clients_->datasets, gz.substr(0, gz.size() / 2), metadata, 1 << 16, &dataset);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr("gzip"));
  }
  {  // Valid JSON of no preference layout.
    grpc::Status status =
        UploadBytes(*clients_->datasets, "{\"text\": \"hello\"}\n", metadata, 100, &dataset);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(),
                ::testing::StartsWith("line 1: not preference data: found a JSON object with key "
                                      "\"text\". Accepted: "));
  }
  {  // A JSON array of numbers, even when invalid records may be skipped.
    v1::UploadDatasetMetadata skipping = metadata;
    skipping.set_skip_invalid(true);
    grpc::Status status = UploadBytes(*clients_->datasets, "[1, 2]", skipping, 100, &dataset);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(),
                ::testing::StartsWith("line 1: not preference data: found a JSON number "
                                      "(element 1 of the array). Accepted: "));
  }
  {  // Metadata only: an empty file.
    grpc::Status status = UploadBytes(*clients_->datasets, "", metadata, 100, &dataset);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("empty"));
  }
  {  // The client gives up half-way: no dataset may come of the bytes sent so far.
    auto context = NewContext();
    auto writer = clients_->datasets->UploadDataset(context.get(), &dataset);
    v1::UploadDatasetRequest request;
    *request.mutable_metadata() = metadata;
    writer->Write(request);
    request.set_chunk(good);
    writer->Write(request);
    context->TryCancel();
    grpc::Status status = writer->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
    absl::SleepFor(absl::Milliseconds(500));  // time for the server to (wrongly) store it
  }

  v1::ListDatasetsResponse listed;
  auto context = NewContext();
  ASSERT_TRUE(clients_->datasets->ListDatasets(context.get(), v1::ListDatasetsRequest(), &listed).ok());
  EXPECT_EQ(listed.datasets_size(), 0) << listed.DebugString();
  const fs::path datasets_dir = fs::path(TestServerConfig(scratch_.path()).state_dir) / "datasets";
  if (fs::exists(datasets_dir)) {
    EXPECT_TRUE(fs::is_empty(datasets_dir)) << "leftover files in " << datasets_dir;
  }
}

// ---- the job life cycle -----------------------------------------------------------------------

TEST_F(TrainingIntegrationTest, TrainsAJobAndStreamsEveryEventInOrder) {
  StartServer();
  const std::string dataset_id = UploadPairs(300);
  v1::TrainingJobSpec spec = TinyJobSpec(dataset_id, 12);
  spec.set_eval_steps(4);
  v1::Job submitted;
  grpc::Status status = Submit(spec, &submitted);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_FALSE(submitted.id().empty());
  EXPECT_TRUE(submitted.state() == v1::JOB_STATE_QUEUED || submitted.state() == v1::JOB_STATE_RUNNING)
      << v1::JobState_Name(submitted.state());
  // Defaults are filled in.
  EXPECT_EQ(submitted.spec().hyperparameters().adam_beta1(), 0.9);
  EXPECT_EQ(submitted.spec().hyperparameters().truncation(), v1::TRUNCATION_POLICY_TRUNCATE);
  EXPECT_EQ(submitted.spec().data_options().chat_format(), v1::CHAT_FORMAT_HH);
  EXPECT_EQ(submitted.spec().save_total_limit(), 2);

  v1::StreamMetricsRequest request;
  request.set_job_id(submitted.id());
  StreamResult stream = ReadMetrics(*clients_->training, request);
  ASSERT_TRUE(stream.status.ok()) << stream.status.error_message();
  const std::vector<v1::MetricsEvent>& events = stream.events;
  ASSERT_GE(events.size(), 17u);

  // Numbered 1, 2, 3, ... with non-decreasing steps, all of this job.
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].sequence(), static_cast<int64_t>(i) + 1);
    EXPECT_EQ(events[i].job_id(), submitted.id());
    EXPECT_TRUE(events[i].has_time());
    if (i > 0) EXPECT_GE(events[i].step(), events[i - 1].step()) << events[i].DebugString();
  }
  ASSERT_TRUE(events.front().has_state_change());
  EXPECT_EQ(events.front().state_change().from_state(), v1::JOB_STATE_UNSPECIFIED);
  EXPECT_EQ(events.front().state_change().to_state(), v1::JOB_STATE_QUEUED);
  ASSERT_TRUE(events.back().has_state_change());
  EXPECT_EQ(events.back().state_change().from_state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(events.back().state_change().to_state(), v1::JOB_STATE_SUCCEEDED);

  std::vector<int64_t> train_steps, eval_steps;
  std::vector<v1::JobState> states;
  for (const v1::MetricsEvent& event : events) {
    if (event.has_train()) {
      train_steps.push_back(event.step());
      EXPECT_GT(event.train().pairs(), 0);
      EXPECT_GT(event.train().tokens(), 0);
      EXPECT_GT(event.train().learning_rate(), 0);
      EXPECT_GE(event.train().accuracy(), 0);
      EXPECT_LE(event.train().accuracy(), 1);
      EXPECT_TRUE(std::isfinite(event.train().loss()));
    }
    if (event.has_eval()) {
      eval_steps.push_back(event.step());
      EXPECT_GT(event.eval().pairs(), 0);
      EXPECT_LE(event.eval().pairs(), 32);
    }
    if (event.has_state_change()) states.push_back(event.state_change().to_state());
  }
  EXPECT_EQ(train_steps, std::vector<int64_t>({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}));
  EXPECT_EQ(eval_steps, std::vector<int64_t>({4, 8, 12}));
  EXPECT_EQ(states, std::vector<v1::JobState>({v1::JOB_STATE_QUEUED, v1::JOB_STATE_RUNNING,
                                               v1::JOB_STATE_SUCCEEDED}));

  // The job, as stored.
  auto job = WaitForTerminal(*clients_->training, submitted.id());
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(job->result_model().name(), "tiny");
  EXPECT_EQ(job->result_model().version(), 1);
  EXPECT_EQ(job->last_sequence(), events.back().sequence());
  EXPECT_EQ(job->progress().step(), 12);
  EXPECT_EQ(job->progress().total_steps(), 12);
  EXPECT_GT(job->progress().train_pairs(), 0);
  EXPECT_GT(job->progress().eval_pairs(), 0);
  EXPECT_TRUE(job->has_start_time());
  EXPECT_TRUE(job->has_end_time());
  EXPECT_EQ(job->attempt(), 1);
  EXPECT_EQ(job->error_code(), 0);
  EXPECT_EQ(job->progress().phase(), v1::TRAINING_PHASE_UNSPECIFIED);
  EXPECT_FALSE(job->progress().has_estimated_remaining());
  EXPECT_TRUE(job->progress().has_last_train_metrics());
  EXPECT_TRUE(job->progress().has_last_eval_metrics());

  // The registered model.
  v1::ListModelsRequest list;
  list.set_name("tiny");
  v1::ListModelsResponse models;
  auto context = NewContext();
  ASSERT_TRUE(clients_->models->ListModels(context.get(), list, &models).ok());
  ASSERT_EQ(models.models_size(), 1);
  const v1::Model& model = models.models(0);
  EXPECT_EQ(model.version(), 1);
  EXPECT_EQ(model.training_job_id(), submitted.id());
  EXPECT_EQ(model.family(), v1::MODEL_FAMILY_ENCODER);
  EXPECT_EQ(model.model_type(), "distilbert");
  EXPECT_EQ(model.max_length(), 128);
  EXPECT_THAT(model.aliases(), ::testing::Contains("latest"));
  EXPECT_GT(model.reward_stats().std(), 0);
  EXPECT_GT(model.size_bytes(), 0);
  EXPECT_TRUE(fs::exists(fs::path(TestServerConfig(scratch_.path()).state_dir) / model.storage_path() /
                         "config.json"));
  v1::GetModelRequest get;
  get.mutable_model()->set_name("tiny");
  get.mutable_model()->set_alias("latest");
  v1::Model fetched;
  context = NewContext();
  ASSERT_TRUE(clients_->models->GetModel(context.get(), get, &fetched).ok());
  EXPECT_EQ(fetched.version(), 1);

  // A finished job cannot be cancelled.
  v1::Job cancelled;
  status = Cancel(submitted.id(), &cancelled);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("SUCCEEDED"));

  // Replays: from a step, after a sequence, and of a finished job without no_follow.
  request.set_from_step(5);
  StreamResult from_step = ReadMetrics(*clients_->training, request);
  ASSERT_TRUE(from_step.status.ok());
  ASSERT_FALSE(from_step.events.empty());
  EXPECT_EQ(from_step.events.front().step(), 5);
  EXPECT_EQ(from_step.events.back().sequence(), events.back().sequence());
  request.set_after_sequence(events.size() - 2);
  StreamResult after = ReadMetrics(*clients_->training, request);
  ASSERT_TRUE(after.status.ok());
  ASSERT_EQ(after.events.size(), 2u);
  EXPECT_EQ(after.events[0].sequence(), static_cast<int64_t>(events.size()) - 1);

  // The job ended: its checkpoints are gone, the registered model is what remains.
  EXPECT_FALSE(fs::exists(fs::path(TestServerConfig(scratch_.path()).state_dir) / "runs" / submitted.id()));
}

// What a trained model scores through ScoreBatch is what the trainer's final evaluation
// measured on the same pairs: the same inputs (TRL's concat rule, the default) and the same
// forward, so the same reward mean, spread and accuracy.
TEST_F(TrainingIntegrationTest, ScoreBatchGivesTheTrainersEvalRewards) {
  StartServer();
  const std::string train_id = UploadPairs(300);
  // Pairs the job never trained on, with long ones that max_length truncates.
  std::string eval_bytes;
  {
    const std::string lines = FirstLines(SyntheticPairs(), 340);
    size_t start = 0;
    for (int i = 0; i < 300; ++i) start = lines.find('\n', start) + 1;
    eval_bytes = lines.substr(start);
  }
  v1::Dataset eval_dataset;
  ASSERT_TRUE(UploadWithChecks(*clients_->datasets, eval_bytes, "eval", &eval_dataset).ok());
  v1::TrainingJobSpec spec = TinyJobSpec(train_id, 8);
  spec.mutable_eval()->mutable_dataset()->set_dataset_id(eval_dataset.id());
  spec.mutable_eval()->set_max_pairs(0);
  spec.mutable_hyperparameters()->set_max_length(48);
  v1::Job submitted;
  ASSERT_TRUE(Submit(spec, &submitted).ok());
  auto job = WaitForTerminal(*clients_->training, submitted.id());
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED) << job->error_message();
  EXPECT_EQ(job->spec().data_options().input_rule(), v1::INPUT_RULE_CONCAT);
  const v1::EvalMetrics& eval = job->progress().last_eval_metrics();

  auto pairs = ReadPreferenceString(eval_bytes, "eval");
  ASSERT_TRUE(pairs.ok()) << pairs.status();
  ASSERT_EQ(static_cast<int64_t>(pairs->pairs.size()), eval.pairs());
  v1::ScoreBatchRequest request;
  request.mutable_model()->set_name("tiny");
  for (const PreferencePair& pair : pairs->pairs) {
    for (const std::string* response : {&pair.chosen, &pair.rejected}) {
      v1::PromptResponse* item = request.add_items()->mutable_prompt_response();
      item->set_prompt(pair.prompt);
      item->set_response(*response);
    }
  }
  v1::ScoreBatchResponse scored;
  auto context = NewContext();
  grpc::Status status = clients_->scoring->ScoreBatch(context.get(), request, &scored);
  ASSERT_TRUE(status.ok()) << status.error_message();
  double sum = 0, sum_sq = 0;
  int right = 0;
  for (int i = 0; i < scored.scores_size(); ++i) {
    sum += scored.scores(i);
    sum_sq += scored.scores(i) * scored.scores(i);
    if (i % 2 == 1 && scored.scores(i - 1) > scored.scores(i)) ++right;
  }
  const double n = scored.scores_size();
  const double mean = sum / n;
  EXPECT_NEAR(mean, eval.reward_mean(), 1e-5);
  EXPECT_NEAR(std::sqrt(std::max(0.0, sum_sq / n - mean * mean)), eval.reward_std(), 1e-4);
  EXPECT_DOUBLE_EQ(right / (n / 2), eval.accuracy());
  EXPECT_THAT(scored.token_counts(), ::testing::Contains(48)) << "no pair was truncated";
}

TEST_F(TrainingIntegrationTest, CancelsRunningAndQueuedJobs) {
  StartServer();
  const std::string dataset_id = UploadPairs(200);
  v1::Job running, queued;
  ASSERT_TRUE(Submit(TinyJobSpec(dataset_id, 100000), &running).ok());
  ASSERT_NO_FATAL_FAILURE(WaitForStep(running.id(), 2));
  ASSERT_TRUE(Submit(TinyJobSpec(dataset_id, 100000), &queued).ok());
  EXPECT_EQ(queued.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(queued.queue_position(), 0);
  EXPECT_EQ(queued.attempt(), 0);  // never run
  // A job of higher priority, submitted later, goes ahead of it.
  v1::TrainingJobSpec urgent_spec = TinyJobSpec(dataset_id, 100000);
  urgent_spec.set_priority(5);
  v1::Job urgent;
  ASSERT_TRUE(Submit(urgent_spec, &urgent).ok());
  EXPECT_EQ(urgent.queue_position(), 0);
  auto requeried = WaitForJob(*clients_->training, queued.id(), [](const v1::Job&) { return true; });
  ASSERT_TRUE(requeried.ok());
  EXPECT_EQ(requeried->queue_position(), 1);
  v1::ListJobsRequest list;
  list.add_states(v1::JOB_STATE_QUEUED);
  v1::ListJobsResponse listed;
  auto list_context = NewContext();
  ASSERT_TRUE(clients_->training->ListJobs(list_context.get(), list, &listed).ok());
  ASSERT_EQ(listed.jobs_size(), 2);
  EXPECT_EQ(listed.jobs(0).id(), urgent.id());  // newest first
  EXPECT_EQ(listed.jobs(0).queue_position(), 0);
  EXPECT_EQ(listed.jobs(1).queue_position(), 1);
  auto running_now = WaitForJob(*clients_->training, running.id(), [](const v1::Job&) { return true; });
  ASSERT_TRUE(running_now.ok());
  EXPECT_EQ(running_now->progress().phase(), v1::TRAINING_PHASE_TRAINING);
  EXPECT_EQ(running_now->attempt(), 1);

  // A queued job is cancelled at once, and the one behind moves up.
  v1::Job job;
  ASSERT_TRUE(Cancel(urgent.id(), &job).ok());
  EXPECT_EQ(job.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_TRUE(job.has_end_time());
  requeried = WaitForJob(*clients_->training, queued.id(), [](const v1::Job&) { return true; });
  ASSERT_TRUE(requeried.ok());
  EXPECT_EQ(requeried->queue_position(), 0);
  ASSERT_TRUE(Cancel(queued.id(), &job).ok());
  EXPECT_EQ(job.state(), v1::JOB_STATE_CANCELLED);

  // A running job's watcher sees the cancellation and its stream ends.
  std::atomic<bool> saw_cancelling{false};
  StreamResult stream;
  std::thread watcher([&] {
    v1::StreamMetricsRequest request;
    request.set_job_id(running.id());
    stream = ReadMetrics(*clients_->training, request);
  });
  grpc::Status status = Cancel(running.id(), &job);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(job.state() == v1::JOB_STATE_CANCELLING || job.state() == v1::JOB_STATE_CANCELLED)
      << v1::JobState_Name(job.state());
  watcher.join();
  ASSERT_TRUE(stream.status.ok()) << stream.status.error_message();
  ASSERT_FALSE(stream.events.empty());
  for (const auto& event : stream.events) {
    if (event.has_state_change() && event.state_change().to_state() == v1::JOB_STATE_CANCELLING) {
      saw_cancelling = true;
      EXPECT_THAT(event.state_change().message(), HasSubstr("test is done with it"));
    }
  }
  EXPECT_TRUE(saw_cancelling);
  ASSERT_TRUE(stream.events.back().has_state_change());
  EXPECT_EQ(stream.events.back().state_change().to_state(), v1::JOB_STATE_CANCELLED);

  auto final_job = WaitForTerminal(*clients_->training, running.id());
  ASSERT_TRUE(final_job.ok());
  EXPECT_EQ(final_job->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_FALSE(final_job->has_result_model());
  EXPECT_EQ(final_job->progress().phase(), v1::TRAINING_PHASE_UNSPECIFIED);
  EXPECT_FALSE(final_job->progress().has_estimated_remaining());
  // Cancelling again is a no-op that returns the job.
  ASSERT_TRUE(Cancel(running.id(), &job).ok());
  EXPECT_EQ(job.state(), v1::JOB_STATE_CANCELLED);
  // Nothing was registered, and the checkpoints are gone.
  v1::ListModelsResponse models;
  auto context = NewContext();
  ASSERT_TRUE(clients_->models->ListModels(context.get(), v1::ListModelsRequest(), &models).ok());
  EXPECT_EQ(models.models_size(), 0);
  EXPECT_FALSE(fs::exists(fs::path(TestServerConfig(scratch_.path()).state_dir) / "runs" / running.id()));
}

// A watcher that asks for events after a sequence the job has not reached: nothing is sent,
// but the stream still ends when the job does (it used to run until its deadline, the
// terminal event filtered out with the rest).
TEST_F(TrainingIntegrationTest, AStreamAfterTheLastSequenceEndsWhenTheJobEnds) {
  StartServer();
  const std::string dataset_id = UploadPairs(200);
  v1::Job running;
  ASSERT_TRUE(Submit(TinyJobSpec(dataset_id, 100000), &running).ok());
  ASSERT_NO_FATAL_FAILURE(WaitForStep(running.id(), 2));
  StreamResult stream;
  std::atomic<bool> done{false};
  std::thread watcher([&] {
    v1::StreamMetricsRequest request;
    request.set_job_id(running.id());
    request.set_after_sequence(1000000000);
    stream = ReadMetrics(*clients_->training, request, absl::Seconds(30));
    done = true;
  });
  // The stream is open and waiting (the job runs on) before the job ends.
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_FALSE(done);
  v1::Job job;
  ASSERT_TRUE(Cancel(running.id(), &job).ok());
  const absl::Time cancelled = absl::Now();
  watcher.join();
  EXPECT_TRUE(stream.status.ok()) << stream.status.error_message();
  EXPECT_TRUE(stream.events.empty());
  EXPECT_LT(absl::Now() - cancelled, absl::Seconds(10));
  // Started after the job ended, the same request ends at once.
  v1::StreamMetricsRequest request;
  request.set_job_id(running.id());
  request.set_after_sequence(1000000000);
  stream = ReadMetrics(*clients_->training, request, absl::Seconds(10));
  EXPECT_TRUE(stream.status.ok()) << stream.status.error_message();
  EXPECT_TRUE(stream.events.empty());
}

TEST_F(TrainingIntegrationTest, SubmitIsIdempotentPerRequestId) {
  StartServer();
  const std::string dataset_id = UploadPairs(200);
  v1::TrainingJobSpec spec = TinyJobSpec(dataset_id, 100000);

  // validate_only creates nothing and shows the spec with its defaults.
  v1::Job preview;
  ASSERT_TRUE(Submit(spec, &preview, "", /*validate_only=*/true).ok());
  EXPECT_TRUE(preview.id().empty());
  EXPECT_EQ(preview.state(), v1::JOB_STATE_UNSPECIFIED);
  EXPECT_EQ(preview.spec().hyperparameters().seed(), 42u);
  EXPECT_EQ(preview.spec().eval().split_seed(), 42u);
  v1::ListJobsResponse jobs;
  auto context = NewContext();
  ASSERT_TRUE(clients_->training->ListJobs(context.get(), v1::ListJobsRequest(), &jobs).ok());
  EXPECT_EQ(jobs.jobs_size(), 0);
  // validate_only still validates.
  v1::TrainingJobSpec bad = spec;
  bad.mutable_hyperparameters()->set_learning_rate(2);
  grpc::Status status = Submit(bad, &preview, "", true);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  v1::Job first, again, other;
  ASSERT_TRUE(Submit(spec, &first, "retry-key-1").ok());
  EXPECT_EQ(first.request_id(), "retry-key-1");
  ASSERT_TRUE(Submit(spec, &again, "retry-key-1").ok());
  EXPECT_EQ(again.id(), first.id());
  // The spec as returned (defaults filled in) is the same spec.
  ASSERT_TRUE(Submit(first.spec(), &again, "retry-key-1").ok());
  EXPECT_EQ(again.id(), first.id());
  v1::TrainingJobSpec changed = spec;
  changed.mutable_hyperparameters()->set_learning_rate(5e-4);
  status = Submit(changed, &other, "retry-key-1");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(status.error_message(), HasSubstr(first.id()));
  // Another key is another job.
  ASSERT_TRUE(Submit(spec, &other, "retry-key-2").ok());
  EXPECT_NE(other.id(), first.id());
  context = NewContext();
  ASSERT_TRUE(clients_->training->ListJobs(context.get(), v1::ListJobsRequest(), &jobs).ok());
  EXPECT_EQ(jobs.jobs_size(), 2);
  // One job per page: two pages, each job once, newest first.
  v1::ListJobsRequest paged;
  paged.set_page_size(1);
  std::vector<std::string> ids;
  do {
    v1::ListJobsResponse page;
    context = NewContext();
    ASSERT_TRUE(clients_->training->ListJobs(context.get(), paged, &page).ok());
    ASSERT_LE(page.jobs_size(), 1);
    for (const auto& j : page.jobs()) ids.push_back(j.id());
    paged.set_page_token(page.next_page_token());
  } while (!paged.page_token().empty() && ids.size() < 5);
  EXPECT_EQ(ids, std::vector<std::string>({other.id(), first.id()}));
  // Filtered by model name.
  v1::ListJobsRequest by_name;
  by_name.set_output_model_name("someone-else");
  context = NewContext();
  ASSERT_TRUE(clients_->training->ListJobs(context.get(), by_name, &jobs).ok());
  EXPECT_EQ(jobs.jobs_size(), 0);
  v1::Job ignored;
  Cancel(other.id(), &ignored);
  Cancel(first.id(), &ignored);
}

TEST_F(TrainingIntegrationTest, RefusesSubmitsBeyondTheQueueLimit) {
  server::ServerConfig config = TestServerConfig(scratch_.path());
  config.max_queued_jobs = 1;
  StartServer(config);
  const std::string dataset_id = UploadPairs(200);
  v1::Job running, queued, refused;
  ASSERT_TRUE(Submit(TinyJobSpec(dataset_id, 100000), &running).ok());
  ASSERT_NO_FATAL_FAILURE(WaitForStep(running.id(), 1));
  ASSERT_TRUE(Submit(TinyJobSpec(dataset_id, 100000), &queued).ok());
  EXPECT_EQ(queued.state(), v1::JOB_STATE_QUEUED);
  grpc::Status status = Submit(TinyJobSpec(dataset_id, 100000), &refused);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();

  // A dataset a live job reads cannot be deleted.
  v1::DeleteDatasetRequest remove;
  remove.set_dataset_id(dataset_id);
  google::protobuf::Empty empty;
  auto context = NewContext();
  status = clients_->datasets->DeleteDataset(context.get(), remove, &empty);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  // Room again once the queued job is cancelled.
  v1::Job job;
  ASSERT_TRUE(Cancel(queued.id(), &job).ok());
  status = Submit(TinyJobSpec(dataset_id, 100000), &refused);
  EXPECT_TRUE(status.ok()) << status.error_message();
  Cancel(refused.id(), &job);
  Cancel(running.id(), &job);
}

TEST_F(TrainingIntegrationTest, NamesTheFieldOfEveryBadRequest) {
  StartServer();
  const server::ServerConfig config = TestServerConfig(scratch_.path());
  const std::string dataset_id = UploadPairs(50);
  // Fixtures for the path rules: a real file, and a link inside --data_dir to one outside it.
  const fs::path outside = scratch_.path() / "outside.jsonl";
  std::filesystem::copy_file(SyntheticPairs(), outside);
  fs::create_symlink(outside, fs::path(config.data_dir) / "escape.jsonl");
  fs::copy_file(SyntheticPairs(), fs::path(config.data_dir) / "inside.jsonl");
  fs::create_directories(fs::path(config.data_dir) / "a-directory");
  // Base models: a real copy, and one whose weights are a link to a file outside --model_dir
  // (the directory itself is inside: only its files lead out).
  const fs::path stories = TestDataPath("models/stories260K-hf");
  for (const char* base : {"base-copy", "base-leaky"}) {
    fs::create_directories(fs::path(config.model_dir) / base);
    for (const char* file : {"config.json", "tokenizer.model", "tokenizer_config.json"}) {
      fs::copy_file(stories / file, fs::path(config.model_dir) / base / file);
    }
  }
  fs::copy_file(stories / "model.safetensors",
                fs::path(config.model_dir) / "base-copy" / "model.safetensors");
  fs::create_symlink(stories / "model.safetensors",
                     fs::path(config.model_dir) / "base-leaky" / "model.safetensors");
  auto from_base = [](const std::string& base) {
    return [base](v1::TrainingJobSpec& s) {
      s.set_base_model(base);
      s.clear_tokenizer();
      s.mutable_data_options()->set_chat_format(v1::CHAT_FORMAT_HH);
    };
  };

  struct Case {
    std::string name;
    std::function<void(v1::TrainingJobSpec&)> mutate;
    grpc::StatusCode code;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"negative learning rate", [](auto& s) { s.mutable_hyperparameters()->set_learning_rate(-1); },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.hyperparameters.learning_rate"},
      {"bad output name", [](auto& s) { s.set_output_model_name("Not A Name!"); },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.output_model_name"},
      {"unknown preset", [](auto& s) { s.set_preset("encoder-huge"); },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.preset"},
      {"tiny vocabulary", [](auto& s) { s.mutable_tokenizer()->mutable_train()->set_vocab_size(10); },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.tokenizer.train.vocab_size"},
      {"zero logging steps", [](auto& s) { s.set_logging_steps(0); },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.logging_steps"},
      {"huge batch", [](auto& s) { s.mutable_hyperparameters()->set_per_device_train_batch_size(5000); },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.hyperparameters.per_device_train_batch_size"},
      {"max_length past the positions",
       [](auto& s) { s.mutable_hyperparameters()->set_max_length(100000); },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.hyperparameters.max_length"},
      {"eval fraction above one half", [](auto& s) { s.mutable_eval()->set_eval_fraction(0.9); },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.eval.eval_fraction"},
      {"bad device", [](auto& s) { s.set_device("tpu:0"); }, grpc::StatusCode::INVALID_ARGUMENT,
       "spec.device"},
      {"no training data", [](auto& s) { s.clear_train_data(); }, grpc::StatusCode::INVALID_ARGUMENT,
       "spec.train_data"},
      {"unknown dataset", [](auto& s) { s.mutable_train_data()->set_dataset_id("ds-0123456789abcdef"); },
       grpc::StatusCode::NOT_FOUND, "ds-0123456789abcdef"},
      {"path with ..", [](auto& s) { s.mutable_train_data()->set_path("../x.jsonl"); },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.train_data.path"},
      {"absolute path", [](auto& s) { s.mutable_train_data()->set_path("/etc/passwd"); },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.train_data.path"},
      {"symlink out of data_dir", [](auto& s) { s.mutable_train_data()->set_path("escape.jsonl"); },
       grpc::StatusCode::PERMISSION_DENIED, "spec.train_data.path"},
      {"missing file", [](auto& s) { s.mutable_train_data()->set_path("nope.jsonl"); },
       grpc::StatusCode::NOT_FOUND, "spec.train_data.path"},
      // Accepted at submit, the job failed when it started reading.
      {"directory as data", [](auto& s) { s.mutable_train_data()->set_path("a-directory"); },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.train_data.path: \"a-directory\" is a directory"},
      {"directory as eval data",
       [](auto& s) { s.mutable_eval()->mutable_dataset()->set_path("a-directory"); },
       grpc::StatusCode::INVALID_ARGUMENT,
       "spec.eval.dataset.path: \"a-directory\" is a directory"},
      // The trainer would have read the file outside --model_dir.
      {"base model with a file linked from outside", from_base("base-leaky"),
       grpc::StatusCode::PERMISSION_DENIED, "spec.base_model: \"base-leaky/model.safetensors\""},
      {"eval path with ..",
       [](auto& s) { s.mutable_eval()->mutable_dataset()->set_path("sub/../../x.jsonl"); },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.eval.dataset.path"},
      {"missing base model", [](auto& s) { s.set_base_model("no-such-model"); },
       grpc::StatusCode::NOT_FOUND, "spec.base_model"},
      {"tokenizer file of no known kind", [](auto& s) { s.mutable_tokenizer()->set_path("vocab.bin"); },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.tokenizer.path"},
      {"unregistered model", [](auto& s) { s.mutable_registered_model()->set_name("ghost"); },
       grpc::StatusCode::NOT_FOUND, "ghost"},
      {"bad priority", [](auto& s) { s.set_priority(1000); }, grpc::StatusCode::INVALID_ARGUMENT,
       "spec.priority"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::TrainingJobSpec spec = TinyJobSpec(dataset_id, 10);
    c.mutate(spec);
    v1::Job job;
    grpc::Status status = Submit(spec, &job);
    EXPECT_EQ(status.error_code(), c.code) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(c.field));
  }
  {  // A file inside --data_dir is fine (validate only: nothing runs).
    v1::TrainingJobSpec spec = TinyJobSpec(dataset_id, 10);
    spec.mutable_train_data()->set_path("inside.jsonl");
    v1::Job job;
    grpc::Status status = Submit(spec, &job, "", true);
    EXPECT_TRUE(status.ok()) << status.error_message();
  }
  {  // So is the base model whose files are all inside: only the link made the other fail.
    v1::TrainingJobSpec spec = TinyJobSpec(dataset_id, 10);
    from_base("base-copy")(spec);
    v1::Job job;
    grpc::Status status = Submit(spec, &job, "", true);
    EXPECT_TRUE(status.ok()) << status.error_message();
  }
  {  // request_id characters.
    v1::Job job;
    grpc::Status status = Submit(TinyJobSpec(dataset_id, 10), &job, "no spaces allowed");
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("request_id"));
  }

  // Lookups of things that do not exist, and malformed pages.
  auto expect = [](const grpc::Status& status, grpc::StatusCode code, const std::string& text) {
    EXPECT_EQ(status.error_code(), code) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(text));
  };
  {
    v1::GetJobRequest request;
    request.set_job_id("job-0123456789abcdef");
    v1::Job job;
    auto context = NewContext();
    expect(clients_->training->GetJob(context.get(), request, &job), grpc::StatusCode::NOT_FOUND,
           "job-0123456789abcdef");
    request.set_job_id("");
    context = NewContext();
    expect(clients_->training->GetJob(context.get(), request, &job), grpc::StatusCode::INVALID_ARGUMENT,
           "job_id");
  }
  {
    v1::Job job;
    expect(Cancel("job-0123456789abcdef", &job), grpc::StatusCode::NOT_FOUND, "job-0123456789abcdef");
  }
  {
    v1::StreamMetricsRequest request;
    request.set_job_id("job-0123456789abcdef");
    expect(ReadMetrics(*clients_->training, request).status, grpc::StatusCode::NOT_FOUND,
           "job-0123456789abcdef");
  }
  {
    v1::GetDatasetRequest request;
    request.set_dataset_id("ds-0123456789abcdef");
    v1::Dataset dataset;
    auto context = NewContext();
    expect(clients_->datasets->GetDataset(context.get(), request, &dataset), grpc::StatusCode::NOT_FOUND,
           "ds-0123456789abcdef");
  }
  {
    v1::GetModelRequest request;
    request.mutable_model()->set_name("ghost");
    v1::Model model;
    auto context = NewContext();
    expect(clients_->models->GetModel(context.get(), request, &model), grpc::StatusCode::NOT_FOUND, "ghost");
  }
  {
    v1::ListJobsRequest request;
    request.set_page_size(-1);
    v1::ListJobsResponse response;
    auto context = NewContext();
    expect(clients_->training->ListJobs(context.get(), request, &response),
           grpc::StatusCode::INVALID_ARGUMENT, "page_size");
    request.set_page_size(10);
    request.set_page_token("not-a-token");
    context = NewContext();
    expect(clients_->training->ListJobs(context.get(), request, &response),
           grpc::StatusCode::INVALID_ARGUMENT, "page_token");
  }
  {
    v1::ListDatasetsRequest request;
    request.set_page_size(-1);
    v1::ListDatasetsResponse response;
    auto context = NewContext();
    expect(clients_->datasets->ListDatasets(context.get(), request, &response),
           grpc::StatusCode::INVALID_ARGUMENT, "page_size");
  }
  {
    v1::ListModelsRequest request;
    request.set_page_size(-1);
    v1::ListModelsResponse response;
    auto context = NewContext();
    expect(clients_->models->ListModels(context.get(), request, &response),
           grpc::StatusCode::INVALID_ARGUMENT, "page_size");
  }
  // None of the bad submits created a job.
  v1::ListJobsResponse jobs;
  auto context = NewContext();
  ASSERT_TRUE(clients_->training->ListJobs(context.get(), v1::ListJobsRequest(), &jobs).ok());
  EXPECT_EQ(jobs.jobs_size(), 0);
}

// ---- many watchers ----------------------------------------------------------------------------

TEST_F(TrainingIntegrationTest, FiftyWatchersSeeEveryEventWhileOneNeverReads) {
  StartServer();
  const std::string dataset_id = UploadPairs(300);
  // Many small steps: more events (about 100 KiB of them) than an HTTP/2 window holds.
  v1::TrainingJobSpec spec = TinyJobSpec(dataset_id, 600);
  spec.mutable_hyperparameters()->set_per_device_train_batch_size(1);
  spec.mutable_hyperparameters()->set_max_length(32);
  spec.set_eval_steps(200);
  v1::Job job;
  ASSERT_TRUE(Submit(spec, &job).ok());

  // The stalled watcher never calls Read(). On its own connection, with the flow-control
  // window held at HTTP/2's default 64 KiB (no BDP probing to grow it), the server's writes to
  // it block after a few hundred events, while the job logs 600 steps.
  grpc::ChannelArguments fixed_window;
  fixed_window.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1024);
  fixed_window.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  Clients stalled_client(LoopbackAddress(server_->port()), fixed_window);
  auto stalled_context = NewContext();
  v1::StreamMetricsRequest request;
  request.set_job_id(job.id());
  auto stalled = stalled_client.training->StreamMetrics(stalled_context.get(), request);

  constexpr int kReaders = 49;
  std::vector<StreamResult> results(kReaders);
  std::vector<std::thread> readers;
  for (int i = 0; i < kReaders; ++i) {
    readers.emplace_back([&, i] { results[i] = ReadMetrics(*clients_->training, request); });
  }
  for (std::thread& reader : readers) reader.join();

  auto finished = WaitForTerminal(*clients_->training, job.id());
  ASSERT_TRUE(finished.ok());
  EXPECT_EQ(finished->state(), v1::JOB_STATE_SUCCEEDED);
  const std::vector<v1::MetricsEvent> stored = StoredEvents(*clients_->training, job.id());
  ASSERT_FALSE(stored.empty());
  EXPECT_EQ(stored.back().sequence(), finished->last_sequence());
  int train_events = 0;
  for (const auto& event : stored) train_events += event.has_train();
  EXPECT_EQ(train_events, 600);
  for (int i = 0; i < kReaders; ++i) {
    SCOPED_TRACE(absl::StrCat("watcher ", i));
    ASSERT_TRUE(results[i].status.ok()) << results[i].status.error_message();
    ASSERT_EQ(results[i].events.size(), stored.size());
    for (size_t j = 0; j < stored.size(); ++j) {
      ASSERT_TRUE(google::protobuf::util::MessageDifferencer::Equals(results[i].events[j], stored[j]))
          << "event " << j << ": " << results[i].events[j].ShortDebugString() << " vs "
          << stored[j].ShortDebugString();
    }
  }

  // The stalled watcher lost nothing either: reading now, it gets the whole log in order.
  std::vector<v1::MetricsEvent> late;
  v1::MetricsEvent event;
  while (stalled->Read(&event)) late.push_back(event);
  grpc::Status status = stalled->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(late.size(), stored.size());
  for (size_t j = 0; j < stored.size(); ++j) EXPECT_EQ(late[j].sequence(), stored[j].sequence());
}

}  // namespace
}  // namespace verdict::testing
