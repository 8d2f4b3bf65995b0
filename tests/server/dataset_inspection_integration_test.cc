// InspectDataset against a real verdictd over loopback: an uploaded dataset and a file under
// --data_dir are read with every invalid record listed by line, token lengths come from a
// registered model's tokenizer (checked against ScoreBatch's token counts for the same pairs),
// and bad requests are refused naming the field.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/data/preference_reader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "tests/server/server_test_util.h"
#include "tests/testing/test_paths.h"

namespace verdict::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

const char kMalformed[] = "preference/malformed/mixed-problems.jsonl";

class DatasetInspectionIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            absl::StrCat("verdict-inspect-integration-", ::getpid(), "-",
                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    config_ = TestServerConfig(root_);
    auto started = server::VerdictServer::Start(config_);
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = std::move(*started);
    clients_ = std::make_unique<Clients>(LoopbackAddress(server_->port()));
  }
  void TearDown() override {
    clients_.reset();
    server_.reset();
    fs::remove_all(root_);
  }

  std::string UploadMalformed() {
    v1::UploadDatasetMetadata metadata;
    metadata.set_name("malformed");
    metadata.set_skip_invalid(true);
    v1::Dataset dataset;
    grpc::Status status = UploadBytes(*clients_->datasets, ReadFileOrDie(TestDataPath(kMalformed)),
                                      metadata, 1 << 16, &dataset);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return dataset.id();
  }

  // The golden Llama reward checkpoint with stories260K's SentencePiece tokenizer, as "llama".
  void ImportLlama(v1::Model* model) {
    const fs::path target = fs::path(config_.model_dir) / "golden-llama";
    fs::create_directories(target);
    fs::copy_file(TestDataPath("golden/llama/config.json"), target / "config.json");
    fs::copy_file(TestDataPath("golden/llama/model.safetensors"), target / "model.safetensors");
    fs::copy_file(TestDataPath("models/stories260K-hf/tokenizer.model"),
                  target / "tokenizer.model");
    v1::ImportModelRequest request;
    request.set_name("llama");
    request.set_path("golden-llama");
    auto context = NewContext();
    grpc::Status status = clients_->models->ImportModel(context.get(), request, model);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  grpc::Status Inspect(const v1::InspectDatasetRequest& request, v1::DatasetInspection* out) {
    auto context = NewContext();
    return clients_->datasets->InspectDataset(context.get(), request, out);
  }

  fs::path root_;
  server::ServerConfig config_;
  std::unique_ptr<server::VerdictServer> server_;
  std::unique_ptr<Clients> clients_;
};

void ExpectMalformedReport(const v1::DatasetInspection& report) {
  EXPECT_EQ(report.container(), "jsonl");
  EXPECT_FALSE(report.gzip());
  EXPECT_EQ(report.lines(), 13);
  EXPECT_EQ(report.pairs(), 6);
  EXPECT_EQ(report.blank_lines(), 1);
  EXPECT_EQ(report.identical_pairs_dropped(), 1);
  EXPECT_EQ(report.stopped(), "");
  ASSERT_EQ(report.layouts_size(), 1);
  EXPECT_EQ(report.layouts(0).layout(), "explicit prompt");
  EXPECT_EQ(report.layouts(0).pairs(), 6);
  EXPECT_EQ(report.invalid_lines(), 5);
  std::vector<int64_t> lines;
  for (const auto& invalid : report.invalid()) lines.push_back(invalid.line());
  EXPECT_THAT(lines, ElementsAre(3, 5, 8, 11, 13));
  ASSERT_EQ(report.invalid_size(), 5);
  EXPECT_THAT(report.invalid(0).reason(), HasSubstr("missing \"rejected\""));
  EXPECT_THAT(report.invalid(3).reason(), HasSubstr("\"margin\" must be a number"));
}

