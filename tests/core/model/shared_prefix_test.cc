// RewardModel::ForwardShared, the decoders' shared-prefix forward: rewards equal to each full
// sequence scored alone (golden references and Forward()), gradients equal to the separate
// rows', for every decoder layout; encoders refuse.
#include "core/model/shared_prefix.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "core/model/model_directory.h"
#include "core/model/reward_model.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/core/model/golden_fixtures.h"
#include "tests/testing/test_paths.h"

namespace verdict {
namespace {

using ::verdict::testing::TestDataPath;
using ::verdict::testing::ReadJson;

std::vector<int64_t> RowOf(const nlohmann::json& row, int64_t length) {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < length; ++i) out.push_back(row[i].get<int64_t>());
  return out;
}

std::vector<int64_t> RandomIds(int64_t length, int64_t vocab, torch::Generator& generator) {
  auto t = torch::randint(1, vocab, {length}, generator, torch::kLong);
  return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + length);
}

// Prompts with their continuations, as ForwardShared takes them.
struct SharedBatch {
  std::vector<int64_t> ids;
  std::vector<SharedPrefixGroup> groups;
  std::vector<std::vector<int64_t>> full_sequences;  // prompt + continuation, in reward order

  void Add(const std::vector<int64_t>& prompt,
           const std::vector<std::vector<int64_t>>& continuations) {
    SharedPrefixGroup group;
    group.prefix_length = static_cast<int64_t>(prompt.size());
    ids.insert(ids.end(), prompt.begin(), prompt.end());
    for (const auto& continuation : continuations) {
      group.continuation_lengths.push_back(static_cast<int64_t>(continuation.size()));
      ids.insert(ids.end(), continuation.begin(), continuation.end());
      full_sequences.push_back(prompt);
      full_sequences.back().insert(full_sequences.back().end(), continuation.begin(),
                                   continuation.end());
    }
    groups.push_back(std::move(group));
  }
  torch::Tensor Ids() const { return torch::tensor(ids, torch::kLong); }
};

// Right-padded rows (pad 0, mask 0) for Forward().
std::pair<torch::Tensor, torch::Tensor> Padded(const std::vector<std::vector<int64_t>>& rows) {
  size_t width = 0;
  for (const auto& row : rows) width = std::max(width, row.size());
  const auto n = static_cast<int64_t>(rows.size());
  auto ids = torch::zeros({n, static_cast<int64_t>(width)}, torch::kLong);
  auto mask = torch::zeros({n, static_cast<int64_t>(width)}, torch::kLong);
  for (int64_t r = 0; r < n; ++r) {
    const auto length = static_cast<int64_t>(rows[r].size());
    ids[r].slice(0, 0, length).copy_(torch::tensor(rows[r], torch::kLong));
    mask[r].slice(0, 0, length).fill_(1);
  }
  return {ids, mask};
}

std::unique_ptr<RewardModel> LoadGolden(const std::string& family) {
  auto model = LoadRewardModel(TestDataPath("golden/" + family), ModelOptions{});
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? std::move(model).value() : nullptr;
}

class SharedPrefixTest : public ::testing::TestWithParam<std::string> {};

