// loading_bench: ScoreBatch latency of an already-loaded model while the server loads another
// one, against the same latency on an idle server — the model registry's promise that a load
// blocks no other model's requests (issue 10: "within 20 % of idle").
//
// A real in-process verdictd over loopback serves three imported copies of the golden Llama
// reward checkpoint (stories260K's tokenizer): "served", loaded once, "churn" and "held". For
// --reps interleaved triples of phases (idle, loading, held, idle, ...):
//   idle     one client sends ScoreBatch requests of --batch items to "served" back to back
//            (closed loop) for --seconds;
//   loading  the same, while another thread loops LoadModel("churn") + UnloadModel("churn")
//            over gRPC, so that a real load of another model is in progress most of the time
//            (it also competes for the cores: on the 2-core machine of RESULTS.md the loader
//            thread takes CPU from the scoring thread);
//   held     the same, while one load of "held" is in progress for the whole phase and costs
//            no CPU: its model.safetensors is a FIFO that the bench fills only at the end, and
//            --held_waiters ScoreBatch calls for "held" wait for that load meanwhile. This arm
//            isolates blocking (locks, executor threads) from CPU contention.
// It prints each phase's request latency p50/p99 and requests/s, and the medians over reps with
// the loading/idle and held/idle ratios of p50 and p99 (median of the per-rep ratios).
//
//   loading_bench --reps=5 --seconds=3 --batch=8
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "bench/bench_server.h"
#include "bench/bench_util.h"
#include "core/util/file_util.h"
#include "core/util/status_macros.h"

ABSL_FLAG(int, reps, 5, "Idle/loading phase pairs, interleaved.");
ABSL_FLAG(double, seconds, 3.0, "Duration of each phase.");
ABSL_FLAG(int, batch, 8, "Items per ScoreBatch request.");
ABSL_FLAG(int, held_waiters, 16, "ScoreBatch calls waiting for the held load in the held arm.");

