// The scoring tier on loopback, with real verdictd processes: one control plane
// (--role=control) and two scoring replicas (--role=scoring --control_plane=...
// --serve_models=llama:production) that download the version the alias names, verify it and
// serve it. 8 client threads loop ScoreBatch through one round_robin channel to both replicas
// (the CLI's channel: client/connection.h) while
//   1. the alias moves on the control plane: no request fails, and each replica answers with
//      the new version within 5 s;
//   2. one replica is SIGKILLed: no request fails (retries), the survivor takes the traffic;
//   3. the control plane is SIGKILLed: the survivor keeps serving, still SERVING.
// A second test covers the feed (WatchModels) and DeleteModelVersion on an in-process server,
// and what a replica refuses.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "gmock/gmock.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <iostream>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/connection.h"
#include "server/server.h"
#include "tests/server/server_test_util.h"
#include "tests/server/verdictd_process.h"
#include "tests/testing/test_paths.h"

namespace verdict::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr char kModel[] = "llama";
constexpr char kAlias[] = "production";

// The golden Llama reward checkpoint with stories260K's tokenizer, as a directory to import.
void WriteGoldenLlama(const fs::path& dir) {
  fs::create_directories(dir);
  fs::copy_file(TestDataPath("golden/llama/config.json"), dir / "config.json");
  fs::copy_file(TestDataPath("golden/llama/model.safetensors"), dir / "model.safetensors");
  fs::copy_file(TestDataPath("models/stories260K-hf/tokenizer.model"), dir / "tokenizer.model");
}

grpc::Status Import(Clients& clients, const std::string& path, const std::string& alias,
                    v1::Model* model) {
  v1::ImportModelRequest request;
  request.set_name(kModel);
  request.set_path(path);
  request.set_alias(alias);
  auto context = NewContext();
  return clients.models->ImportModel(context.get(), request, model);
}

grpc::Status SetAlias(Clients& clients, int64_t version) {
  v1::SetModelAliasRequest request;
  request.set_name(kModel);
  request.set_alias(kAlias);
  request.set_version(version);
  v1::Model model;
  auto context = NewContext();
  return clients.models->SetModelAlias(context.get(), request, &model);
}

v1::ScoreBatchRequest ScoreRequest() {
  v1::ScoreBatchRequest request;
  request.mutable_model()->set_name(kModel);
  request.mutable_model()->set_alias(kAlias);
  for (const char* response : {" Nairobi.", " Figure it out.", " Yes, and a few more words."}) {
    v1::ScoreItem* item = request.add_items();
    item->mutable_prompt_response()->set_prompt("\n\nHuman: What is the capital of Kenya?\n\nAssistant:");
    item->mutable_prompt_response()->set_response(response);
  }
  return request;
}

// The version `alias` names on the server at `address`, 0 if none (yet).
int64_t ServedVersion(const std::string& address) {
  Clients clients(address);
  v1::GetModelRequest request;
  request.mutable_model()->set_name(kModel);
  request.mutable_model()->set_alias(kAlias);
  v1::Model model;
  auto context = NewContext(absl::Seconds(5));
  return clients.models->GetModel(context.get(), request, &model).ok() ? model.version() : 0;
}

// VerdictdProcess::Start with `root` created first (its logs go there).
std::unique_ptr<VerdictdProcess> StartVerdictd(const fs::path& root,
                                               const std::vector<std::string>& flags) {
  fs::create_directories(root);
  return VerdictdProcess::Start(VERDICTD_PATH, root, flags);
}

// A TCP port free on 127.0.0.1 now (for a control plane restarted on the same address).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  close(fd);
  return port;
}

bool WaitFor(const std::function<bool()>& done, absl::Duration timeout) {
  const absl::Time give_up = absl::Now() + timeout;
  while (absl::Now() < give_up) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return done();
}

// 8 threads looping ScoreBatch through one channel; every answer is recorded by replica (the
// call's peer) with the version that scored it.
class Load {
 public:
  explicit Load(const std::string& target)
      : clients_(target, client::ClientChannelArguments()) {
    for (int i = 0; i < 8; ++i) threads_.emplace_back([this] { Loop(); });
  }
  ~Load() { Stop(); }

