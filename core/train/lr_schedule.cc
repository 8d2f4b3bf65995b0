#include "core/train/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace verdict {

absl::StatusOr<LrScheduleKind> ParseLrScheduleKind(absl::string_view name) {
  if (name == "constant") return LrScheduleKind::kConstant;
  if (name == "linear") return LrScheduleKind::kLinear;
  if (name == "cosine") return LrScheduleKind::kCosine;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown lr_scheduler \"", name, "\" (want constant, linear or cosine)"));
}

double LrSchedule::At(int64_t step) const {
  if (step < warmup_steps) {
    return peak * static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup_steps));
  }
  const double decay_steps = static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps));
  const double progress = std::min(1.0, static_cast<double>(step - warmup_steps) / decay_steps);
  const double floor = peak * min_ratio;
  switch (kind) {
    case LrScheduleKind::kConstant:
      return peak;
    case LrScheduleKind::kLinear:
      return floor + (peak - floor) * std::max(0.0, 1.0 - progress);
    case LrScheduleKind::kCosine:
      return floor + (peak - floor) * 0.5 * (1.0 + std::cos(M_PI * progress));
  }
  return peak;
}

}  // namespace verdict
