#include "core/score/dynamic_batcher.h"

#include <algorithm>
#include <deque>
#include <numeric>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"

namespace verdict {

absl::string_view RejectionReasonName(RejectionReason reason) {
  switch (reason) {
    case RejectionReason::kInvalid:
      return "invalid";
    case RejectionReason::kQueueFull:
      return "queue_full";
    case RejectionReason::kShuttingDown:
      return "shutting_down";
    case RejectionReason::kDeadlineExceeded:
      return "deadline_exceeded";
    case RejectionReason::kCancelled:
      return "cancelled";
    case RejectionReason::kForwardFailed:
      return "forward_failed";
  }
  return "unknown";
}

// The queue (shared with submitters, under mu_) and the owner thread's working set (owner
// thread only). Submitters put requests in `inbox_`; the owner thread moves them to `active_`
// and works there without the lock, taking it again only to move rows' accounting.
class DynamicBatcher::Worker {
 public:
  Worker(std::shared_ptr<const ScoringModel> model, const Options& options,
         DynamicBatcherObserver observer)
      : model_(std::move(model)), options_(options), observer_(std::move(observer)) {}

  absl::Status Submit(Request request);
  void Drain();
  void Stop();
  int64_t queued_sequences() const;

  // The owner thread's loop; returns once Stop() was called and the queue is failed.
  void Run();

 private:
  // One accepted request and its progress through the forwards.
  struct Pending {
    Request request;
    absl::Time arrival;
    // Row indices, shortest sequence first: a request split over several forwards then puts
    // rows of similar length together.
    std::vector<uint32_t> order;
    size_t dispatched = 0;  // entries of `order` already sent to a forward
    size_t scored = 0;
    std::vector<float> scores;
    absl::Duration queue_time;
    absl::Duration compute_time;
    int64_t batches = 0;
    bool finished = false;

    absl::Span<const int32_t> Row(size_t k) const { return request.sequences[order[k]]; }
  };

  // Rows of one request in the next forward.
  struct Take {
    Pending* pending;
    size_t rows;
  };

  struct Completion {
    std::function<void(absl::StatusOr<Result>)> done;
    absl::StatusOr<Result> result;
  };

  bool HasInboxOrStop() const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return !inbox_.empty() || stopping_;
  }
  bool HasInboxOrFlush() const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return !inbox_.empty() || stopping_ || draining_;
  }
  bool AllDoneOrStopping() const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return unfinished_requests_ == 0 || stopping_;
  }

  // Owner thread only, below.
  // Fills `plan` with the rows of the next forward; true when that forward is full (no
  // further row would fit), so waiting for more requests cannot improve it.
  bool PlanBatch(std::vector<Take>* plan) const;
  void RunBatch(const std::vector<Take>& plan);
  // Ends requests that must not run (deadline passed, cancelled).
  void DropUnrunnable();
  void FailAll(const absl::Status& status, RejectionReason reason);
  // Marks `pending` finished and queues its callback with `result`.
  void Finish(Pending& pending, absl::StatusOr<Result> result,
              std::vector<Completion>& completions);
  // Calls the callbacks, updates the shared accounting, forgets finished requests.
  void Complete(std::vector<Completion> completions);
  void Reject(RejectionReason reason) const {
    if (observer_.on_rejection) observer_.on_rejection(reason);
  }

  const std::shared_ptr<const ScoringModel> model_;
  const Options options_;
  const DynamicBatcherObserver observer_;

  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Pending>> inbox_ ABSL_GUARDED_BY(mu_);
  // Rows accepted and not yet sent to a forward or finished: what max_queue_items bounds.
  int64_t queued_rows_ ABSL_GUARDED_BY(mu_) = 0;
  // Accepted requests whose callback has not returned yet.
  int64_t unfinished_requests_ ABSL_GUARDED_BY(mu_) = 0;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  // Owner thread only: requests taken from the inbox, oldest first.
  std::deque<std::unique_ptr<Pending>> active_;
};