  void Stop() {
    stop_ = true;
    for (std::thread& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
  }

  struct Seen {
    int64_t requests = 0;
    int64_t last_version = 0;
    absl::Time last_time;
    std::map<int64_t, absl::Time> first_time;  // version -> when first answered by it
  };
  std::map<std::string, Seen> seen() {
    absl::MutexLock lock(&mutex_);
    return seen_;
  }
  int64_t failures() {
    absl::MutexLock lock(&mutex_);
    return failures_;
  }
  std::string first_failure() {
    absl::MutexLock lock(&mutex_);
    return first_failure_;
  }
  int64_t requests() {
    absl::MutexLock lock(&mutex_);
    return requests_;
  }

 private:
  void Loop() {
    const v1::ScoreBatchRequest request = ScoreRequest();
    while (!stop_) {
      v1::ScoreBatchResponse response;
      auto context = NewContext(absl::Seconds(20));
      const grpc::Status status = clients_.scoring->ScoreBatch(context.get(), request, &response);
      const absl::Time now = absl::Now();
      absl::MutexLock lock(&mutex_);
      ++requests_;
      if (!status.ok() || response.scores_size() != request.items_size()) {
        if (failures_++ == 0) {
          first_failure_ = absl::StrCat(status.error_code(), " ", status.error_message());
        }
        continue;
      }
      Seen& seen = seen_[context->peer()];
      ++seen.requests;
      seen.last_version = response.model().version();
      seen.last_time = now;
      seen.first_time.emplace(response.model().version(), now);
    }
  }

  Clients clients_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  absl::Mutex mutex_;
  std::map<std::string, Seen> seen_ ABSL_GUARDED_BY(mutex_);
  int64_t failures_ ABSL_GUARDED_BY(mutex_) = 0;
  int64_t requests_ ABSL_GUARDED_BY(mutex_) = 0;
  std::string first_failure_ ABSL_GUARDED_BY(mutex_);
};

class ScoringTierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / absl::StrCat("verdict-scoring-tier-", getpid());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  fs::path root_;
};

