// EventHub on its own, and the StreamMetrics reactor that subscribes to it, served over
// loopback gRPC from a real SqliteJobStore behind a wrapper that can make a store read hang.
#include "server/event_hub.h"

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/auth.h"
#include "server/sqlite_job_store.h"
#include "server/training_service.h"
#include "tests/server/forwarding_job_store.h"
#include "tests/server/server_test_util.h"
#include "tests/testing/test_paths.h"

namespace verdict::server {
namespace {

using ::testing::ElementsAre;
using ::verdict::testing::ForwardingJobStore;
using ::verdict::testing::ScratchDir;

class RecordingSubscriber : public EventSubscriber {
 public:
  void OnEvent(const v1::MetricsEvent& event) override {
    absl::MutexLock lock(&mutex_);
    sequences_.push_back(event.sequence());
  }
  void OnClosed() override {
    absl::MutexLock lock(&mutex_);
    closed_ = true;
  }
  std::vector<int64_t> sequences() {
    absl::MutexLock lock(&mutex_);
    return sequences_;
  }
  bool closed() {
    absl::MutexLock lock(&mutex_);
    return closed_;
  }

 private:
  absl::Mutex mutex_;
  std::vector<int64_t> sequences_ ABSL_GUARDED_BY(mutex_);
  bool closed_ ABSL_GUARDED_BY(mutex_) = false;
};

v1::MetricsEvent Event(int64_t sequence) {
  v1::MetricsEvent event;
  event.set_sequence(sequence);
  event.set_step(sequence);
  event.mutable_train()->set_loss(1.0 / sequence);
  return event;
}

v1::MetricsEvent Terminal(int64_t sequence) {
  v1::MetricsEvent event;
  event.set_sequence(sequence);
  event.mutable_state_change()->set_from_state(v1::JOB_STATE_RUNNING);
  event.mutable_state_change()->set_to_state(v1::JOB_STATE_SUCCEEDED);
  return event;
}

TEST(EventHubTest, PublishesToTheSubscribersOfThatJobOnly) {
  EventHub hub;
  RecordingSubscriber a1, a2, b;
  ASSERT_TRUE(hub.Subscribe("a", &a1));
  ASSERT_TRUE(hub.Subscribe("a", &a2));
  ASSERT_TRUE(hub.Subscribe("b", &b));
  EXPECT_EQ(hub.SubscriberCount("a"), 2);
  hub.Publish("a", Event(1));
  hub.Publish("b", Event(7));
  hub.Publish("nobody", Event(9));
  EXPECT_THAT(a1.sequences(), ElementsAre(1));
  EXPECT_THAT(a2.sequences(), ElementsAre(1));
  EXPECT_THAT(b.sequences(), ElementsAre(7));
}

TEST(EventHubTest, UnsubscribedWatchersGetNothingMore) {
  EventHub hub;
  RecordingSubscriber a;
  ASSERT_TRUE(hub.Subscribe("a", &a));
  hub.Publish("a", Event(1));
  hub.Unsubscribe("a", &a);
  hub.Unsubscribe("a", &a);  // twice is harmless
  EXPECT_EQ(hub.SubscriberCount("a"), 0);
  hub.Publish("a", Event(2));
  EXPECT_THAT(a.sequences(), ElementsAre(1));
}

TEST(EventHubTest, CloseTellsEverySubscriberAndRefusesNewOnes) {
  EventHub hub;
  RecordingSubscriber a, b, late;
  ASSERT_TRUE(hub.Subscribe("a", &a));
  ASSERT_TRUE(hub.Subscribe("b", &b));
  hub.Close();
  hub.Close();  // idempotent
  EXPECT_TRUE(a.closed());
  EXPECT_TRUE(b.closed());
  EXPECT_FALSE(hub.Subscribe("a", &late));
  EXPECT_EQ(hub.SubscriberCount("a"), 1);  // still subscribed until they unsubscribe
}

// ReadEvents blocks while armed, as a SQLite read does behind a long write transaction.
class SlowReadStore : public ForwardingJobStore {
 public:
  using ForwardingJobStore::ForwardingJobStore;
  absl::StatusOr<std::vector<v1::MetricsEvent>> ReadEvents(absl::string_view job_id,
                                                           int64_t after_sequence,
                                                           int64_t limit) override {
    reading_.Notify();
    release_.WaitForNotification();
    return ForwardingJobStore::ReadEvents(job_id, after_sequence, limit);
  }
  absl::Notification reading_, release_;
};

// Before: the watcher read the store holding its own lock, and Publish (the training thread's
// step callback) waited for that lock under the hub's: a slow read stalled training.
TEST(MetricsStreamTest, AWatcherReadingTheStoreDoesNotBlockPublish) {
  ScratchDir scratch;
  auto sqlite = SqliteJobStore::Open(scratch.Path("verdict.db"));
  ASSERT_TRUE(sqlite.ok()) << sqlite.status();
  v1::Job job;
  job.set_id("job-1");
  job.set_state(v1::JOB_STATE_RUNNING);
  job.mutable_create_time()->set_seconds(100);
  ASSERT_TRUE((*sqlite)->CreateJob(job).ok());
  ASSERT_TRUE((*sqlite)->AppendEvents("job-1", {Event(1), Event(2), Event(3)}).ok());

  SlowReadStore store(sqlite->get());
  EventHub hub;
  Authenticator auth("");
  TrainingService service(/*jobs=*/nullptr, &store, &hub, &auth);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);

  testing::Clients clients(testing::LoopbackAddress(port));
  testing::StreamResult result;
  std::thread watcher([&] {
    v1::StreamMetricsRequest request;
    request.set_job_id("job-1");
    result = testing::ReadMetrics(*clients.training, request, absl::Seconds(60));
  });
  ASSERT_TRUE(store.reading_.WaitForNotificationWithTimeout(absl::Seconds(30)));

  // The watcher is inside its store read. The worker stores and publishes the next step.
  ASSERT_TRUE((*sqlite)->AppendEvents("job-1", {Event(4)}).ok());
  absl::Notification published;
  std::thread worker([&] {
    hub.Publish("job-1", Event(4));
    published.Notify();
  });
  const bool prompt = published.WaitForNotificationWithTimeout(absl::Seconds(2));
  EXPECT_TRUE(prompt) << "Publish waited for a watcher's store read";
  store.release_.Notify();
  worker.join();

  // Nothing is lost or repeated: the replay, the event published during it, and the end.
  ASSERT_TRUE((*sqlite)->AppendEvents("job-1", {Event(5), Terminal(6)}).ok());
  hub.Publish("job-1", Event(5));
  hub.Publish("job-1", Terminal(6));
  watcher.join();
  EXPECT_TRUE(result.status.ok()) << result.status.error_message();
  std::vector<int64_t> sequences;
  for (const v1::MetricsEvent& event : result.events) sequences.push_back(event.sequence());
  EXPECT_THAT(sequences, ElementsAre(1, 2, 3, 4, 5, 6));
  server->Shutdown();
  hub.Close();
}

}  // namespace
}  // namespace verdict::server
