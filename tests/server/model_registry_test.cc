// Unit tests of ModelRegistry on its own: a real SqliteJobStore in a temporary directory, real
// model directories (the golden Llama reward checkpoint with stories260K's tokenizer) registered
// with the store's AddModelVersion, real batchers and a real Prometheus registry.
//
// A slow load is made real and deterministic with a FIFO: the version's model.safetensors is a
// named pipe, so its load blocks reading the weights until the test writes them (HeldWeights).
// Every check of "does not wait for the load" then holds the load for as long as it needs, and
// a check that would wait shows as a deadline missed by seconds, not as a timing ratio.
#include "server/model_registry.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "core/util/file_util.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "server/server_metrics.h"
#include "server/sqlite_job_store.h"
#include "tests/testing/test_paths.h"

namespace verdict::server {
namespace {

namespace fs = std::filesystem;
using ::verdict::testing::ScratchDir;
using ::verdict::testing::TestDataPath;

// Long enough never to be reached by a call that does not wait for a load; a call that does
// wait misses it, since the held load never ends on its own.
constexpr absl::Duration kPrompt = absl::Seconds(20);

// Runs `fn` on its own thread and says whether it returned within `timeout`. The thread is
// joined on destruction (after the test released whatever held it).
class Bounded {
 public:
  explicit Bounded(std::function<void()> fn)
      : thread_([this, fn = std::move(fn)] {
          fn();
          done_.Notify();
        }) {}
  ~Bounded() { thread_.join(); }
  bool FinishesWithin(absl::Duration timeout) {
    return done_.WaitForNotificationWithTimeout(timeout);
  }

 private:
  absl::Notification done_;
  std::thread thread_;
};

// A model.safetensors that is a FIFO holding the real bytes back: a load opens it and blocks
// reading until Release() writes them. Opened() turns true once a load is reading it.
class HeldWeights {
 public:
  HeldWeights(const fs::path& fifo, std::string bytes)
      : path_(fifo.string()), bytes_(std::move(bytes)) {
    EXPECT_EQ(::mkfifo(path_.c_str(), 0600), 0) << path_;
    writer_ = std::thread([this] {
      const int fd = ::open(path_.c_str(), O_WRONLY);  // returns once a reader opened it
      opened_.Notify();
      release_.WaitForNotification();
      if (fd < 0) return;
      if (!abandoned_) {
        size_t written = 0;
        while (written < bytes_.size()) {
          const ssize_t n = ::write(fd, bytes_.data() + written, bytes_.size() - written);
          if (n <= 0) break;
          written += static_cast<size_t>(n);
        }
      }
      ::close(fd);
    });
  }
  ~HeldWeights() {
    if (!opened_.HasBeenNotified()) {
      // Nobody ever read it: open the reading end ourselves so that the writer gets out.
      abandoned_ = true;
      release_.Notify();
      const int fd = ::open(path_.c_str(), O_RDONLY | O_NONBLOCK);
      writer_.join();
      if (fd >= 0) ::close(fd);
      return;
    }
    Release();
    writer_.join();
  }

  bool WaitOpened() { return opened_.WaitForNotificationWithTimeout(kPrompt); }
  void Release() {
    if (!release_.HasBeenNotified()) release_.Notify();
  }

 private:
  const std::string path_;
  const std::string bytes_;
  std::atomic<bool> abandoned_{false};
  absl::Notification opened_;
  absl::Notification release_;
  std::thread writer_;
};

class ModelRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.state_dir = scratch_.Path("state");
    config_.max_queue_delay = absl::Milliseconds(1);
    fs::create_directories(config_.state_dir);
    auto store = SqliteJobStore::Open((fs::path(config_.state_dir) / "verdict.db").string());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  // Copies the golden Llama into the state directory as `name`'s next version and registers
  // it. With `held`, its weights are a FIFO instead (see HeldWeights).
  v1::Model Register(const std::string& name, std::unique_ptr<HeldWeights>* held = nullptr) {
    const std::string storage = absl::StrCat("models/", name, "/v", ++registered_);
    const fs::path dir = fs::path(config_.state_dir) / storage;
    fs::create_directories(dir);
    fs::copy_file(TestDataPath("golden/llama/config.json"), dir / "config.json");
    fs::copy_file(TestDataPath("models/stories260K-hf/tokenizer.model"), dir / "tokenizer.model");
    if (held != nullptr) {
      auto bytes = ReadFileToString(TestDataPath("golden/llama/model.safetensors"));
      EXPECT_TRUE(bytes.ok()) << bytes.status();
      *held = std::make_unique<HeldWeights>(dir / "model.safetensors", bytes.value_or(""));
    } else {
      fs::copy_file(TestDataPath("golden/llama/model.safetensors"), dir / "model.safetensors");
    }
    v1::Model model;
    model.set_name(name);
    model.set_family(v1::MODEL_FAMILY_DECODER);
    model.set_model_type("llama");
    model.set_max_length(256);
    model.set_truncation(v1::TRUNCATION_POLICY_TRUNCATE);
    model.set_chat_format(v1::CHAT_FORMAT_HH);
    model.set_storage_path(storage);
    auto stored = store_->AddModelVersion(model);
    EXPECT_TRUE(stored.ok()) << stored.status();
    return stored.value_or(model);
  }

