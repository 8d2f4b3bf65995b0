// Learning-rate schedules as Hugging Face's get_scheduler builds them: linear warmup from 0 to
// the peak over `warmup_steps`, then constant, linear decay to 0, or cosine decay to 0 at
// `total_steps`. A pure function of the step, so a resumed run needs no scheduler state.
#ifndef VERDICT_CORE_TRAIN_LR_SCHEDULE_H_
#define VERDICT_CORE_TRAIN_LR_SCHEDULE_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace verdict {

enum class LrScheduleKind { kConstant, kLinear, kCosine };

// "constant", "linear", "cosine" and back.
absl::StatusOr<LrScheduleKind> ParseLrScheduleKind(absl::string_view name);
inline absl::string_view LrScheduleKindName(LrScheduleKind kind) {
  switch (kind) {
    case LrScheduleKind::kConstant:
      return "constant";
    case LrScheduleKind::kLinear:
      return "linear";
    case LrScheduleKind::kCosine:
      return "cosine";
  }
  return "linear";
}

struct LrSchedule {
  LrScheduleKind kind = LrScheduleKind::kLinear;
  double peak = 1e-4;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  // Linear and cosine decay end at min_ratio * peak rather than 0.
  double min_ratio = 0.0;

  // The rate for optimizer step `step` (0-based: the first update uses step 0).
  double At(int64_t step) const;
};

}  // namespace verdict

#endif  // VERDICT_CORE_TRAIN_LR_SCHEDULE_H_
