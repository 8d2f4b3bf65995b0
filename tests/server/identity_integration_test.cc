// Roles and token reloads on an in-process server over real gRPC: the reload path SIGHUP takes
// (VerdictServer::ReloadTokens), called directly. The SIGHUP itself, mutual TLS and the audit
// lines are checked against the real binary in tests/e2e/identity_e2e_test.cc.
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "tests/server/server_test_util.h"
#include "tests/testing/test_paths.h"

namespace verdict::server {
namespace {

using ::testing::HasSubstr;
using ::verdict::testing::Clients;
using ::verdict::testing::LoopbackAddress;
using ::verdict::testing::NewContext;
using ::verdict::testing::TestServerConfig;

void Write(const std::string& path, const std::string& content) {
  std::ofstream(path, std::ios::trunc) << content;
}

grpc::StatusCode ListJobs(Clients& clients, const std::string& token) {
  v1::ListJobsRequest request;
  v1::ListJobsResponse response;
  return clients.training->ListJobs(NewContext(absl::Seconds(30), token).get(), request, &response)
      .error_code();
}

grpc::StatusCode ListModels(Clients& clients, const std::string& token) {
  v1::ListModelsRequest request;
  v1::ListModelsResponse response;
  return clients.models->ListModels(NewContext(absl::Seconds(30), token).get(), request, &response)
      .error_code();
}

TEST(IdentityIntegrationTest, ReloadTokensAppliesANewFileAndKeepsTheOldSetOnABadOne) {
  verdict::testing::ScratchDir scratch;
  ServerConfig config = TestServerConfig(scratch.path());
  config.token_file = scratch.Path("tokens");
  Write(config.token_file, "score viewer viewer-token-1\ntrain trainer trainer-token-1\n");
  auto server = VerdictServer::Start(config);
  ASSERT_TRUE(server.ok()) << server.status();
  Clients clients(LoopbackAddress((*server)->port()));

  EXPECT_EQ(ListModels(clients, "viewer-token-1"), grpc::StatusCode::OK);
  EXPECT_EQ(ListJobs(clients, "viewer-token-1"), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(ListJobs(clients, "trainer-token-1"), grpc::StatusCode::OK);
  EXPECT_EQ(ListJobs(clients, ""), grpc::StatusCode::UNAUTHENTICATED);

  // The viewer is promoted, the trainer removed.
  Write(config.token_file, "train viewer viewer-token-1\n");
  ASSERT_TRUE((*server)->ReloadTokens().ok());
  EXPECT_EQ(ListJobs(clients, "viewer-token-1"), grpc::StatusCode::OK);
  EXPECT_EQ(ListJobs(clients, "trainer-token-1"), grpc::StatusCode::UNAUTHENTICATED);

  // A bad file (here emptied, as a half-written one might be) changes nothing.
  Write(config.token_file, "");
  absl::Status bad = (*server)->ReloadTokens();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.message()), HasSubstr("is empty"));
  EXPECT_EQ(ListJobs(clients, "viewer-token-1"), grpc::StatusCode::OK);
  EXPECT_EQ(ListJobs(clients, ""), grpc::StatusCode::UNAUTHENTICATED);
  (*server)->Shutdown();
}

TEST(IdentityIntegrationTest, ABadTokenFileFailsTheStart) {
  verdict::testing::ScratchDir scratch;
  ServerConfig config = TestServerConfig(scratch.path());
  config.token_file = scratch.Path("tokens");
  Write(config.token_file, "admin ops ops-token-1\nsuperuser x other-token-1\n");
  auto server = VerdictServer::Start(config);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(server.status().message()), HasSubstr("line 2: unknown role"));
  EXPECT_THAT(std::string(server.status().message()), ::testing::Not(HasSubstr("other-token-1")));
}

TEST(IdentityIntegrationTest, ReloadWithoutATokenFileIsAFailedPrecondition) {
  verdict::testing::ScratchDir scratch;
  auto server = VerdictServer::Start(TestServerConfig(scratch.path()));
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ((*server)->ReloadTokens().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace verdict::server
