// Cancellable: a flag one thread raises to ask work running on another thread to stop at its
// next safe point. The base of the core Trainer and of the server's evaluation jobs, so that the
// job queue cancels and drains either kind the same way.
//
// Thread safety: Cancel() and cancelled() may be called from any thread.
#ifndef VERDICT_CORE_UTIL_CANCELLABLE_H_
#define VERDICT_CORE_UTIL_CANCELLABLE_H_

#include <atomic>

namespace verdict {

class Cancellable {
 public:
  virtual ~Cancellable() = default;

  // Asks the work to stop at its next safe point; it ends with a Cancelled status.
  void Cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

 private:
  std::atomic<bool> cancelled_{false};
};

}  // namespace verdict

#endif  // VERDICT_CORE_UTIL_CANCELLABLE_H_
