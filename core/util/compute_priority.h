// ComputePriority: "scoring first when both want the cores". Scoring requests mark themselves
// in flight from arrival to reply; a training job, between micro-batches, waits while any is,
// up to a bound per wait, so that on a small CPU a burst of scoring does not share the cores
// with a training step started in the middle of it (issue 16). A training step already
// running is not interrupted: the wait only delays the next micro-batch.
//
// The bound keeps training moving under a scoring load that never pauses: after `max_wait`
// the micro-batch runs anyway, next to the scoring work.
//
// Thread safety: every method may be called from any thread.
//
// Example:
//   ComputePriority priority;
//   // scoring, per request:   ComputePriority::Scoring scoring(priority);  ... reply ...
//   // training, per micro-batch:   priority.YieldToScoring(absl::Milliseconds(500));
#ifndef VERDICT_CORE_UTIL_COMPUTE_PRIORITY_H_
#define VERDICT_CORE_UTIL_COMPUTE_PRIORITY_H_

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace verdict {

class ComputePriority {
 public:
  // Scoring work in flight for this object's life (movable, so a completion callback can own
  // it).
  class Scoring {
   public:
    explicit Scoring(ComputePriority& priority) : priority_(&priority) { priority_->Begin(); }
    Scoring(Scoring&& other) noexcept : priority_(other.priority_) { other.priority_ = nullptr; }
    Scoring& operator=(Scoring&&) = delete;
    Scoring(const Scoring&) = delete;
    ~Scoring() {
      if (priority_ != nullptr) priority_->End();
    }

   private:
    ComputePriority* priority_;
  };

  // Blocks while scoring work is in flight, for at most `max_wait` (0: returns at once).
  // Returns how long it waited.
  absl::Duration YieldToScoring(absl::Duration max_wait) const;

  int64_t scoring_in_flight() const;

 private:
  void Begin();
  void End();

  mutable absl::Mutex mu_;
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace verdict

#endif  // VERDICT_CORE_UTIL_COMPUTE_PRIORITY_H_