// Each golden row cut into a prompt and its own ending, next to other continuations of that
// prompt (one of a single token, one ending in pad ids): the row scores as transformers
// scored it, the others as Forward() scores them alone.
TEST_P(SharedPrefixTest, GoldenRowsSplitIntoPromptAndContinuationsScoreAsTheReference) {
  auto model = LoadGolden(GetParam());
  ASSERT_NE(model, nullptr);
  ASSERT_TRUE(model->shares_prefixes());
  const std::string dir = TestDataPath("golden/" + GetParam());
  const nlohmann::json cases = ReadJson(dir + "/cases.json");
  const int64_t vocab = model->config().vocab_size;
  torch::Generator generator = at::make_generator<at::CPUGeneratorImpl>(7);
  torch::InferenceMode inference;
  SharedBatch batch;
  std::vector<double> golden;  // NaN where the reference is Forward() alone
  for (const auto& b : cases["batches"]) {
    for (size_t row = 0; row < b["lengths"].size(); ++row) {
      const int64_t length = b["lengths"][row].get<int64_t>();
      if (length < 2) continue;
      const std::vector<int64_t> ids = RowOf(b["input_ids"][row], length);
      const int64_t cut = length / 2;
      std::vector<int64_t> prompt(ids.begin(), ids.begin() + cut);
      std::vector<int64_t> ending(ids.begin() + cut, ids.end());
      std::vector<int64_t> padded_ending = RandomIds(5, vocab, generator);
      padded_ending.insert(padded_ending.end(), {0, 0});
      batch.Add(prompt, {RandomIds(1, vocab, generator), ending, padded_ending,
                         RandomIds(9, vocab, generator)});
      golden.insert(golden.end(), {NAN, b["reward"][row].get<double>(), NAN, NAN});
    }
  }
  ASSERT_GT(golden.size(), 20u);
  const auto rewards = model->ForwardShared(batch.Ids(), batch.groups);
  ASSERT_EQ(rewards.size(0), static_cast<int64_t>(golden.size()));
  EXPECT_EQ(rewards.scalar_type(), torch::kFloat32);
  double max_error = 0;
  for (size_t i = 0; i < golden.size(); ++i) {
    double expected = golden[i];
    if (std::isnan(expected)) {
      auto ids = torch::tensor(batch.full_sequences[i], torch::kLong).unsqueeze(0);
      expected = model->Forward(ids, torch::ones_like(ids)).item<double>();
    }
    EXPECT_NEAR(rewards[i].item<double>(), expected, 1e-5) << "continuation " << i;
    max_error = std::max(max_error, std::abs(rewards[i].item<double>() - expected));
  }
  std::cout << "[shared " << GetParam() << "] " << golden.size()
            << " continuations, max |shared - reference| " << max_error << "\n";
}

// Random prompts of several lengths (none too), 1 to 8 continuations of lengths 1 to 40, in
// one call: each reward is Forward() of its full sequence alone, padded among the others too.
TEST_P(SharedPrefixTest, RandomPromptsAndContinuationLengthsScoreAsEachSequenceAlone) {
  auto model = LoadGolden(GetParam());
  ASSERT_NE(model, nullptr);
  const int64_t vocab = model->config().vocab_size;
  torch::Generator generator = at::make_generator<at::CPUGeneratorImpl>(11);
  torch::InferenceMode inference;
  SharedBatch batch;
  const std::vector<int64_t> prompt_lengths = {0, 1, 3, 17, 40, 64};
  for (size_t p = 0; p < prompt_lengths.size(); ++p) {
    std::vector<std::vector<int64_t>> continuations;
    for (size_t c = 0; c <= (p * 3) % 8; ++c) {
      continuations.push_back(RandomIds(1 + (c * 13 + p * 7) % 40, vocab, generator));
    }
    batch.Add(RandomIds(prompt_lengths[p], vocab, generator), continuations);
  }
  const auto rewards = model->ForwardShared(batch.Ids(), batch.groups);
  const auto [ids, mask] = Padded(batch.full_sequences);
  const auto padded = model->Forward(ids, mask);
  for (size_t i = 0; i < batch.full_sequences.size(); ++i) {
    auto alone = torch::tensor(batch.full_sequences[i], torch::kLong).unsqueeze(0);
    const double expected = model->Forward(alone, torch::ones_like(alone)).item<double>();
    EXPECT_NEAR(rewards[i].item<double>(), expected, 1e-5) << "continuation " << i;
    EXPECT_NEAR(padded[i].item<double>(), expected, 1e-5) << "continuation " << i;
  }
}