TEST_F(DatasetInspectionIntegrationTest, ListsEveryInvalidLineOfAnUploadedDataset) {
  v1::InspectDatasetRequest request;
  request.set_dataset_id(UploadMalformed());
  v1::DatasetInspection report;
  grpc::Status status = Inspect(request, &report);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ExpectMalformedReport(report);
  EXPECT_FALSE(report.has_lengths());

  request.set_max_invalid_lines(2);
  status = Inspect(request, &report);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(report.invalid_lines(), 5);
  EXPECT_EQ(report.invalid_size(), 2);
}

TEST_F(DatasetInspectionIntegrationTest, InspectsAFileUnderTheDataDirectory) {
  fs::create_directories(config_.data_dir);
  fs::copy_file(TestDataPath(kMalformed), fs::path(config_.data_dir) / "pairs.jsonl");
  v1::InspectDatasetRequest request;
  request.set_path("pairs.jsonl");
  v1::DatasetInspection report;
  grpc::Status status = Inspect(request, &report);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ExpectMalformedReport(report);
}

TEST_F(DatasetInspectionIntegrationTest, ReportsAnEarlyStopWithoutTheServersPath) {
  fs::create_directories(config_.data_dir);
  {
    std::ofstream out(fs::path(config_.data_dir) / "broken.json");
    out << "[\n{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n"
           "{\"prompt\": \"p\", \"chosen\": \"c\", \"rejected\": \"d\"}\n]\n";
  }
  v1::InspectDatasetRequest request;
  request.set_path("broken.json");
  v1::DatasetInspection report;
  grpc::Status status = Inspect(request, &report);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(report.container(), "json");
  EXPECT_EQ(report.pairs(), 1);
  EXPECT_THAT(report.stopped(), ::testing::StartsWith("line 3: "));
  EXPECT_THAT(report.stopped(), ::testing::Not(HasSubstr(root_.string())));
}

