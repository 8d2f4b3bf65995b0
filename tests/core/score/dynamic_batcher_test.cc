// DynamicBatcher on the golden DistilBERT and Llama models, driven with raw token ids: scores
// match single-sequence forwards whatever batch they land in, the token budget holds, big
// requests split, and every accepted request is completed exactly once — scored, expired,
// cancelled, or failed at shutdown.
#include "core/score/dynamic_batcher.h"

#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "core/model/reward_model.h"
#include "core/score/scoring_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"

namespace verdict {
namespace {

using ::testing::HasSubstr;
using ::verdict::testing::TestDataPath;

using Batcher = DynamicBatcher;

std::unique_ptr<RewardModel> LoadGolden(const std::string& name) {
  auto model = LoadRewardModel(TestDataPath("golden/" + name), ModelOptions{});
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? std::move(*model) : nullptr;
}

std::shared_ptr<const ScoringModel> GoldenScoringModel(const std::string& name) {
  auto model = ScoringModel::Create(LoadGolden(name), /*tokenizer=*/nullptr, ScoringSettings{});
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? *model : nullptr;
}

// Random ids inside the golden vocabulary (1000), avoiding the pad id 0.
std::vector<int32_t> RandomSequence(std::mt19937& rng, int length) {
  std::uniform_int_distribution<int32_t> id(1, 999);
  std::vector<int32_t> ids(length);
  for (auto& v : ids) v = id(rng);
  return ids;
}

std::vector<std::vector<int32_t>> RandomSequences(std::mt19937& rng, int count, int min_length,
                                                  int max_length) {
  std::uniform_int_distribution<int> length(min_length, max_length);
  std::vector<std::vector<int32_t>> out;
  for (int i = 0; i < count; ++i) out.push_back(RandomSequence(rng, length(rng)));
  return out;
}

// The reward of one sequence from its own [1, length] forward on an independent copy.
float SingleForward(RewardModel& model, const std::vector<int32_t>& ids) {
  torch::InferenceMode inference;
  auto input =
      torch::tensor(std::vector<int64_t>(ids.begin(), ids.end()), torch::kLong).view({1, -1});
  return model.Forward(input, torch::ones_like(input)).item<float>();
}

// Records what the observer sees, from any thread.
class Recorder {
 public:
  DynamicBatcherObserver Observer() {
    DynamicBatcherObserver observer;
    observer.on_batch = [this](const BatchStats& stats) {
      absl::MutexLock lock(&mu_);
      batches_.push_back(stats);
    };
    observer.on_request = [this](absl::Duration) {
      absl::MutexLock lock(&mu_);
      ++requests_;
    };
    observer.on_rejection = [this](RejectionReason reason) {
      absl::MutexLock lock(&mu_);
      ++rejections_[reason];
    };
    observer.on_rows_dropped = [this](int64_t queued_sequences) {
      absl::MutexLock lock(&mu_);
      dropped_.push_back(queued_sequences);
    };
    return observer;
  }
  std::vector<BatchStats> batches() const {
    absl::MutexLock lock(&mu_);
    return batches_;
  }
  int rejections(RejectionReason reason) const {
    absl::MutexLock lock(&mu_);
    auto it = rejections_.find(reason);
    return it == rejections_.end() ? 0 : it->second;
  }
  int requests() const {
    absl::MutexLock lock(&mu_);
    return requests_;
  }
  // What on_rows_dropped said, in order.
  std::vector<int64_t> dropped() const {
    absl::MutexLock lock(&mu_);
    return dropped_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<BatchStats> batches_ ABSL_GUARDED_BY(mu_);
  std::map<RejectionReason, int> rejections_ ABSL_GUARDED_BY(mu_);
  int requests_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<int64_t> dropped_ ABSL_GUARDED_BY(mu_);
};

// Collects the results of requests by the number the test gives them; counts every call so
// that a second call for one request shows.
class Results {
 public:
  std::function<void(absl::StatusOr<Batcher::Result>)> Callback(int id) {
    return [this, id](absl::StatusOr<Batcher::Result> result) {
      absl::MutexLock lock(&mu_);
      ++calls_[id];
      results_.insert_or_assign(id, std::move(result));
    };
  }
  // Waits (up to 30 s) until `n` callbacks have run.
  bool WaitFor(int n) const {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return TotalCallsLocked() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(30));
  }
  absl::StatusOr<Batcher::Result> Get(int id) const {
    absl::MutexLock lock(&mu_);
    auto it = results_.find(id);
    if (it == results_.end()) return absl::NotFoundError("no result");
    return it->second;
  }
  int Calls(int id) const {
    absl::MutexLock lock(&mu_);
    auto it = calls_.find(id);
    return it == calls_.end() ? 0 : it->second;
  }
  int TotalCalls() const {
    absl::MutexLock lock(&mu_);
    return TotalCallsLocked();
  }