// Training's use: one row per pair (prompt, chosen, rejected) under the Bradley-Terry loss
// gives the loss and every parameter's gradient of the separate padded rows.
TEST_P(SharedPrefixTest, PairLossAndGradientsEqualTheSeparateRows) {
  auto model = LoadGolden(GetParam());
  ASSERT_NE(model, nullptr);
  model->module().train();
  const int64_t vocab = model->config().vocab_size;
  torch::Generator generator = at::make_generator<at::CPUGeneratorImpl>(3);
  SharedBatch batch;
  for (int64_t pair = 0; pair < 4; ++pair) {
    batch.Add(RandomIds(10 + 9 * pair, vocab, generator),
              {RandomIds(1 + 5 * pair, vocab, generator), RandomIds(7 - pair, vocab, generator)});
  }
  auto loss_of = [](const torch::Tensor& rewards) {
    auto pairs = rewards.view({-1, 2});
    return -torch::log_sigmoid(pairs.select(1, 0) - pairs.select(1, 1)).mean();
  };
  auto gradients = [&](const torch::Tensor& loss) {
    model->module().zero_grad();
    loss.backward();
    std::vector<torch::Tensor> out;
    for (const auto& p : model->module().parameters()) out.push_back(p.grad().clone());
    return out;
  };
  const auto shared_loss = loss_of(model->ForwardShared(batch.Ids(), batch.groups));
  const auto shared = gradients(shared_loss);
  const auto [ids, mask] = Padded(batch.full_sequences);
  const auto separate_loss = loss_of(model->Forward(ids, mask));
  const auto separate = gradients(separate_loss);
  EXPECT_NEAR(shared_loss.item<double>(), separate_loss.item<double>(), 1e-6);
  ASSERT_EQ(shared.size(), separate.size());
  double max_difference = 0, max_gradient = 0;
  for (size_t i = 0; i < shared.size(); ++i) {
    max_difference = std::max(max_difference, (shared[i] - separate[i]).abs().max().item<double>());
    max_gradient = std::max(max_gradient, separate[i].abs().max().item<double>());
  }
  std::cout << "[shared " << GetParam() << "] max gradient " << max_gradient
            << ", max |shared - separate| " << max_difference << "\n";
  // Float32 sums in another order: equal to 1e-5 of the gradients' scale (~10 here).
  EXPECT_LE(max_difference, 1e-5 * std::max(1.0, max_gradient));
  EXPECT_GT(max_gradient, 1e-4);  // the comparison compares something
}

TEST_P(SharedPrefixTest, LengthsThatDoNotMatchTheIdsAreRefused) {
  auto model = LoadGolden(GetParam());
  ASSERT_NE(model, nullptr);
  torch::InferenceMode inference;
  const auto ids = torch::randint(1, 100, {10}, torch::kLong);
  EXPECT_THROW(model->ForwardShared(ids, {{4, {3, 4}}}), c10::Error);  // 11 tokens
  EXPECT_THROW(model->ForwardShared(ids, {{4, {6, 0}}}), c10::Error);  // empty continuation
  EXPECT_THROW(model->ForwardShared(ids, {{10, {}}}), c10::Error);     // none
  EXPECT_EQ(model->ForwardShared(ids, {{4, {3, 3}}}).size(0), 2);
}

INSTANTIATE_TEST_SUITE_P(Decoders, SharedPrefixTest,
                         ::testing::Values("llama", "llama3", "qwen2", "qwen3"));

// Mistral's sliding window counts positions of the full sequence, across the prompt's end.
TEST(SharedPrefixWindowTest, SlidingWindowSpansThePromptAndTheContinuation) {
  auto config = ReadModelDirectoryConfig(TestDataPath("golden/llama"));
  ASSERT_TRUE(config.ok()) << config.status();
  config->sliding_window = 5;
  ModelOptions options;
  options.seed = 5;
  auto model = CreateRewardModel(*config, options);
  ASSERT_TRUE(model.ok()) << model.status();
  torch::Generator generator = at::make_generator<at::CPUGeneratorImpl>(5);
  torch::InferenceMode inference;
  SharedBatch batch;
  batch.Add(RandomIds(12, 1000, generator),
            {RandomIds(1, 1000, generator), RandomIds(3, 1000, generator),
             RandomIds(9, 1000, generator)});
  const auto rewards = (*model)->ForwardShared(batch.Ids(), batch.groups);
  for (size_t i = 0; i < batch.full_sequences.size(); ++i) {
    auto alone = torch::tensor(batch.full_sequences[i], torch::kLong).unsqueeze(0);
    EXPECT_NEAR(rewards[i].item<double>(),
                (*model)->Forward(alone, torch::ones_like(alone)).item<double>(), 1e-5);
  }
}

