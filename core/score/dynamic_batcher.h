// DynamicBatcher: gathers the scoring requests of many callers into few, well-filled forward
// passes of one ScoringModel, under a token budget and a bounded queue delay.
//
// One batcher per loaded model version, with one owner thread (started by Create(), joined by
// the destructor) that does all the work; Submit() only queues. The owner thread:
//   - waits for work, then for the oldest queued request to have waited max_queue_delay — or
//     less, when the queue already holds a full batch (max_batch_tokens or max_batch_items);
//   - completes requests whose deadline has passed (DeadlineExceeded) or whose is_cancelled()
//     says so (Cancelled) without running them;
//   - takes rows from the oldest request onward while the tokens the batch's forward computes
//     (ScoringModel::ForwardTokens: real tokens for a packed encoder; for a decoder each shared
//     prompt once plus every continuation, and the padded forwards of the other rows) stay
//     within max_batch_tokens and its rows within max_batch_items. A request's rows are taken
//     shortest first, so a request too big for one forward is split over several, each holding
//     rows of similar length; the model sorts a forward's rows by length again where it pads
//     them. A single row longer than the budget runs alone;
//   - runs one forward per batch and routes each score back to its request and index;
//   - calls each request's `done` once all its rows are scored (or at the first error).
//
// Guarantees: Submit() never blocks on a forward. It returns an error — and then `done` is
// never called — when the request is invalid (InvalidArgument), the queue is full
// (ResourceExhausted) or the batcher is draining / shutting down (Unavailable). For every
// request Submit() accepted, `done` is called exactly once, on the owner thread.
//
// Shutdown: Drain() stops accepting and waits until every accepted request is done (hot swap:
// drain the old version, then drop it). The destructor stops accepting, lets a forward in
// progress finish, fails what is still queued with Unavailable ("shutting down") and joins.
// A `done` callback may release the last reference to the batcher (the destructor then runs
// on the owner thread, which winds down on its own instead of joining itself); it must not
// call Drain().
//
// Thread safety: Submit(), Drain() and the accessors may be called from any thread. Observer
// functions run on the owner thread, except on_rejection for Submit()'s own refusals, which
// runs on the submitting thread; they must be cheap and must not call back into the batcher.
//
// Example:
//   ASSIGN_OR_RETURN(auto batcher, DynamicBatcher::Create(model, DynamicBatcher::Options{}));
//   DynamicBatcher::Request request;
//   request.sequences = {model->Encode(prompt, response).value()};
//   request.deadline = absl::Now() + absl::Seconds(1);
//   request.done = [](absl::StatusOr<DynamicBatcher::Result> result) { ... };
//   RETURN_IF_ERROR(batcher->Submit(std::move(request)));
#ifndef VERDICT_CORE_SCORE_DYNAMIC_BATCHER_H_
#define VERDICT_CORE_SCORE_DYNAMIC_BATCHER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/score/scoring_model.h"