 private:
  int TotalCallsLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    int total = 0;
    for (const auto& [id, calls] : calls_) total += calls;
    return total;
  }
  mutable absl::Mutex mu_;
  std::map<int, int> calls_ ABSL_GUARDED_BY(mu_);
  std::map<int, absl::StatusOr<Batcher::Result>> results_ ABSL_GUARDED_BY(mu_);
};

Batcher::Request MakeRequest(std::vector<std::vector<int32_t>> sequences,
                             std::function<void(absl::StatusOr<Batcher::Result>)> done) {
  Batcher::Request request;
  request.sequences = std::move(sequences);
  request.done = std::move(done);
  return request;
}

std::unique_ptr<Batcher> CreateOrDie(std::shared_ptr<const ScoringModel> model,
                                     const Batcher::Options& options,
                                     DynamicBatcherObserver observer = {}) {
  auto batcher = Batcher::Create(std::move(model), options, std::move(observer));
  EXPECT_TRUE(batcher.ok()) << batcher.status();
  return batcher.ok() ? std::move(*batcher) : nullptr;
}

// Options under which nothing runs until the test says so (Drain or the destructor) unless a
// batch fills up.
Batcher::Options HoldingOptions() {
  Batcher::Options options;
  options.max_queue_delay = absl::Seconds(60);
  return options;
}

class DynamicBatcherFamilyTest : public ::testing::TestWithParam<std::string> {};

TEST_P(DynamicBatcherFamilyTest, ScoresMatchSingleSequenceForwardsFromConcurrentCallers) {
  auto model = GoldenScoringModel(GetParam());
  auto reference = LoadGolden(GetParam());
  ASSERT_TRUE(model && reference);
  Batcher::Options options;
  options.max_batch_tokens = 600;  // a few rows of mixed length per forward
  options.max_queue_delay = absl::Milliseconds(5);
  Recorder recorder;
  auto batcher = CreateOrDie(model, options, recorder.Observer());
  ASSERT_NE(batcher, nullptr);

  constexpr int kThreads = 4, kRequestsPerThread = 6;
  std::vector<std::vector<std::vector<int32_t>>> inputs(kThreads * kRequestsPerThread);
  std::mt19937 rng(7);
  for (auto& request : inputs) {
    request = RandomSequences(rng, 1 + static_cast<int>(rng() % 5), 1, 100);
  }
  Results results;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRequestsPerThread; ++r) {
        const int id = t * kRequestsPerThread + r;
        EXPECT_TRUE(batcher->Submit(MakeRequest(inputs[id], results.Callback(id))).ok());
        absl::SleepFor(absl::Microseconds(300 * (t + 1)));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  ASSERT_TRUE(results.WaitFor(kThreads * kRequestsPerThread));

  for (int id = 0; id < kThreads * kRequestsPerThread; ++id) {
    auto result = results.Get(id);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(results.Calls(id), 1);
    ASSERT_EQ(result->scores.size(), inputs[id].size());
    EXPECT_GE(result->batches, 1);
    for (size_t i = 0; i < inputs[id].size(); ++i) {
      EXPECT_NEAR(result->scores[i], SingleForward(*reference, inputs[id][i]), 1e-5)
          << "request " << id << " item " << i << " (" << inputs[id][i].size() << " tokens)";
    }
  }
  // Requests from different callers shared forwards.
  int64_t most_requests = 0;
  for (const BatchStats& batch : recorder.batches()) {
    most_requests = std::max(most_requests, batch.requests);
  }
  EXPECT_GE(most_requests, 2);
  EXPECT_EQ(recorder.requests(), static_cast<int>(inputs.size()));
}

TEST_P(DynamicBatcherFamilyTest, BatchCompositionDoesNotChangeAScore) {
  auto model = GoldenScoringModel(GetParam());
  ASSERT_NE(model, nullptr);
  std::mt19937 rng(11);
  const std::vector<int32_t> probe = RandomSequence(rng, 17);
  auto alone = model->ScoreEncoded({probe});
  ASSERT_TRUE(alone.ok()) << alone.status();
  for (int companions : {1, 3, 9}) {
    // Shorter and longer neighbours: the probe is padded differently in every batch.
    auto batch = RandomSequences(rng, companions, 1, 120);
    batch.insert(batch.begin() + companions / 2, probe);
    auto scores = model->ScoreEncoded(batch);
    ASSERT_TRUE(scores.ok()) << scores.status();
    EXPECT_NEAR((*scores)[companions / 2], (*alone)[0], 1e-5) << companions << " companions";
  }
}

// ScoreEncoded reorders its rows (packed for the encoder, sorted by length and cut into
// several padded forwards for the decoder); the scores still come back in request order, each
// as the row alone would score.
TEST_P(DynamicBatcherFamilyTest, ScoreEncodedAnswersInRequestOrderWhateverOrderItRunsRowsIn) {
  auto model = GoldenScoringModel(GetParam());
  auto reference = LoadGolden(GetParam());
  ASSERT_TRUE(model && reference);
  std::mt19937 rng(19);
  // Unsorted lengths from 1 to the golden models' 128 positions, ~3k tokens in all: more
  // than one padded chunk's worth.
  auto sequences = RandomSequences(rng, 48, 1, 128);
  sequences.push_back(RandomSequence(rng, 128));
  sequences.insert(sequences.begin(), RandomSequence(rng, 1));
  auto scores = model->ScoreEncoded(sequences);
  ASSERT_TRUE(scores.ok()) << scores.status();
  ASSERT_EQ(scores->size(), sequences.size());
  for (size_t i = 0; i < sequences.size(); ++i) {
    EXPECT_NEAR((*scores)[i], SingleForward(*reference, sequences[i]), 1e-5)
        << "row " << i << " (" << sequences[i].size() << " tokens)";
  }
}

TEST_P(DynamicBatcherFamilyTest, KeepsEveryForwardWithinTheTokenBudget) {
  auto model = GoldenScoringModel(GetParam());
  ASSERT_NE(model, nullptr);
  Batcher::Options options;
  options.max_batch_tokens = 120;  // below the golden models' 128 positions
  options.max_batch_items = 6;
  options.max_queue_delay = absl::Milliseconds(20);
  Recorder recorder;
  auto batcher = CreateOrDie(model, options, recorder.Observer());
  ASSERT_NE(batcher, nullptr);
  std::mt19937 rng(3);
  Results results;
  constexpr int kRequests = 12;
  int64_t real_tokens = 0, rows = 0;
  for (int id = 0; id < kRequests; ++id) {
    auto sequences = RandomSequences(rng, 1 + id % 4, 1, 60);
    // One row longer than the whole budget: it must still run, alone.
    if (id == 5) sequences.push_back(RandomSequence(rng, 127));
    for (const auto& s : sequences) real_tokens += static_cast<int64_t>(s.size());
    rows += static_cast<int64_t>(sequences.size());
    ASSERT_TRUE(batcher->Submit(MakeRequest(std::move(sequences), results.Callback(id))).ok());
  }
  ASSERT_TRUE(results.WaitFor(kRequests));
  for (int id = 0; id < kRequests; ++id) EXPECT_TRUE(results.Get(id).ok()) << id;

  int64_t seen_rows = 0, seen_real = 0;
  bool saw_over_budget_row = false;
  for (const BatchStats& batch : recorder.batches()) {
    EXPECT_LE(batch.items, options.max_batch_items);
    if (batch.computed_tokens > options.max_batch_tokens) {
      EXPECT_EQ(batch.items, 1) << "only a lone row may exceed the budget";
      saw_over_budget_row = true;
    }
    EXPECT_LE(batch.real_tokens, batch.padded_tokens);
    EXPECT_GT(batch.computed_tokens, 0);
    EXPECT_TRUE(batch.ok);
    seen_rows += batch.items;
    seen_real += batch.real_tokens;
  }
  EXPECT_TRUE(saw_over_budget_row);
  EXPECT_EQ(seen_rows, rows);  // every row ran exactly once
  EXPECT_EQ(seen_real, real_tokens);
}

INSTANTIATE_TEST_SUITE_P(GoldenModels, DynamicBatcherFamilyTest,
                         ::testing::Values("distilbert", "llama"));

class DynamicBatcherTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { model_ = GoldenScoringModel("distilbert"); }
  static void TearDownTestSuite() { model_.reset(); }
  static std::shared_ptr<const ScoringModel> model_;
};
std::shared_ptr<const ScoringModel> DynamicBatcherTest::model_;