  std::unique_ptr<ModelRegistry> NewRegistry(ServerMetrics* metrics = nullptr) {
    ModelRegistry::Dependencies deps;
    deps.store = store_.get();
    deps.metrics = metrics;
    return std::make_unique<ModelRegistry>(config_, std::move(deps));
  }

  static v1::ModelRef Ref(const v1::Model& model) {
    v1::ModelRef ref;
    ref.set_name(model.name());
    ref.set_version(model.version());
    return ref;
  }

  // Scores one item through the version's batcher and returns the outcome.
  static absl::StatusOr<DynamicBatcher::Result> ScoreOnce(const LoadedModel& loaded) {
    auto ids = loaded.batcher->model().Encode("\n\nHuman: Hi!\n\nAssistant:", " Hello there.");
    if (!ids.ok()) return ids.status();
    absl::Notification done;
    absl::StatusOr<DynamicBatcher::Result> out;
    DynamicBatcher::Request request;
    request.sequences = {*ids};
    request.done = [&](absl::StatusOr<DynamicBatcher::Result> result) {
      out = std::move(result);
      done.Notify();
    };
    absl::Status submitted = loaded.batcher->Submit(std::move(request));
    if (!submitted.ok()) return submitted;
    if (!done.WaitForNotificationWithTimeout(kPrompt))
      return absl::DeadlineExceededError("no score");
    return out;
  }

  ScratchDir scratch_;
  ServerConfig config_;
  std::unique_ptr<SqliteJobStore> store_;
  int registered_ = 0;
};

TEST_F(ModelRegistryTest, ConcurrentCallersShareOneLoad) {
  const v1::Model a = Register("a");
  auto registry = NewRegistry();
  constexpr int kCallers = 8;
  std::vector<std::shared_ptr<LoadedModel>> got(kCallers);
  std::vector<std::thread> threads;
  for (int i = 0; i < kCallers; ++i) {
    threads.emplace_back([&, i] {
      auto loaded = registry->Acquire(Ref(a));
      ASSERT_TRUE(loaded.ok()) << loaded.status();
      got[i] = *loaded;
    });
  }
  for (auto& thread : threads) thread.join();
  for (const auto& loaded : got) EXPECT_EQ(loaded.get(), got[0].get());
  EXPECT_EQ(registry->LoadedCount(), 1);
  ASSERT_TRUE(ScoreOnce(*got[0]).ok());
}

TEST_F(ModelRegistryTest, ConcurrentCallersOfAHeldLoadAllWaitForTheSameOne) {
  std::unique_ptr<HeldWeights> held;
  const v1::Model b = Register("b", &held);
  auto registry = NewRegistry();
  constexpr int kCallers = 4;
  std::vector<absl::StatusOr<std::shared_ptr<LoadedModel>>> got(kCallers);
  std::atomic<int> answered{0};
  for (int i = 0; i < kCallers; ++i) {
    registry->AcquireAsync(Ref(b), "", [&, i](absl::StatusOr<std::shared_ptr<LoadedModel>> r) {
      got[i] = std::move(r);
      ++answered;
    });
  }
  ASSERT_TRUE(held->WaitOpened());
  EXPECT_EQ(answered.load(), 0) << "answered before the load finished";
  held->Release();  // a second load would block on the FIFO forever: there is only one
  const absl::Time give_up = absl::Now() + kPrompt;
  while (answered.load() < kCallers && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(5));
  ASSERT_EQ(answered.load(), kCallers);
  for (const auto& r : got) {
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->get(), got[0]->get());
  }
}

