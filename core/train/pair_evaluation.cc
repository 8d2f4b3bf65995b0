#include "core/train/pair_evaluation.h"

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>
#include <map>

namespace verdict {

BatchTensors Collate(const std::vector<EncodedPair>& pairs, const std::vector<int64_t>& batch,
                     int32_t pad_id, const c10::Device& device) {
  BatchTensors out;
  out.pairs = static_cast<int64_t>(batch.size());
  out.padding = MeasurePadding(pairs, batch);
  const int64_t rows = 2 * out.pairs;
  const int64_t width = out.padding.padded_tokens / std::max<int64_t>(1, rows);
  auto ids = torch::full({rows, width}, pad_id, torch::kLong);
  auto mask = torch::zeros({rows, width}, torch::kLong);
  auto margin = torch::zeros({out.pairs}, torch::kFloat32);
  auto ids_a = ids.accessor<int64_t, 2>();
  auto mask_a = mask.accessor<int64_t, 2>();
  auto margin_a = margin.accessor<float, 1>();
  for (int64_t i = 0; i < out.pairs; ++i) {
    const EncodedPair& pair = pairs[batch[i]];
    // Chosen rows first, then rejected: one stacked forward pass scores both.
    for (int side = 0; side < 2; ++side) {
      const std::vector<int32_t>& seq = side == 0 ? pair.chosen : pair.rejected;
      const int64_t row = i + side * out.pairs;
      for (size_t t = 0; t < seq.size(); ++t) {
        ids_a[row][t] = seq[t];
        mask_a[row][t] = 1;
      }
    }
    margin_a[i] = pair.margin;
  }
  out.ids = ids.to(device);
  out.mask = mask.to(device);
  out.margin = margin.to(device);
  return out;
}

SharedBatchTensors CollateShared(const std::vector<EncodedPair>& pairs,
                                 const std::vector<int64_t>& batch, const c10::Device& device) {
  SharedBatchTensors out;
  out.pairs = static_cast<int64_t>(batch.size());
  out.padding = MeasureSharedRows(pairs, batch);
  std::vector<int64_t> ids;
  ids.reserve(out.padding.real_tokens);
  std::vector<float> margin;
  margin.reserve(batch.size());
  out.groups.reserve(batch.size());
  for (int64_t index : batch) {
    const EncodedPair& pair = pairs[index];
    const int64_t shared = SharedPrefixLength(pair);
    ids.insert(ids.end(), pair.chosen.begin(), pair.chosen.end());
    ids.insert(ids.end(), pair.rejected.begin() + shared, pair.rejected.end());
    out.groups.push_back({shared,
                          {static_cast<int64_t>(pair.chosen.size()) - shared,
                           static_cast<int64_t>(pair.rejected.size()) - shared}});
    margin.push_back(pair.margin);
  }
  out.ids = torch::tensor(ids, torch::kLong);
  out.margin = torch::tensor(margin, torch::kFloat32).to(device);
  return out;
}

AutocastScope::AutocastScope(bool enabled, const c10::Device& device)
    : enabled_(enabled), cuda_(device.is_cuda()) {
  if (!enabled_) return;
  if (cuda_) {
    was_enabled_ = at::autocast::is_enabled();
    previous_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
    at::autocast::set_enabled(true);
  } else {
    was_enabled_ = at::autocast::is_cpu_enabled();
    previous_dtype_ = at::autocast::get_autocast_cpu_dtype();
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::set_cpu_enabled(true);
  }
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!enabled_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  if (cuda_) {
    at::autocast::set_enabled(was_enabled_);
    at::autocast::set_autocast_gpu_dtype(previous_dtype_);
  } else {
    at::autocast::set_cpu_enabled(was_enabled_);
    at::autocast::set_autocast_cpu_dtype(previous_dtype_);
  }
}

absl::StatusOr<PairScores> ScoreEncodedPairs(RewardModel& model, const c10::Device& device,
                                             const std::vector<EncodedPair>& pairs,
                                             const PairEvalOptions& options) {
  torch::InferenceMode inference;
  BatchingOptions batching;
  batching.batch_size = std::max<int64_t>(1, options.batch_size);
  batching.max_batch_tokens = options.max_batch_tokens;
  batching.shuffle = false;
  PairScores scores;
  scores.chosen.assign(pairs.size(), 0.0);
  scores.rejected.assign(pairs.size(), 0.0);
  int64_t done = 0;
  for (const auto& batch : MakeBatches(pairs, batching, 0)) {
    if (options.cancelled && options.cancelled()) {
      return absl::CancelledError("the evaluation was cancelled");
    }
    BatchTensors t = Collate(pairs, batch, options.pad_id, device);
    torch::Tensor rewards;
    {
      AutocastScope autocast_scope(options.bfloat16_autocast, device);
      rewards = model.Forward(t.ids, t.mask);
    }
    auto chosen = rewards.slice(0, 0, t.pairs), rejected = rewards.slice(0, t.pairs);
    auto losses = -torch::log_sigmoid(chosen - rejected - t.margin);
    scores.loss_sum += losses.sum().item<double>();
    auto chosen_cpu = chosen.to(torch::kDouble).cpu().contiguous();
    auto rejected_cpu = rejected.to(torch::kDouble).cpu().contiguous();
    auto c = chosen_cpu.accessor<double, 1>();
    auto r = rejected_cpu.accessor<double, 1>();
    for (int64_t i = 0; i < t.pairs; ++i) {
      scores.chosen[batch[i]] = c[i];
      scores.rejected[batch[i]] = r[i];
    }
    done += t.pairs;
    if (options.on_progress) options.on_progress(done, static_cast<int64_t>(pairs.size()));
  }
  return scores;
}

PairScoreSums SumPairScores(const PairScores& scores) {
  PairScoreSums sums;
  const int64_t n = static_cast<int64_t>(scores.chosen.size());
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double c = scores.chosen[i], r = scores.rejected[i];
    if (c > r) ++correct;
    sums.margin += c - r;
    sums.reward += c + r;
    sums.reward_squared += c * c + r * r;
  }
  sums.pairs = static_cast<double>(n);
  sums.correct = static_cast<double>(correct);
  sums.loss = scores.loss_sum;
  return sums;
}