namespace verdict {

// Why a request was not scored; names fit a metrics label.
enum class RejectionReason {
  kInvalid,           // Submit(): a sequence the model cannot score, or no sequences
  kQueueFull,         // Submit(): max_queue_items would be exceeded
  kShuttingDown,      // Submit() while draining or stopping; queued work failed at shutdown
  kDeadlineExceeded,  // its deadline passed before it ran
  kCancelled,         // is_cancelled() said so before it ran
  kForwardFailed,     // the forward pass it was in failed
};
// "invalid", "queue_full", "shutting_down", "deadline_exceeded", "cancelled", "forward_failed".
absl::string_view RejectionReasonName(RejectionReason reason);

// One forward pass, as the observer sees it.
struct BatchStats {
  int64_t items = 0;  // rows
  // The tokens the forward computes (ScoringModel::ForwardTokens): what max_batch_tokens
  // bounds. Below real_tokens where rows share a prompt; above it for padded forwards.
  int64_t computed_tokens = 0;
  int64_t padded_tokens = 0;  // rows × longest row: what one padded forward would compute
  int64_t real_tokens = 0;    // the rows' tokens, each row counted whole
  int64_t requests = 0;       // requests with at least one row in it
  // Sequences still queued once this batch's rows were taken out (what queued_sequences()
  // said at that moment), so that an observer can keep a queue-depth gauge current.
  int64_t queued_sequences = 0;
  absl::Duration compute_time;
  bool ok = true;  // false when the forward failed
};

// Hooks for metrics (Prometheus counters and histograms). Any may be empty.
struct DynamicBatcherObserver {
  std::function<void(const BatchStats&)> on_batch;
  // A request scored in full: how long it waited before its first forward started.
  std::function<void(absl::Duration queue_time)> on_request;
  std::function<void(RejectionReason)> on_rejection;
  // Rows left the queue without a forward: their request passed its deadline, was cancelled,
  // was in a failed forward with rows still queued, or was failed at shutdown. Called with
  // the sequences still queued afterwards; with BatchStats::queued_sequences it keeps a
  // queue-depth gauge from showing rows that expired as still waiting.
  std::function<void(int64_t queued_sequences)> on_rows_dropped;
};

class DynamicBatcher {
 public:
  struct Options {
    // Tokens the forward computes (ScoringModel::ForwardTokens: padding included, a shared
    // prompt once), per forward. A row longer than this runs alone.
    int64_t max_batch_tokens = 8192;
    // Rows per forward.
    int64_t max_batch_items = 256;
    // How long the oldest request may wait for others to join its batch.
    absl::Duration max_queue_delay = absl::Milliseconds(2);
    // Sequences accepted but not yet in a forward; Submit() refuses beyond it.
    int64_t max_queue_items = 4096;
  };

  struct Result {
    std::vector<float> scores;    // raw rewards, in the order of Request::sequences
    absl::Duration queue_time;    // from Submit() to the start of its first forward
    absl::Duration compute_time;  // the forwards it took part in, summed
    int64_t batches = 0;          // forwards it spanned
  };

  struct Request {
    // Token ids, one sequence per item (ScoringModel::Encode*); each must pass
    // ScoringModel::ValidateSequence().
    std::vector<std::vector<int32_t>> sequences;
    // Not run once this passes; completed with DeadlineExceeded instead.
    absl::Time deadline = absl::InfiniteFuture();
    // Asked before each forward the request would join; true: completed with Cancelled.
    // Called on the owner thread; may be empty.
    std::function<bool()> is_cancelled;
    // Called exactly once, on the owner thread, for a request Submit() accepted.
    std::function<void(absl::StatusOr<Result>)> done;
  };

  // InvalidArgument naming the option when `options` cannot run (a budget, item count or
  // queue size <= 0, a negative or infinite delay); Create refuses exactly these. A server
  // validates its configuration with it at start.
  static absl::Status ValidateOptions(const Options& options);

  static absl::StatusOr<std::unique_ptr<DynamicBatcher>> Create(
      std::shared_ptr<const ScoringModel> model, const Options& options,
      DynamicBatcherObserver observer = {});

  // Stops accepting, fails queued requests with Unavailable, finishes the forward in progress
  // and joins the owner thread.
  ~DynamicBatcher();

  DynamicBatcher(const DynamicBatcher&) = delete;
  DynamicBatcher& operator=(const DynamicBatcher&) = delete;

  // Queues `request`. OK: `done` will be called exactly once. Any error: it never will.
  absl::Status Submit(Request request);

  // Stops accepting (Submit() then returns Unavailable), flushes the queue without waiting
  // for max_queue_delay, and returns once every accepted request is done. Not from a `done`.
  void Drain();

  const ScoringModel& model() const { return *model_; }
  const std::shared_ptr<const ScoringModel>& shared_model() const { return model_; }
  const Options& options() const { return options_; }
  // Sequences accepted and not yet in a forward (a gauge for metrics and tests).
  int64_t queued_sequences() const;

 private:
  class Worker;

  DynamicBatcher(std::shared_ptr<const ScoringModel> model, const Options& options,
                 std::shared_ptr<Worker> worker);

  const std::shared_ptr<const ScoringModel> model_;
  const Options options_;
  // The queue and the owner thread's state. Shared with the owner thread so that the
  // destructor may run on that very thread (a `done` dropping the last reference).
  const std::shared_ptr<Worker> worker_;
  std::thread thread_;
};

}  // namespace verdict

#endif  // VERDICT_CORE_SCORE_DYNAMIC_BATCHER_H_
