// What callers see while verdictd drains after SIGTERM: the real binary as a subprocess, a
// running job (so that the drain takes a while: the job checkpoints), and client threads that
// keep issuing unary calls, scoring calls, uploads and metrics streams from before the signal
// until the process has exited. Every call must end OK, with its own answer (NOT_FOUND, ...)
// or with UNAVAILABLE, the code the protos document for a draining server -- never CANCELLED,
// which tells a client that it cancelled and must not be retried blindly.
//
// DISABLED: it fails today (5 CANCELLED of ~22,000 calls), and not through verdictd's order of
// shutdown. gRPC core (1.51, Debian's) sets its shutdown flag before it sends GOAWAY, and
// kills with CANCELLED ("CANCELLED") every call that reaches the server in between
// (Server::CallData::StartNewRpc -> KillZombie) or that is queued unmatched at the moment
// (ZombifyPending): grpc/grpc#41785, fix proposed in grpc/grpc#41786. Calls in flight at the
// signal end OK or UNAVAILABLE; so do calls during the job's drain and after the GOAWAY. Run it
// with --gtest_also_run_disabled_tests; enable it with a gRPC that has the fix.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/server/server_test_util.h"
#include "tests/server/verdictd_process.h"
#include "tests/testing/test_paths.h"

namespace verdict::testing {
namespace {

namespace fs = std::filesystem;

class StatusTally {
 public:
  void Add(const std::string& call, const grpc::Status& status) {
    absl::MutexLock lock(&mutex_);
    ++counts_[call][status.error_code()];
    if (status.error_code() == grpc::StatusCode::CANCELLED && examples_.size() < 10) {
      examples_.push_back(call + ": " + status.error_message());
    }
  }
  int64_t Count(grpc::StatusCode code) {
    absl::MutexLock lock(&mutex_);
    int64_t total = 0;
    for (const auto& [call, codes] : counts_) {
      auto it = codes.find(code);
      if (it != codes.end()) total += it->second;
    }
    return total;
  }
  std::string Report() {
    absl::MutexLock lock(&mutex_);
    std::string text;
    for (const auto& [call, codes] : counts_) {
      absl::StrAppend(&text, call, ":");
      for (const auto& [code, n] : codes) absl::StrAppend(&text, " code ", code, " x", n);
      absl::StrAppend(&text, "\n");
    }
    for (const std::string& example : examples_) absl::StrAppend(&text, "  ", example, "\n");
    return text;
  }

