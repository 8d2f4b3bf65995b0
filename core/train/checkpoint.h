// Training checkpoints: `RUN_DIR/checkpoint-<step>/` with the model (model.safetensors +
// config.json), the optimizer state (optimizer.pt) and where the data loop stands
// (trainer_state.json). A model with LoRA adapters is saved merged, as a usable model, and its
// adapters also on their own (adapter_model.safetensors); a resume restores the adapters and
// the trained parameters, and keeps the frozen ones it loaded from the base model.
//
// The run's last checkpoint is written after the final evaluation and records it (RunEnd):
// a restart after that point neither trains nor evaluates again, and reports nothing twice.
//
// A checkpoint is written into `checkpoint-<step>.tmp/`, every file fsynced, then renamed into
// place and the run directory fsynced: a crash at any moment leaves only complete
// checkpoints under their final names. No RNG state is stored because none is needed: batch
// order is a pure function of (seed, epoch) and the models use no dropout (TRL disables
// dropout for reward modelling too).
//
// Thread-compatible free functions; one trainer owns a run directory.
#ifndef VERDICT_CORE_TRAIN_CHECKPOINT_H_
#define VERDICT_CORE_TRAIN_CHECKPOINT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/train/eval_metrics.h"

namespace verdict {

class RewardModel;

// Where the training loop stands after `step` optimizer steps.
struct TrainerPosition {
  int64_t step = 0;
  int64_t epoch = 0;  // the epoch the next micro-batch comes from
  int64_t batch = 0;  // the index of that micro-batch within its epoch
};

// The end of a run, recorded in its last checkpoint: the final evaluation (already reported)
// and the reward normalisation statistics the model directory records.
struct RunEnd {
  EvalMetrics final_eval;  // its step is the checkpoint's
  double reward_mean = 0;  // normalisation statistics (eval pairs, or a training sample)
  double reward_std = 1;
};

struct CheckpointContents {
  RewardModel* model = nullptr;
  std::string optimizer_state;  // torch::save of the optimizer
  TrainerPosition position;
  std::optional<RunEnd> end;  // set in the run's last checkpoint only
};

// Returns the checkpoint's path.
absl::StatusOr<std::string> WriteCheckpoint(const std::string& run_dir, int64_t step,
                                            const CheckpointContents& contents);

// Keeps the `keep` newest checkpoints (at least one) and removes the rest, along with any
// leftover temporary directories.
absl::Status PruneCheckpoints(const std::string& run_dir, int64_t keep);

struct LoadedCheckpoint {
  std::string path;
  std::string optimizer_state;
  TrainerPosition position;
  std::optional<RunEnd> end;
};

// Loads the newest complete checkpoint's weights into `model` (same architecture) and returns
// the rest; nullopt when the run directory holds none.
absl::StatusOr<std::optional<LoadedCheckpoint>> LoadLatestCheckpoint(const std::string& run_dir,
                                                                     RewardModel& model);

// The step numbers of the complete checkpoints in `run_dir`, oldest first.
std::vector<int64_t> ListCheckpoints(const std::string& run_dir);

}  // namespace verdict

#endif  // VERDICT_CORE_TRAIN_CHECKPOINT_H_
