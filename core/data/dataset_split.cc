#include "core/data/dataset_split.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"

namespace verdict {
namespace {

// SplitMix64 (Steele, Lea and Flood 2014): tiny, fully specified, good enough to shuffle.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}

  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  // Uniform in [0, bound), without the bias of a plain modulo.
  uint64_t Below(uint64_t bound) {
    const uint64_t reject_below = -bound % bound;
    while (true) {
      uint64_t value = Next();
      if (value >= reject_below) return value % bound;
    }
  }

 private:
  uint64_t state_;
};

size_t EvalCount(size_t pairs, double eval_fraction) {
  if (eval_fraction <= 0.0 || pairs < 2) return 0;
  const auto wanted = static_cast<size_t>(std::llround(eval_fraction * static_cast<double>(pairs)));
  return std::clamp<size_t>(wanted, 1, pairs - 1);
}

absl::Status CheckFraction(double eval_fraction) {
  if (!(eval_fraction >= 0.0 && eval_fraction < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("eval_fraction must be in [0, 1), got ", eval_fraction));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TrainEvalSplit> SplitTrainEval(std::vector<PreferencePair> pairs,
                                              double eval_fraction, uint64_t seed) {
  RETURN_IF_ERROR(CheckFraction(eval_fraction));
  const size_t eval_count = EvalCount(pairs.size(), eval_fraction);
  // The first eval_count places of a partial Fisher–Yates shuffle are a uniform draw.
  std::vector<size_t> order(pairs.size());
  std::iota(order.begin(), order.end(), size_t{0});
  SplitMix64 random(seed);
  for (size_t i = 0; i < eval_count; ++i) {
    std::swap(order[i], order[i + random.Below(order.size() - i)]);
  }
  std::vector<bool> in_eval(pairs.size(), false);
  for (size_t i = 0; i < eval_count; ++i) in_eval[order[i]] = true;

  TrainEvalSplit split;
  split.eval.reserve(eval_count);
  split.train.reserve(pairs.size() - eval_count);
  for (size_t i = 0; i < pairs.size(); ++i) {
    (in_eval[i] ? split.eval : split.train).push_back(std::move(pairs[i]));
  }
  return split;
}

absl::StatusOr<TrainEvalData> LoadTrainEvalData(const PreferenceDataSpec& spec) {
  if (spec.train_path.empty()) return absl::InvalidArgumentError("train_path is empty");
  RETURN_IF_ERROR(CheckFraction(spec.eval_fraction));
  if (!spec.eval_path.empty() && spec.eval_fraction > 0.0) {
    return absl::InvalidArgumentError(
        "eval_path and eval_fraction are both set; give one way to choose the eval pairs");
  }

  TrainEvalData data;
  ASSIGN_OR_RETURN(PreferenceData train, ReadPreferenceFile(spec.train_path, spec.reader));
  data.train_stats = std::move(train.stats);
  if (spec.eval_path.empty()) {
    ASSIGN_OR_RETURN(TrainEvalSplit split,
                     SplitTrainEval(std::move(train.pairs), spec.eval_fraction, spec.seed));
    data.train = std::move(split.train);
    data.eval = std::move(split.eval);
  } else {
    data.train = std::move(train.pairs);
    ASSIGN_OR_RETURN(PreferenceData eval, ReadPreferenceFile(spec.eval_path, spec.reader));
    data.eval = std::move(eval.pairs);
    data.eval_stats = std::move(eval.stats);
  }
  if (data.train.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("train_path ", spec.train_path,
                                                   " holds no usable preference pair (",
                                                   data.train_stats.Summary(), ")"));
  }
  return data;
}

}  // namespace verdict
