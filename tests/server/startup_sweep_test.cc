// verdictd sweeps what a crash left in its state directory when it starts: the temporary files
// of unfinished dataset uploads, dataset files no registered dataset names, import copies no
// registered version names and the name directories they leave empty. A real server on
// a real state directory: the test registers a model and a dataset, stops the server, leaves
// the debris a crash would, starts it again and checks what is gone and what is intact.
#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "server/server.h"
#include "tests/server/server_test_util.h"
#include "tests/testing/test_paths.h"

namespace verdict::testing {
namespace {

namespace fs = std::filesystem;

void WriteFile(const fs::path& path, const std::string& content) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << content;
}

TEST(StartupSweepTest, RemovesCrashLeftoversAndKeepsWhatIsRegistered) {
  ScratchDir scratch;
  const server::ServerConfig config = TestServerConfig(scratch.path());
  const fs::path state = config.state_dir;
  // The golden Llama reward checkpoint, with a tokenizer that fits its vocabulary.
  const fs::path source = fs::path(config.model_dir) / "golden-llama";
  fs::create_directories(source);
  fs::copy_file(TestDataPath("golden/llama/config.json"), source / "config.json");
  fs::copy_file(TestDataPath("golden/llama/model.safetensors"), source / "model.safetensors");
  fs::copy_file(TestDataPath("models/stories260K-hf/tokenizer.model"), source / "tokenizer.model");

  v1::Model model;
  v1::Dataset dataset;
  {
    auto server = server::VerdictServer::Start(config);
    ASSERT_TRUE(server.ok()) << server.status();
    Clients clients(LoopbackAddress((*server)->port()));
    v1::ImportModelRequest request;
    request.set_name("llama");
    request.set_path("golden-llama");
    auto context = NewContext();
    grpc::Status status = clients.models->ImportModel(context.get(), request, &model);
    ASSERT_TRUE(status.ok()) << status.error_message();
    status = UploadWithChecks(*clients.datasets,
                              FirstLines(TestDataPath("synthetic/helpful-concise.jsonl"), 20),
                              "twenty", &dataset);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  const fs::path registered = state / model.storage_path();
  ASSERT_TRUE(fs::is_directory(registered));
  ASSERT_EQ(fs::path(model.storage_path()).filename().string().rfind("import-", 0), 0u)
      << model.storage_path();
  const fs::path dataset_file = state / "datasets" / (dataset.id() + ".jsonl");
  ASSERT_TRUE(fs::is_regular_file(dataset_file));
  const auto dataset_size = fs::file_size(dataset_file);

  // What crashes leave: an upload's temporary file, an import copied but never registered
  // (under a registered name and under a new one).
  const fs::path upload = state / "datasets" / "ds-0123456789abcdef.jsonl.upload";
  const fs::path orphan = state / "models" / "llama" / "import-00000000deadbeef";
  const fs::path orphan_new_name = state / "models" / "never" / "import-00000000cafef00d";
  WriteFile(upload, std::string(4096, 'x'));
  WriteFile(orphan / "config.json", "{}");
  WriteFile(orphan / "sub" / "model.safetensors", std::string(1000, 'w'));
  WriteFile(orphan_new_name / "config.json", "{}");
  // A dataset file renamed into place whose registration never happened; a name directory
  // left empty by a failed import.
  const fs::path unregistered = state / "datasets" / "ds-00000000feedf00d.jsonl";
  WriteFile(unregistered, "{\"chosen\": \"a\", \"rejected\": \"b\"}\n");
  const fs::path empty_name = state / "models" / "empty";
  fs::create_directories(empty_name);
  // Not leftovers by their names: kept.
  const fs::path other = state / "models" / "llama" / "notes";
  WriteFile(other / "readme.txt", "kept");
  // A trained model's directory under a name no version names yet (its job has not
  // completed): kept, and so is its name directory.
  const fs::path trained = state / "models" / "trained" / "job-0123";
  WriteFile(trained / "config.json", "{}");

  auto server = server::VerdictServer::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_FALSE(fs::exists(upload));
  EXPECT_FALSE(fs::exists(orphan));
  EXPECT_FALSE(fs::exists(orphan_new_name));
  EXPECT_FALSE(fs::exists(orphan_new_name.parent_path()));  // its name directory, now empty
  EXPECT_FALSE(fs::exists(unregistered));
  EXPECT_FALSE(fs::exists(empty_name));
  EXPECT_TRUE(fs::exists(trained / "config.json"));
  EXPECT_TRUE(fs::exists(other / "readme.txt"));
  // The registered version and the dataset are intact and serve.
  EXPECT_TRUE(fs::is_regular_file(registered / "model.safetensors"));
  EXPECT_TRUE(fs::is_regular_file(registered / "config.json"));
  EXPECT_EQ(fs::file_size(dataset_file), dataset_size);
  Clients clients(LoopbackAddress((*server)->port()));
  v1::LoadModelRequest load;
  load.mutable_model()->set_name("llama");
  v1::Model loaded;
  auto context = NewContext();
  grpc::Status status = clients.models->LoadModel(context.get(), load, &loaded);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(loaded.version(), model.version());
  v1::GetDatasetRequest get;
  get.set_dataset_id(dataset.id());
  v1::Dataset got;
  context = NewContext();
  status = clients.datasets->GetDataset(context.get(), get, &got);
  EXPECT_TRUE(status.ok()) << status.error_message();
}

}  // namespace
}  // namespace verdict::testing
