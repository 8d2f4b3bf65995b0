#include "core/train/batching.h"

#include <algorithm>
#include <numeric>
#include <random>

namespace verdict {
namespace {

constexpr int64_t kBatchesPerMegaBatch = 50;

size_t PairLength(const EncodedPair& pair) {
  return std::max(pair.chosen.size(), pair.rejected.size());
}

// std::shuffle's result depends on the standard library; this Fisher–Yates over mt19937_64
// does not, so a checkpoint resumes identically wherever it was written.
template <typename T>
void Shuffle(std::vector<T>& items, std::mt19937_64& rng) {
  for (size_t i = items.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(rng() % i);
    std::swap(items[i - 1], items[j]);
  }
}

// Cuts `order` into batches of at most batch_size pairs and, with a budget, at most
// max_batch_tokens padded tokens (a single pair over the budget still forms its own batch).
void CutBatches(const std::vector<EncodedPair>& pairs, const std::vector<int64_t>& order,
                const BatchingOptions& options, std::vector<std::vector<int64_t>>& out) {
  std::vector<int64_t> current;
  size_t longest = 0;
  int64_t row_tokens = 0;  // shared rows: the batch's tokens so far
  for (int64_t index : order) {
    const size_t length = PairLength(pairs[index]);
    const size_t new_longest = std::max(longest, length);
    const int64_t row_length = options.shared_rows ? SharedRowLength(pairs[index]) : 0;
    const int64_t cost = options.shared_rows
                             ? row_tokens + row_length
                             : static_cast<int64_t>(2 * (current.size() + 1) * new_longest);
    const bool full = static_cast<int64_t>(current.size()) >= options.batch_size;
    const bool over_budget = options.max_batch_tokens > 0 && cost > options.max_batch_tokens;
    if (!current.empty() && (full || over_budget)) {
      out.push_back(std::move(current));
      current.clear();
      longest = 0;
      row_tokens = 0;
    }
    current.push_back(index);
    longest = std::max(longest, length);
    row_tokens += row_length;
  }
  if (!current.empty()) out.push_back(std::move(current));
}

}  // namespace

std::vector<std::vector<int64_t>> MakeBatches(const std::vector<EncodedPair>& pairs,
                                              const BatchingOptions& options, int64_t epoch) {
  std::vector<int64_t> order(pairs.size());
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(options.seed * 1000003ULL + static_cast<uint64_t>(epoch));
  if (options.shuffle) Shuffle(order, rng);

  std::vector<std::vector<int64_t>> batches;
  if (!options.group_by_length) {
    CutBatches(pairs, order, options, batches);
    return batches;
  }
  const auto by_length_descending = [&](int64_t a, int64_t b) {
    return PairLength(pairs[a]) > PairLength(pairs[b]);
  };
  if (!options.shuffle) {
    // Evaluation: a global sort gives the least padding; the order does not matter.
    std::stable_sort(order.begin(), order.end(), by_length_descending);
    CutBatches(pairs, order, options, batches);
    return batches;
  }
  const size_t mega = static_cast<size_t>(std::max<int64_t>(1, options.batch_size) *
                                          kBatchesPerMegaBatch);
  for (size_t begin = 0; begin < order.size(); begin += mega) {
    const size_t end = std::min(order.size(), begin + mega);
    std::vector<int64_t> chunk(order.begin() + begin, order.begin() + end);
    std::stable_sort(chunk.begin(), chunk.end(), by_length_descending);
    CutBatches(pairs, chunk, options, batches);
  }
  Shuffle(batches, rng);
  return batches;
}

int64_t SharedPrefixLength(const EncodedPair& pair) {
  const auto& a = pair.chosen;
  const auto& b = pair.rejected;
  const auto mismatch = std::mismatch(a.begin(), a.end(), b.begin(), b.end());
  const int64_t common = mismatch.first - a.begin();
  return std::max<int64_t>(
      0, std::min<int64_t>(common, static_cast<int64_t>(std::min(a.size(), b.size())) - 1));
}

int64_t SharedRowLength(const EncodedPair& pair) {
  return static_cast<int64_t>(pair.chosen.size() + pair.rejected.size()) -
         SharedPrefixLength(pair);
}

PaddingStats MeasureSharedRows(const std::vector<EncodedPair>& pairs,
                               const std::vector<int64_t>& batch) {
  PaddingStats stats;
  for (int64_t index : batch) stats.real_tokens += SharedRowLength(pairs[index]);
  stats.padded_tokens = stats.real_tokens;
  return stats;
}

PaddingStats MeasurePadding(const std::vector<EncodedPair>& pairs,
                            const std::vector<int64_t>& batch) {
  PaddingStats stats;
  size_t longest = 0;
  for (int64_t index : batch) {
    const EncodedPair& pair = pairs[index];
    stats.real_tokens += static_cast<int64_t>(pair.chosen.size() + pair.rejected.size());
    longest = std::max(longest, PairLength(pair));
  }
  stats.padded_tokens = static_cast<int64_t>(2 * batch.size() * longest);
  return stats;
}

}  // namespace verdict
