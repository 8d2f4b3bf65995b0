// Integration tests of evaluation jobs (TrainingService.EvaluateModel) and the accuracy gate on
// alias moves (SetModelAliasRequest.require_accuracy), through real gRPC on loopback with a
// real SQLite store: a tiny model is trained, evaluated on the shipped hh-rlhf held-out pairs,
// and the job's accuracy is checked against scoring the same pairs one by one with ScoreBatch.
#include <grpcpp/grpcpp.h>

#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "core/data/preference_reader.h"
#include "server/server.h"
#include "tests/server/server_test_util.h"
#include "tests/testing/test_paths.h"

namespace verdict::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr int64_t kEvalPairs = 200;

const std::string& HeldOutPairs() {
  static const std::string* path =
      new std::string(TestDataPath("hh-rlhf/helpful-base/test.jsonl.gz"));
  return *path;
}

class EvaluationIntegrationTest : public ::testing::Test {
 protected:
  void StartServer() {
    auto server = server::VerdictServer::Start(TestServerConfig(scratch_.path()));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    clients_ = std::make_unique<Clients>(LoopbackAddress(server_->port()));
  }

  std::string Upload(const std::string& bytes, const std::string& name) {
    v1::Dataset dataset;
    grpc::Status status = UploadWithChecks(*clients_->datasets, bytes, name, &dataset);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return dataset.id();
  }

  // Trains "tiny" version 1 on the synthetic pairs.
  void TrainTinyModel() {
    const std::string train =
        Upload(FirstLines(TestDataPath("synthetic/helpful-concise.jsonl"), 400), "train");
    v1::SubmitTrainingJobRequest request;
    *request.mutable_spec() = TinyJobSpec(train, 30);
    v1::Job job;
    auto context = NewContext();
    grpc::Status status = clients_->training->SubmitTrainingJob(context.get(), request, &job);
    ASSERT_TRUE(status.ok()) << status.error_message();
    auto done = WaitForTerminal(*clients_->training, job.id(), absl::Seconds(180));
    ASSERT_TRUE(done.ok()) << done.status();
    ASSERT_EQ(done->state(), v1::JOB_STATE_SUCCEEDED) << done->error_message();
  }

  grpc::Status Evaluate(const v1::EvaluationJobSpec& spec, v1::Job* job) {
    v1::EvaluateModelRequest request;
    *request.mutable_spec() = spec;
    auto context = NewContext();
    return clients_->training->EvaluateModel(context.get(), request, job);
  }

  v1::EvaluationJobSpec Spec(const std::string& dataset_id) {
    v1::EvaluationJobSpec spec;
    spec.mutable_model()->set_name("tiny");
    spec.mutable_model()->set_alias("latest");
    spec.mutable_data()->set_dataset_id(dataset_id);
    spec.set_max_pairs(kEvalPairs);
    return spec;
  }

  grpc::Status SetAlias(const std::string& alias, double threshold, const std::string& dataset,
                        v1::Model* model) {
    v1::SetModelAliasRequest request;
    request.set_name("tiny");
    request.set_version(1);
    request.set_alias(alias);
    request.set_require_accuracy(threshold);
    request.set_eval_dataset_id(dataset);
    auto context = NewContext();
    return clients_->models->SetModelAlias(context.get(), request, model);
  }

  v1::Model GetTiny() {
    v1::GetModelRequest request;
    request.mutable_model()->set_name("tiny");
    request.mutable_model()->set_version(1);
    v1::Model model;
    auto context = NewContext();
    grpc::Status status = clients_->models->GetModel(context.get(), request, &model);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return model;
  }

  ScratchDir scratch_;
  std::unique_ptr<server::VerdictServer> server_;
  std::unique_ptr<Clients> clients_;
};