EvalMetrics SummarizePairScoreSums(const PairScoreSums& sums) {
  EvalMetrics metrics;
  const int64_t n = static_cast<int64_t>(sums.pairs);
  metrics.pairs = n;
  if (n == 0) return metrics;
  metrics.loss = sums.loss / n;
  metrics.accuracy = sums.correct / n;
  metrics.margin = sums.margin / n;
  metrics.reward_mean = sums.reward / (2.0 * n);
  metrics.reward_std = std::sqrt(std::max(
      0.0, sums.reward_squared / (2.0 * n) - metrics.reward_mean * metrics.reward_mean));
  return metrics;
}

EvalMetrics SummarizePairScores(const PairScores& scores) {
  return SummarizePairScoreSums(SumPairScores(scores));
}

PairEvalReport DescribePairScores(const PairScores& scores,
                                  const std::vector<std::string>& subsets) {
  PairEvalReport report;
  report.metrics = SummarizePairScores(scores);
  constexpr size_t kBuckets = std::size(kMarginBucketEdges);
  std::vector<int64_t> bucket_pairs(kBuckets, 0), bucket_correct(kBuckets, 0);
  std::map<std::string, std::pair<int64_t, int64_t>> by_subset;  // pairs, correct
  for (size_t i = 0; i < scores.chosen.size(); ++i) {
    const double margin = scores.chosen[i] - scores.rejected[i];
    const bool correct = margin > 0;
    if (margin == 0) ++report.ties;
    const double size = std::abs(margin);
    size_t bucket = kBuckets - 1;
    while (bucket > 0 && size < kMarginBucketEdges[bucket]) --bucket;
    ++bucket_pairs[bucket];
    if (correct) ++bucket_correct[bucket];
    if (i < subsets.size() && !subsets[i].empty()) {
      auto& [pairs, right] = by_subset[subsets[i]];
      ++pairs;
      if (correct) ++right;
    }
  }
  for (size_t b = 0; b < kBuckets; ++b) {
    MarginBucket bucket;
    bucket.low = kMarginBucketEdges[b];
    bucket.high = b + 1 < kBuckets ? kMarginBucketEdges[b + 1]
                                   : std::numeric_limits<double>::infinity();
    bucket.pairs = bucket_pairs[b];
    bucket.accuracy =
        bucket.pairs > 0 ? static_cast<double>(bucket_correct[b]) / bucket.pairs : 0.0;
    report.calibration.push_back(bucket);
  }
  for (const auto& [name, counts] : by_subset) {
    report.subsets.push_back(
        {name, counts.first, static_cast<double>(counts.second) / counts.first});
  }
  return report;
}

}  // namespace verdict