absl::Status DynamicBatcher::Worker::Submit(Request request) {
  auto refuse = [this](RejectionReason reason, absl::Status status) {
    Reject(reason);
    return status;
  };
  if (!request.done) {
    return refuse(RejectionReason::kInvalid,
                  absl::InvalidArgumentError("a scoring request needs a done callback"));
  }
  const size_t rows = request.sequences.size();
  if (rows == 0) {
    return refuse(RejectionReason::kInvalid,
                  absl::InvalidArgumentError("a scoring request needs at least one sequence"));
  }
  if (static_cast<int64_t>(rows) > options_.max_queue_items) {
    return refuse(RejectionReason::kInvalid,
                  absl::InvalidArgumentError(absl::StrCat("a request of ", rows,
                                                          " sequences can never fit a queue of ",
                                                          options_.max_queue_items, "; split it")));
  }
  // Checked here, on the caller's thread, so that one bad request never fails a forward it
  // would share with other callers.
  for (size_t i = 0; i < rows; ++i) {
    absl::Status valid = model_->ValidateSequence(request.sequences[i]);
    if (!valid.ok()) {
      return refuse(RejectionReason::kInvalid,
                    absl::InvalidArgumentError(absl::StrCat("item ", i, ": ", valid.message())));
    }
  }
  auto pending = std::make_unique<Pending>();
  pending->order.resize(rows);
  std::iota(pending->order.begin(), pending->order.end(), 0u);
  std::stable_sort(pending->order.begin(), pending->order.end(), [&](uint32_t a, uint32_t b) {
    return request.sequences[a].size() < request.sequences[b].size();
  });
  pending->scores.assign(rows, 0.0f);
  pending->request = std::move(request);
  absl::Status refused;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ || draining_) {
      refused = absl::UnavailableError("the scoring model is shutting down");
    } else if (queued_rows_ + static_cast<int64_t>(rows) > options_.max_queue_items) {
      refused = absl::ResourceExhaustedError(absl::StrCat("scoring queue full: ", queued_rows_,
                                                          " sequences queued, limit ",
                                                          options_.max_queue_items));
    } else {
      pending->arrival = absl::Now();
      queued_rows_ += static_cast<int64_t>(rows);
      ++unfinished_requests_;
      inbox_.push_back(std::move(pending));
    }
  }
  if (refused.ok()) return absl::OkStatus();
  return refuse(refused.code() == absl::StatusCode::kResourceExhausted
                    ? RejectionReason::kQueueFull
                    : RejectionReason::kShuttingDown,
                refused);
}

void DynamicBatcher::Worker::Drain() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
  mu_.Await(absl::Condition(this, &Worker::AllDoneOrStopping));
}

void DynamicBatcher::Worker::Stop() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
}

int64_t DynamicBatcher::Worker::queued_sequences() const {
  absl::MutexLock lock(&mu_);
  return queued_rows_;
}

void DynamicBatcher::Worker::Run() {
  for (;;) {
    bool stopping = false, draining = false;
    {
      absl::MutexLock lock(&mu_);
      if (active_.empty()) mu_.Await(absl::Condition(this, &Worker::HasInboxOrStop));
      for (auto& pending : inbox_) active_.push_back(std::move(pending));
      inbox_.clear();
      stopping = stopping_;
      draining = draining_;
    }
    if (stopping) {
      FailAll(absl::UnavailableError("the scoring model is shutting down"),
              RejectionReason::kShuttingDown);
      return;
    }
    if (active_.empty()) continue;

    std::vector<Take> plan;
    const bool full = PlanBatch(&plan);
    // Wait for company unless the batch is full, the oldest request has waited long enough,
    // or nobody else can come (draining).
    if (!full && !draining) {
      const absl::Time flush_at = active_.front()->arrival + options_.max_queue_delay;
      if (absl::Now() < flush_at) {
        absl::MutexLock lock(&mu_);
        mu_.AwaitWithDeadline(absl::Condition(this, &Worker::HasInboxOrFlush), flush_at);
        continue;
      }
    }
    DropUnrunnable();
    if (active_.empty()) continue;
    plan.clear();
    PlanBatch(&plan);
    RunBatch(plan);
  }
}

