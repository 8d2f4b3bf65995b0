// Train/eval splits of preference data: carved out of one set of pairs by a seeded draw, or
// read from a separate eval file.
//
// SplitTrainEval is deterministic: the same pairs, fraction and seed give the same split on
// every machine and build, because it draws with its own generator (SplitMix64 and a
// Fisher–Yates shuffle of indices) rather than std::shuffle, whose algorithm the C++ standard
// leaves to each library. The eval part holds round(eval_fraction * n) pairs, but at least one
// when eval_fraction > 0 and n >= 2 and never all of them (training keeps at least one pair);
// both parts keep the input order.
//
// Pure functions: thread-safe.
//
// Example:
//   PreferenceDataSpec spec;
//   spec.train_path = "data/hh-rlhf/helpful-base/train.jsonl.gz";
//   spec.eval_fraction = 0.05;
//   spec.seed = 42;
//   ASSIGN_OR_RETURN(TrainEvalData data, LoadTrainEvalData(spec));
#ifndef VERDICT_CORE_DATA_DATASET_SPLIT_H_
#define VERDICT_CORE_DATA_DATASET_SPLIT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/data/preference_pair.h"
#include "core/data/preference_reader.h"

namespace verdict {

struct TrainEvalSplit {
  std::vector<PreferencePair> train;
  std::vector<PreferencePair> eval;
};

// InvalidArgumentError unless 0 <= eval_fraction < 1.
absl::StatusOr<TrainEvalSplit> SplitTrainEval(std::vector<PreferencePair> pairs,
                                              double eval_fraction, uint64_t seed);

struct PreferenceDataSpec {
  std::string train_path;
  // A separate eval file; when set, eval_fraction must be 0.
  std::string eval_path;
  // The share of train_path's pairs held out for eval when there is no eval_path.
  double eval_fraction = 0.0;
  uint64_t seed = 0;
  PreferenceReaderOptions reader;
};

struct TrainEvalData {
  std::vector<PreferencePair> train;
  std::vector<PreferencePair> eval;
  ReadStats train_stats;  // counts for train_path, the eval share included
  ReadStats eval_stats;   // counts for eval_path; all zero without one
};

// Reads train_path (and eval_path) and splits. InvalidArgumentError, naming the field, for a
// bad spec, and when no training pair is left.
absl::StatusOr<TrainEvalData> LoadTrainEvalData(const PreferenceDataSpec& spec);

}  // namespace verdict

#endif  // VERDICT_CORE_DATA_DATASET_SPLIT_H_
