// Soak: the real verdictd binary under a fixed mixed load, its resident memory watched from
// outside. For VERDICT_SOAK_SECONDS (default 20; set e.g. 600 for a long run) it holds
//   1 training job (encoder-tiny, running the whole time),
//   8 scorer threads (ScoreBatch of 4 items on the golden Llama checkpoint, back to back),
//   200 StreamMetrics watchers following the job (each replays its log, then follows it),
//   1 thread of ScoreBatch calls with a 1 ms deadline (most expire: DEADLINE_EXCEEDED),
// then ends the load (watchers cancelled, job cancelled) and checks that verdictd's RSS stayed
// under a stated bound and came back near where it started. Prints requests, concurrency,
// errors and RSS before / peak / after. CTest label "soak": ctest -L soak runs it alone.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/server/server_test_util.h"
#include "tests/server/verdictd_process.h"
#include "tests/testing/sanitizers.h"
#include "tests/testing/test_paths.h"

namespace verdict::testing {
namespace {

namespace fs = std::filesystem;

constexpr int kScorers = 8;
constexpr int kWatchers = 200;
// RSS may grow by at most this much over its value before the load (the model, the job's
// trainer and every stream's buffers included; +225 MiB measured on 2 CPU cores), and must
// come back to within kReturnSlack of it (+26 MiB measured; +165 MiB before the job's arena
// was trimmed).
constexpr int64_t kPeakBound = 384ll << 20;
constexpr int64_t kReturnSlack = 64ll << 20;

int SoakSeconds() {
  int seconds = 20;
  const char* value = std::getenv("VERDICT_SOAK_SECONDS");
  if (value != nullptr && (!absl::SimpleAtoi(value, &seconds) || seconds < 1)) seconds = 20;
  return seconds;
}

// Non-OK codes seen, by call.
class Errors {
 public:
  void Add(const std::string& call, grpc::StatusCode code) {
    absl::MutexLock lock(&mutex_);
    ++counts_[call + " code " + std::to_string(code)];
  }
  std::map<std::string, int64_t> counts() {
    absl::MutexLock lock(&mutex_);
    return counts_;
  }

