// watchers_bench: does following a job slow it down? Training pairs/s of real jobs run through
// a real in-process verdictd, with 0 and with --watchers concurrent StreamMetrics watchers, arms
// interleaved (0, W, 0, W, ...), medians and their ratio.
//
// Each watcher is a real gRPC client on loopback with its own channel and TCP connection; it
// subscribes as soon as the job is submitted and reads every event until the stream ends with
// the job. Jobs log every step (logging_steps 1), so the server fans out one event per
// optimizer step to every watcher: the heaviest watching a job can get. Throughput comes from
// the job's own TrainStepMetrics events (read back after the job ends, identically in both
// arms), first window left out. The watchers run in this process too, so their CPU cost lands
// on the same cores as the training: that is the worst case, not the deployed one.
//
//   watchers_bench --watchers=50 --reps=4 --max_steps=60
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
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/bench_server.h"
#include "bench/bench_util.h"
#include "core/util/status_macros.h"

ABSL_FLAG(std::string, data_dir, "", "Server --data_dir; default: the repository's tests/data.");
ABSL_FLAG(std::string, train_path, "hh-rlhf/helpful-base/test.jsonl.gz", "Training data under --data_dir.");
ABSL_FLAG(std::string, preset, "encoder-tiny", "From-scratch architecture of the jobs.");
ABSL_FLAG(int, watchers, 50, "Concurrent StreamMetrics watchers in the watched arm.");
ABSL_FLAG(int, reps, 4, "Jobs per arm; arms alternate (after one unwatched warm-up job, not counted).");
ABSL_FLAG(int64_t, max_steps, 60, "Optimizer steps per job.");
ABSL_FLAG(int, batch_size, 8, "Pairs per batch.");
ABSL_FLAG(int, max_length, 256, "Longest sequence in tokens.");
ABSL_FLAG(int, vocab_size, 2000, "Vocabulary of the tokenizer each job trains.");

