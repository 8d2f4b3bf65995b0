// tier_bench: ScoreBatch items/s of the scoring tier with 1 and with 2 scoring replicas.
//
// It starts real verdictd processes on loopback: one control plane (--role=control) holding the
// model, and --replicas scoring replicas (--role=scoring --serve_models=NAME:production) that
// download and load it. For each replica count in --replica_counts, --clients client threads
// send ScoreBatch requests of --batch items (hh-rlhf-like prompt/response pairs) back to back
// through ONE round_robin channel to every replica of that arm (client/connection.h's channel,
// the CLI's), for --seconds, after a --warmup; it prints items/s, requests/s and p50/p99 latency.
// Arms alternate --reps times (1, 2, 1, 2, ...) so that drift on a shared machine hits both.
//
// The model is --model_dir imported as "bench" (default: the golden Llama reward checkpoint of
// tests/data with stories260K's tokenizer). Each replica gets --replica_threads LibTorch
// threads. The clients run on the same cores as the replicas.
//
//   tier_bench --verdictd=build/server/verdictd --replica_counts=1,2 --clients=8 --batch=8
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "client/connection.h"
#include "verdict/v1/models.grpc.pb.h"
#include "verdict/v1/scoring.grpc.pb.h"

ABSL_FLAG(std::string, verdictd, "build/server/verdictd", "The verdictd binary.");
ABSL_FLAG(std::string, model_dir, "",
          "Hugging Face reward model directory to serve (empty: tests/data's golden Llama with "
          "stories260K's tokenizer).");
ABSL_FLAG(std::vector<std::string>, replica_counts, std::vector<std::string>({"1", "2"}),
          "Scoring replica counts to measure.");
ABSL_FLAG(int, clients, 8, "Client threads (one shared round_robin channel).");
ABSL_FLAG(int, batch, 8, "Items per ScoreBatch request.");
ABSL_FLAG(double, seconds, 5, "Measured seconds per arm.");
ABSL_FLAG(double, warmup, 1, "Unmeasured seconds before each arm.");
ABSL_FLAG(int, reps, 2, "Times each arm runs (alternating).");
ABSL_FLAG(int, replica_threads, 1, "--threads of each replica (LibTorch intra-op threads).");

namespace fs = std::filesystem;

