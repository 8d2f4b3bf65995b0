#include "server/training_service.h"

#include <malloc.h>

#include <atomic>
#include <map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/util/status_macros.h"
#include "server/proto_conversion.h"
#include "server/status_conversion.h"
#include "server/unary_call.h"
#include "server/validation.h"

namespace verdict::server {
namespace {

// A watcher's memory is bounded by these, whatever the job's length or the client's speed:
// a replay reads the store one page at a time, the next page only once the previous one is
// written, and a watcher whose client lags drops live events past kMaxQueuedEvents and later
// reads them back from the store a page at a time. (Old main read up to 4,096 events into
// each watcher at once: ~1.3 MB apiece for a long job, tests/server/watcher_memory_test.cc.)
constexpr size_t kMaxQueuedEvents = 256;
// Events read from the store per read.
constexpr int64_t kReplayPage = 64;

// MetricsStreamReactors alive in the process.
std::atomic<int> open_streams{0};

bool IsTerminalEvent(const v1::MetricsEvent& event) {
  if (!event.has_state_change()) return false;
  return IsTerminal(event.state_change().to_state());
}

absl::Status ListJobsInto(JobStore& store, JobManager& jobs, const v1::ListJobsRequest& request,
                          v1::ListJobsResponse* response) {
  if (request.page_size() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size: must be >= 0, got ", request.page_size()));
  }
  JobFilter filter;
  for (int state : request.states()) {
    if (!v1::JobState_IsValid(state) || state == v1::JOB_STATE_UNSPECIFIED) {
      return absl::InvalidArgumentError(absl::StrCat("states: unknown state ", state));
    }
    filter.states.push_back(static_cast<v1::JobState>(state));
  }
  if (!request.output_model_name().empty()) {
    RETURN_IF_ERROR(ValidateModelName("output_model_name", request.output_model_name()));
    filter.output_model_name = request.output_model_name();
  }
  PageRequest page;
  page.page_size = request.page_size();
  page.page_token = request.page_token();
  ASSIGN_OR_RETURN(Page<v1::Job> listed, store.ListJobs(filter, page));
  for (v1::Job& job : listed.items) {
    jobs.SetQueuePosition(job);
    *response->add_jobs() = std::move(job);
  }
  response->set_next_page_token(listed.next_page_token);
  return absl::OkStatus();
}

// One page of the job's events read from the store, and whether more may follow.
struct StoreRead {
  absl::Status status;
  std::vector<v1::MetricsEvent> events;
  int64_t last = 0;        // the highest sequence read, or the `after` it started from
  bool truncated = false;  // a full page: more may follow, read once these are written
};

// Reads the page of the job's events after `after`. Called with no lock held: a store read
// may wait on SQLite for a while.
StoreRead ReadStore(JobStore& store, const std::string& job_id, int64_t after) {
  StoreRead read;
  read.last = after;
  auto events = store.ReadEvents(job_id, after, kReplayPage);
  if (!events.ok()) {
    read.status = events.status();
    return read;
  }
  read.truncated = static_cast<int64_t>(events->size()) == kReplayPage;
  read.events = std::move(*events);
  if (!read.events.empty()) read.last = read.events.back().sequence();
  return read;
}

// Replays a job's stored events, then follows it live until its terminal state change.
//
// Locking: mutex_ guards the queue and flags and is held only briefly -- never across a store
// read (ReadStore runs unlocked, with `reading_` set so that no write or finish races it) and
// never while calling into the hub. The hub calls OnEvent under its lock (order: hub ->
// reactor, event_hub.h); OnEvent only queues the event or marks the reactor lagging, so a
// reactor that is reading the store never holds up Publish, i.e. the training thread.
class MetricsStreamReactor final : public grpc::ServerWriteReactor<v1::MetricsEvent>,
                                   public EventSubscriber {
 public:
  MetricsStreamReactor(JobStore* store, EventHub* events, std::string job_id,
                       int64_t after_sequence, bool follow)
      : store_(store), events_(events), job_id_(std::move(job_id)), follow_(follow) {
    open_streams.fetch_add(1);
    {
      absl::MutexLock lock(&mutex_);
      last_sent_ = after_sequence;
      reading_ = true;  // live events are queued, not written, until the replay is merged
    }
    // Subscribe before reading the store, so that no event can fall between the two: an
    // event published from now on is queued by OnEvent, one published before is in the store
    // (each is stored before it is published); duplicates collapse by sequence number.
    const bool subscribed = follow_ && events_->Subscribe(job_id_, this);
    StoreRead read = ReadStore(*store_, job_id_, after_sequence);
    // A job that ended before the subscription, with its terminal event at or before
    // after_sequence, sends nothing more: the state says the stream is over.
    bool ended = false;
    if (subscribed) {
      auto job = store_->GetJob(job_id_);
      ended = job.ok() && IsTerminal(job->state());
    }
    absl::MutexLock lock(&mutex_);
    reading_ = false;
    subscribed_ = subscribed;
    if (ended) job_ended_ = true;
    if (follow_ && !subscribed) closing_ = true;  // the server is shutting down: replay, then end
    if (!read.status.ok()) {
      FinishLocked(ToGrpcStatus(read.status));
      return;
    }
    MergeLocked(std::move(read));
    ContinueLocked();
  }

  void OnEvent(const v1::MetricsEvent& event) override {
    absl::MutexLock lock(&mutex_);
    if (finished_) return;
    if (event.sequence() <= last_sent_) {
      // Already sent, or at or before an after_sequence beyond the log when the watcher
      // started: not sent (again), but the job's end still ends the stream.
      if (IsTerminalEvent(event)) {
        job_ended_ = true;
        ContinueLocked();
      }
      return;
    }
    if (lagging_ || pending_.size() >= kMaxQueuedEvents) {
      lagging_ = true;  // caught up from the store once the client reads again
      return;
    }
    pending_.emplace(event.sequence(), event);
    MaybeWriteLocked();
  }

  void OnWriteDone(bool ok) override {
    int64_t read_after = 0;
    {
      absl::MutexLock lock(&mutex_);
      writing_ = false;
      if (!ok) {
        FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
        return;
      }
      if (sent_terminal_) {
        FinishLocked(grpc::Status::OK);
        return;
      }
      if (!lagging_ || !pending_.empty()) {
        ContinueLocked();
        return;
      }
      // Caught up with what was queued: read what was dropped, with the lock released. Live
      // events published meanwhile are queued again (lagging_ is clear).
      lagging_ = false;
      reading_ = true;
      read_after = last_sent_;
    }
    StoreRead read = ReadStore(*store_, job_id_, read_after);
    absl::MutexLock lock(&mutex_);
    reading_ = false;
    if (finished_) return;
    if (!read.status.ok()) {
      FinishLocked(ToGrpcStatus(read.status));
      return;
    }
    MergeLocked(std::move(read));
    ContinueLocked();
  }

  // Server shutdown: send what is queued (the job's return to QUEUED included), then end with
  // UNAVAILABLE so the client reconnects, with after_sequence, to the next server.
  void OnClosed() override {
    absl::MutexLock lock(&mutex_);
    closing_ = true;
    MaybeEndForShutdownLocked();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mutex_);
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client"));
  }