TEST_F(DynamicBatcherTest, SplitsARequestLargerThanTheBudgetAcrossForwards) {
  Batcher::Options options;
  options.max_batch_tokens = 200;
  options.max_queue_delay = absl::ZeroDuration();
  Recorder recorder;
  auto batcher = CreateOrDie(model_, options, recorder.Observer());
  ASSERT_NE(batcher, nullptr);
  std::mt19937 rng(5);
  auto sequences = RandomSequences(rng, 40, 5, 60);  // ~1300 real tokens
  Results results;
  ASSERT_TRUE(batcher->Submit(MakeRequest(sequences, results.Callback(0))).ok());
  ASSERT_TRUE(results.WaitFor(1));
  auto result = results.Get(0);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_GE(result->batches, 7);
  EXPECT_EQ(result->batches, static_cast<int64_t>(recorder.batches().size()));
  auto direct = model_->ScoreEncoded(sequences);
  ASSERT_TRUE(direct.ok());
  ASSERT_EQ(result->scores.size(), sequences.size());
  for (size_t i = 0; i < sequences.size(); ++i) {
    EXPECT_NEAR(result->scores[i], (*direct)[i], 1e-5) << "item " << i;
  }
  // Each forward says what it left in the queue: the rows of later forwards.
  int64_t left = static_cast<int64_t>(sequences.size());
  for (const BatchStats& batch : recorder.batches()) {
    EXPECT_LE(batch.computed_tokens, options.max_batch_tokens);
    left -= batch.items;
    EXPECT_EQ(batch.queued_sequences, left);
  }
  EXPECT_EQ(left, 0);
  EXPECT_GT(result->compute_time, absl::ZeroDuration());
}