namespace {

// A verdictd child; SIGKILLed and reaped when dropped.
struct Child {
  pid_t pid = -1;
  int port = 0;
  ~Child() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
};

std::unique_ptr<Child> Spawn(const fs::path& root, std::vector<std::string> flags) {
  fs::create_directories(root);
  const fs::path out = root / "stdout", err = root / "stderr";
  std::vector<std::string> args = {absl::GetFlag(FLAGS_verdictd), "--host=127.0.0.1", "--port=0",
                                   "--metrics_port=-1",
                                   "--state_dir=" + (root / "state").string(),
                                   "--model_dir=" + (root / "models").string(),
                                   "--log_level=warning"};
  args.insert(args.end(), flags.begin(), flags.end());
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  auto child = std::make_unique<Child>();
  if (posix_spawn(&child->pid, argv[0], &actions, nullptr, argv.data(), environ) != 0) {
    child->pid = -1;
    return nullptr;
  }
  posix_spawn_file_actions_destroy(&actions);
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  while (absl::Now() < give_up) {
    std::ifstream stream(out);
    std::string line;
    if (std::getline(stream, line) && absl::StrContains(line, "listening on ")) {
      std::string address = line.substr(line.find(" on ") + 4);
      address = address.substr(0, address.find(','));
      if (absl::SimpleAtoi(address.substr(address.rfind(':') + 1), &child->port)) return child;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  std::cerr << "verdictd under " << root << " did not start; see " << err << "\n";
  return nullptr;
}

std::string Address(const Child& child) { return absl::StrCat("127.0.0.1:", child.port); }

verdict::v1::ScoreBatchRequest Request(int batch) {
  verdict::v1::ScoreBatchRequest request;
  request.mutable_model()->set_name("bench");
  request.mutable_model()->set_alias("production");
  for (int i = 0; i < batch; ++i) {
    auto* item = request.add_items()->mutable_prompt_response();
    item->set_prompt(absl::StrCat("\n\nHuman: Tell me a short story about a cat named number ", i,
                                  ", please.\n\nAssistant:"));
    item->set_response(" Once upon a time there was a cat who liked to sit in the sun and watch "
                       "the birds. One day she met a dog, and they became friends.");
  }
  return request;
}

struct Arm {
  double items_per_second = 0;
  double requests_per_second = 0;
  double p50_ms = 0, p99_ms = 0;
  int64_t failures = 0;
};

Arm Measure(const std::string& target) {
  auto channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(),
                                           verdict::client::ClientChannelArguments());
  auto stub = verdict::v1::ScoringService::NewStub(channel);
  const verdict::v1::ScoreBatchRequest request = Request(absl::GetFlag(FLAGS_batch));
  std::atomic<int> phase{0};  // 0 warm-up, 1 measured, 2 stop
  absl::Mutex mutex;
  std::vector<double> latencies_ms;
  int64_t done = 0, failures = 0;
  std::vector<std::thread> threads;
  for (int c = 0; c < absl::GetFlag(FLAGS_clients); ++c) {
    threads.emplace_back([&] {
      while (phase != 2) {
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
        verdict::v1::ScoreBatchResponse response;
        const absl::Time start = absl::Now();
        const grpc::Status status = stub->ScoreBatch(&context, request, &response);
        const double ms = absl::ToDoubleMilliseconds(absl::Now() - start);
        if (phase != 1) continue;
        absl::MutexLock lock(&mutex);
        if (!status.ok()) {
          ++failures;
          continue;
        }
        ++done;
        latencies_ms.push_back(ms);
      }
    });
  }
  absl::SleepFor(absl::Seconds(absl::GetFlag(FLAGS_warmup)));
  phase = 1;
  const absl::Time start = absl::Now();
  absl::SleepFor(absl::Seconds(absl::GetFlag(FLAGS_seconds)));
  int64_t requests;
  std::vector<double> latencies;
  Arm arm;
  {
    absl::MutexLock lock(&mutex);
    const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
    requests = done;
    latencies = latencies_ms;
    arm.failures = failures;
    arm.requests_per_second = requests / elapsed;
    arm.items_per_second = arm.requests_per_second * absl::GetFlag(FLAGS_batch);
    phase = 2;
  }
  for (std::thread& thread : threads) thread.join();
  arm.p50_ms = verdict::bench::Percentile(latencies, 50);
  arm.p99_ms = verdict::bench::Percentile(latencies, 99);
  return arm;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const fs::path root = fs::temp_directory_path() / absl::StrCat("verdict-tier-bench-", getpid());
  fs::remove_all(root);
  int result = [&]() -> int {
    // The control plane, with the model imported under alias "production".
    const fs::path model = root / "control" / "models" / "bench";
    fs::create_directories(model);
    if (absl::GetFlag(FLAGS_model_dir).empty()) {
      const fs::path data = verdict::bench::DefaultDataDir();
      fs::copy_file(data / "golden/llama/config.json", model / "config.json");
      fs::copy_file(data / "golden/llama/model.safetensors", model / "model.safetensors");
      fs::copy_file(data / "models/stories260K-hf/tokenizer.model", model / "tokenizer.model");
    } else {
      fs::copy(absl::GetFlag(FLAGS_model_dir), model, fs::copy_options::recursive);
    }
    auto control = Spawn(root / "control", {"--role=control"});
    if (control == nullptr) return 1;
    {
      auto stub = verdict::v1::ModelService::NewStub(
          grpc::CreateChannel(Address(*control), grpc::InsecureChannelCredentials()));
      verdict::v1::ImportModelRequest request;
      request.set_name("bench");
      request.set_path("bench");
      request.set_alias("production");
      verdict::v1::Model imported;
      grpc::ClientContext context;
      const grpc::Status status = stub->ImportModel(&context, request, &imported);
      if (!status.ok()) {
        std::cerr << "ImportModel: " << status.error_message() << "\n";
        return 1;
      }
    }
    std::vector<int> counts;
    int most = 0;
    for (const std::string& count : absl::GetFlag(FLAGS_replica_counts)) {
      int n = 0;
      if (!absl::SimpleAtoi(count, &n) || n < 1) {
        std::cerr << "--replica_counts: " << count << " is not a positive count\n";
        return 2;
      }
      counts.push_back(n);
      most = std::max(most, n);
    }
    std::vector<std::unique_ptr<Child>> replicas;
    for (int i = 0; i < most; ++i) {
      replicas.push_back(Spawn(
          root / absl::StrCat("replica-", i),
          {"--role=scoring", "--control_plane=" + Address(*control),
           "--serve_models=bench:production",
           absl::StrCat("--threads=", absl::GetFlag(FLAGS_replica_threads))}));
      if (replicas.back() == nullptr) return 1;
    }
    // Ready when each replica scores with the alias.
    for (const auto& replica : replicas) {
      auto stub = verdict::v1::ScoringService::NewStub(
          grpc::CreateChannel(Address(*replica), grpc::InsecureChannelCredentials()));
      const absl::Time give_up = absl::Now() + absl::Seconds(60);
      while (true) {
        grpc::ClientContext context;
        verdict::v1::ScoreBatchResponse response;
        if (stub->ScoreBatch(&context, Request(1), &response).ok()) break;
        if (absl::Now() > give_up) {
          std::cerr << "replica on " << Address(*replica) << " never served the model\n";
          return 1;
        }
        absl::SleepFor(absl::Milliseconds(100));
      }
    }
    std::cout << verdict::bench::DescribeMachine() << "\n";
    absl::PrintF("clients %d, batch %d, %gs per arm, replica --threads=%d, load average %.2f\n",
                 absl::GetFlag(FLAGS_clients), absl::GetFlag(FLAGS_batch),
                 absl::GetFlag(FLAGS_seconds), absl::GetFlag(FLAGS_replica_threads),
                 verdict::bench::LoadAverage());
    std::map<int, std::vector<double>> items;
    for (int rep = 0; rep < absl::GetFlag(FLAGS_reps); ++rep) {
      for (int n : counts) {
        std::vector<std::string> addresses;
        for (int i = 0; i < n; ++i) addresses.push_back(Address(*replicas[i]));
        const Arm arm = Measure("ipv4:" + absl::StrJoin(addresses, ","));
        items[n].push_back(arm.items_per_second);
        absl::PrintF("replicas %d  rep %d  items/s %8.1f  requests/s %7.1f  p50 %6.1f ms  "
                     "p99 %6.1f ms  failed %d\n",
                     n, rep, arm.items_per_second, arm.requests_per_second, arm.p50_ms,
                     arm.p99_ms, arm.failures);
      }
    }
    for (int n : counts) {
      absl::PrintF("replicas %d  median items/s %8.1f  (x%.2f of %d replica)\n", n,
                   verdict::bench::Median(items[n]),
                   verdict::bench::Median(items[n]) / verdict::bench::Median(items[counts[0]]),
                   counts[0]);
    }
    return 0;
  }();
  fs::remove_all(root);
  return result;
}
