// Integration tests of ModelService.DownloadModel through a real gRPC channel: every file of a
// version arrives in bounded chunks with correct checksums; what `verdict export` writes from
// the stream (ModelDirectoryWriter) imports back and scores exactly as the registered version
// (golden llama checkpoint, same items, same rewards); request errors name their field; a link
// planted in a version's directory is refused, never followed.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/model_download.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/auth.h"
#include "server/server.h"
#include "tests/server/server_test_util.h"
#include "tests/testing/test_paths.h"

namespace verdict::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

v1::ModelRef Ref(const std::string& name, int64_t version = 0) {
  v1::ModelRef ref;
  ref.set_name(name);
  if (version > 0) ref.set_version(version);
  return ref;
}

struct Downloaded {
  std::vector<v1::ModelChunk> chunks;  // data included
  grpc::Status status;
};

Downloaded Download(Clients& clients, const v1::ModelRef& ref, int32_t chunk_size_bytes = 0) {
  v1::DownloadModelRequest request;
  *request.mutable_model() = ref;
  request.set_chunk_size_bytes(chunk_size_bytes);
  auto context = NewContext();
  auto reader = clients.models->DownloadModel(context.get(), request);
  Downloaded result;
  for (v1::ModelChunk chunk; reader->Read(&chunk);) result.chunks.push_back(chunk);
  result.status = reader->Finish();
  return result;
}

// Every regular file under `dir`, relative path -> bytes.
std::map<std::string, std::string> Files(const fs::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    files[entry.path().lexically_relative(dir).generic_string()] =
        ReadFileOrDie(entry.path().string());
  }
  return files;
}

std::vector<v1::ScoreItem> Items() {
  std::vector<v1::ScoreItem> items;
  for (const auto& [prompt, response] : std::vector<std::pair<std::string, std::string>>{
           {"\n\nHuman: What is the capital of Kenya?\n\nAssistant:", " Nairobi."},
           {"\n\nHuman: What is the capital of Kenya?\n\nAssistant:", " Figure it out."},
           {"", " A response with no prompt at all, and a few more words to pad it out."},
           {"\n\nHuman: Say yes.\n\nAssistant:", " Yes."}}) {
    v1::ScoreItem item;
    item.mutable_prompt_response()->set_prompt(prompt);
    item.mutable_prompt_response()->set_response(response);
    items.push_back(item);
  }
  return items;
}

class ModelDownloadIntegrationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new fs::path(fs::temp_directory_path() /
                         absl::StrCat("verdict-download-integration-", getpid()));
    fs::remove_all(*root_);
    config_ = new server::ServerConfig(TestServerConfig(*root_));
    auto started = server::VerdictServer::Start(*config_);
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = started->release();
    clients_ = new Clients(LoopbackAddress(server_->port()));
    // The golden Llama reward checkpoint with stories260K's tokenizer (it fits its vocabulary).
    const fs::path golden = fs::path(config_->model_dir) / "golden-llama";
    fs::create_directories(golden);
    fs::copy_file(TestDataPath("golden/llama/config.json"), golden / "config.json");
    fs::copy_file(TestDataPath("golden/llama/model.safetensors"), golden / "model.safetensors");
    fs::copy_file(TestDataPath("models/stories260K-hf/tokenizer.model"),
                  golden / "tokenizer.model");
    v1::Model model;
    ASSERT_TRUE(Import("llama", "golden-llama", &model).ok());
  }
  static void TearDownTestSuite() {
    delete clients_;
    delete server_;
    fs::remove_all(*root_);
    delete config_;
    delete root_;
  }

  static grpc::Status Import(const std::string& name, const std::string& path, v1::Model* model) {
    v1::ImportModelRequest request;
    request.set_name(name);
    request.set_path(path);
    auto context = NewContext();
    return clients_->models->ImportModel(context.get(), request, model);
  }
  static fs::path StorageDir(const v1::ModelRef& ref) {
    v1::GetModelRequest request;
    *request.mutable_model() = ref;
    v1::Model model;
    auto context = NewContext();
    EXPECT_TRUE(clients_->models->GetModel(context.get(), request, &model).ok());
    return fs::path(config_->state_dir) / model.storage_path();
  }
  static std::vector<double> Rewards(const v1::ModelRef& ref) {
    v1::ScoreBatchRequest request;
    *request.mutable_model() = ref;
    for (const auto& item : Items()) *request.add_items() = item;
    v1::ScoreBatchResponse response;
    auto context = NewContext();
    grpc::Status status = clients_->scoring->ScoreBatch(context.get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return std::vector<double>(response.scores().begin(), response.scores().end());
  }

  static fs::path* root_;
  static server::ServerConfig* config_;
  static server::VerdictServer* server_;
  static Clients* clients_;
};