namespace verdict::bench {
namespace {

struct WatcherOutcome {
  int64_t events = 0;
  int64_t last_sequence = 0;
  int reconnects = 0;  // streams ended ABORTED (shed) or UNAVAILABLE, resumed with after_sequence
  absl::Time finished;
  grpc::Status status;
};

// Reads every event of the job, as the contract asks a client to: a stream that ends ABORTED
// (shed) or UNAVAILABLE is resumed after the last sequence received.
void Watch(int port, const std::string& job_id, std::atomic<int>* subscribed, WatcherOutcome* out) {
  auto stub = v1::TrainingService::NewStub(NewChannel(port, /*own_connection=*/true));
  while (true) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(10));
    v1::StreamMetricsRequest request;
    request.set_job_id(job_id);
    if (out->last_sequence > 0) request.set_after_sequence(out->last_sequence);
    auto reader = stub->StreamMetrics(&context, request);
    v1::MetricsEvent event;
    while (reader->Read(&event)) {
      if (out->events++ == 0) subscribed->fetch_add(1);
      out->last_sequence = event.sequence();
    }
    out->status = reader->Finish();
    const grpc::StatusCode code = out->status.error_code();
    if ((code != grpc::StatusCode::ABORTED && code != grpc::StatusCode::UNAVAILABLE) ||
        out->reconnects >= 100) {
      break;
    }
    if (out->reconnects++ == 0) {
      std::cerr << "watcher resumes after status " << code << " " << out->status.error_message()
                << " (" << out->events << " events so far)\n";
    }
    if (code == grpc::StatusCode::UNAVAILABLE) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  out->finished = absl::Now();
}

struct JobResult {
  int watchers = 0;
  JobThroughput throughput;
  double job_seconds = 0;      // start_time to end_time
  double watchers_lag_ms = 0;  // the job's end_time to the last watcher's stream end
  int64_t events = 0;
  int64_t events_per_watcher_min = 0;
  int failed_watchers = 0;
  int reconnects = 0;
  double load = 0;
};

absl::StatusOr<JobResult> RunJob(int port, int watchers, int index) {
  auto stub = v1::TrainingService::NewStub(NewChannel(port, false));
  v1::SubmitTrainingJobRequest request;
  v1::TrainingJobSpec& spec = *request.mutable_spec();
  spec.set_output_model_name(absl::StrCat("watchers-bench-", index));
  spec.set_preset(absl::GetFlag(FLAGS_preset));
  spec.mutable_tokenizer()->mutable_train()->set_vocab_size(absl::GetFlag(FLAGS_vocab_size));
  spec.mutable_train_data()->set_path(absl::GetFlag(FLAGS_train_path));
  spec.mutable_eval()->set_eval_fraction(0.05);
  spec.mutable_eval()->set_max_pairs(16);
  v1::Hyperparameters& h = *spec.mutable_hyperparameters();
  h.set_per_device_train_batch_size(absl::GetFlag(FLAGS_batch_size));
  h.set_max_steps(absl::GetFlag(FLAGS_max_steps));
  h.set_max_length(absl::GetFlag(FLAGS_max_length));
  spec.set_logging_steps(1);
  spec.set_save_steps(0);

  JobResult result;
  result.watchers = watchers;
  result.load = LoadAverage();
  v1::Job job;
  {
    grpc::ClientContext context;
    RETURN_IF_ERROR(FromGrpc(stub->SubmitTrainingJob(&context, request, &job), "SubmitTrainingJob"));
  }
  std::atomic<int> subscribed{0};
  std::vector<WatcherOutcome> outcomes(watchers);
  std::vector<std::thread> threads;
  for (int i = 0; i < watchers; ++i) {
    threads.emplace_back(Watch, port, job.id(), &subscribed, &outcomes[i]);
  }
  ASSIGN_OR_RETURN(v1::Job done, WaitForJob(*stub, job.id(), absl::Minutes(10)));
  for (std::thread& t : threads) t.join();
  ASSIGN_OR_RETURN(std::vector<v1::MetricsEvent> events, ReadAllEvents(*stub, job.id()));
  result.throughput = ThroughputOf(events);
  result.events = static_cast<int64_t>(events.size());
  result.job_seconds = static_cast<double>(done.end_time().seconds() - done.start_time().seconds()) +
                       (done.end_time().nanos() - done.start_time().nanos()) / 1e9;
  // The job's end as the server stamped it (same process, same clock as the watchers').
  const absl::Time ended = absl::FromUnixNanos(done.end_time().seconds() * int64_t{1000000000} +
                                               done.end_time().nanos());
  absl::Time last = ended;
  result.events_per_watcher_min = watchers > 0 ? result.events : 0;
  for (const WatcherOutcome& o : outcomes) {
    if (!o.status.ok() || o.last_sequence != done.last_sequence()) {
      if (result.failed_watchers++ == 0) {
        std::cerr << "watcher failed: " << o.events << " events, last sequence " << o.last_sequence
                  << " of " << done.last_sequence() << ", status " << o.status.error_code() << " "
                  << o.status.error_message() << "\n";
      }
    }
    result.events_per_watcher_min = std::min(result.events_per_watcher_min, o.events);
    result.reconnects += o.reconnects;
    last = std::max(last, o.finished);
  }
  result.watchers_lag_ms = absl::ToDoubleMilliseconds(last - ended);
  if (subscribed.load() < watchers) {
    std::cerr << "warning: only " << subscribed.load() << " of " << watchers
              << " watchers received an event\n";
  }
  return result;
}

absl::Status Run() {
  std::string data_dir = absl::GetFlag(FLAGS_data_dir);
  if (data_dir.empty()) data_dir = DefaultDataDir();
  std::cout << "watchers_bench: " << DescribeMachine() << "\n";
  ScratchDir scratch("watchers");
  ASSIGN_OR_RETURN(auto server, server::VerdictServer::Start(BenchServerConfig(
                                    scratch.Path("state"), data_dir, data_dir + "/models", false)));
  const int watched = absl::GetFlag(FLAGS_watchers);
  std::cout << absl::StrFormat(
      "jobs: %s on %s, batch %d, max_length %d, %d steps, logging every step; arms: 0 and %d "
      "watchers, interleaved\n",
      absl::GetFlag(FLAGS_preset), absl::GetFlag(FLAGS_train_path), absl::GetFlag(FLAGS_batch_size),
      absl::GetFlag(FLAGS_max_length), absl::GetFlag(FLAGS_max_steps), watched);
  std::cout << "watchers  pairs/s  tokens/s  job s  events  min events/watcher  lag ms  resumed  bad  load\n";
  std::vector<double> quiet, busy, ratios;
  int index = 0;
  {
    // The server's first job pays one-off costs (allocator, caches, thread pools).
    ASSIGN_OR_RETURN(JobResult warmup, RunJob(server->port(), 0, index++));
    std::cout << absl::StrFormat("warm-up job (not counted): %.2f pairs/s\n",
                                 warmup.throughput.pairs_per_second);
  }
  for (int rep = 0; rep < absl::GetFlag(FLAGS_reps); ++rep) {
    for (int watchers : {0, watched}) {
      ASSIGN_OR_RETURN(JobResult r, RunJob(server->port(), watchers, index++));
      std::cout << absl::StrFormat("%8d  %7.2f  %8.0f  %5.1f  %6d  %18d  %6.1f  %7d  %3d  %.2f\n", r.watchers,
                                   r.throughput.pairs_per_second, r.throughput.tokens_per_second,
                                   r.job_seconds, r.events, r.events_per_watcher_min,
                                   r.watchers_lag_ms, r.reconnects, r.failed_watchers, r.load)
                << std::flush;
      (watchers == 0 ? quiet : busy).push_back(r.throughput.pairs_per_second);
      if (watchers != 0) ratios.push_back(busy.back() / quiet.back());
    }
  }
  const double q = Median(quiet), b = Median(busy);
  std::cout << absl::StrFormat(
      "\nmedian pairs/s: 0 watchers %.2f, %d watchers %.2f; ratio of medians %d/0 = %.3f; "
      "median of the per-rep ratios = %.3f\n",
      q, watched, b, watched, b / q, Median(ratios));
  std::cout << "after: " << DescribeMachine() << "\n";
  server->Shutdown();
  return absl::OkStatus();
}

}  // namespace
}  // namespace verdict::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("watchers_bench: training pairs/s with 0 vs N StreamMetrics watchers.");
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = verdict::bench::Run();
  if (!status.ok()) {
    std::cerr << "watchers_bench: " << status << "\n";
    return 1;
  }
  return 0;
}