TEST_F(EvaluationIntegrationTest, AccuracyEqualsScoringThePairsOneByOneAndGatesAliasMoves) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  ASSERT_NO_FATAL_FAILURE(TrainTinyModel());
  const std::string held_out = Upload(ReadFileOrDie(HeldOutPairs()), "hh-rlhf-helpful-test");

  // Before any evaluation the gate has nothing to read.
  v1::Model moved;
  grpc::Status refused = SetAlias("production", 0.6, held_out, &moved);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(refused.error_message(), HasSubstr("no evaluation on dataset " + held_out));

  v1::Job submitted;
  grpc::Status status = Evaluate(Spec(held_out), &submitted);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(submitted.evaluation_spec().model().version(), 1);  // the alias, pinned
  auto job = WaitForTerminal(*clients_->training, submitted.id());
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED) << job->error_message();
  const v1::EvaluationResult& result = job->evaluation_result();
  EXPECT_EQ(result.pairs(), kEvalPairs);
  EXPECT_EQ(job->progress().step(), kEvalPairs);
  EXPECT_EQ(job->progress().total_steps(), kEvalPairs);
  int64_t bucketed = 0;
  for (const auto& bucket : result.calibration()) bucketed += bucket.pairs();
  EXPECT_EQ(bucketed, kEvalPairs);
  EXPECT_EQ(result.calibration_size(), 7);
  EXPECT_TRUE(result.subsets().empty());  // hh-rlhf records carry no "subset"
  EXPECT_GT(result.reward_std(), 0);

  // The same pairs, scored pair by pair through ScoreBatch.
  auto data = ReadPreferenceFile(HeldOutPairs());
  ASSERT_TRUE(data.ok()) << data.status();
  ASSERT_GE(data->pairs.size(), static_cast<size_t>(kEvalPairs));
  int64_t correct = 0, ties = 0;
  double margin_sum = 0;
  for (int64_t i = 0; i < kEvalPairs; ++i) {
    const PreferencePair& pair = data->pairs[i];
    v1::ScoreBatchRequest request;
    request.mutable_model()->set_name("tiny");
    request.mutable_model()->set_version(1);
    for (const std::string* response : {&pair.chosen, &pair.rejected}) {
      v1::ScoreItem* item = request.add_items();
      item->mutable_prompt_response()->set_prompt(pair.prompt);
      item->mutable_prompt_response()->set_response(*response);
    }
    v1::ScoreBatchResponse response;
    auto context = NewContext();
    grpc::Status scored = clients_->scoring->ScoreBatch(context.get(), request, &response);
    ASSERT_TRUE(scored.ok()) << scored.error_message();
    ASSERT_EQ(response.scores_size(), 2);
    if (response.scores(0) > response.scores(1)) ++correct;
    if (response.scores(0) == response.scores(1)) ++ties;
    margin_sum += response.scores(0) - response.scores(1);
  }
  const double accuracy = static_cast<double>(correct) / kEvalPairs;
  std::cout << "[ measured ] eval job accuracy " << result.accuracy() << ", ScoreBatch pair by pair "
            << accuracy << " (" << correct << "/" << kEvalPairs << "), mean margin "
            << result.mean_margin() << " vs " << margin_sum / kEvalPairs << "\n";
  EXPECT_EQ(result.accuracy(), accuracy);
  EXPECT_EQ(result.ties(), ties);
  EXPECT_NEAR(result.mean_margin(), margin_sum / kEvalPairs, 1e-4);

  // Stored with the version: GetModel and ListModels show it.
  v1::Model model = GetTiny();
  ASSERT_EQ(model.evaluations_size(), 1);
  EXPECT_EQ(model.evaluations(0).dataset_id(), held_out);
  EXPECT_EQ(model.evaluations(0).accuracy(), result.accuracy());
  EXPECT_EQ(model.evaluations(0).job_id(), submitted.id());

  // The gate: refused just above the accuracy found, allowed at it.
  const double above = std::nextafter(result.accuracy(), 2.0);
  refused = SetAlias("production", std::min(1.0, above), held_out, &moved);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(refused.error_message(), HasSubstr(absl::StrCat("dataset ", held_out)));
  EXPECT_THAT(refused.error_message(), HasSubstr("below require_accuracy"));
  EXPECT_EQ(GetTiny().aliases_size(), 1);  // "latest" only: nothing moved
  status = SetAlias("production", result.accuracy(), held_out, &moved);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(moved.aliases(), ::testing::Contains("production"));

  // A restart keeps the stored evaluation, on the model and on the job.
  server_.reset();
  ASSERT_NO_FATAL_FAILURE(StartServer());
  model = GetTiny();
  ASSERT_EQ(model.evaluations_size(), 1);
  EXPECT_EQ(model.evaluations(0).accuracy(), result.accuracy());
  v1::ListModelsRequest list;
  v1::ListModelsResponse listed;
  auto context = NewContext();
  ASSERT_TRUE(clients_->models->ListModels(context.get(), list, &listed).ok());
  ASSERT_EQ(listed.models_size(), 1);
  EXPECT_EQ(listed.models(0).evaluations_size(), 1);
  v1::GetJobRequest get;
  get.set_job_id(submitted.id());
  v1::Job after;
  context = NewContext();
  ASSERT_TRUE(clients_->training->GetJob(context.get(), get, &after).ok());
  EXPECT_EQ(after.evaluation_result().accuracy(), result.accuracy());
  status = SetAlias("canary", std::min(1.0, above), held_out, &moved);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  // The job's history tells the same story to a watcher.
  const std::vector<v1::MetricsEvent> events = StoredEvents(*clients_->training, submitted.id());
  bool saw_eval = false;
  for (const auto& event : events) {
    if (event.has_eval()) {
      saw_eval = true;
      EXPECT_EQ(event.eval().accuracy(), result.accuracy());
    }
  }
  EXPECT_TRUE(saw_eval);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().state_change().to_state(), v1::JOB_STATE_SUCCEEDED);
}