namespace verdict::bench {
namespace {

namespace fs = std::filesystem;

struct Phase {
  double p50_ms = 0, p99_ms = 0, requests_per_second = 0;
  int64_t errors = 0;
  int64_t loads = 0;  // LoadModel calls completed meanwhile
  double load = 0;    // 1-minute load average at the start
};

v1::ModelRef Ref(const std::string& name) {
  v1::ModelRef ref;
  ref.set_name(name);
  return ref;
}

absl::Status Import(v1::ModelService::Stub& models, const std::string& name) {
  grpc::ClientContext context;
  v1::ImportModelRequest request;
  request.set_name(name);
  request.set_path("golden-llama");
  v1::Model model;
  return FromGrpc(models.ImportModel(&context, request, &model),
                  absl::StrCat("ImportModel ", name));
}

absl::StatusOr<Phase> Measure(int port, const v1::ScoreBatchRequest& request, double seconds,
                              bool churn) {
  auto scoring = v1::ScoringService::NewStub(NewChannel(port, /*own_connection=*/true));
  auto models = v1::ModelService::NewStub(NewChannel(port, /*own_connection=*/true));
  Phase phase;
  phase.load = LoadAverage();
  std::atomic<bool> stop{false};
  std::atomic<int64_t> loads{0};
  std::atomic<int64_t> churn_errors{0};
  std::thread loader;
  if (churn) {
    loader = std::thread([&] {
      while (!stop.load()) {
        grpc::ClientContext load_context;
        v1::LoadModelRequest load;
        *load.mutable_model() = Ref("churn");
        v1::Model model;
        if (!models->LoadModel(&load_context, load, &model).ok()) ++churn_errors;
        ++loads;
        grpc::ClientContext unload_context;
        v1::UnloadModelRequest unload;
        *unload.mutable_model() = Ref("churn");
        if (!models->UnloadModel(&unload_context, unload, &model).ok()) ++churn_errors;
      }
    });
  }
  std::vector<double> latencies;
  const absl::Time start = absl::Now();
  const absl::Time end = start + absl::Seconds(seconds);
  while (absl::Now() < end) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::ScoreBatchResponse response;
    const absl::Time sent = absl::Now();
    grpc::Status status = scoring->ScoreBatch(&context, request, &response);
    if (!status.ok()) {
      ++phase.errors;
      continue;
    }
    latencies.push_back(absl::ToDoubleMilliseconds(absl::Now() - sent));
  }
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  stop = true;
  if (loader.joinable()) loader.join();
  phase.p50_ms = Percentile(latencies, 50);
  phase.p99_ms = Percentile(latencies, 99);
  phase.requests_per_second = static_cast<double>(latencies.size()) / elapsed;
  phase.loads = loads.load();
  phase.errors += churn_errors.load();
  return phase;
}

// One held load of "held" (see the header) around a measurement of "served".
absl::StatusOr<Phase> MeasureHeld(int port, const v1::ScoreBatchRequest& request, double seconds,
                                  const fs::path& weights, const std::string& bytes) {
  fs::remove(weights);
  if (::mkfifo(weights.c_str(), 0600) != 0)
    return absl::InternalError("mkfifo " + weights.string());
  auto channel = NewChannel(port, /*own_connection=*/true);
  auto models = v1::ModelService::NewStub(channel);
  auto scoring = v1::ScoringService::NewStub(channel);
  std::atomic<int64_t> waiter_errors{0};
  std::thread load([&] {
    grpc::ClientContext context;
    v1::LoadModelRequest load_request;
    *load_request.mutable_model() = Ref("held");
    v1::Model model;
    if (!models->LoadModel(&context, load_request, &model).ok()) ++waiter_errors;
  });
  const int fd = ::open(weights.c_str(), O_WRONLY);  // returns once the loader reads it
  if (fd < 0) return absl::InternalError("open " + weights.string());
  v1::ScoreBatchRequest held_request = request;
  *held_request.mutable_model() = Ref("held");
  std::vector<std::thread> waiters;
  for (int i = 0; i < absl::GetFlag(FLAGS_held_waiters); ++i) {
    waiters.emplace_back([&] {
      grpc::ClientContext context;
      v1::ScoreBatchResponse response;
      if (!scoring->ScoreBatch(&context, held_request, &response).ok()) ++waiter_errors;
    });
  }
  absl::SleepFor(absl::Milliseconds(100));  // the waiters are in
  absl::StatusOr<Phase> phase = Measure(port, request, seconds, /*churn=*/false);
  for (size_t written = 0; written < bytes.size();) {
    const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n <= 0) break;
    written += static_cast<size_t>(n);
  }
  ::close(fd);
  load.join();
  for (auto& waiter : waiters) waiter.join();
  grpc::ClientContext context;
  v1::UnloadModelRequest unload;
  *unload.mutable_model() = Ref("held");
  v1::Model model;
  RETURN_IF_ERROR(FromGrpc(models->UnloadModel(&context, unload, &model), "UnloadModel held"));
  if (phase.ok()) {
    phase->errors += waiter_errors.load();
    phase->loads = 1;
  }
  return phase;
}

