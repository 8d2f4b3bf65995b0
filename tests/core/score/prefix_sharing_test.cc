// Prefix sharing in scoring: GRPO-shaped requests (several completions of one prompt) scored
// through the DynamicBatcher by a golden decoder with the prompt computed once give the
// scores of the same model without sharing, and of each sequence alone, in request order.
#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "core/model/reward_model.h"
#include "core/score/dynamic_batcher.h"
#include "core/score/scoring_model.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"

namespace verdict {
namespace {

using ::verdict::testing::TestDataPath;

std::shared_ptr<const ScoringModel> GoldenScoringModel(const std::string& family, bool share) {
  auto reward_model = LoadRewardModel(TestDataPath("golden/" + family), ModelOptions{});
  EXPECT_TRUE(reward_model.ok()) << reward_model.status();
  if (!reward_model.ok()) return nullptr;
  ScoringSettings settings;
  settings.share_prefixes = share;
  auto model = ScoringModel::Create(std::move(*reward_model), /*tokenizer=*/nullptr, settings);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? *model : nullptr;
}

std::vector<int32_t> RandomIds(std::mt19937& rng, int length) {
  std::uniform_int_distribution<int32_t> id(1, 999);
  std::vector<int32_t> ids(length);
  for (auto& v : ids) v = id(rng);
  return ids;
}

// `prompts` requests of `group` completions each (lengths 1 to 24 after prompts of 20 to 80
// tokens), every other request also carrying a sequence that shares nothing.
std::vector<std::vector<std::vector<int32_t>>> GrpoRequests(std::mt19937& rng, int prompts,
                                                            int group) {
  std::uniform_int_distribution<int> prompt_length(20, 80), completion_length(1, 24);
  std::vector<std::vector<std::vector<int32_t>>> requests;
  for (int p = 0; p < prompts; ++p) {
    const std::vector<int32_t> prompt = RandomIds(rng, prompt_length(rng));
    std::vector<std::vector<int32_t>> request;
    for (int c = 0; c < group; ++c) {
      request.push_back(prompt);
      const auto completion = RandomIds(rng, completion_length(rng));
      request.back().insert(request.back().end(), completion.begin(), completion.end());
    }
    if (p % 2 == 1) request.insert(request.begin() + 1, RandomIds(rng, prompt_length(rng)));
    requests.push_back(std::move(request));
  }
  // Twice the same sequence: one group, a one-token continuation each.
  requests.back().push_back(requests.back().front());
  return requests;
}

// Submits every request at once to a batcher over `model`; the scores by request.
std::vector<std::vector<float>> ScoreThroughBatcher(
    std::shared_ptr<const ScoringModel> model,
    const std::vector<std::vector<std::vector<int32_t>>>& requests) {
  DynamicBatcher::Options options;
  options.max_queue_delay = absl::Milliseconds(50);  // so that the requests share forwards
  auto batcher = DynamicBatcher::Create(std::move(model), options);
  EXPECT_TRUE(batcher.ok()) << batcher.status();
  absl::Mutex mu;
  std::map<size_t, std::vector<float>> scores;
  for (size_t r = 0; r < requests.size(); ++r) {
    DynamicBatcher::Request request;
    request.sequences = requests[r];
    request.done = [&, r](absl::StatusOr<DynamicBatcher::Result> result) {
      EXPECT_TRUE(result.ok()) << result.status();
      absl::MutexLock lock(&mu);
      scores[r] = result.ok() ? result->scores : std::vector<float>();
    };
    EXPECT_TRUE((*batcher)->Submit(std::move(request)).ok());
  }
  (*batcher)->Drain();
  std::vector<std::vector<float>> out;
  for (auto& [r, s] : scores) out.push_back(std::move(s));
  return out;
}

class PrefixSharingTest : public ::testing::TestWithParam<std::string> {};

TEST_P(PrefixSharingTest, BatcherScoresWithSharingEqualScoresWithoutAndAlone) {
  auto shared = GoldenScoringModel(GetParam(), /*share=*/true);
  auto unshared = GoldenScoringModel(GetParam(), /*share=*/false);
  ASSERT_NE(shared, nullptr);
  ASSERT_NE(unshared, nullptr);
  std::mt19937 rng(17);
  const auto requests = GrpoRequests(rng, /*prompts=*/6, /*group=*/8);
  const auto with = ScoreThroughBatcher(shared, requests);
  const auto without = ScoreThroughBatcher(unshared, requests);
  ASSERT_EQ(with.size(), requests.size());
  ASSERT_EQ(without.size(), requests.size());
  for (size_t r = 0; r < requests.size(); ++r) {
    ASSERT_EQ(with[r].size(), requests[r].size());
    ASSERT_EQ(without[r].size(), requests[r].size());
    for (size_t i = 0; i < requests[r].size(); ++i) {
      EXPECT_NEAR(with[r][i], without[r][i], 1e-5) << "request " << r << " item " << i;
      auto alone = unshared->ScoreEncoded({requests[r][i]});
      ASSERT_TRUE(alone.ok()) << alone.status();
      EXPECT_NEAR(with[r][i], (*alone)[0], 1e-5) << "request " << r << " item " << i;
    }
  }
}

// One call with completions of several prompts interleaved, next to rows sharing only a few
// tokens (too few to group): every answer in its row's place.
TEST_P(PrefixSharingTest, ScoreEncodedKeepsTheOrderOfInterleavedGroups) {
  auto shared = GoldenScoringModel(GetParam(), /*share=*/true);
  ASSERT_NE(shared, nullptr);
  std::mt19937 rng(23);
  std::vector<std::vector<int32_t>> sequences;
  const auto requests = GrpoRequests(rng, /*prompts=*/3, /*group=*/4);
  for (size_t i = 0; i < 5; ++i) {
    for (const auto& request : requests) {
      if (i < request.size()) sequences.push_back(request[i]);
    }
  }
  std::vector<int32_t> short_shared = {5, 6, 7};
  for (int k = 0; k < 3; ++k) {
    sequences.push_back(short_shared);
    const auto tail = RandomIds(rng, 4 + k);
    sequences.back().insert(sequences.back().end(), tail.begin(), tail.end());
  }
  auto scores = shared->ScoreEncoded(sequences);
  ASSERT_TRUE(scores.ok()) << scores.status();
  ASSERT_EQ(scores->size(), sequences.size());
  for (size_t i = 0; i < sequences.size(); ++i) {
    auto alone = shared->ScoreEncoded({sequences[i]});
    ASSERT_TRUE(alone.ok());
    EXPECT_NEAR((*scores)[i], (*alone)[0], 1e-5) << "row " << i;
  }
}

// The grouped rows do run the shared forward: a GRPO request's scores are, bit for bit, those
// of RewardModel::ForwardShared over its prompt and completions.
TEST_P(PrefixSharingTest, AGroupOfCompletionsRunsTheSharedForward) {
  auto shared = GoldenScoringModel(GetParam(), /*share=*/true);
  ASSERT_NE(shared, nullptr);
  std::mt19937 rng(31);
  const std::vector<int32_t> prompt = RandomIds(rng, 40);
  std::vector<std::vector<int32_t>> request;
  std::vector<int64_t> packed(prompt.begin(), prompt.end());
  SharedPrefixGroup group{static_cast<int64_t>(prompt.size()), {}};
  std::vector<std::vector<int32_t>> completions;
  for (int c = 0; c < 8; ++c) completions.push_back(RandomIds(rng, 3 + c));
  // In the order the plan lays them out (lexicographic), so that the forwards' GEMMs match.
  std::sort(completions.begin(), completions.end());
  for (const auto& completion : completions) {
    request.push_back(prompt);
    request.back().insert(request.back().end(), completion.begin(), completion.end());
    packed.insert(packed.end(), completion.begin(), completion.end());
    group.continuation_lengths.push_back(static_cast<int64_t>(completion.size()));
  }
  auto scores = shared->ScoreEncoded(request);
  ASSERT_TRUE(scores.ok()) << scores.status();
  torch::InferenceMode inference;
  const auto direct =
      shared->reward_model().ForwardShared(torch::tensor(packed, torch::kLong), {group});
  for (size_t i = 0; i < request.size(); ++i) {
    EXPECT_EQ((*scores)[i], direct[static_cast<int64_t>(i)].item<float>()) << "item " << i;
  }
}

// The batcher's token budget counts what the forward computes: a GRPO group of 8 completions
// of one long prompt is 100 + 80 tokens shared, 8 × 117 padded. Under a budget of 300 the
// shared forward takes the whole request at once, where the padded count (and the model
// without sharing) needs several forwards; either way each answer lands in its item's place.
TEST_P(PrefixSharingTest, AGrpoRequestRunsInOneForwardUnderABudgetItsPaddedSizeWouldSplit) {
  auto shared = GoldenScoringModel(GetParam(), /*share=*/true);
  auto unshared = GoldenScoringModel(GetParam(), /*share=*/false);
  ASSERT_NE(shared, nullptr);
  ASSERT_NE(unshared, nullptr);
  std::mt19937 rng(37);
  const std::vector<int32_t> prompt = RandomIds(rng, 100);
  std::vector<std::vector<int32_t>> request;
  int64_t longest = 0;
  for (int length : {9, 3, 17, 11, 5, 15, 7, 13}) {  // 80 completion tokens, unsorted
    request.push_back(prompt);
    const auto completion = RandomIds(rng, length);
    request.back().insert(request.back().end(), completion.begin(), completion.end());
    longest = std::max<int64_t>(longest, static_cast<int64_t>(request.back().size()));
  }
  const std::vector<absl::Span<const int32_t>> spans(request.begin(), request.end());
  EXPECT_EQ(shared->ForwardTokens(spans), 100 + 80);
  // Without sharing: one padded forward of 8 rows (their lengths are within 12.5%).
  EXPECT_EQ(unshared->ForwardTokens(spans), 8 * longest);

  constexpr int64_t kBudget = 300;
  ASSERT_GT(8 * longest, 2 * kBudget);  // the padded count needs three forwards or more
  for (const bool share : {true, false}) {
    DynamicBatcher::Options options;
    options.max_batch_tokens = kBudget;
    options.max_queue_delay = absl::ZeroDuration();
    absl::Mutex mu;
    std::vector<BatchStats> batches;
    DynamicBatcherObserver observer;
    observer.on_batch = [&](const BatchStats& stats) {
      absl::MutexLock lock(&mu);
      batches.push_back(stats);
    };
    auto batcher = DynamicBatcher::Create(share ? shared : unshared, options, observer);
    ASSERT_TRUE(batcher.ok()) << batcher.status();
    absl::StatusOr<DynamicBatcher::Result> result = absl::UnknownError("not called");
    DynamicBatcher::Request submitted;
    submitted.sequences = request;
    submitted.done = [&](absl::StatusOr<DynamicBatcher::Result> r) {
      absl::MutexLock lock(&mu);
      result = std::move(r);
    };
    ASSERT_TRUE((*batcher)->Submit(std::move(submitted)).ok());
    (*batcher)->Drain();
    absl::MutexLock lock(&mu);
    ASSERT_TRUE(result.ok()) << result.status();
    if (share) {
      EXPECT_EQ(result->batches, 1);
      ASSERT_EQ(batches.size(), 1u);
      EXPECT_EQ(batches[0].computed_tokens, 180);
      EXPECT_EQ(batches[0].padded_tokens, 8 * longest);
      EXPECT_EQ(batches[0].real_tokens, 8 * 100 + 80);
    } else {
      EXPECT_GE(result->batches, 3);
      for (const BatchStats& batch : batches) EXPECT_LE(batch.computed_tokens, kBudget);
    }
    ASSERT_EQ(result->scores.size(), request.size());
    for (size_t i = 0; i < request.size(); ++i) {
      auto alone = unshared->ScoreEncoded({request[i]});
      ASSERT_TRUE(alone.ok()) << alone.status();
      EXPECT_NEAR(result->scores[i], (*alone)[0], 1e-5) << "share " << share << " item " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Decoders, PrefixSharingTest,
                         ::testing::Values("llama", "llama3", "qwen2", "qwen3"));

// An encoder has no shared forward: the option changes nothing.
TEST(PrefixSharingEncoderTest, EncodersScoreAsBefore) {
  auto shared = GoldenScoringModel("distilbert", /*share=*/true);
  auto unshared = GoldenScoringModel("distilbert", /*share=*/false);
  ASSERT_NE(shared, nullptr);
  ASSERT_NE(unshared, nullptr);
  std::mt19937 rng(29);
  const auto requests = GrpoRequests(rng, /*prompts=*/2, /*group=*/4);
  for (const auto& request : requests) {
    auto a = shared->ScoreEncoded(request);
    auto b = unshared->ScoreEncoded(request);
    ASSERT_TRUE(a.ok() && b.ok());
    for (size_t i = 0; i < request.size(); ++i) EXPECT_EQ((*a)[i], (*b)[i]);
  }
}

}  // namespace
}  // namespace verdict