std::vector<std::vector<uint32_t>> RowsOf(const SharedPrefixPlan& plan) {
  std::vector<std::vector<uint32_t>> rows;
  for (const auto& group : plan.groups) {
    rows.push_back(group.rows);
    std::sort(rows.back().begin(), rows.back().end());
  }
  std::sort(rows.begin(), rows.end());
  return rows;
}

SharedPrefixPlan Plan(const std::vector<std::vector<int32_t>>& sequences, int64_t min_prefix) {
  std::vector<absl::Span<const int32_t>> spans(sequences.begin(), sequences.end());
  return PlanSharedPrefixes(spans, min_prefix);
}

std::vector<int32_t> Concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Completions of three prompts, interleaved, all behind one 20-token header (a system
// prompt): one group per prompt, whose prefix is that prompt, not one group behind the
// header; a row sharing only the header stays alone.
TEST(PlanSharedPrefixesTest, GroupsTheCompletionsOfEachPromptBehindACommonHeader) {
  const std::vector<int32_t> header(20, 7);
  const std::vector<int32_t> a = Concat(header, std::vector<int32_t>(50, 1));
  const std::vector<int32_t> b = Concat(header, std::vector<int32_t>(60, 2));
  const std::vector<int32_t> c = Concat(header, std::vector<int32_t>(30, 3));
  std::vector<std::vector<int32_t>> sequences;
  for (int k = 0; k < 4; ++k) {
    for (const auto* prompt : {&a, &b, &c}) sequences.push_back(Concat(*prompt, {100 + k, 5}));
  }
  sequences.push_back(Concat(header, {9, 9, 9}));
  const SharedPrefixPlan plan = Plan(sequences, 16);
  ASSERT_EQ(plan.groups.size(), 3u);
  EXPECT_EQ(RowsOf(plan),
            (std::vector<std::vector<uint32_t>>{{0, 3, 6, 9}, {1, 4, 7, 10}, {2, 5, 8, 11}}));
  for (const auto& group : plan.groups) {
    EXPECT_EQ(group.prefix_length, static_cast<int64_t>(sequences[group.rows[0]].size()) - 2);
  }
  EXPECT_EQ(plan.alone, std::vector<uint32_t>{12});
}

TEST(PlanSharedPrefixesTest, PrefixesShorterThanTheMinimumAreNotShared) {
  const std::vector<std::vector<int32_t>> sequences = {
      {1, 2, 3, 4, 5}, {1, 2, 3, 4, 6}, {1, 2, 3, 9}, {8}};
  EXPECT_TRUE(Plan(sequences, 5).groups.empty());
  EXPECT_EQ(Plan(sequences, 5).alone, (std::vector<uint32_t>{0, 1, 2, 3}));
  const SharedPrefixPlan plan = Plan(sequences, 3);
  ASSERT_EQ(plan.groups.size(), 1u);
  // Three rows behind 3 tokens save 6, two behind 4 save 4.
  EXPECT_EQ(plan.groups[0].prefix_length, 3);
  EXPECT_EQ(RowsOf(plan), (std::vector<std::vector<uint32_t>>{{0, 1, 2}}));
}

// Equal sequences (and one that is another's prefix) keep a token each to be pooled at.
TEST(PlanSharedPrefixesTest, EqualSequencesKeepTheirLastTokenAsTheContinuation) {
  const std::vector<int32_t> s(30, 4);
  const SharedPrefixPlan plan = Plan({s, s, Concat(s, {5})}, 16);
  ASSERT_EQ(plan.groups.size(), 1u);
  EXPECT_EQ(plan.groups[0].prefix_length, 29);
  EXPECT_EQ(plan.groups[0].rows.size(), 3u);
  EXPECT_TRUE(plan.alone.empty());
  EXPECT_TRUE(Plan({}, 16).groups.empty());
}

TEST(SharedPrefixEncoderTest, EncodersRefuseToSharePrefixes) {
  auto model = LoadGolden("distilbert");
  ASSERT_NE(model, nullptr);
  EXPECT_FALSE(model->shares_prefixes());
  torch::InferenceMode inference;
  EXPECT_THROW(model->ForwardShared(torch::ones({4}, torch::kLong), {{2, {2}}}), c10::Error);
}

}  // namespace
}  // namespace verdict