 private:
  absl::Mutex mutex_;
  std::map<std::string, std::map<int, int64_t>> counts_ ABSL_GUARDED_BY(mutex_);
  std::vector<std::string> examples_ ABSL_GUARDED_BY(mutex_);
};

TEST(DrainStatusTest, DISABLED_CallsDuringTheDrainGetUnavailableNeverCancelled) {
  ScratchDir scratch;
  auto process = VerdictdProcess::Start(VERDICTD_PATH, scratch.path(),
                                        {"--drain_grace_seconds=5", "--threads=1"});
  ASSERT_NE(process, nullptr);
  std::string job_id;
  std::string dataset_id;
  const std::string pairs = FirstLines(TestDataPath("synthetic/helpful-concise.jsonl"), 300);
  {
    Clients clients(process->address());
    v1::Dataset dataset;
    ASSERT_TRUE(UploadWithChecks(*clients.datasets, pairs, "pairs", &dataset).ok());
    dataset_id = dataset.id();
    v1::SubmitTrainingJobRequest submit;
    *submit.mutable_spec() = TinyJobSpec(dataset_id, 400);
    v1::Job job;
    auto context = NewContext();
    ASSERT_TRUE(clients.training->SubmitTrainingJob(context.get(), submit, &job).ok());
    job_id = job.id();
    ASSERT_TRUE(WaitForJob(*clients.training, job_id, [](const v1::Job& j) {
                  return j.progress().step() >= 2;
                }).ok());
  }

  StatusTally tally;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> after_signal{0};
  std::atomic<bool> signalled{false};
  auto count = [&](const std::string& call, const grpc::Status& status) {
    tally.Add(call, status);
    if (signalled.load()) after_signal.fetch_add(1);
  };
  std::vector<std::thread> threads;
  // Each thread has its own channel, as separate clients would.
  auto loop = [&](std::function<void(Clients&)> body) {
    threads.emplace_back([&, body] {
      Clients clients(process->address());
      while (!stop.load()) body(clients);
    });
  };
  for (int i = 0; i < 2; ++i) {
    loop([&](Clients& c) {
      v1::GetJobRequest request;
      request.set_job_id(job_id);
      v1::Job job;
      auto context = NewContext(absl::Seconds(20));
      count("GetJob", c.training->GetJob(context.get(), request, &job));
    });
  }
  loop([&](Clients& c) {
    v1::SubmitTrainingJobRequest request;
    *request.mutable_spec() = TinyJobSpec(dataset_id, 5);
    v1::Job job;
    auto context = NewContext(absl::Seconds(20));
    count("SubmitTrainingJob", c.training->SubmitTrainingJob(context.get(), request, &job));
  });
  loop([&](Clients& c) {
    v1::ScoreBatchRequest request;
    request.mutable_model()->set_name("nothing-here");
    auto* item = request.add_items();
    item->mutable_prompt_response()->set_prompt("p");
    item->mutable_prompt_response()->set_response("r");
    v1::ScoreBatchResponse response;
    auto context = NewContext(absl::Seconds(20));
    count("ScoreBatch", c.scoring->ScoreBatch(context.get(), request, &response));
  });
  loop([&](Clients& c) {
    v1::StreamMetricsRequest request;
    request.set_job_id(job_id);
    request.set_no_follow(true);
    count("StreamMetrics(replay)", ReadMetrics(*c.training, request, absl::Seconds(20)).status);
  });
  loop([&](Clients& c) {
    v1::StreamMetricsRequest request;
    request.set_job_id(job_id);
    count("StreamMetrics(follow)", ReadMetrics(*c.training, request, absl::Seconds(20)).status);
  });
  loop([&](Clients& c) {
    // A slow upload: small chunks with pauses, so that some are mid-stream at the signal.
    auto context = NewContext(absl::Seconds(20));
    v1::Dataset dataset;
    auto writer = c.datasets->UploadDataset(context.get(), &dataset);
    v1::UploadDatasetRequest request;
    request.mutable_metadata()->set_name("slow");
    bool open = writer->Write(request);
    for (size_t offset = 0; open && offset < pairs.size() && !stop.load(); offset += 4096) {
      request.Clear();
      request.set_chunk(pairs.substr(offset, 4096));
      open = writer->Write(request);
      absl::SleepFor(absl::Milliseconds(20));
    }
    writer->WritesDone();
    count("UploadDataset", writer->Finish());
  });

  absl::SleepFor(absl::Milliseconds(500));
  signalled = true;
  process->Signal(SIGTERM);
  const std::optional<int> code = process->Wait(absl::Seconds(30));
  // A moment of calls against the closed port too (UNAVAILABLE: connection refused).
  absl::SleepFor(absl::Milliseconds(200));
  stop = true;
  for (std::thread& thread : threads) thread.join();
  std::cout << "calls by code (0 OK, 1 CANCELLED, 5 NOT_FOUND, 14 UNAVAILABLE):\n"
            << tally.Report() << "calls ended after SIGTERM: " << after_signal.load()
            << std::endl;
  ASSERT_TRUE(code.has_value()) << process->Logs();
  EXPECT_EQ(*code, 0) << process->Logs();
  EXPECT_GT(after_signal.load(), 0);
  EXPECT_GT(tally.Count(grpc::StatusCode::UNAVAILABLE), 0);
  EXPECT_EQ(tally.Count(grpc::StatusCode::CANCELLED), 0) << tally.Report();
  EXPECT_EQ(tally.Count(grpc::StatusCode::INTERNAL), 0) << tally.Report();
  EXPECT_EQ(tally.Count(grpc::StatusCode::UNKNOWN), 0) << tally.Report();
}


}  // namespace
}  // namespace verdict::testing