TEST_F(ScoringTierTest, ReplicasFollowAliasSurviveKillsAndKeepServingWithoutControlPlane) {
  // The control plane, with two versions; the alias names version 1.
  WriteGoldenLlama(root_ / "control" / "models" / "golden-llama");
  const std::string control_port = absl::StrCat("--port=", FreePort());
  auto control = StartVerdictd(root_ / "control", {"--role=control", control_port});
  ASSERT_NE(control, nullptr);
  Clients control_clients(control->address());
  v1::Model v1, v2;
  ASSERT_TRUE(Import(control_clients, "golden-llama", kAlias, &v1).ok());
  ASSERT_TRUE(Import(control_clients, "golden-llama", "", &v2).ok());
  ASSERT_EQ(v1.version(), 1);
  ASSERT_EQ(v2.version(), 2);

  // Two replicas serving llama:production, from their own caches.
  std::vector<std::unique_ptr<VerdictdProcess>> replicas;
  for (const char* name : {"replica-a", "replica-b"}) {
    replicas.push_back(StartVerdictd(
        root_ / name,
        {"--role=scoring", "--control_plane=" + control->address(),
         absl::StrCat("--serve_models=", kModel, ":", kAlias)}));
    ASSERT_NE(replicas.back(), nullptr);
  }
  for (auto& replica : replicas) {
    const std::string address = replica->address();
    ASSERT_TRUE(WaitFor([&] { return ServedVersion(address) == 1; }, absl::Seconds(60)))
        << replica->Logs();
    Clients clients(address);
    EXPECT_EQ(CheckHealth(clients.channel, "verdict.v1.ScoringService").value_or(-1), kServing);
    EXPECT_TRUE(fs::exists(root_ / (replica == replicas[0] ? "replica-a" : "replica-b") /
                           "state" / "model-cache" / kModel / "1" / "model.safetensors"));
  }

  Load load(absl::StrCat("ipv4:", replicas[0]->address(), ",", replicas[1]->address()));
  ASSERT_TRUE(WaitFor([&] { return load.seen().size() == 2; }, absl::Seconds(30)))
      << "both replicas should get requests through round_robin";

  // 1. Move the alias under load.
  const absl::Time moved = absl::Now();
  ASSERT_TRUE(SetAlias(control_clients, 2).ok());
  ASSERT_TRUE(WaitFor(
      [&] {
        auto seen = load.seen();
        if (seen.size() != 2) return false;
        for (const auto& [peer, s] : seen) {
          if (s.first_time.count(2) == 0) return false;
        }
        return true;
      },
      absl::Seconds(20)));
  for (const auto& [peer, s] : load.seen()) {
    std::cout << peer << " answered with version 2 after "
              << absl::FormatDuration(s.first_time.at(2) - moved) << "\n";
    EXPECT_LE(s.first_time.at(2) - moved, absl::Seconds(5)) << peer << " switched late";
  }
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_EQ(load.failures(), 0) << load.first_failure();
  for (auto& replica : replicas) EXPECT_EQ(ServedVersion(replica->address()), 2);

  // 2. SIGKILL one replica under load; the other takes everything.
  const std::string killed_peer = absl::StrCat("ipv4:", replicas[0]->address());
  const std::string survivor_peer = absl::StrCat("ipv4:", replicas[1]->address());
  replicas[0]->Signal(SIGKILL);
  ASSERT_TRUE(replicas[0]->Wait(absl::Seconds(10)).has_value());
  const absl::Time killed = absl::Now();
  const int64_t survivor_before = load.seen()[survivor_peer].requests;
  absl::SleepFor(absl::Seconds(2));
  EXPECT_EQ(load.failures(), 0) << load.first_failure();
  auto seen = load.seen();
  EXPECT_GT(seen[survivor_peer].requests - survivor_before, 20);
  EXPECT_LT(seen[killed_peer].last_time, killed);

  // 3. SIGKILL the control plane: the survivor keeps serving what it has.
  control->Signal(SIGKILL);
  ASSERT_TRUE(control->Wait(absl::Seconds(10)).has_value());
  const int64_t before = load.requests();
  absl::SleepFor(absl::Seconds(2));
  EXPECT_GT(load.requests() - before, 20);
  EXPECT_EQ(load.failures(), 0) << load.first_failure();
  load.Stop();
  Clients survivor(replicas[1]->address());
  EXPECT_EQ(CheckHealth(survivor.channel, "verdict.v1.ScoringService").value_or(-1), kServing);
  EXPECT_EQ(ServedVersion(replicas[1]->address()), 2);
  // Its logs say it lost the control plane and kept serving.
  EXPECT_TRUE(WaitFor([&] { return replicas[1]->Logs().find("replica.control_plane_lost") !=
                                   std::string::npos; },
                      absl::Seconds(5)))
      << replicas[1]->Logs();

  // 4. The control plane comes back on its address with its state: the replica reconnects,
  // starts again from a snapshot, and follows the next move (back to version 1).
  control = StartVerdictd(root_ / "control", {"--role=control", control_port});
  ASSERT_NE(control, nullptr);
  Clients restarted(control->address());
  ASSERT_TRUE(SetAlias(restarted, 1).ok());
  EXPECT_TRUE(WaitFor([&] { return ServedVersion(replicas[1]->address()) == 1; },
                      absl::Seconds(15)))
      << replicas[1]->Logs();
}