  void OnDone() override {
    {
      absl::MutexLock lock(&mutex_);
      UnsubscribeLocked();
    }
    delete this;
    // The last stream closed: hand the freed pages of malloc's arenas back to the system.
    // glibc keeps what a gRPC thread's arena frees for that arena's reuse otherwise, so the
    // memory a burst of watchers used would stay resident for good (watcher_memory_test).
    if (open_streams.fetch_sub(1) == 1) malloc_trim(0);
  }

 private:
  // Adds what a store read found to the queue. A truncated read leaves a gap between its last
  // event and any live event queued meanwhile: those live events are dropped and the reactor
  // stays lagging, so the next read continues exactly where this one stopped.
  void MergeLocked(StoreRead read) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    for (v1::MetricsEvent& event : read.events) {
      if (event.sequence() > last_sent_) pending_.emplace(event.sequence(), std::move(event));
    }
    if (read.truncated) {
      pending_.erase(pending_.upper_bound(read.last), pending_.end());
      lagging_ = true;
    }
  }

  // After a write or a read: finish a replay-only stream, or one whose job has ended, that
  // has sent everything; else write the next event, or end for shutdown.
  void ContinueLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if ((!follow_ || job_ended_) && pending_.empty() && !lagging_ && !writing_ && !reading_) {
      FinishLocked(grpc::Status::OK);
      return;
    }
    MaybeWriteLocked();
    MaybeEndForShutdownLocked();
  }

  void MaybeEndForShutdownLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (!closing_ || writing_ || reading_ || lagging_ || !pending_.empty()) return;
    FinishLocked(grpc::Status(
        grpc::StatusCode::UNAVAILABLE,
        absl::StrCat("the server is shutting down; reconnect with after_sequence ", last_sent_)));
  }

  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (writing_ || reading_ || finished_ || pending_.empty()) return;
    auto first = pending_.begin();
    current_ = std::move(first->second);
    pending_.erase(first);
    last_sent_ = current_.sequence();
    sent_terminal_ = IsTerminalEvent(current_);
    writing_ = true;
    StartWrite(&current_);
  }

  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (finished_) return;
    finished_ = true;  // OnEvent ignores events from now on; OnDone unsubscribes
    Finish(status);
  }

  void UnsubscribeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (!subscribed_) return;
    subscribed_ = false;
    // Unsubscribe takes the hub's lock, which OnEvent holds while waiting for ours: release
    // ours first to keep the lock order hub -> reactor.
    mutex_.Unlock();
    events_->Unsubscribe(job_id_, this);
    mutex_.Lock();
  }

  JobStore* const store_;
  EventHub* const events_;
  const std::string job_id_;
  const bool follow_;

  absl::Mutex mutex_;
  std::map<int64_t, v1::MetricsEvent> pending_ ABSL_GUARDED_BY(mutex_);
  v1::MetricsEvent current_ ABSL_GUARDED_BY(mutex_);
  int64_t last_sent_ ABSL_GUARDED_BY(mutex_) = 0;
  bool writing_ ABSL_GUARDED_BY(mutex_) = false;
  // A store read is running without the lock: no write or shutdown finish until it is merged.
  bool reading_ ABSL_GUARDED_BY(mutex_) = false;
  bool finished_ ABSL_GUARDED_BY(mutex_) = false;
  bool lagging_ ABSL_GUARDED_BY(mutex_) = false;
  bool sent_terminal_ ABSL_GUARDED_BY(mutex_) = false;
  // The job is in a terminal state whose event this stream does not send (its sequence is not
  // beyond the request's after_sequence): end with OK once the queue is sent.
  bool job_ended_ ABSL_GUARDED_BY(mutex_) = false;
  bool subscribed_ ABSL_GUARDED_BY(mutex_) = false;
  // The hub closed (server shutdown): end with UNAVAILABLE once the queue is sent.
  bool closing_ ABSL_GUARDED_BY(mutex_) = false;
};