absl::Status Run() {
  std::cout << "loading_bench: " << DescribeMachine() << "\n";
  ScratchDir scratch("verdict-loading-bench");
  const std::string model_dir = scratch.Path("models-in");
  const fs::path golden = fs::path(model_dir) / "golden-llama";
  fs::create_directories(golden);
  const fs::path data(DefaultDataDir());
  fs::copy_file(data / "golden/llama/config.json", golden / "config.json");
  fs::copy_file(data / "golden/llama/model.safetensors", golden / "model.safetensors");
  fs::copy_file(data / "models/stories260K-hf/tokenizer.model", golden / "tokenizer.model");

  server::ServerConfig config =
      BenchServerConfig(scratch.Path("state"), scratch.Path("data"), model_dir, /*metrics=*/false);
  ASSIGN_OR_RETURN(std::unique_ptr<server::VerdictServer> server,
                   server::VerdictServer::Start(config));
  auto models = v1::ModelService::NewStub(NewChannel(server->port(), false));
  RETURN_IF_ERROR(Import(*models, "served"));
  RETURN_IF_ERROR(Import(*models, "churn"));
  RETURN_IF_ERROR(Import(*models, "held"));
  fs::path held_weights;
  {
    grpc::ClientContext context;
    v1::GetModelRequest get;
    *get.mutable_model() = Ref("held");
    v1::Model held;
    RETURN_IF_ERROR(FromGrpc(models->GetModel(&context, get, &held), "GetModel held"));
    held_weights = fs::path(config.state_dir) / held.storage_path() / "model.safetensors";
  }
  ASSIGN_OR_RETURN(const std::string held_bytes, ReadFileToString(held_weights.string()));

  v1::ScoreBatchRequest request;
  *request.mutable_model() = Ref("served");
  const std::vector<std::pair<std::string, std::string>> texts = {
      {"\n\nHuman: What is the capital of Kenya?\n\nAssistant:", " Nairobi."},
      {"\n\nHuman: Hi! What is ten minus four?\n\nAssistant:", " Ten minus four is six."},
      {"\n\nHuman: Tell me a story about a dragon.\n\nAssistant:",
       " Once upon a time a dragon named Ember baked bread for her friends."},
      {"", " A response with no prompt at all."},
  };
  for (int i = 0; i < absl::GetFlag(FLAGS_batch); ++i) {
    v1::PromptResponse* pair = request.add_items()->mutable_prompt_response();
    pair->set_prompt(texts[i % texts.size()].first);
    pair->set_response(texts[i % texts.size()].second);
  }
  {
    // Loads "served" and warms the path before any clock starts.
    auto scoring = v1::ScoringService::NewStub(NewChannel(server->port(), false));
    for (int i = 0; i < 20; ++i) {
      grpc::ClientContext context;
      v1::ScoreBatchResponse response;
      RETURN_IF_ERROR(FromGrpc(scoring->ScoreBatch(&context, request, &response), "ScoreBatch"));
    }
  }

  const double seconds = absl::GetFlag(FLAGS_seconds);
  std::vector<double> idle_p50, idle_p99, busy_p50, busy_p99, held_p50, held_p99;
  std::vector<double> busy_p50_ratio, busy_p99_ratio, held_p50_ratio, held_p99_ratio;
  absl::PrintF("%-4s %-8s %9s %9s %10s %7s %7s %6s\n", "rep", "phase", "p50 ms", "p99 ms",
               "requests/s", "loads", "errors", "load");
  for (int rep = 0; rep < absl::GetFlag(FLAGS_reps); ++rep) {
    ASSIGN_OR_RETURN(Phase idle, Measure(server->port(), request, seconds, /*churn=*/false));
    ASSIGN_OR_RETURN(Phase busy, Measure(server->port(), request, seconds, /*churn=*/true));
    ASSIGN_OR_RETURN(Phase held,
                     MeasureHeld(server->port(), request, seconds, held_weights, held_bytes));
    for (const auto& [name, p] :
         {std::pair<const char*, const Phase&>{"idle", idle}, {"loading", busy}, {"held", held}}) {
      absl::PrintF("%-4d %-8s %9.3f %9.3f %10.1f %7d %7d %6.2f\n", rep, name, p.p50_ms, p.p99_ms,
                   p.requests_per_second, p.loads, p.errors, p.load);
    }
    idle_p50.push_back(idle.p50_ms);
    idle_p99.push_back(idle.p99_ms);
    busy_p50.push_back(busy.p50_ms);
    busy_p99.push_back(busy.p99_ms);
    held_p50.push_back(held.p50_ms);
    held_p99.push_back(held.p99_ms);
    busy_p50_ratio.push_back(busy.p50_ms / idle.p50_ms);
    busy_p99_ratio.push_back(busy.p99_ms / idle.p99_ms);
    held_p50_ratio.push_back(held.p50_ms / idle.p50_ms);
    held_p99_ratio.push_back(held.p99_ms / idle.p99_ms);
  }
  absl::PrintF(
      "\nmedians over %d reps (ms): idle p50 %.3f p99 %.3f | loading p50 %.3f p99 %.3f | "
      "held p50 %.3f p99 %.3f\n",
      static_cast<int>(idle_p50.size()), Median(idle_p50), Median(idle_p99), Median(busy_p50),
      Median(busy_p99), Median(held_p50), Median(held_p99));
  absl::PrintF("loading/idle ratio: p50 %.3f  p99 %.3f\n", Median(busy_p50_ratio),
               Median(busy_p99_ratio));
  absl::PrintF("held/idle ratio:    p50 %.3f  p99 %.3f\n", Median(held_p50_ratio),
               Median(held_p99_ratio));
  std::cout << "\nafter: " << DescribeMachine() << "\n";
  server->Shutdown();
  return absl::OkStatus();
}

}  // namespace
}  // namespace verdict::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "ScoreBatch latency of a loaded model, idle vs while another model loads; see the header.");
  absl::ParseCommandLine(argc, argv);
  absl::Status status = verdict::bench::Run();
  if (!status.ok()) {
    std::cerr << "loading_bench: " << status << "\n";
    return 1;
  }
  return 0;
}
