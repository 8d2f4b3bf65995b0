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
#include "server/sqlite_job_store.h"
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

// Before: the job workers started before the port was bound, so a server that then failed to
// start had already picked up (and failed) the queued jobs of its state directory.
TEST(ServerOwnershipTest, AServerThatCannotBindItsPortRunsNoneOfItsQueuedJobs) {
  ScratchDir scratch;
  auto first = VerdictServer::Start(TestServerConfig(scratch.path() / "first"));
  ASSERT_TRUE(first.ok()) << first.status();
  ServerConfig config = TestServerConfig(scratch.path() / "second");
  fs::create_directories(config.state_dir);
  const std::string db = (fs::path(config.state_dir) / "verdict.db").string();
  {
    auto store = SqliteJobStore::Open(db);
    ASSERT_TRUE(store.ok()) << store.status();
    v1::Job job;
    job.set_id("job-queued");
    job.set_state(v1::JOB_STATE_QUEUED);
    job.mutable_create_time()->set_seconds(1);
    job.mutable_spec()->set_output_model_name("rm");
    job.mutable_spec()->mutable_train_data()->set_path("missing.jsonl");
    ASSERT_TRUE((*store)->CreateJob(job).ok());
  }
  config.port = (*first)->port();
  ASSERT_FALSE(VerdictServer::Start(config).ok());

  auto store = SqliteJobStore::Open(db);
  ASSERT_TRUE(store.ok()) << store.status();
  auto job = (*store)->GetJob("job-queued");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(job->attempt(), 0);
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
