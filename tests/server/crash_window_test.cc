// Crash windows of dataset uploads and model imports, on the real verdictd binary: SIGKILL at a
// fixed point (VERDICT_TEST_KILL_AT, core/util/crash_point.h) while an UploadDataset stream or
// an ImportModel is half done, then a restart. Nothing half-written may be visible after it --
// no dataset or model version the crash interrupted, no temporary file, no import copy and no
// models/<name>/ directory -- and the same upload or import then succeeds. A failed import
// (no crash) leaves no models/<name>/ directory either. The job crash windows are in
// restart_integration_test.cc.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "tests/server/server_test_util.h"
#include "tests/server/verdictd_process.h"
#include "tests/testing/test_paths.h"

namespace verdict::testing {
namespace {

namespace fs = std::filesystem;

class CrashWindowTest : public ::testing::Test {
 protected:
  // Every path under the state directory's datasets/ and models/, relative to it.
  std::vector<std::string> StateFiles() const {
    std::vector<std::string> paths;
    for (const char* dir : {"datasets", "models"}) {
      std::error_code error;
      for (auto it = fs::recursive_directory_iterator(state() / dir, error);
           !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
        paths.push_back(fs::relative(it->path(), state()).generic_string());
      }
    }
    return paths;
  }

  fs::path state() const { return scratch_.path() / "state"; }

  // The golden Llama reward checkpoint in --model_dir, with a tokenizer that fits it.
  void PrepareGoldenLlama(const std::string& name) const {
    const fs::path target = scratch_.path() / "models" / name;
    fs::create_directories(target);
    fs::copy_file(TestDataPath("golden/llama/config.json"), target / "config.json");
    fs::copy_file(TestDataPath("golden/llama/model.safetensors"), target / "model.safetensors");
    fs::copy_file(TestDataPath("models/stories260K-hf/tokenizer.model"),
                  target / "tokenizer.model");
  }

  static grpc::Status Import(Clients& clients, const std::string& name, const std::string& path,
                             v1::Model* model) {
    v1::ImportModelRequest request;
    request.set_name(name);
    request.set_path(path);
    auto context = NewContext();
    return clients.models->ImportModel(context.get(), request, model);
  }