bool DynamicBatcher::Worker::PlanBatch(std::vector<Take>* plan) const {
  // The batch's rows so far, and what their forward computes (ScoringModel::ForwardTokens).
  std::vector<absl::Span<const int32_t>> rows;
  int64_t cost = 0;
  // The cost of the batch with the next `k` rows of `pending` added.
  auto cost_with = [&](const Pending& pending, size_t k) {
    const size_t base = rows.size();
    for (size_t i = 0; i < k; ++i) rows.push_back(pending.Row(pending.dispatched + i));
    const int64_t tokens = model_->ForwardTokens(rows);
    rows.resize(base);
    return tokens;
  };
  for (const auto& pending : active_) {
    const size_t remaining = pending->order.size() - pending->dispatched;
    const size_t room =
        std::min<size_t>(remaining, static_cast<size_t>(options_.max_batch_items) - rows.size());
    size_t take = room;
    int64_t take_cost = cost_with(*pending, room);
    if (take_cost > options_.max_batch_tokens) {
      // The most rows that fit: the cost grows with the rows taken, so a bisection finds it
      // (and whatever it finds was measured to fit).
      size_t fits = 0, fails = room;
      int64_t fits_cost = cost;
      while (fails - fits > 1) {
        const size_t mid = fits + (fails - fits) / 2;
        const int64_t mid_cost = cost_with(*pending, mid);
        if (mid_cost <= options_.max_batch_tokens) {
          fits = mid;
          fits_cost = mid_cost;
        } else {
          fails = mid;
        }
      }
      take = fits;
      take_cost = fits_cost;
      // The first row always goes in, however long: a long row runs alone, never stuck.
      if (rows.empty() && take == 0) {
        take = 1;
        take_cost = cost_with(*pending, 1);
      }
    }
    for (size_t i = 0; i < take; ++i) rows.push_back(pending->Row(pending->dispatched + i));
    cost = take_cost;
    if (take > 0) plan->push_back({pending.get(), take});
    // Rows of this request left out: the budget or the item limit is reached.
    if (take < remaining) return true;
  }
  return static_cast<int64_t>(rows.size()) >= options_.max_batch_items ||
         cost >= options_.max_batch_tokens;
}

void DynamicBatcher::Worker::RunBatch(const std::vector<Take>& plan) {
  struct Row {
    Pending* pending;
    uint32_t index;
  };
  std::vector<Row> rows;
  std::vector<absl::Span<const int32_t>> sequences;
  BatchStats stats;
  int64_t longest = 0;
  const absl::Time start = absl::Now();
  for (const Take& take : plan) {
    Pending& pending = *take.pending;
    for (size_t k = pending.dispatched; k < pending.dispatched + take.rows; ++k) {
      const uint32_t index = pending.order[k];
      rows.push_back({&pending, index});
      sequences.push_back(pending.request.sequences[index]);
      stats.real_tokens += static_cast<int64_t>(sequences.back().size());
      longest = std::max<int64_t>(longest, static_cast<int64_t>(sequences.back().size()));
    }
    if (pending.batches == 0) pending.queue_time = start - pending.arrival;
    pending.dispatched += take.rows;
    ++pending.batches;
  }
  {
    absl::MutexLock lock(&mu_);
    queued_rows_ -= static_cast<int64_t>(rows.size());
    stats.queued_sequences = queued_rows_;
  }
  stats.computed_tokens = model_->ForwardTokens(sequences);
  absl::StatusOr<std::vector<float>> scores = model_->ScoreEncodedSpans(sequences);
  stats.compute_time = absl::Now() - start;
  stats.items = static_cast<int64_t>(rows.size());
  stats.padded_tokens = stats.items * longest;
  stats.requests = static_cast<int64_t>(plan.size());
  stats.ok = scores.ok();
  if (observer_.on_batch) observer_.on_batch(stats);

  std::vector<Completion> completions;
  if (scores.ok()) {
    for (size_t i = 0; i < rows.size(); ++i) {
      rows[i].pending->scores[rows[i].index] = (*scores)[i];
      ++rows[i].pending->scored;
    }
  }
  for (const Take& take : plan) {
    Pending& pending = *take.pending;
    pending.compute_time += stats.compute_time;
    if (!scores.ok()) {
      Reject(RejectionReason::kForwardFailed);
      Finish(pending, scores.status(), completions);
    } else if (pending.scored == pending.order.size()) {
      if (observer_.on_request) observer_.on_request(pending.queue_time);
      Result result;
      result.scores = std::move(pending.scores);
      result.queue_time = pending.queue_time;
      result.compute_time = pending.compute_time;
      result.batches = pending.batches;
      Finish(pending, std::move(result), completions);
    }
  }
  Complete(std::move(completions));
}

void DynamicBatcher::Worker::DropUnrunnable() {
  std::vector<Completion> completions;
  const absl::Time now = absl::Now();
  for (const auto& pending : active_) {
    const Request& request = pending->request;
    if (now >= request.deadline) {
      Reject(RejectionReason::kDeadlineExceeded);
      Finish(*pending,
             absl::DeadlineExceededError(absl::StrCat("deadline passed after ",
                                                      absl::FormatDuration(now - pending->arrival),
                                                      " in the scoring queue")),
             completions);
    } else if (request.is_cancelled && request.is_cancelled()) {
      Reject(RejectionReason::kCancelled);
      Finish(*pending, absl::CancelledError("scoring request cancelled"), completions);
    }
  }
  Complete(std::move(completions));
}

