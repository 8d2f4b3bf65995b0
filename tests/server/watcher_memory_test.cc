// Memory held by StreamMetrics watchers of a long job, measured on the real verdictd binary
// (its resident set, apart from the test's clients): many watchers that replay a 5,000-event
// log and then stop reading must each hold little, and the memory must come back once their
// streams close. Old main read up to 4,096 events into each watcher at once (~1.3 MB apiece,
// kept after the stream closed).
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <cstdint>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "server/sqlite_job_store.h"
#include "tests/server/server_test_util.h"
#include "tests/server/verdictd_process.h"
#include "tests/testing/sanitizers.h"
#include "tests/testing/test_paths.h"

namespace verdict::testing {
namespace {

namespace fs = std::filesystem;

constexpr int kEvents = 5000;
constexpr int kWatchers = 200;
constexpr char kJobId[] = "job-long";

// A finished job with a log of `events` train events (and its state changes), written
// straight into the state directory's store before verdictd starts.
void WriteLongJob(const fs::path& state_dir, int events) {
  fs::create_directories(state_dir);
  auto store = server::SqliteJobStore::Open((state_dir / "verdict.db").string());
  ASSERT_TRUE(store.ok()) << store.status();
  v1::Job job;
  job.set_id(kJobId);
  job.set_state(v1::JOB_STATE_SUCCEEDED);
  job.mutable_spec()->set_output_model_name("long");
  ASSERT_TRUE((*store)->CreateJob(job).ok());
  std::vector<v1::MetricsEvent> batch;
  for (int i = 1; i <= events; ++i) {
    v1::MetricsEvent event;
    event.set_sequence(i);
    event.set_step(i);
    event.mutable_time()->set_seconds(1700000000 + i);
    v1::TrainStepMetrics* train = event.mutable_train();
    train->set_loss(0.7 - i * 1e-5);
    train->set_accuracy(0.5 + i * 1e-5);
    train->set_margin(0.01 * i);
    train->set_reward_mean(0.1);
    train->set_reward_min(-2.5);
    if (i == events) {
      event.clear_train();
      event.mutable_state_change()->set_from_state(v1::JOB_STATE_RUNNING);
      event.mutable_state_change()->set_to_state(v1::JOB_STATE_SUCCEEDED);
    }
    batch.push_back(std::move(event));
    if (batch.size() == 500) {
      ASSERT_TRUE((*store)->AppendEvents(kJobId, batch).ok());
      batch.clear();
    }
  }
  if (!batch.empty()) ASSERT_TRUE((*store)->AppendEvents(kJobId, batch).ok());
}

// A watcher that has read one event and then stops reading: the server keeps what it has
// queued for it until the stream closes.
struct StalledWatcher {
  std::unique_ptr<grpc::ClientContext> context;
  std::unique_ptr<grpc::ClientReader<v1::MetricsEvent>> reader;
};

// RSS once it has stopped moving (two readings 200 ms apart within 1 MiB), at most 5 s.
int64_t SettledResident(const VerdictdProcess& process) {
  int64_t last = process.ResidentBytes();
  for (int i = 0; i < 25; ++i) {
    absl::SleepFor(absl::Milliseconds(200));
    const int64_t now = process.ResidentBytes();
    if (std::abs(now - last) < (1 << 20)) return now;
    last = now;
  }
  return last;
}

TEST(WatcherMemoryTest, StalledWatchersOfALongJobHoldLittleAndGiveItBackOnClose) {
  ScratchDir scratch;
  WriteLongJob(scratch.path() / "state", kEvents);
  auto process = VerdictdProcess::Start(VERDICTD_PATH, scratch.path());
  ASSERT_NE(process, nullptr);
  Clients clients(process->address());
  // One full replay first, so that the store's page cache and gRPC's pools are warm.
  ASSERT_EQ(StoredEvents(*clients.training, kJobId).size(), static_cast<size_t>(kEvents));
  const int64_t before = SettledResident(*process);

  std::vector<StalledWatcher> watchers(kWatchers);
  v1::StreamMetricsRequest request;
  request.set_job_id(kJobId);
  for (StalledWatcher& watcher : watchers) {
    watcher.context = NewContext(absl::Seconds(120));
    watcher.reader = clients.training->StreamMetrics(watcher.context.get(), request);
    v1::MetricsEvent first;
    ASSERT_TRUE(watcher.reader->Read(&first));
    ASSERT_EQ(first.sequence(), 1);
  }
  const int64_t peak = SettledResident(*process);

  for (StalledWatcher& watcher : watchers) watcher.context->TryCancel();
  for (StalledWatcher& watcher : watchers) {
    v1::MetricsEvent event;
    while (watcher.reader->Read(&event)) {
    }
    watcher.reader->Finish();
  }
  watchers.clear();
  const int64_t after = SettledResident(*process);

  const int64_t per_watcher = (peak - before) / kWatchers;
  std::cout << "verdictd RSS with " << kWatchers << " stalled watchers of a " << kEvents
            << "-event job: before " << before / 1024 << " KiB, with them " << peak / 1024
            << " KiB (" << per_watcher / 1024 << " KiB per watcher), after they closed "
            << after / 1024 << " KiB" << std::endl;
  // Under ASan the RSS is redzones and the freed-memory quarantine (1,110 KiB per watcher and
  // +236 MiB after close measured, with no leak reported): the bounds hold for the real build.
  if (!VERDICT_SANITIZER_ALLOCATOR) {
    // A watcher queues at most a page of the replay, gRPC its flow-control window (~34 KiB
    // measured; old main 1,271 KiB).
    EXPECT_LT(per_watcher, 96 * 1024);
    // What the watchers held is returned, to within 6 MiB of the start (+2.5 MiB measured;
    // old main +255 MiB, i.e. none of it).
    EXPECT_LT(after - before, 6 << 20);
  }
  process->Signal(SIGTERM);
  EXPECT_EQ(process->Wait(absl::Seconds(30)), 0) << process->Logs();
}

}  // namespace
}  // namespace verdict::testing
