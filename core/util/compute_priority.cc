#include "core/util/compute_priority.h"

#include "absl/time/clock.h"

namespace verdict {

absl::Duration ComputePriority::YieldToScoring(absl::Duration max_wait) const {
  if (max_wait <= absl::ZeroDuration()) return absl::ZeroDuration();
  const absl::Time start = absl::Now();
  absl::MutexLock lock(&mu_);
  if (in_flight_ == 0) return absl::ZeroDuration();
  mu_.AwaitWithTimeout(absl::Condition(
                           +[](const int64_t* in_flight) { return *in_flight == 0; }, &in_flight_),
                       max_wait);
  return absl::Now() - start;
}

int64_t ComputePriority::scoring_in_flight() const {
  absl::MutexLock lock(&mu_);
  return in_flight_;
}

void ComputePriority::Begin() {
  absl::MutexLock lock(&mu_);
  ++in_flight_;
}

void ComputePriority::End() {
  absl::MutexLock lock(&mu_);
  --in_flight_;
}

}  // namespace verdict