void DynamicBatcher::Worker::FailAll(const absl::Status& status, RejectionReason reason) {
  {
    absl::MutexLock lock(&mu_);
    for (auto& pending : inbox_) active_.push_back(std::move(pending));
    inbox_.clear();
  }
  std::vector<Completion> completions;
  for (const auto& pending : active_) {
    Reject(reason);
    Finish(*pending, status, completions);
  }
  Complete(std::move(completions));
}

void DynamicBatcher::Worker::Finish(Pending& pending, absl::StatusOr<Result> result,
                                    std::vector<Completion>& completions) {
  pending.finished = true;
  completions.push_back({std::move(pending.request.done), std::move(result)});
}

void DynamicBatcher::Worker::Complete(std::vector<Completion> completions) {
  if (completions.empty()) return;
  // Rows of finished requests that never reached a forward leave the queue count.
  int64_t unsent_rows = 0;
  for (const auto& pending : active_) {
    if (pending->finished) {
      unsent_rows += static_cast<int64_t>(pending->order.size() - pending->dispatched);
    }
  }
  active_.erase(std::remove_if(active_.begin(), active_.end(),
                               [](const std::unique_ptr<Pending>& p) { return p->finished; }),
                active_.end());
  int64_t still_queued = 0;
  {
    absl::MutexLock lock(&mu_);
    queued_rows_ -= unsent_rows;
    still_queued = queued_rows_;
  }
  if (unsent_rows > 0 && observer_.on_rows_dropped) observer_.on_rows_dropped(still_queued);
  for (Completion& completion : completions) {
    completion.done(std::move(completion.result));
    // Release what the callback holds (it may be the last reference to the batcher) now,
    // on this thread, outside the lock.
    completion.done = nullptr;
  }
  absl::MutexLock lock(&mu_);
  unfinished_requests_ -= static_cast<int64_t>(completions.size());
}

DynamicBatcher::DynamicBatcher(std::shared_ptr<const ScoringModel> model, const Options& options,
                               std::shared_ptr<Worker> worker)
    : model_(std::move(model)), options_(options), worker_(std::move(worker)) {}

absl::Status DynamicBatcher::ValidateOptions(const Options& options) {
  if (options.max_batch_tokens <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_batch_tokens must be > 0, got ", options.max_batch_tokens));
  }
  if (options.max_batch_items <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_batch_items must be > 0, got ", options.max_batch_items));
  }
  if (options.max_queue_items <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_queue_items must be > 0, got ", options.max_queue_items));
  }
  if (options.max_queue_delay < absl::ZeroDuration() ||
      options.max_queue_delay == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("max_queue_delay must be >= 0 and finite, got ",
                                                   absl::FormatDuration(options.max_queue_delay)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<DynamicBatcher>> DynamicBatcher::Create(
    std::shared_ptr<const ScoringModel> model, const Options& options,
    DynamicBatcherObserver observer) {
  if (model == nullptr) return absl::InvalidArgumentError("DynamicBatcher needs a model");
  if (absl::Status valid = ValidateOptions(options); !valid.ok()) return valid;
  auto worker = std::make_shared<Worker>(model, options, std::move(observer));
  std::unique_ptr<DynamicBatcher> batcher(new DynamicBatcher(std::move(model), options, worker));
  // The thread holds its own reference: see the destructor.
  batcher->thread_ = std::thread([worker] { worker->Run(); });
  return batcher;
}

DynamicBatcher::~DynamicBatcher() {
  worker_->Stop();
  if (thread_.get_id() == std::this_thread::get_id()) {
    // A `done` callback dropped the last reference: the owner thread is running this very
    // destructor. It cannot join itself; it fails what is queued and exits on its own, and
    // its reference keeps the worker alive until then.
    thread_.detach();
  } else {
    thread_.join();
  }
}

absl::Status DynamicBatcher::Submit(Request request) { return worker_->Submit(std::move(request)); }

void DynamicBatcher::Drain() { worker_->Drain(); }

int64_t DynamicBatcher::queued_sequences() const { return worker_->queued_sequences(); }

}  // namespace verdict