  static std::vector<v1::Dataset> Datasets(Clients& clients) {
    v1::ListDatasetsRequest request;
    v1::ListDatasetsResponse response;
    auto context = NewContext();
    grpc::Status status = clients.datasets->ListDatasets(context.get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return {response.datasets().begin(), response.datasets().end()};
  }

  static std::vector<v1::Model> Models(Clients& clients) {
    v1::ListModelsRequest request;
    v1::ListModelsResponse response;
    auto context = NewContext();
    grpc::Status status = clients.models->ListModels(context.get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return {response.models().begin(), response.models().end()};
  }

  // Uploads `pairs` to a verdictd that SIGKILLs itself at `kill_at`; returns once it is dead.
  void UploadUntilKilledAt(const std::string& kill_at, const std::string& pairs) {
    auto process = VerdictdProcess::Start(VERDICTD_PATH, scratch_.path(), {},
                                          {{"VERDICT_TEST_KILL_AT", kill_at}});
    ASSERT_NE(process, nullptr);
    {
      Clients clients(process->address());
      v1::Dataset dataset;
      grpc::Status status = UploadWithChecks(*clients.datasets, pairs, "pairs", &dataset);
      EXPECT_FALSE(status.ok()) << "the upload finished: the crash point was not reached";
    }
    EXPECT_EQ(process->Wait(absl::Seconds(60)), -SIGKILL) << process->Logs();
  }

  // After a restart: no dataset, no file under datasets/, and the same upload succeeds.
  void ExpectNoDatasetAndUploadAgain(const std::string& pairs) {
    auto process = VerdictdProcess::Start(VERDICTD_PATH, scratch_.path());
    ASSERT_NE(process, nullptr);
    Clients clients(process->address());
    EXPECT_TRUE(Datasets(clients).empty());
    for (const std::string& path : StateFiles()) {
      EXPECT_FALSE(absl::StartsWith(path, "datasets/") && path != "datasets")
          << path << " is left after the restart";
    }
    v1::Dataset dataset;
    grpc::Status status = UploadWithChecks(*clients.datasets, pairs, "pairs", &dataset);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(Datasets(clients).size(), 1u);
  }

  ScratchDir scratch_;
};

TEST_F(CrashWindowTest, AKillMidUploadLeavesNoDatasetAndNoTemporaryFile) {
  const std::string pairs = FirstLines(TestDataPath("synthetic/helpful-concise.jsonl"), 300);
  UploadUntilKilledAt("mid_upload", pairs);
  bool temporary = false;
  for (const std::string& path : StateFiles()) temporary |= absl::EndsWith(path, ".upload");
  ASSERT_TRUE(temporary) << "the kill came before the temporary file was written";
  ExpectNoDatasetAndUploadAgain(pairs);
}

// Old main: the dataset file stayed in datasets/ for good, no dataset naming it.
TEST_F(CrashWindowTest, AKillBetweenAnUploadsRenameAndItsRegistrationLeavesNoFile) {
  const std::string pairs = FirstLines(TestDataPath("synthetic/helpful-concise.jsonl"), 300);
  UploadUntilKilledAt("upload_stored", pairs);
  bool stored = false;
  for (const std::string& path : StateFiles()) stored |= absl::EndsWith(path, ".jsonl");
  ASSERT_TRUE(stored) << "the kill came before the rename";
  ExpectNoDatasetAndUploadAgain(pairs);
}

// Old main: models/llama/ stayed behind, empty, once the sweep removed the copy.
TEST_F(CrashWindowTest, AKillMidImportLeavesNoVersionCopyOrNameDirectory) {
  PrepareGoldenLlama("golden-llama");
  {
    auto process = VerdictdProcess::Start(VERDICTD_PATH, scratch_.path(), {},
                                          {{"VERDICT_TEST_KILL_AT", "import_copied"}});
    ASSERT_NE(process, nullptr);
    {
      Clients clients(process->address());
      v1::Model model;
      EXPECT_FALSE(Import(clients, "llama", "golden-llama", &model).ok());
    }
    ASSERT_EQ(process->Wait(absl::Seconds(60)), -SIGKILL) << process->Logs();
  }
  bool copied = false;
  for (const std::string& path : StateFiles()) {
    copied |= absl::StartsWith(path, "models/llama/import-");
  }
  ASSERT_TRUE(copied) << "the kill came before the copy";

  auto process = VerdictdProcess::Start(VERDICTD_PATH, scratch_.path());
  ASSERT_NE(process, nullptr);
  Clients clients(process->address());
  EXPECT_TRUE(Models(clients).empty());
  for (const std::string& path : StateFiles()) {
    EXPECT_NE(path.rfind("models/", 0), 0u) << path << " is left after the restart";
  }
  v1::Model model;
  grpc::Status status = Import(clients, "llama", "golden-llama", &model);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(model.version(), 1);
  EXPECT_EQ(Models(clients).size(), 1u);
}

// Old main: a failed import under a new name left an empty models/<name>/ behind.
TEST_F(CrashWindowTest, AFailedImportLeavesNoNameDirectory) {
  PrepareGoldenLlama("broken");
  // A header that claims more bytes than the file holds: copied, then refused at the load.
  const fs::path weights = scratch_.path() / "models" / "broken" / "model.safetensors";
  fs::resize_file(weights, fs::file_size(weights) / 2);
  auto process = VerdictdProcess::Start(VERDICTD_PATH, scratch_.path());
  ASSERT_NE(process, nullptr);
  Clients clients(process->address());
  v1::Model model;
  grpc::Status status = Import(clients, "broken", "broken", &model);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_FALSE(fs::exists(state() / "models" / "broken"));
  EXPECT_TRUE(Models(clients).empty());
}

}  // namespace
}  // namespace verdict::testing
