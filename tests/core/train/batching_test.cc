#include "core/train/batching.h"

#include <algorithm>
#include <random>
#include <set>

#include "gtest/gtest.h"

namespace verdict {
namespace {

std::vector<EncodedPair> PairsOfRandomLengths(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<EncodedPair> pairs(n);
  for (auto& pair : pairs) {
    // Both sequences share the prompt, so their lengths are close, as in real data.
    const size_t prompt = 5 + rng() % 180;
    pair.chosen.assign(prompt + rng() % 20, 1);
    pair.rejected.assign(prompt + rng() % 20, 1);
  }
  return pairs;
}

double PaddingFraction(const std::vector<EncodedPair>& pairs,
                       const std::vector<std::vector<int64_t>>& batches) {
  PaddingStats total;
  for (const auto& batch : batches) {
    PaddingStats s = MeasurePadding(pairs, batch);
    total.real_tokens += s.real_tokens;
    total.padded_tokens += s.padded_tokens;
  }
  return total.padding_fraction();
}

TEST(BatchingTest, EveryPairAppearsExactlyOncePerEpoch) {
  auto pairs = PairsOfRandomLengths(1000, 1);
  BatchingOptions options;
  auto batches = MakeBatches(pairs, options, 0);
  std::multiset<int64_t> seen;
  for (const auto& batch : batches) {
    EXPECT_LE(batch.size(), 16u);
    seen.insert(batch.begin(), batch.end());
  }
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()).size(), 1000u);
}

TEST(BatchingTest, SameSeedAndEpochGiveTheSameBatchesAndEpochsDiffer) {
  auto pairs = PairsOfRandomLengths(500, 2);
  BatchingOptions options;
  EXPECT_EQ(MakeBatches(pairs, options, 3), MakeBatches(pairs, options, 3));
  EXPECT_NE(MakeBatches(pairs, options, 3), MakeBatches(pairs, options, 4));
}

TEST(BatchingTest, LengthGroupingCutsPadding) {
  auto pairs = PairsOfRandomLengths(2000, 3);
  BatchingOptions grouped;
  BatchingOptions plain;
  plain.group_by_length = false;
  const double grouped_padding = PaddingFraction(pairs, MakeBatches(pairs, grouped, 0));
  const double plain_padding = PaddingFraction(pairs, MakeBatches(pairs, plain, 0));
  EXPECT_LT(grouped_padding, plain_padding / 2) << grouped_padding << " vs " << plain_padding;
}

TEST(BatchingTest, TokenBudgetBoundsEveryBatchButNeverDropsALongPair) {
  auto pairs = PairsOfRandomLengths(300, 4);
  pairs[7].chosen.assign(900, 1);  // alone over the budget
  BatchingOptions options;
  options.batch_size = 64;
  options.max_batch_tokens = 1024;
  std::set<int64_t> seen;
  for (const auto& batch : MakeBatches(pairs, options, 0)) {
    seen.insert(batch.begin(), batch.end());
    if (batch.size() > 1) EXPECT_LE(MeasurePadding(pairs, batch).padded_tokens, 1024);
  }
  EXPECT_EQ(seen.size(), 300u);
}

TEST(BatchingTest, SharedPrefixLengthLeavesEachSideATokenOfItsOwn) {
  EXPECT_EQ(SharedPrefixLength({{1, 2, 3, 4}, {1, 2, 9}, 0}), 2);
  EXPECT_EQ(SharedPrefixLength({{1, 2, 3}, {1, 2, 3, 4}, 0}), 2);  // one holds the other
  EXPECT_EQ(SharedPrefixLength({{1, 2}, {1, 2}, 0}), 1);
  EXPECT_EQ(SharedPrefixLength({{5, 2}, {1, 2}, 0}), 0);
  EXPECT_EQ(SharedRowLength({{1, 2, 3, 4}, {1, 2, 9}, 0}), 5);
}

// With shared rows the budget counts each pair's row (prompt once, no padding), so a batch
// holds more pairs than the padded [2B, T] budget lets in; the batches are the same without a
// budget, whichever way the pairs are counted.
TEST(BatchingTest, SharedRowsCountTheirOwnTokensAgainstTheBudget) {
  const auto pairs = PairsOfRandomLengths(300, 5);
  BatchingOptions padded;
  padded.batch_size = 64;
  BatchingOptions shared = padded;
  shared.shared_rows = true;
  EXPECT_EQ(MakeBatches(pairs, padded, 0), MakeBatches(pairs, shared, 0));

  padded.max_batch_tokens = shared.max_batch_tokens = 2048;
  const auto shared_batches = MakeBatches(pairs, shared, 0);
  std::set<int64_t> seen;
  for (const auto& batch : shared_batches) {
    seen.insert(batch.begin(), batch.end());
    const PaddingStats rows = MeasureSharedRows(pairs, batch);
    EXPECT_EQ(rows.real_tokens, rows.padded_tokens);
    if (batch.size() > 1) EXPECT_LE(rows.real_tokens, 2048);
    int64_t expected = 0;
    for (int64_t index : batch) expected += SharedRowLength(pairs[index]);
    EXPECT_EQ(rows.real_tokens, expected);
  }
  EXPECT_EQ(seen.size(), 300u);
  EXPECT_LT(shared_batches.size(), MakeBatches(pairs, padded, 0).size());
}

}  // namespace
}  // namespace verdict