fs::path* ModelDownloadIntegrationTest::root_ = nullptr;
server::ServerConfig* ModelDownloadIntegrationTest::config_ = nullptr;
server::VerdictServer* ModelDownloadIntegrationTest::server_ = nullptr;
Clients* ModelDownloadIntegrationTest::clients_ = nullptr;

TEST_F(ModelDownloadIntegrationTest, StreamsEveryFileInBoundedChunksWithChecksums) {
  Downloaded d = Download(*clients_, Ref("llama"), 4096);
  ASSERT_TRUE(d.status.ok()) << d.status.error_message();
  ASSERT_FALSE(d.chunks.empty());
  EXPECT_EQ(d.chunks[0].model().name(), "llama");
  EXPECT_EQ(d.chunks[0].model().version(), 1);
  std::map<std::string, std::string> received;
  for (size_t i = 0; i < d.chunks.size(); ++i) {
    const v1::ModelChunk& c = d.chunks[i];
    EXPECT_EQ(c.has_model(), i == 0);
    EXPECT_LE(c.data().size(), 4096u);
    EXPECT_EQ(c.sha256(), Sha256Hex(c.data()));
    std::string& file = received[c.path()];
    EXPECT_EQ(c.offset(), static_cast<int64_t>(file.size())) << c.path();
    file += c.data();
    if (c.last_chunk()) {
      EXPECT_EQ(c.file_size_bytes(), static_cast<int64_t>(file.size()));
      EXPECT_EQ(c.file_sha256(), Sha256Hex(file));
    }
  }
  EXPECT_EQ(received, Files(StorageDir(Ref("llama", 1))));
  EXPECT_TRUE(received.count("model.safetensors"));
  EXPECT_TRUE(received.count("config.json"));
  // The weights need several chunks at this size, so chunking was exercised.
  EXPECT_GT(received["model.safetensors"].size(), 3 * 4096u);
}

TEST_F(ModelDownloadIntegrationTest, AnExportedDirectoryImportsBackAndScoresIdentically) {
  const fs::path exported = fs::path(config_->model_dir) / "exported-llama";
  fs::create_directories(exported);
  client::ModelDirectoryWriter writer(exported.string());
  Downloaded d = Download(*clients_, Ref("llama", 1));
  ASSERT_TRUE(d.status.ok()) << d.status.error_message();
  for (const auto& chunk : d.chunks) ASSERT_TRUE(writer.Write(chunk).ok());
  ASSERT_TRUE(writer.Finish().ok());

  v1::Model copy;
  grpc::Status status = Import("llama-copy", "exported-llama", &copy);
  ASSERT_TRUE(status.ok()) << status.error_message();
  const std::vector<double> original = Rewards(Ref("llama", 1));
  const std::vector<double> reloaded = Rewards(Ref("llama-copy", 1));
  ASSERT_EQ(original.size(), Items().size());
  // Same bytes, same inputs: the same rewards, bit for bit.
  EXPECT_EQ(reloaded, original);
}

TEST_F(ModelDownloadIntegrationTest, RequestErrorsNameTheirField) {
  Downloaded empty = Download(*clients_, Ref(""));
  EXPECT_EQ(empty.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(empty.status.error_message(), HasSubstr("model"));
  EXPECT_TRUE(empty.chunks.empty());
  Downloaded small = Download(*clients_, Ref("llama"), 100);
  EXPECT_EQ(small.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(small.status.error_message(), HasSubstr("chunk_size_bytes"));
  EXPECT_EQ(Download(*clients_, Ref("no-such-model")).status.error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Download(*clients_, Ref("llama", 9)).status.error_code(), grpc::StatusCode::NOT_FOUND);
  // Reading a model is what scoring clients may do.
  EXPECT_EQ(server::RequiredRole("/verdict.v1.ModelService/DownloadModel"), server::Role::kScore);
}

TEST_F(ModelDownloadIntegrationTest, ALinkInAVersionDirectoryIsRefusedNotFollowed) {
  v1::Model model;
  ASSERT_TRUE(Import("linked", "golden-llama", &model).ok());
  const fs::path dir = StorageDir(Ref("linked", 1));
  fs::create_symlink("/etc/passwd", dir / "passwd");
  Downloaded d = Download(*clients_, Ref("linked", 1));
  EXPECT_EQ(d.status.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_THAT(d.status.error_message(), HasSubstr("passwd"));
  for (const auto& chunk : d.chunks) EXPECT_NE(chunk.path(), "passwd");
}

}  // namespace
}  // namespace verdict::testing
