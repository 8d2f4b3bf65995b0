// Trainer: pairwise (Bradley–Terry) reward-model training, as TRL's RewardTrainer does it,
// run as one resumable job.
//
// Loss per pair: -logsigmoid(r_chosen - r_rejected - margin), plus
// center_rewards_coefficient * mean((r_chosen + r_rejected)^2). Chosen and rejected go
// through one stacked forward pass; for a decoder with prefix_sharing (the default), each
// pair is instead one row of RewardModel::ForwardShared: the tokens the two sequences begin
// with (the prompt, or what truncation and templates left of it in common) computed once,
// then each response, with the same rewards and gradients. Accuracy counts ties as wrong.
//
// The run directory holds checkpoints (checkpoint-<step>/: model, optimizer, trainer state,
// each written to a temporary directory and renamed into place) and the tokenizer. Run()
// resumes from the newest complete checkpoint there, reproducing the uninterrupted run's
// later steps exactly on the CPU. A NaN or infinite loss or gradient stops the run with an
// error before the bad update lands; earlier checkpoints stay intact. Cancellation is
// checked between optimizer steps.
//
// Precision: parameters, gradients and AdamW's moments are always float32. With dtype
// bfloat16 the forward and the loss run under bfloat16 autocast (CUDA, or LibTorch's CPU
// autocast), and the saved model is float32. float16 is refused by ValidateTrainingConfig.
//
// Run() proceeds in phases: load the data, prepare the tokenizer, build the model, encode the
// pairs, plan the steps and build the optimizer, resume from a checkpoint, train, evaluate and
// save the model directory (core/model/model_directory.h).
//
// Data parallelism (config.world_size > 1, distributed.h): Run() is called in each of
// world_size processes, which meet through the torchrun variables. The step plan is the one a
// single process with world_size * batch_size pairs per micro-batch follows; each rank trains
// on its contiguous slice of every micro-batch, and gradients are summed across ranks (each
// rank's loss already divided by the step's pairs over all ranks), so 2 ranks x B match 1 rank x
// 2B up to float rounding. Metrics are reduced over the ranks; only rank 0 calls the callbacks
// and writes checkpoints and the model directory; every rank resumes from the same checkpoint
// in the shared run_dir. A tokenizer trained on the data is trained by rank 0 and loaded by the
// others. Each rank evaluates its slice of the eval set and the sums are reduced (the same
// numbers on each rank, equal to one process's up to the order of the additions).
//
// Thread safety: Run() is called once, from one thread; the callbacks run on that thread.
// Cancel() may be called from any thread.
//
// Example:
//   TrainingConfig config;
//   config.train_path = "data/pairs.jsonl";
//   config.run_dir = "/tmp/run";
//   config.output_dir = "/tmp/model";
//   TrainerCallbacks callbacks;
//   callbacks.on_step = [](const TrainStepMetrics& m) { std::cout << m.loss << "\n"; };
//   ASSIGN_OR_RETURN(auto trainer, Trainer::Create(config, callbacks));
//   ASSIGN_OR_RETURN(TrainingResult result, trainer->Run());
#ifndef VERDICT_CORE_TRAIN_TRAINER_H_
#define VERDICT_CORE_TRAIN_TRAINER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/data/preference_pair.h"
#include "core/train/eval_metrics.h"
#include "core/train/training_config.h"
#include "core/util/cancellable.h"

namespace verdict {

struct TrainStepMetrics {
  int64_t step = 0;  // optimizer steps done, 1-based
  int64_t total_steps = 0;
  double epoch = 0;  // fractional epochs done
  double loss = 0;
  double accuracy = 0;       // fraction of pairs with r_chosen > r_rejected
  double margin = 0;         // mean r_chosen - r_rejected
  double reward_mean = 0;    // over chosen and rejected
  double chosen_reward_mean = 0;
  double rejected_reward_mean = 0;
  double reward_min = 0;
  double reward_max = 0;
  double learning_rate = 0;
  double grad_norm = 0;      // before clipping
  int64_t tokens = 0;        // real (non-padding) tokens computed in this logging window
  int64_t pairs = 0;         // pairs in this logging window
  double pairs_per_second = 0;
  double tokens_per_second = 0;
  double padding_fraction = 0;
  double window_seconds = 0;  // wall time of this logging window
  // Of which rank 0 spent summing gradients (and the step's loss) across ranks, waiting for
  // the slowest rank included; 0 with one rank.
  double sync_seconds = 0;
};

// What the data preparation found; reported once before the first step.
struct DataSummary {
  int64_t train_pairs = 0;
  int64_t eval_pairs = 0;
  int64_t invalid_lines = 0;
  int64_t identical_dropped = 0;
  int64_t too_long_dropped = 0;  // truncation "drop"
  int64_t truncated = 0;         // truncation "truncate"
  int64_t vocab_size = 0;
  int64_t parameters = 0;
  int64_t total_steps = 0;
  int64_t resumed_from_step = 0;  // 0 for a fresh run
};

struct TrainerCallbacks {
  std::function<void(const DataSummary&)> on_start;
  std::function<void(const TrainStepMetrics&)> on_step;  // every logging_steps
  std::function<void(const EvalMetrics&)> on_eval;
  // A checkpoint write begins; on_checkpoint follows once it is on disk (or none, on error).
  std::function<void(int64_t step)> on_checkpoint_started;
  std::function<void(int64_t step, const std::string& path)> on_checkpoint;
  std::function<void(const std::string& line)> on_log;
  // Before each micro-batch's forward pass; it may block, to let other work on the same
  // cores go first (the server's ComputePriority: scoring before training).
  std::function<void()> before_micro_batch;
};

struct TrainingResult {
  std::string output_dir;
  int64_t steps = 0;
  EvalMetrics final_eval;
  double reward_mean = 0;  // normalisation statistics saved with the model
  double reward_std = 1;
};

class Trainer : public Cancellable {
 public:
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(const TrainingConfig& config,
                                                         TrainerCallbacks callbacks);
  virtual ~Trainer() = default;

  // Trains to the end (or to cancellation: a Cancelled status, after writing a checkpoint
  // so the run can resume).
  virtual absl::StatusOr<TrainingResult> Run() = 0;

  // Cancel() (Cancellable) asks a running Run() to stop after the current optimizer step.
};

// Trains the SentencePiece tokenizer of a run without a base model on `pairs` (prompts and both
// responses; config.vocab_size pieces at most, config.tokenizer_type, BOS only) and saves it in
// `directory`, where LoadTokenizerFromDirectory reads it.
absl::Status TrainTokenizerForPairs(const std::vector<PreferencePair>& pairs,
                                    const TrainingConfig& config, const std::string& directory);

}  // namespace verdict

#endif  // VERDICT_CORE_TRAIN_TRAINER_H_