TEST_F(ScoringTierTest, WatchFeedDeleteVersionAndReplicaRefusals) {
  server::ServerConfig config = TestServerConfig(root_ / "control");
  WriteGoldenLlama(fs::path(config.model_dir) / "golden-llama");
  auto started = server::VerdictServer::Start(config);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<server::VerdictServer> control = *std::move(started);
  Clients clients(LoopbackAddress(control->port()));
  v1::Model model;
  ASSERT_TRUE(Import(clients, "golden-llama", kAlias, &model).ok());

  // A watcher starts from a snapshot, then sees each change.
  auto context = NewContext(absl::Seconds(60));
  auto reader = clients.models->WatchModels(context.get(), v1::WatchModelsRequest());
  v1::ModelChange change;
  ASSERT_TRUE(reader->Read(&change));
  EXPECT_EQ(change.kind(), v1::ModelChange::SNAPSHOT);
  ASSERT_EQ(change.models_size(), 1);
  EXPECT_EQ(change.models(0).version(), 1);
  EXPECT_THAT(std::vector<std::string>(change.models(0).aliases().begin(),
                                       change.models(0).aliases().end()),
              ::testing::ElementsAre("latest", kAlias));

  ASSERT_TRUE(Import(clients, "golden-llama", "", &model).ok());  // version 2, "latest"
  ASSERT_TRUE(reader->Read(&change));
  EXPECT_EQ(change.kind(), v1::ModelChange::VERSION_ADDED);
  ASSERT_EQ(change.models_size(), 1);
  EXPECT_EQ(change.models(0).version(), 2);
  ASSERT_TRUE(reader->Read(&change));
  EXPECT_EQ(change.kind(), v1::ModelChange::ALIAS_MOVED);
  EXPECT_EQ(change.alias(), "latest");
  EXPECT_EQ(change.version(), 2);

  // Deleting a version an alias points at is refused; once the alias moves, it goes.
  v1::DeleteModelVersionRequest remove;
  remove.set_name(kModel);
  remove.set_version(1);
  {
    auto call = NewContext();
    grpc::Status status = clients.models->DeleteModelVersion(call.get(), remove, &model);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(status.error_message(), HasSubstr(kAlias));
  }
  ASSERT_TRUE(SetAlias(clients, 2).ok());
  ASSERT_TRUE(reader->Read(&change));
  EXPECT_EQ(change.kind(), v1::ModelChange::ALIAS_MOVED);
  EXPECT_EQ(change.alias(), kAlias);
  EXPECT_EQ(change.version(), 2);
  {
    auto call = NewContext();
    ASSERT_TRUE(clients.models->DeleteModelVersion(call.get(), remove, &model).ok());
    EXPECT_FALSE(fs::exists(fs::path(config.state_dir) / model.storage_path()));
  }
  ASSERT_TRUE(reader->Read(&change));
  EXPECT_EQ(change.kind(), v1::ModelChange::VERSION_DELETED);
  EXPECT_EQ(change.version(), 1);
  remove.set_version(2);  // "latest" and the alias: refused
  {
    auto call = NewContext();
    EXPECT_EQ(clients.models->DeleteModelVersion(call.get(), remove, &model).error_code(),
              grpc::StatusCode::FAILED_PRECONDITION);
  }

  // A replica serves scoring and model reads; jobs, datasets and registry changes are the
  // control plane's, and it says so.
  auto replica = StartVerdictd(
      root_ / "replica",
      {"--role=scoring", "--control_plane=" + LoopbackAddress(control->port())});
  ASSERT_NE(replica, nullptr);
  ASSERT_TRUE(WaitFor([&] { return ServedVersion(replica->address()) == 2; }, absl::Seconds(60)))
      << replica->Logs();
  Clients replica_clients(replica->address());
  {
    v1::ListJobsResponse jobs;
    auto call = NewContext();
    grpc::Status status =
        replica_clients.training->ListJobs(call.get(), v1::ListJobsRequest(), &jobs);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
    EXPECT_THAT(status.error_message(), HasSubstr("--role=scoring"));
  }
  {
    grpc::Status status = SetAlias(replica_clients, 2);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(status.error_message(), HasSubstr("--role=scoring"));
  }
  EXPECT_EQ(CheckHealth(replica_clients.channel, "verdict.v1.ScoringService").value_or(-1),
            kServing);
  context->TryCancel();
  reader->Finish().IgnoreError();
}

TEST_F(ScoringTierTest, ReplicaWithoutControlPlaneIsNotServing) {
  // Nothing listens on the port: the replica starts, has nothing to serve, and says so.
  auto replica = StartVerdictd(root_ / "replica", {"--role=scoring", "--control_plane=127.0.0.1:1"});
  ASSERT_NE(replica, nullptr);
  Clients clients(replica->address());
  EXPECT_EQ(CheckHealth(clients.channel, "verdict.v1.ScoringService").value_or(-1), kNotServing);
  EXPECT_EQ(CheckHealth(clients.channel, "").value_or(-1), kServing);
}

}  // namespace
}  // namespace verdict::testing
