// Pair scoring and evaluation metrics shared by the trainer's evaluations and the server's
// evaluation jobs, so that both measure a reward model with the same code.
//
// ScoreEncodedPairs runs the trainer's batched, stacked forward (chosen rows, then rejected
// rows, one right-padded batch) over encoded pairs and returns every pair's rewards in input
// order. SummarizePairScores turns them into the trainer's EvalMetrics (accuracy counts ties
// as wrong); DescribePairScores adds what a standalone evaluation reports: ties, accuracy by
// margin bucket (calibration) and by subset.
//
// Collate and AutocastScope are the trainer's building blocks for one batch, shared with it.
//
// Thread safety: ScoreEncodedPairs runs under inference mode and leaves the module's
// train/eval mode alone (the caller sets it), so it may run on a model other threads score
// with (RewardModel allows concurrent inference-mode forwards). The rest are pure functions.
//
// Example:
//   model.module().eval();
//   ASSIGN_OR_RETURN(PairScores scores, ScoreEncodedPairs(model, device, pairs, {}));
//   PairEvalReport report = DescribePairScores(scores, subsets);
#ifndef VERDICT_CORE_TRAIN_PAIR_EVALUATION_H_
#define VERDICT_CORE_TRAIN_PAIR_EVALUATION_H_

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/model/reward_model.h"
#include "core/train/batching.h"
#include "core/train/eval_metrics.h"

namespace verdict {

// One collated batch: 2 * pairs rows (chosen rows first), right padded.
struct BatchTensors {
  at::Tensor ids, mask, margin;
  int64_t pairs = 0;
  PaddingStats padding;
};

BatchTensors Collate(const std::vector<EncodedPair>& pairs, const std::vector<int64_t>& batch,
                     int32_t pad_id, const c10::Device& device);

// One batch as RewardModel::ForwardShared takes it: per pair, one group of the shared prefix
// (SharedPrefixLength) and two continuations, chosen then rejected, so that the rewards it
// returns, viewed as [pairs, 2], hold chosen in column 0 and rejected in column 1.
struct SharedBatchTensors {
  at::Tensor ids;  // [tokens] int64, on the CPU (ForwardShared reads the lengths there)
  std::vector<SharedPrefixGroup> groups;
  at::Tensor margin;  // [pairs] float32 on the device
  int64_t pairs = 0;
  PaddingStats padding;  // real = padded = the tokens computed
};

SharedBatchTensors CollateShared(const std::vector<EncodedPair>& pairs,
                                 const std::vector<int64_t>& batch, const c10::Device& device);

// Turns bfloat16 autocast on for one forward (and the loss built from it) on the current
// thread, as torch.autocast does: restored, and the cast-weight cache cleared, when the scope
// ends, so that a cast copy never outlives the optimizer step that changes its weight.
class AutocastScope {
 public:
  AutocastScope(bool enabled, const c10::Device& device);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  const bool enabled_;
  const bool cuda_;
  bool was_enabled_ = false;
  c10::ScalarType previous_dtype_ = c10::ScalarType::BFloat16;
};

struct PairEvalOptions {
  int64_t batch_size = 16;
  int64_t max_batch_tokens = 0;  // padded tokens per batch; 0 = no budget
  int32_t pad_id = 0;
  bool bfloat16_autocast = false;
  // Called after each batch with the pairs scored so far; may be null.
  std::function<void(int64_t done, int64_t total)> on_progress;
  // Checked before each batch; true stops the scoring with a Cancelled status. May be null.
  std::function<bool()> cancelled;
};

// Rewards of each pair, in the order the pairs were given.
struct PairScores {
  std::vector<double> chosen;
  std::vector<double> rejected;
  double loss_sum = 0;  // sum of -logsigmoid(chosen - rejected - margin)
};

absl::StatusOr<PairScores> ScoreEncodedPairs(RewardModel& model, const c10::Device& device,
                                             const std::vector<EncodedPair>& pairs,
                                             const PairEvalOptions& options);

// The trainer's metrics: step and seconds are left 0 for the caller.
EvalMetrics SummarizePairScores(const PairScores& scores);

// What SummarizePairScores reads, as sums that add across slices of the pairs (data-parallel
// ranks each score their slice, sum these over the ranks, then summarize).
struct PairScoreSums {
  double pairs = 0, correct = 0, margin = 0, reward = 0, reward_squared = 0, loss = 0;
  std::vector<double> ToVector() const { return {pairs, correct, margin, reward, reward_squared, loss}; }
  static PairScoreSums FromVector(const std::vector<double>& v) {
    return {v.at(0), v.at(1), v.at(2), v.at(3), v.at(4), v.at(5)};
  }
};
PairScoreSums SumPairScores(const PairScores& scores);
EvalMetrics SummarizePairScoreSums(const PairScoreSums& sums);

// Accuracy among the pairs whose |r_chosen - r_rejected| lies in [low, high).
struct MarginBucket {
  double low = 0;
  double high = 0;  // infinity for the last bucket
  int64_t pairs = 0;
  double accuracy = 0;
};

struct SubsetAccuracy {
  std::string subset;
  int64_t pairs = 0;
  double accuracy = 0;
};

struct PairEvalReport {
  EvalMetrics metrics;
  int64_t ties = 0;  // r_chosen == r_rejected (counted as wrong in accuracy)
  std::vector<MarginBucket> calibration;  // the buckets of kMarginBucketEdges, all of them
  std::vector<SubsetAccuracy> subsets;    // sorted by name; empty when no pair has a subset
};

// Bucket edges of the calibration, on |margin|: [0, 0.1), [0.1, 0.25), ..., [4, inf).
inline constexpr double kMarginBucketEdges[] = {0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0};

// `subsets` is empty or holds each pair's subset ("" for none), in the order of the scores.
PairEvalReport DescribePairScores(const PairScores& scores,
                                  const std::vector<std::string>& subsets);

}  // namespace verdict

#endif  // VERDICT_CORE_TRAIN_PAIR_EVALUATION_H_