class FailedStreamReactor final : public grpc::ServerWriteReactor<v1::MetricsEvent> {
 public:
  explicit FailedStreamReactor(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerUnaryReactor* TrainingService::SubmitTrainingJob(
    grpc::CallbackServerContext* context, const v1::SubmitTrainingJobRequest* request,
    v1::Job* response) {
  return ServeUnary(context, *auth_, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(*response, jobs_->Submit(*request));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TrainingService::EvaluateModel(
    grpc::CallbackServerContext* context, const v1::EvaluateModelRequest* request,
    v1::Job* response) {
  return ServeUnary(context, *auth_, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(*response, jobs_->SubmitEvaluation(*request));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TrainingService::GetJob(grpc::CallbackServerContext* context,
                                                  const v1::GetJobRequest* request,
                                                  v1::Job* response) {
  return ServeUnary(context, *auth_, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(*response, jobs_->GetJob(request->job_id()));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TrainingService::ListJobs(grpc::CallbackServerContext* context,
                                                    const v1::ListJobsRequest* request,
                                                    v1::ListJobsResponse* response) {
  return ServeUnary(context, *auth_,
                    [&] { return ListJobsInto(*store_, *jobs_, *request, response); });
}

grpc::ServerUnaryReactor* TrainingService::CancelJob(grpc::CallbackServerContext* context,
                                                     const v1::CancelJobRequest* request,
                                                     v1::Job* response) {
  return ServeUnary(context, *auth_, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(*response, jobs_->Cancel(request->job_id(), request->reason()));
    return absl::OkStatus();
  });
}

grpc::ServerWriteReactor<v1::MetricsEvent>* TrainingService::StreamMetrics(
    grpc::CallbackServerContext* context, const v1::StreamMetricsRequest* request) {
  if (grpc::Status auth = auth_->Check(*context); !auth.ok()) return new FailedStreamReactor(auth);
  absl::Status valid = ValidateId("job_id", request->job_id());
  if (!valid.ok()) return new FailedStreamReactor(ToGrpcStatus(valid));
  auto job = store_->GetJob(request->job_id());
  if (!job.ok()) return new FailedStreamReactor(ToGrpcStatus(job.status()));
  int64_t after_sequence = 0;
  if (request->has_from_step()) {
    if (request->from_step() < 0) {
      return new FailedStreamReactor(ToGrpcStatus(absl::InvalidArgumentError(
          absl::StrCat("from_step: must be >= 0, got ", request->from_step()))));
    }
    auto sequence = store_->SequenceBeforeStep(request->job_id(), request->from_step());
    if (!sequence.ok()) return new FailedStreamReactor(ToGrpcStatus(sequence.status()));
    after_sequence = *sequence;
  } else if (request->has_after_sequence()) {
    if (request->after_sequence() < 0) {
      return new FailedStreamReactor(ToGrpcStatus(absl::InvalidArgumentError(
          absl::StrCat("after_sequence: must be >= 0, got ", request->after_sequence()))));
    }
    after_sequence = request->after_sequence();
  }
  const bool terminal = job->state() == v1::JOB_STATE_SUCCEEDED ||
                        job->state() == v1::JOB_STATE_FAILED ||
                        job->state() == v1::JOB_STATE_CANCELLED;
  // A finished job's log is complete: replay it and end, whatever no_follow says.
  return new MetricsStreamReactor(store_, events_, request->job_id(), after_sequence,
                                  !request->no_follow() && !terminal);
}

}  // namespace verdict::server