// The encoder's forward is packed: the budget counts real tokens, so one long row does not make
// its short neighbours cost its length. 1 row of 100 and 9 of 10 tokens: 190 computed, 1000
// padded; a budget of 250 runs them in one forward, answers in request order.
TEST_F(DynamicBatcherTest, APackedForwardFillsToRealTokensNotPaddedOnes) {
  auto reference = LoadGolden("distilbert");
  ASSERT_NE(reference, nullptr);
  Batcher::Options options;
  options.max_batch_tokens = 250;
  options.max_queue_delay = absl::ZeroDuration();
  Recorder recorder;
  auto batcher = CreateOrDie(model_, options, recorder.Observer());
  ASSERT_NE(batcher, nullptr);
  std::mt19937 rng(41);
  auto sequences = RandomSequences(rng, 9, 10, 10);
  sequences.insert(sequences.begin() + 4, RandomSequence(rng, 100));
  Results results;
  ASSERT_TRUE(batcher->Submit(MakeRequest(sequences, results.Callback(0))).ok());
  ASSERT_TRUE(results.WaitFor(1));
  auto result = results.Get(0);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->batches, 1);
  auto batches = recorder.batches();
  ASSERT_EQ(batches.size(), 1u);
  EXPECT_EQ(batches[0].computed_tokens, 190);
  EXPECT_EQ(batches[0].real_tokens, 190);
  EXPECT_EQ(batches[0].padded_tokens, 1000);
  ASSERT_EQ(result->scores.size(), sequences.size());
  for (size_t i = 0; i < sequences.size(); ++i) {
    EXPECT_NEAR(result->scores[i], SingleForward(*reference, sequences[i]), 1e-5) << "item " << i;
  }
}