 private:
  absl::Mutex mutex_;
  std::map<std::string, int64_t> counts_ ABSL_GUARDED_BY(mutex_);
};

// A StreamMetrics watcher on the callback API: reads until the stream ends; no thread of its own.
class Watcher final : public grpc::ClientReadReactor<v1::MetricsEvent> {
 public:
  Watcher(v1::TrainingService::Stub& stub, const std::string& job_id,
          std::atomic<int64_t>* events)
      : events_(events) {
    context_.set_deadline(absl::ToChronoTime(absl::Now() + absl::Hours(2)));
    request_.set_job_id(job_id);
    stub.async()->StreamMetrics(&context_, &request_, this);
    StartRead(&event_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    events_->fetch_add(1);
    StartRead(&event_);
  }
  void OnDone(const grpc::Status& status) override {
    absl::MutexLock lock(&mutex_);
    status_ = status;
    done_ = true;
  }
  void Cancel() { context_.TryCancel(); }
  // The stream's status once it has ended.
  grpc::Status Await() {
    absl::MutexLock lock(&mutex_);
    mutex_.Await(absl::Condition(&done_));
    return status_;
  }
  bool done() {
    absl::MutexLock lock(&mutex_);
    return done_;
  }

 private:
  std::atomic<int64_t>* const events_;
  grpc::ClientContext context_;
  v1::StreamMetricsRequest request_;
  v1::MetricsEvent event_;
  absl::Mutex mutex_;
  bool done_ ABSL_GUARDED_BY(mutex_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mutex_);
};

v1::ScoreBatchRequest ScoreRequest(int thread, int64_t round) {
  v1::ScoreBatchRequest request;
  request.mutable_model()->set_name("llama");
  for (int i = 0; i < 4; ++i) {
    auto* item = request.add_items()->mutable_prompt_response();
    item->set_prompt(absl::StrCat("Question ", thread, " of round ", round % 97, "?"));
    item->set_response(std::string(8 + (round + i) % 40, 'a' + i));
  }
  return request;
}

TEST(SoakTest, MixedLoadKeepsMemoryBoundedAndReturnsIt) {
  const int seconds = SoakSeconds();
  ScratchDir scratch;
  const fs::path golden = scratch.path() / "models" / "golden-llama";
  fs::create_directories(golden);
  fs::copy_file(TestDataPath("golden/llama/config.json"), golden / "config.json");
  fs::copy_file(TestDataPath("golden/llama/model.safetensors"), golden / "model.safetensors");
  fs::copy_file(TestDataPath("models/stories260K-hf/tokenizer.model"), golden / "tokenizer.model");
  auto process = VerdictdProcess::Start(VERDICTD_PATH, scratch.path(), {"--log_level=warning"});
  ASSERT_NE(process, nullptr);

  Clients setup(process->address());
  {
    v1::ImportModelRequest request;
    request.set_name("llama");
    request.set_path("golden-llama");
    v1::Model model;
    auto context = NewContext();
    grpc::Status status = setup.models->ImportModel(context.get(), request, &model);
    ASSERT_TRUE(status.ok()) << status.error_message();
    v1::LoadModelRequest load;
    load.mutable_model()->set_name("llama");
    context = NewContext();
    status = setup.models->LoadModel(context.get(), load, &model);
    ASSERT_TRUE(status.ok()) << status.error_message();
    v1::ScoreBatchResponse response;
    context = NewContext();
    status = setup.scoring->ScoreBatch(context.get(), ScoreRequest(0, 0), &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  v1::Dataset dataset;
  ASSERT_TRUE(UploadWithChecks(*setup.datasets,
                               FirstLines(TestDataPath("synthetic/helpful-concise.jsonl"), 300),
                               "pairs", &dataset)
                  .ok());
  const int64_t before = process->ResidentBytes();

  // The load.
  v1::Job job;
  {
    v1::SubmitTrainingJobRequest request;
    *request.mutable_spec() = TinyJobSpec(dataset.id(), 1000000);  // runs until cancelled
    auto context = NewContext();
    grpc::Status status = setup.training->SubmitTrainingJob(context.get(), request, &job);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  ASSERT_TRUE(WaitForJob(*setup.training, job.id(), [](const v1::Job& j) {
                return j.state() == v1::JOB_STATE_RUNNING;
              }).ok());

  std::atomic<bool> stop{false};
  std::atomic<int64_t> scored{0}, short_calls{0}, expired{0}, watcher_events{0};
  std::atomic<int64_t> peak{before};
  Errors errors;
  std::vector<std::thread> threads;
  for (int t = 0; t < kScorers; ++t) {
    threads.emplace_back([&, t] {
      Clients clients(process->address());
      for (int64_t round = 0; !stop.load(); ++round) {
        v1::ScoreBatchResponse response;
        auto context = NewContext(absl::Seconds(30));
        grpc::Status status =
            clients.scoring->ScoreBatch(context.get(), ScoreRequest(t, round), &response);
        if (status.ok()) {
          scored.fetch_add(1);
        } else {
          errors.Add("ScoreBatch", status.error_code());
        }
      }
    });
  }
  threads.emplace_back([&] {
    Clients clients(process->address());
    for (int64_t round = 0; !stop.load(); ++round) {
      v1::ScoreBatchResponse response;
      auto context = NewContext(absl::Milliseconds(1));
      grpc::Status status =
          clients.scoring->ScoreBatch(context.get(), ScoreRequest(99, round), &response);
      short_calls.fetch_add(1);
      if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
        expired.fetch_add(1);
      } else if (!status.ok()) {
        errors.Add("ScoreBatch(1 ms)", status.error_code());
      }
    }
  });
  threads.emplace_back([&] {
    while (!stop.load()) {
      const int64_t now = process->ResidentBytes();
      int64_t seen = peak.load();
      while (now > seen && !peak.compare_exchange_weak(seen, now)) {
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
  });
  Clients watch_clients(process->address());
  std::vector<std::unique_ptr<Watcher>> watchers;
  for (int i = 0; i < kWatchers; ++i) {
    watchers.push_back(std::make_unique<Watcher>(*watch_clients.training, job.id(),
                                                 &watcher_events));
  }

  absl::SleepFor(absl::Seconds(seconds));
  int watchers_open = 0;
  for (auto& watcher : watchers) watchers_open += watcher->done() ? 0 : 1;
  auto running = WaitForJob(*setup.training, job.id(), [](const v1::Job&) { return true; });
  const int64_t steps = running.ok() ? running->progress().step() : -1;

  // End the load.
  stop = true;
  for (std::thread& thread : threads) thread.join();
  for (auto& watcher : watchers) watcher->Cancel();
  for (auto& watcher : watchers) {
    const grpc::Status status = watcher->Await();
    if (status.error_code() != grpc::StatusCode::CANCELLED) {
      errors.Add("StreamMetrics", status.error_code());
    }
  }
  watchers.clear();
  {
    v1::CancelJobRequest request;
    request.set_job_id(job.id());
    v1::Job cancelled;
    auto context = NewContext();
    EXPECT_TRUE(setup.training->CancelJob(context.get(), request, &cancelled).ok());
    EXPECT_TRUE(WaitForTerminal(*setup.training, job.id()).ok());
  }
  // Settled: two readings 500 ms apart within 1 MiB, at most 10 s.
  int64_t after = process->ResidentBytes();
  for (int i = 0; i < 20; ++i) {
    absl::SleepFor(absl::Milliseconds(500));
    const int64_t now = process->ResidentBytes();
    const bool settled = std::abs(now - after) < (1 << 20);
    after = now;
    if (settled) break;
  }

  int64_t error_count = 0;
  std::string error_text;
  for (const auto& [what, n] : errors.counts()) {
    error_count += n;
    absl::StrAppend(&error_text, " ", what, " x", n, ";");
  }
  std::cout << "soak " << seconds << " s: concurrency 1 job + " << kScorers << " scorers + "
            << kWatchers << " watchers + 1 short-deadline caller\n"
            << "  requests: " << scored.load() << " ScoreBatch OK, " << short_calls.load()
            << " ScoreBatch with a 1 ms deadline (" << expired.load() << " expired), "
            << watcher_events.load() << " events to watchers (" << watchers_open
            << " of " << kWatchers << " still open at the end), job at step " << steps << "\n"
            << "  errors: " << error_count << (error_text.empty() ? " (none)" : error_text)
            << "\n"
            << "  verdictd RSS: before " << before / (1 << 20) << " MiB, peak "
            << peak.load() / (1 << 20) << " MiB, after " << after / (1 << 20) << " MiB"
            << std::endl;
  EXPECT_GT(scored.load(), 0);
  EXPECT_GT(watcher_events.load(), 0);
  EXPECT_EQ(watchers_open, kWatchers);
  EXPECT_EQ(error_count, 0) << error_text;
  // The RSS bounds are for the real build (tests/testing/sanitizers.h says why).
  if (!VERDICT_SANITIZER_ALLOCATOR) {
    EXPECT_LT(peak.load() - before, kPeakBound);
    EXPECT_LT(after - before, kReturnSlack);
  }
  setup.channel.reset();
  process->Signal(SIGTERM);
  EXPECT_EQ(process->Wait(absl::Seconds(60)), 0) << process->Logs();
}

}  // namespace
}  // namespace verdict::testing
