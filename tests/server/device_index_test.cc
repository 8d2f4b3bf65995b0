// Device names with a large CUDA index ("cuda:64", "cuda:1000", one past int's range), given to
// SubmitTrainingJob and LoadModel of an in-process verdictd over loopback: each names a device
// this machine lacks, so each is FAILED_PRECONDITION naming the device -- never "unknown
// device" (INVALID_ARGUMENT), and never a LibTorch error (c10::Device holds an 8-bit index).
#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "tests/server/server_test_util.h"
#include "tests/testing/test_paths.h"

namespace verdict::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr const char* kLargeIndices[] = {"cuda:64", "cuda:127", "cuda:128", "cuda:1000",
                                         "cuda:99999999999"};

class DeviceIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = TestServerConfig(scratch_.path());
    auto started = server::VerdictServer::Start(config_);
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = std::move(*started);
    clients_ = std::make_unique<Clients>(LoopbackAddress(server_->port()));
  }

  ScratchDir scratch_;
  server::ServerConfig config_;
  std::unique_ptr<server::VerdictServer> server_;
  std::unique_ptr<Clients> clients_;
};

TEST_F(DeviceIndexTest, SubmitRefusesALargeCudaIndexAsUnavailable) {
  v1::Dataset dataset;
  ASSERT_TRUE(UploadWithChecks(*clients_->datasets,
                               FirstLines(TestDataPath("synthetic/helpful-concise.jsonl"), 50),
                               "pairs", &dataset)
                  .ok());
  for (const char* device : kLargeIndices) {
    SCOPED_TRACE(device);
    v1::SubmitTrainingJobRequest request;
    *request.mutable_spec() = TinyJobSpec(dataset.id(), 5);
    request.mutable_spec()->set_device(device);
    v1::Job job;
    auto context = NewContext();
    grpc::Status status = clients_->training->SubmitTrainingJob(context.get(), request, &job);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr("spec.device"));
    EXPECT_THAT(status.error_message(), ::testing::Not(HasSubstr("unknown device")));
  }
  // A malformed name is still INVALID_ARGUMENT.
  v1::SubmitTrainingJobRequest request;
  *request.mutable_spec() = TinyJobSpec(dataset.id(), 5);
  request.mutable_spec()->set_device("cuda:x");
  v1::Job job;
  auto context = NewContext();
  EXPECT_EQ(clients_->training->SubmitTrainingJob(context.get(), request, &job).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(DeviceIndexTest, LoadModelRefusesALargeCudaIndexAsUnavailable) {
  const fs::path target = fs::path(config_.model_dir) / "golden-llama";
  fs::create_directories(target);
  fs::copy_file(TestDataPath("golden/llama/config.json"), target / "config.json");
  fs::copy_file(TestDataPath("golden/llama/model.safetensors"), target / "model.safetensors");
  fs::copy_file(TestDataPath("models/stories260K-hf/tokenizer.model"), target / "tokenizer.model");
  v1::ImportModelRequest import;
  import.set_name("llama");
  import.set_path("golden-llama");
  v1::Model model;
  {
    auto context = NewContext();
    grpc::Status status = clients_->models->ImportModel(context.get(), import, &model);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  for (const char* device : kLargeIndices) {
    SCOPED_TRACE(device);
    v1::LoadModelRequest request;
    request.mutable_model()->set_name("llama");
    request.mutable_model()->set_version(model.version());
    request.set_device(device);
    v1::Model loaded;
    auto context = NewContext();
    grpc::Status status = clients_->models->LoadModel(context.get(), request, &loaded);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
    EXPECT_THAT(status.error_message(), ::testing::Not(HasSubstr("unknown device")));
  }
  // The server is still there.
  v1::GetModelRequest get;
  *get.mutable_model() = v1::ModelRef();
  get.mutable_model()->set_name("llama");
  get.mutable_model()->set_version(model.version());
  v1::Model got;
  auto context = NewContext();
  EXPECT_TRUE(clients_->models->GetModel(context.get(), get, &got).ok());
}

}  // namespace
}  // namespace verdict::testing