// Two requests of 120 real tokens each under a budget of 200: the second's rows that fit join
// the first's forward (shortest first), the rest run next; both answer in their own order.
TEST_F(DynamicBatcherTest, FillsAForwardWithAsManyOfTheNextRequestsRowsAsFit) {
  Batcher::Options options = HoldingOptions();
  options.max_batch_tokens = 200;
  Recorder recorder;
  auto batcher = CreateOrDie(model_, options, recorder.Observer());
  ASSERT_NE(batcher, nullptr);
  std::mt19937 rng(43);
  const std::vector<std::vector<int32_t>> first = {RandomSequence(rng, 60),
                                                   RandomSequence(rng, 60)};
  const std::vector<std::vector<int32_t>> second = {
      RandomSequence(rng, 50), RandomSequence(rng, 20), RandomSequence(rng, 30),
      RandomSequence(rng, 20)};
  Results results;
  ASSERT_TRUE(batcher->Submit(MakeRequest(first, results.Callback(0))).ok());
  ASSERT_TRUE(batcher->Submit(MakeRequest(second, results.Callback(1))).ok());
  batcher->Drain();
  auto batches = recorder.batches();
  ASSERT_EQ(batches.size(), 2u);
  // 120 + 20 + 20 + 30 = 190; adding the 50-token row would make 240.
  EXPECT_EQ(batches[0].computed_tokens, 190);
  EXPECT_EQ(batches[0].requests, 2);
  EXPECT_EQ(batches[1].computed_tokens, 50);
  for (int id : {0, 1}) {
    const auto& sequences = id == 0 ? first : second;
    auto result = results.Get(id);
    ASSERT_TRUE(result.ok()) << result.status();
    auto direct = model_->ScoreEncoded(sequences);
    ASSERT_TRUE(direct.ok());
    ASSERT_EQ(result->scores.size(), sequences.size());
    for (size_t i = 0; i < sequences.size(); ++i) {
      EXPECT_NEAR(result->scores[i], (*direct)[i], 1e-5) << "request " << id << " item " << i;
    }
  }
}