TEST_F(EvaluationIntegrationTest, PerSubsetAccuracyFromASubsetKey) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  ASSERT_NO_FATAL_FAILURE(TrainTinyModel());
  // The first 40 held-out pairs, tagged "a" and "b" alternately.
  auto data = ReadPreferenceFile(HeldOutPairs());
  ASSERT_TRUE(data.ok());
  std::string jsonl;
  for (int i = 0; i < 40; ++i) {
    const PreferencePair& p = data->pairs[i];
    auto quote = [](const std::string& s) {
      std::string out = "\"";
      for (char c : s) {
        if (c == '"' || c == '\\') {
          out += '\\';
          out += c;
        } else if (c == '\n') {
          out += "\\n";
        } else {
          out += c;
        }
      }
      return out + "\"";
    };
    absl::StrAppend(&jsonl, "{\"prompt\": ", quote(p.prompt), ", \"chosen\": ", quote(p.chosen),
                    ", \"rejected\": ", quote(p.rejected), ", \"subset\": \"",
                    i % 2 == 0 ? "a" : "b", "\"}\n");
  }
  const std::string dataset = Upload(jsonl, "tagged");
  v1::EvaluationJobSpec spec = Spec(dataset);
  spec.set_max_pairs(0);
  v1::Job submitted;
  grpc::Status status = Evaluate(spec, &submitted);
  ASSERT_TRUE(status.ok()) << status.error_message();
  auto job = WaitForTerminal(*clients_->training, submitted.id());
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED) << job->error_message();
  const v1::EvaluationResult& result = job->evaluation_result();
  ASSERT_EQ(result.subsets_size(), 2);
  EXPECT_EQ(result.subsets(0).subset(), "a");
  EXPECT_EQ(result.subsets(1).subset(), "b");
  EXPECT_EQ(result.subsets(0).pairs() + result.subsets(1).pairs(), result.pairs());
  EXPECT_NEAR((result.subsets(0).accuracy() * result.subsets(0).pairs() +
               result.subsets(1).accuracy() * result.subsets(1).pairs()) /
                  result.pairs(),
              result.accuracy(), 1e-12);
}

TEST_F(EvaluationIntegrationTest, BadRequestsNameTheirField) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  ASSERT_NO_FATAL_FAILURE(TrainTinyModel());
  const std::string dataset = Upload(FirstLines(TestDataPath("synthetic/helpful-concise.jsonl"), 20),
                                     "small");
  struct Case {
    const char* what;
    std::function<void(v1::EvaluationJobSpec&)> edit;
    grpc::StatusCode code;
    const char* field;
  };
  const std::vector<Case> cases = {
      {"no model name", [](auto& s) { s.mutable_model()->clear_name(); },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.model"},
      {"unknown model", [](auto& s) { s.mutable_model()->set_name("nope"); },
       grpc::StatusCode::NOT_FOUND, "spec.model"},
      {"unknown version", [](auto& s) { s.mutable_model()->set_version(9); },
       grpc::StatusCode::NOT_FOUND, "spec.model"},
      {"no data", [](auto& s) { s.clear_data(); }, grpc::StatusCode::INVALID_ARGUMENT,
       "spec.data"},
      {"unknown dataset", [](auto& s) { s.mutable_data()->set_dataset_id("ds-missing"); },
       grpc::StatusCode::NOT_FOUND, "spec.data.dataset_id"},
      {"path outside --data_dir", [](auto& s) { s.mutable_data()->set_path("../../etc/passwd"); },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.data.path"},
      {"negative max_pairs", [](auto& s) { s.set_max_pairs(-1); },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.max_pairs"},
      {"batch too large", [](auto& s) { s.set_batch_size(5000); },
       grpc::StatusCode::INVALID_ARGUMENT, "spec.batch_size"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    v1::EvaluationJobSpec spec = Spec(dataset);
    c.edit(spec);
    v1::Job job;
    grpc::Status status = Evaluate(spec, &job);
    EXPECT_EQ(status.error_code(), c.code) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(c.field));
  }
  v1::Model model;
  grpc::Status status = SetAlias("production", 1.5, dataset, &model);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("require_accuracy"));
  status = SetAlias("production", 0.5, "", &model);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("eval_dataset_id"));
}

}  // namespace
}  // namespace verdict::testing