// The fault of issue 10: one model's load blocked scoring, LoadedCount, Decorate and DrainAll
// of every model. On the old registry LoadedCount waited for the held load under the registry
// lock, and the Acquire of the loaded model behind it.
TEST_F(ModelRegistryTest, AHeldLoadBlocksNeitherScoringNorBookkeepingOfOtherModels) {
  const v1::Model a = Register("a");
  std::unique_ptr<HeldWeights> held;
  const v1::Model b = Register("b", &held);
  auto registry = NewRegistry();
  auto loaded_a = registry->Acquire(Ref(a));
  ASSERT_TRUE(loaded_a.ok()) << loaded_a.status();

  Bounded load_b([&] { (void)registry->Acquire(Ref(b)); });
  ASSERT_TRUE(held->WaitOpened());

  {
    Bounded count([&] { EXPECT_EQ(registry->LoadedCount(), 1); });
    Bounded decorate([&] {
      v1::Model copy = b;
      registry->Decorate(copy);
      EXPECT_FALSE(copy.loaded());
    });
    Bounded acquire_and_score([&] {
      auto again = registry->Acquire(Ref(a));
      ASSERT_TRUE(again.ok()) << again.status();
      EXPECT_EQ(again->get(), loaded_a->get());
      auto scored = ScoreOnce(**again);
      EXPECT_TRUE(scored.ok()) << scored.status();
    });
    const bool counted = count.FinishesWithin(kPrompt);
    const bool decorated = decorate.FinishesWithin(kPrompt);
    const bool scored = acquire_and_score.FinishesWithin(kPrompt);
    held->Release();  // lets the old registry's blocked calls finish, so the threads join
    EXPECT_TRUE(counted) << "LoadedCount waited for another model's load";
    EXPECT_TRUE(decorated) << "Decorate waited for the load";
    EXPECT_TRUE(scored) << "scoring an already-loaded model waited for another model's load";
  }
  ASSERT_TRUE(load_b.FinishesWithin(kPrompt));
  EXPECT_EQ(registry->LoadedCount(), 2);
}

TEST_F(ModelRegistryTest, UnloadLetsARequestInFlightFinishAndTheNextAcquireLoadsAgain) {
  config_.max_queue_delay = absl::Milliseconds(300);  // the request waits in the queue
  const v1::Model a = Register("a");
  prometheus::Registry prometheus;
  ServerMetrics metrics(prometheus, {"0.1.0", "test", "cpu"});
  auto registry = NewRegistry(&metrics);
  auto loaded = registry->Acquire(Ref(a));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  std::shared_ptr<LoadedModel> first = *loaded;

  absl::StatusOr<DynamicBatcher::Result> in_flight;
  {
    Bounded score([&] { in_flight = ScoreOnce(*first); });
    absl::SleepFor(absl::Milliseconds(50));  // queued, not yet run
    ASSERT_TRUE(registry->Unload(Ref(a)).ok());
    EXPECT_EQ(registry->LoadedCount(), 0);
    ASSERT_TRUE(score.FinishesWithin(kPrompt));
  }
  ASSERT_TRUE(in_flight.ok()) << in_flight.status();
  ASSERT_EQ(in_flight->scores.size(), 1u);

  // The version's series carry {model, version} and last as long as a copy of it does.
  auto has_version_series = [&] {
    for (const auto& family : prometheus.Collect()) {
      if (family.name != "verdict_scoring_items_total") continue;
      for (const auto& metric : family.metric) {
        for (const auto& label : metric.label) {
          if (label.name == "version" && label.value == absl::StrCat(a.version())) return true;
        }
      }
    }
    return false;
  };
  EXPECT_TRUE(has_version_series());
  loaded = absl::StatusOr<std::shared_ptr<LoadedModel>>();  // drop every reference we hold
  first.reset();
  EXPECT_FALSE(has_version_series()) << "an unloaded version's series stay forever";

  auto second = registry->Acquire(Ref(a));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(registry->LoadedCount(), 1);
  ASSERT_TRUE(ScoreOnce(**second).ok());
}

TEST_F(ModelRegistryTest, UnloadDuringALoadServesItsWaitersAndKeepsNothingLoaded) {
  std::unique_ptr<HeldWeights> held;
  const v1::Model b = Register("b", &held);
  auto registry = NewRegistry();
  absl::Notification answered;
  absl::StatusOr<std::shared_ptr<LoadedModel>> got;
  registry->AcquireAsync(Ref(b), "", [&](absl::StatusOr<std::shared_ptr<LoadedModel>> r) {
    got = std::move(r);
    answered.Notify();
  });
  ASSERT_TRUE(held->WaitOpened());
  {
    Bounded unload([&] { EXPECT_TRUE(registry->Unload(Ref(b)).ok()); });
    const bool unloaded = unload.FinishesWithin(kPrompt);
    held->Release();
    EXPECT_TRUE(unloaded) << "Unload waited for the load";
  }
  ASSERT_TRUE(answered.WaitForNotificationWithTimeout(kPrompt));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(ScoreOnce(**got).ok());  // the request that waited is served
  EXPECT_EQ(registry->LoadedCount(), 0);
  v1::Model copy = b;
  registry->Decorate(copy);
  EXPECT_FALSE(copy.loaded());
}