TEST_F(DynamicBatcherTest, WaitsUpToMaxQueueDelayForCompanyAndMergesRequests) {
  Batcher::Options options;
  options.max_queue_delay = absl::Milliseconds(200);
  Recorder recorder;
  auto batcher = CreateOrDie(model_, options, recorder.Observer());
  ASSERT_NE(batcher, nullptr);
  std::mt19937 rng(9);
  Results results;
  for (int id = 0; id < 3; ++id) {
    ASSERT_TRUE(
        batcher->Submit(MakeRequest(RandomSequences(rng, 2, 3, 30), results.Callback(id))).ok());
  }
  ASSERT_TRUE(results.WaitFor(3));
  auto batches = recorder.batches();
  ASSERT_EQ(batches.size(), 1u);
  EXPECT_EQ(batches[0].requests, 3);
  EXPECT_EQ(batches[0].items, 6);
  auto first = results.Get(0);
  ASSERT_TRUE(first.ok());
  EXPECT_GE(first->queue_time, absl::Milliseconds(190));
}

TEST_F(DynamicBatcherTest, FlushesAtOnceWhenTheBudgetIsFull) {
  Batcher::Options options = HoldingOptions();
  options.max_batch_items = 4;
  auto batcher = CreateOrDie(model_, options);
  ASSERT_NE(batcher, nullptr);
  std::mt19937 rng(13);
  Results results;
  const absl::Time start = absl::Now();
  ASSERT_TRUE(
      batcher->Submit(MakeRequest(RandomSequences(rng, 4, 3, 30), results.Callback(0))).ok());
  ASSERT_TRUE(results.WaitFor(1));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10)) << "waited for max_queue_delay";
  EXPECT_TRUE(results.Get(0).ok());
}

TEST_F(DynamicBatcherTest, RefusesWithResourceExhaustedWhenTheQueueIsFull) {
  Batcher::Options options = HoldingOptions();
  options.max_queue_items = 8;
  Recorder recorder;
  auto batcher = CreateOrDie(model_, options, recorder.Observer());
  ASSERT_NE(batcher, nullptr);
  std::mt19937 rng(17);
  Results results;
  ASSERT_TRUE(
      batcher->Submit(MakeRequest(RandomSequences(rng, 5, 3, 10), results.Callback(0))).ok());
  absl::Status full =
      batcher->Submit(MakeRequest(RandomSequences(rng, 4, 3, 10), results.Callback(1)));
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted) << full;
  EXPECT_EQ(batcher->queued_sequences(), 5);
  EXPECT_EQ(recorder.rejections(RejectionReason::kQueueFull), 1);
  // Three more still fit.
  ASSERT_TRUE(
      batcher->Submit(MakeRequest(RandomSequences(rng, 3, 3, 10), results.Callback(2))).ok());
  batcher->Drain();
  EXPECT_EQ(results.Calls(1), 0) << "a refused request's callback must never run";
  EXPECT_TRUE(results.Get(0).ok());
  EXPECT_TRUE(results.Get(2).ok());
  EXPECT_EQ(batcher->queued_sequences(), 0);
}

