// EvalMetrics: what one evaluation of a reward model on held-out pairs measured. Its own header
// because both the trainer's callbacks (trainer.h) and the run's last checkpoint
// (checkpoint.h, which records the final evaluation) carry it. A plain value type.
#ifndef VERDICT_CORE_TRAIN_EVAL_METRICS_H_
#define VERDICT_CORE_TRAIN_EVAL_METRICS_H_

#include <cstdint>

namespace verdict {

struct EvalMetrics {
  int64_t step = 0;
  double loss = 0;
  double accuracy = 0;
  double margin = 0;       // mean r_chosen - r_rejected
  double reward_mean = 0;  // over chosen and rejected rewards
  double reward_std = 0;
  int64_t pairs = 0;
  double seconds = 0;      // how long the evaluation took
};

}  // namespace verdict

#endif  // VERDICT_CORE_TRAIN_EVAL_METRICS_H_