TEST_F(DatasetInspectionIntegrationTest, MeasuresPairsInTheModelsTokensAsScoringEncodesThem) {
  v1::Model llama;
  ImportLlama(&llama);
  ASSERT_FALSE(HasFailure());
  const std::string dataset_id = UploadMalformed();
  // The pairs' lengths, one at a time, from ScoreBatch's token counts (ScoringModel::Encode).
  PreferenceReaderOptions read_options;
  read_options.skip_invalid = true;
  absl::StatusOr<PreferenceData> data = ReadPreferenceFile(TestDataPath(kMalformed), read_options);
  ASSERT_TRUE(data.ok()) << data.status();
  v1::ScoreBatchRequest score;
  score.mutable_model()->set_name("llama");
  for (const PreferencePair& pair : data->pairs) {
    for (const std::string* response : {&pair.chosen, &pair.rejected}) {
      auto* item = score.add_items()->mutable_prompt_response();
      item->set_prompt(pair.prompt);
      item->set_response(*response);
    }
  }
  v1::ScoreBatchResponse scored;
  {
    auto context = NewContext();
    grpc::Status status = clients_->scoring->ScoreBatch(context.get(), score, &scored);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  std::vector<int64_t> lengths;
  for (int i = 0; i + 1 < scored.token_counts_size(); i += 2) {
    lengths.push_back(std::max(scored.token_counts(i), scored.token_counts(i + 1)));
  }
  ASSERT_EQ(lengths.size(), 6u);
  std::sort(lengths.begin(), lengths.end());
  // A limit inside the range, so that some pairs are over it and some are not.
  const int64_t limit = lengths[2];
  const int64_t longer =
      std::count_if(lengths.begin(), lengths.end(), [&](int64_t length) { return length > limit; });

  v1::InspectDatasetRequest request;
  request.set_dataset_id(dataset_id);
  request.mutable_model()->set_name("llama");
  request.set_max_length(static_cast<int32_t>(limit));
  v1::DatasetInspection report;
  grpc::Status status = Inspect(request, &report);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ExpectMalformedReport(report);
  ASSERT_TRUE(report.has_lengths());
  const v1::TokenLengths& measured = report.lengths();
  EXPECT_EQ(measured.model(), "llama");
  EXPECT_EQ(measured.version(), 1);
  EXPECT_EQ(measured.max_length(), limit);
  EXPECT_EQ(measured.min_tokens(), lengths.front());
  EXPECT_EQ(measured.max_tokens(), lengths.back());
  EXPECT_EQ(measured.truncated_pairs(), longer);
  EXPECT_DOUBLE_EQ(measured.truncated_fraction(), static_cast<double>(longer) / 6);
  int64_t in_bars = 0;
  for (const auto& bar : measured.histogram()) in_bars += bar.pairs();
  EXPECT_EQ(in_bars, 6);

  // Without max_length the model's own limit applies.
  request.clear_max_length();
  status = Inspect(request, &report);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(report.lengths().max_length(), llama.max_length());
  ASSERT_GT(llama.max_length(), lengths.back());
  EXPECT_EQ(report.lengths().truncated_pairs(), 0);
}

TEST_F(DatasetInspectionIntegrationTest, RefusesBadRequestsNamingTheField) {
  const std::string dataset_id = UploadMalformed();
  struct Case {
    std::function<void(v1::InspectDatasetRequest&)> edit;
    grpc::StatusCode code;
    std::string message_start;
  };
  const std::vector<Case> cases = {
      {[](auto&) {}, grpc::StatusCode::INVALID_ARGUMENT, "source: "},
      {[](auto& r) { r.set_dataset_id("bad id!"); }, grpc::StatusCode::INVALID_ARGUMENT,
       "dataset_id: "},
      {[](auto& r) { r.set_dataset_id("ds-0000000000000000"); }, grpc::StatusCode::NOT_FOUND, ""},
      {[](auto& r) { r.set_path("../outside.jsonl"); }, grpc::StatusCode::INVALID_ARGUMENT,
       "path: "},
      {[&](auto& r) {
         r.set_dataset_id(dataset_id);
         r.set_max_length(100);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "max_length: "},
      {[&](auto& r) {
         r.set_dataset_id(dataset_id);
         r.mutable_model()->set_name("llama");
         r.set_max_length(-1);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "max_length: "},
      {[&](auto& r) {
         r.set_dataset_id(dataset_id);
         r.set_max_invalid_lines(10001);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "max_invalid_lines: "},
      {[&](auto& r) {
         r.set_dataset_id(dataset_id);
         r.mutable_model()->set_name("");
       },
       grpc::StatusCode::INVALID_ARGUMENT, "model.name: "},
      {[&](auto& r) {
         r.set_dataset_id(dataset_id);
         r.mutable_model()->set_name("nobody");
       },
       grpc::StatusCode::NOT_FOUND, ""},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    v1::InspectDatasetRequest request;
    cases[i].edit(request);
    v1::DatasetInspection report;
    grpc::Status status = Inspect(request, &report);
    EXPECT_EQ(status.error_code(), cases[i].code) << "case " << i << ": " << status.error_message();
    EXPECT_THAT(status.error_message(), ::testing::StartsWith(cases[i].message_start))
        << "case " << i;
  }
}

TEST_F(DatasetInspectionIntegrationTest, ADeletedDatasetIsNoLongerFound) {
  const std::string dataset_id = UploadMalformed();
  {
    v1::DeleteDatasetRequest request;
    request.set_dataset_id(dataset_id);
    google::protobuf::Empty empty;
    auto context = NewContext();
    ASSERT_TRUE(clients_->datasets->DeleteDataset(context.get(), request, &empty).ok());
  }
  v1::InspectDatasetRequest request;
  request.set_dataset_id(dataset_id);
  v1::DatasetInspection report;
  EXPECT_EQ(Inspect(request, &report).error_code(), grpc::StatusCode::NOT_FOUND);
}

}  // namespace
}  // namespace verdict::testing