TEST_F(DynamicBatcherTest, DoesNotRunARequestWhoseDeadlinePassed) {
  Batcher::Options options;
  options.max_queue_delay = absl::Milliseconds(150);
  Recorder recorder;
  auto batcher = CreateOrDie(model_, options, recorder.Observer());
  ASSERT_NE(batcher, nullptr);
  std::mt19937 rng(19);
  Results results;
  auto already_late = MakeRequest(RandomSequences(rng, 3, 3, 10), results.Callback(0));
  already_late.deadline = absl::Now() - absl::Seconds(1);
  ASSERT_TRUE(batcher->Submit(std::move(already_late)).ok());
  // Expires while it waits for company.
  auto late_in_queue = MakeRequest(RandomSequences(rng, 2, 3, 10), results.Callback(1));
  late_in_queue.deadline = absl::Now() + absl::Milliseconds(20);
  ASSERT_TRUE(batcher->Submit(std::move(late_in_queue)).ok());
  ASSERT_TRUE(results.WaitFor(2));
  EXPECT_EQ(results.Get(0).status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(results.Get(1).status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(recorder.batches().empty()) << "an expired request ran a forward";
  EXPECT_EQ(recorder.rejections(RejectionReason::kDeadlineExceeded), 2);
  EXPECT_EQ(batcher->queued_sequences(), 0);
  // No forward ran, so only on_rows_dropped can tell a depth gauge that the queue emptied.
  std::vector<int64_t> dropped = recorder.dropped();
  ASSERT_FALSE(dropped.empty());
  EXPECT_EQ(dropped.back(), 0);
}

TEST_F(DynamicBatcherTest, DoesNotRunACancelledRequestButRunsItsNeighbours) {
  Batcher::Options options;
  options.max_queue_delay = absl::Milliseconds(300);
  Recorder recorder;
  auto batcher = CreateOrDie(model_, options, recorder.Observer());
  ASSERT_NE(batcher, nullptr);
  std::mt19937 rng(23);
  Results results;
  std::atomic<bool> client_gone{false};
  auto cancelled = MakeRequest(RandomSequences(rng, 3, 3, 10), results.Callback(0));
  cancelled.is_cancelled = [&client_gone] { return client_gone.load(); };
  ASSERT_TRUE(batcher->Submit(std::move(cancelled)).ok());
  ASSERT_TRUE(
      batcher->Submit(MakeRequest(RandomSequences(rng, 2, 3, 10), results.Callback(1))).ok());
  client_gone = true;
  ASSERT_TRUE(results.WaitFor(2));
  EXPECT_EQ(results.Get(0).status().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(results.Get(1).ok());
  auto batches = recorder.batches();
  ASSERT_EQ(batches.size(), 1u);
  EXPECT_EQ(batches[0].items, 2) << "the cancelled request's rows ran";
  EXPECT_EQ(recorder.rejections(RejectionReason::kCancelled), 1);
}

TEST_F(DynamicBatcherTest, DestructionCompletesEveryQueuedCallbackExactlyOnce) {
  Recorder recorder;
  auto batcher = CreateOrDie(model_, HoldingOptions(), recorder.Observer());
  ASSERT_NE(batcher, nullptr);
  Results results;
  constexpr int kThreads = 3, kPerThread = 10;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(100 + t);
      for (int r = 0; r < kPerThread; ++r) {
        const int id = t * kPerThread + r;
        EXPECT_TRUE(
            batcher->Submit(MakeRequest(RandomSequences(rng, 2, 3, 20), results.Callback(id)))
                .ok());
      }
    });
  }
  for (auto& thread : threads) thread.join();
  batcher.reset();  // joins: every callback has run by now
  EXPECT_EQ(results.TotalCalls(), kThreads * kPerThread);
  for (int id = 0; id < kThreads * kPerThread; ++id) {
    EXPECT_EQ(results.Calls(id), 1) << id;
    auto result = results.Get(id);
    EXPECT_EQ(result.status().code(), absl::StatusCode::kUnavailable) << result.status();
  }
  EXPECT_EQ(recorder.rejections(RejectionReason::kShuttingDown), kThreads * kPerThread);
}

TEST_F(DynamicBatcherTest, DrainFinishesQueuedWorkThenRefusesNewRequests) {
  auto batcher = CreateOrDie(model_, HoldingOptions());
  ASSERT_NE(batcher, nullptr);
  std::mt19937 rng(29);
  Results results;
  for (int id = 0; id < 5; ++id) {
    ASSERT_TRUE(
        batcher->Submit(MakeRequest(RandomSequences(rng, 3, 3, 40), results.Callback(id))).ok());
  }
  const absl::Time start = absl::Now();
  batcher->Drain();
  EXPECT_LT(absl::Now() - start, absl::Seconds(10)) << "Drain waited for max_queue_delay";
  EXPECT_EQ(results.TotalCalls(), 5);
  for (int id = 0; id < 5; ++id) EXPECT_TRUE(results.Get(id).ok()) << id;
  absl::Status late = batcher->Submit(MakeRequest({{1, 2, 3}}, results.Callback(99)));
  EXPECT_EQ(late.code(), absl::StatusCode::kUnavailable) << late;
  batcher.reset();
  EXPECT_EQ(results.Calls(99), 0);
}

