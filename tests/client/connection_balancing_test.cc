// The CLI's channel (client/connection: round_robin and ScoreBatch retries) against two real
// verdictd servers in this process, on loopback: requests spread over both, and stopping one
// while a client loops ScoreBatch costs no failed request.
//
// The target lists both ports ("ipv4:127.0.0.1:P1,127.0.0.1:P2"): a dns:/// name cannot carry
// two ports on one host, and it resolves through the same round_robin policy (on Kubernetes,
// dns:/// a headless Service gives one address per scoring pod).
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/connection.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "tests/server/server_test_util.h"
#include "tests/testing/test_paths.h"

namespace verdict::testing {
namespace {

namespace fs = std::filesystem;

// A server under `root` with the golden Llama checkpoint imported as "llama" and /metrics on.
std::unique_ptr<server::VerdictServer> StartWithLlama(const fs::path& root) {
  server::ServerConfig config = TestServerConfig(root);
  config.metrics_port = 0;
  auto started = server::VerdictServer::Start(config);
  EXPECT_TRUE(started.ok()) << started.status();
  if (!started.ok()) return nullptr;
  const fs::path golden = fs::path(config.model_dir) / "golden-llama";
  fs::create_directories(golden);
  fs::copy_file(TestDataPath("golden/llama/config.json"), golden / "config.json");
  fs::copy_file(TestDataPath("golden/llama/model.safetensors"), golden / "model.safetensors");
  fs::copy_file(TestDataPath("models/stories260K-hf/tokenizer.model"), golden / "tokenizer.model");
  Clients clients(LoopbackAddress((*started)->port()));
  v1::ImportModelRequest request;
  request.set_name("llama");
  request.set_path("golden-llama");
  v1::Model model;
  auto context = NewContext();
  grpc::Status status = clients.models->ImportModel(context.get(), request, &model);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return *std::move(started);
}

double ItemsScored(const server::VerdictServer& server) {
  absl::StatusOr<std::string> metrics = ScrapeMetrics(server.metrics_port());
  EXPECT_TRUE(metrics.ok()) << metrics.status();
  return metrics.ok() ? MetricSum(*metrics, "verdict_scoring_items_total") : -1;
}

grpc::Status ScoreOne(client::Connection& connection) {
  v1::ScoreBatchRequest request;
  request.mutable_model()->set_name("llama");
  v1::ScoreItem* item = request.add_items();
  item->mutable_prompt_response()->set_prompt("\n\nHuman: Say yes.\n\nAssistant:");
  item->mutable_prompt_response()->set_response(" Yes.");
  v1::ScoreBatchResponse response;
  return connection.scoring().ScoreBatch(connection.NewContext().get(), request, &response);
}

class ConnectionBalancingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / absl::StrCat("verdict-balancing-test-", getpid());
    fs::remove_all(root_);
    first_ = StartWithLlama(root_ / "first");
    second_ = StartWithLlama(root_ / "second");
    ASSERT_NE(first_, nullptr);
    ASSERT_NE(second_, nullptr);
    client::GlobalOptions options;
    options.server =
        absl::StrCat("ipv4:127.0.0.1:", first_->port(), ",127.0.0.1:", second_->port());
    auto connection = client::Connection::Create(options);
    ASSERT_TRUE(connection.ok()) << connection.status();
    connection_ = *std::move(connection);
  }
  void TearDown() override {
    connection_.reset();
    first_.reset();
    second_.reset();
    fs::remove_all(root_);
  }

  fs::path root_;
  std::unique_ptr<server::VerdictServer> first_, second_;
  std::unique_ptr<client::Connection> connection_;
};

TEST_F(ConnectionBalancingTest, RequestsSpreadOverEveryAddress) {
  constexpr int kRequests = 20;
  for (int i = 0; i < kRequests; ++i) {
    grpc::Status status = ScoreOne(*connection_);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  const double first = ItemsScored(*first_), second = ItemsScored(*second_);
  EXPECT_EQ(first + second, kRequests);
  // round_robin alternates once both subchannels are ready; the first calls may all go to the
  // one that connected first.
  EXPECT_GE(first, kRequests / 4) << "first " << first << ", second " << second;
  EXPECT_GE(second, kRequests / 4) << "first " << first << ", second " << second;
}

TEST_F(ConnectionBalancingTest, AStoppedServerCostsNoFailedScoreBatch) {
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(ScoreOne(*connection_).ok());
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  absl::Mutex mutex;
  std::string first_error;  // guarded by mutex
  // Four callers keep requests in flight on both servers when one stops.
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&] {
      while (!stop.load()) {
        grpc::Status status = ScoreOne(*connection_);
        if (status.ok()) {
          ok.fetch_add(1);
        } else if (failed.fetch_add(1) == 0) {
          absl::MutexLock lock(&mutex);
          first_error = absl::StrCat(status.error_code(), ": ", status.error_message());
        }
      }
    });
  }
  // Bounded waits: a broken channel fails the test instead of hanging it.
  auto wait_for = [&](int count) {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (ok.load() < count && failed.load() == 0 && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  };
  wait_for(20);
  // The first address is the one a channel without round_robin (pick_first) would use alone.
  const double second_before = ItemsScored(*second_);
  first_->Shutdown();
  const int at_stop = ok.load();
  wait_for(at_stop + 40);
  stop.store(true);
  for (std::thread& client : clients) client.join();
  absl::MutexLock lock(&mutex);
  EXPECT_EQ(failed.load(), 0) << first_error;
  EXPECT_GE(ok.load(), at_stop + 40);
  // The survivor took the traffic.
  EXPECT_GE(ItemsScored(*second_) - second_before, 30);
}

}  // namespace
}  // namespace verdict::testing
