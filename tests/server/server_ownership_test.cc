// verdictd owns its port and its state directory: a second server on either refuses to start
// (before: gRPC's default SO_REUSEPORT let two servers share a port, and nothing stopped two
// servers from training the same state directory's jobs). The data and model roots default
// under --state_dir, not the working directory.
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "tests/server/server_test_util.h"
#include "tests/testing/test_paths.h"

namespace verdict::server {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::verdict::testing::ScratchDir;
using ::verdict::testing::TestServerConfig;

TEST(ServerOwnershipTest, ASecondServerOnTheSamePortFailsToStart) {
  ScratchDir scratch;
  auto first = VerdictServer::Start(TestServerConfig(scratch.path() / "first"));
  ASSERT_TRUE(first.ok()) << first.status();
  ServerConfig config = TestServerConfig(scratch.path() / "second");
  config.port = (*first)->port();
  auto second = VerdictServer::Start(config);
  EXPECT_FALSE(second.ok()) << "two servers share port " << config.port;
  if (second.ok()) return;
  EXPECT_THAT(second.status().message(), HasSubstr(absl::StrCat(config.port)));
}

TEST(ServerOwnershipTest, ASecondServerOnTheSameStateDirFailsNamingItAndTheHolder) {
  ScratchDir scratch;
  const ServerConfig config = TestServerConfig(scratch.path());
  auto first = VerdictServer::Start(config);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = VerdictServer::Start(config);  // port 0: a port of its own
  ASSERT_FALSE(second.ok()) << "two servers own " << config.state_dir;
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(), HasSubstr(config.state_dir));
  EXPECT_THAT(second.status().message(), HasSubstr(absl::StrCat("pid ", getpid())));

  // The lock goes with the server.
  first->reset();
  auto third = VerdictServer::Start(config);
  EXPECT_TRUE(third.ok()) << third.status();
}

TEST(ServerOwnershipTest, DataAndModelRootsDefaultUnderTheStateDir) {
  ScratchDir scratch;
  ServerConfig config = TestServerConfig(scratch.path());
  config.data_dir.clear();
  config.model_dir.clear();
  const fs::path cwd = fs::current_path();
  fs::create_directories(scratch.path() / "elsewhere");
  fs::current_path(scratch.path() / "elsewhere");
  auto server = VerdictServer::Start(config);
  fs::current_path(cwd);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_TRUE(fs::is_directory(fs::path(config.state_dir) / "data"));
  EXPECT_TRUE(fs::is_directory(fs::path(config.state_dir) / "models-in"));
  EXPECT_FALSE(fs::exists(scratch.path() / "elsewhere" / "verdict-data"));
  EXPECT_TRUE(fs::exists(fs::path(config.state_dir) / "LOCK"));
}

}  // namespace
}  // namespace verdict::server