TEST_F(DynamicBatcherTest, ACallbackMayReleaseTheLastReferenceToTheBatcher) {
  // As a server does on hot swap: the registry lets go of the old version while one of its
  // requests is still queued, and the request's callback holds the last reference.
  Batcher::Options options;
  options.max_queue_delay = absl::Milliseconds(20);
  std::shared_ptr<Batcher> batcher = CreateOrDie(model_, options);
  ASSERT_NE(batcher, nullptr);
  absl::Notification done;
  int calls = 0;
  Batcher::Request request;
  request.sequences = {{5, 6, 7}};
  request.done = [keep_alive = batcher, &done, &calls](absl::StatusOr<Batcher::Result> result) {
    EXPECT_TRUE(result.ok()) << result.status();
    ++calls;
    done.Notify();
  };
  ASSERT_TRUE(batcher->Submit(std::move(request)).ok());
  std::weak_ptr<Batcher> watch = batcher;
  batcher.reset();
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  // The batcher goes away on its own thread once the callback is released.
  for (int i = 0; i < 3000 && !watch.expired(); ++i) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_TRUE(watch.expired());
  EXPECT_EQ(calls, 1);
}

TEST_F(DynamicBatcherTest, RefusesInvalidRequestsWithoutCallingBack) {
  Recorder recorder;
  auto batcher = CreateOrDie(model_, Batcher::Options{}, recorder.Observer());
  ASSERT_NE(batcher, nullptr);
  Results results;
  std::vector<std::vector<std::vector<int32_t>>> invalid = {
      {},                              // no sequences
      {{1, 2}, {}},                    // an empty sequence
      {{1, 2, 1000}},                  // an id outside the vocabulary (1000)
      {{1, -3}},                       // a negative id
      {std::vector<int32_t>(129, 7)},  // longer than DistilBERT's 128 positions
  };
  for (size_t i = 0; i < invalid.size(); ++i) {
    absl::Status status = batcher->Submit(MakeRequest(invalid[i], results.Callback(i)));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << i << ": " << status;
  }
  absl::Status no_callback = batcher->Submit(MakeRequest({{1, 2}}, nullptr));
  EXPECT_EQ(no_callback.code(), absl::StatusCode::kInvalidArgument);
  batcher->Drain();
  EXPECT_EQ(results.TotalCalls(), 0);
  EXPECT_EQ(recorder.rejections(RejectionReason::kInvalid), static_cast<int>(invalid.size()) + 1);
  EXPECT_THAT(batcher->Submit(MakeRequest({{1, 2}}, results.Callback(9))).message(),
              HasSubstr("shutting down"));
}

TEST(DynamicBatcherOptionsTest, CreateRejectsNonsenseOptions) {
  auto model = GoldenScoringModel("distilbert");
  ASSERT_NE(model, nullptr);
  Batcher::Options no_tokens;
  no_tokens.max_batch_tokens = 0;
  EXPECT_THAT(Batcher::Create(model, no_tokens).status().message(), HasSubstr("max_batch_tokens"));
  Batcher::Options no_items;
  no_items.max_batch_items = 0;
  EXPECT_THAT(Batcher::Create(model, no_items).status().message(), HasSubstr("max_batch_items"));
  Batcher::Options no_queue;
  no_queue.max_queue_items = -1;
  EXPECT_THAT(Batcher::Create(model, no_queue).status().message(), HasSubstr("max_queue_items"));
  Batcher::Options negative_delay;
  negative_delay.max_queue_delay = absl::Milliseconds(-1);
  EXPECT_THAT(Batcher::Create(model, negative_delay).status().message(),
              HasSubstr("max_queue_delay"));
  EXPECT_FALSE(Batcher::Create(nullptr, Batcher::Options{}).ok());
}

}  // namespace
}  // namespace verdict