TEST_F(ModelRegistryTest, DrainAllDuringALoadDoesNotWaitForItAndRefusesItsWaiters) {
  config_.max_queue_delay = absl::Milliseconds(300);
  const v1::Model a = Register("a");
  std::unique_ptr<HeldWeights> held;
  const v1::Model b = Register("b", &held);
  auto registry = NewRegistry();
  auto loaded_a = registry->Acquire(Ref(a));
  ASSERT_TRUE(loaded_a.ok()) << loaded_a.status();

  absl::Notification answered;
  absl::StatusOr<std::shared_ptr<LoadedModel>> got;
  registry->AcquireAsync(Ref(b), "", [&](absl::StatusOr<std::shared_ptr<LoadedModel>> r) {
    got = std::move(r);
    answered.Notify();
  });
  ASSERT_TRUE(held->WaitOpened());

  absl::StatusOr<DynamicBatcher::Result> queued;
  {
    Bounded score([&] { queued = ScoreOnce(**loaded_a); });
    absl::SleepFor(absl::Milliseconds(50));  // a's request waits in its queue
    Bounded drain([&] { registry->DrainAll(); });
    const bool drained = drain.FinishesWithin(kPrompt);
    held->Release();
    EXPECT_TRUE(drained) << "DrainAll waited for a load";
    ASSERT_TRUE(score.FinishesWithin(kPrompt));
  }
  ASSERT_TRUE(queued.ok()) << queued.status();  // drained: what was queued is scored

  ASSERT_TRUE(answered.WaitForNotificationWithTimeout(kPrompt));
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable) << got.status();
  // Draining: nothing new is loaded or accepted.
  auto after = registry->Acquire(Ref(a));
  EXPECT_EQ(after.status().code(), absl::StatusCode::kUnavailable) << after.status();
  EXPECT_EQ(registry->LoadedCount(), 1);
}

// A request refused because the server drains counts as shutting_down (it used to count as
// "invalid", as if the client had sent a bad request), under the version that refused it.
TEST_F(ModelRegistryTest, RefusalsWhileDrainingCountAsShuttingDown) {
  const v1::Model a = Register("a");
  prometheus::Registry prometheus;
  ServerMetrics metrics(prometheus, {"0.1.0", "test", "cpu"});
  auto registry = NewRegistry(&metrics);
  auto loaded = registry->Acquire(Ref(a));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  registry->DrainAll();
  EXPECT_EQ(ScoreOnce(**loaded).status().code(), absl::StatusCode::kUnavailable);
  std::map<std::string, double> by_reason;
  for (const auto& family : prometheus.Collect()) {
    if (family.name != "verdict_scoring_rejected_total") continue;
    for (const auto& metric : family.metric) {
      std::map<std::string, std::string> labels;
      for (const auto& label : metric.label) labels[label.name] = label.value;
      EXPECT_EQ(labels["model"], "a");
      EXPECT_EQ(labels["version"], "1");
      by_reason[labels["reason"]] += metric.counter.value;
    }
  }
  EXPECT_EQ(by_reason["shutting_down"], 1);
  EXPECT_EQ(by_reason["invalid"], 0);
}

TEST_F(ModelRegistryTest, DestroyingTheRegistryFailsLoadsNotStarted) {
  std::unique_ptr<HeldWeights> held;
  const v1::Model b = Register("b", &held);
  const v1::Model c = Register("c");
  auto registry = NewRegistry();
  std::atomic<int> unavailable{0};
  auto count = [&](absl::StatusOr<std::shared_ptr<LoadedModel>> r) {
    if (r.status().code() == absl::StatusCode::kUnavailable) ++unavailable;
  };
  registry->AcquireAsync(Ref(b), "", count);
  ASSERT_TRUE(held->WaitOpened());
  registry->AcquireAsync(Ref(c), "", count);  // queued behind b's load
  Bounded destroy([&] { registry.reset(); });
  absl::SleepFor(absl::Milliseconds(50));
  held->Release();
  ASSERT_TRUE(destroy.FinishesWithin(kPrompt));
  EXPECT_EQ(unavailable.load(), 2);
}

}  // namespace
}  // namespace verdict::server
