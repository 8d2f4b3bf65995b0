// JobManager: the job queue (training jobs and evaluation jobs, EvaluateModel) and its workers.
//
// Submit() validates a spec (filling in every default), persists the job as QUEUED and
// returns at once; `max_concurrent_jobs` worker threads take jobs by priority, then
// submission order, and hand each to a JobRunner (job_runner.h), which runs the core Trainer
// and finishes the job. Every event a job produces (state changes, train steps, evaluations,
// log lines) is numbered, stored in the JobStore, then published to the EventHub for live
// watchers. A job that succeeds registers its model as a new version of its output name, in
// the same store transaction that marks it SUCCEEDED (exactly once, even across restarts).
//
// State changes are compare-and-set (JobStore::TransitionJob): Cancel, the runner and recovery
// each name the states they move a job from, so none of them can undo another's change (a
// cancelled job never goes back to RUNNING); progress saves never write the state.
//
// Durability: every state change is stored before the call that caused it returns. On
// Create(), jobs left RUNNING or CANCELLING by a crash are re-queued (attempt + 1) and resume
// from their last checkpoint; their events after that checkpoint's step are removed, so the
// history has each step once. Drain() (SIGTERM) interrupts running jobs, which checkpoint and
// go back to QUEUED to resume at the next start.
//
// Thread safety: all public methods may be called from any thread.
// Lock order: JobManager::mutex_ (queue, running trainers) and events_mutex_ (event numbering)
// are never held together. mutex_ is held only to move queue entries and flag trainers, never
// across a store call; events_mutex_ is held across one AppendEvents (or one state-changing
// store call that records its event) and the EventHub::Publish that follows it (so a job's
// events are published in sequence order), and Publish takes the
// hub's lock and then each watcher's (event_hub.h), none of which is held across slow work.
// The store's own lock is a leaf.
#ifndef VERDICT_SERVER_JOB_MANAGER_H_
#define VERDICT_SERVER_JOB_MANAGER_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/event_hub.h"
#include "server/job_runner.h"
#include "server/job_store.h"
#include "server/server_config.h"
#include "server/proto_conversion.h"
#include "verdict/v1/training.pb.h"

namespace verdict {
class Logger;
class ServerMetrics;
class Trainer;
class Cancellable;
class ComputePriority;
}  // namespace verdict

namespace verdict::server {

class JobManager : private JobRunner::Host {
 public:
  struct Dependencies {
    JobStore* store = nullptr;         // required
    EventHub* events = nullptr;        // required
    SpecResolvers resolvers;           // required
    Logger* logger = nullptr;          // optional
    ServerMetrics* metrics = nullptr;  // optional
    // Optional: training yields to scoring before each micro-batch
    // (ServerConfig::training_yield).
    ComputePriority* priority = nullptr;
  };

  // Recovers the store's unfinished jobs into the queue; runs none of them yet.
  static absl::StatusOr<std::unique_ptr<JobManager>> Create(const ServerConfig& config,
                                                            Dependencies dependencies);
  // Starts the `max_concurrent_jobs` workers (and the metric-series reaper). Called once the
  // server owns its port, so that a server that fails to start never runs a job. Call once,
  // from the thread that created the manager; later calls do nothing.
  void StartWorkers();
  // Drains (see Drain) and joins the workers.
  ~JobManager();

  // Validates and enqueues; with validate_only returns the normalized job without storing it.
  // A request_id seen before returns the job it created if the spec is equal, else
  // ALREADY_EXISTS. RESOURCE_EXHAUSTED when max_queued_jobs jobs are already queued.
  absl::StatusOr<v1::Job> Submit(const v1::SubmitTrainingJobRequest& request);

  // The same for an evaluation job (EvaluateModel): validates and pins the spec
  // (NormalizeEvaluationJobSpec) and enqueues a job whose evaluation_spec is set.
  absl::StatusOr<v1::Job> SubmitEvaluation(const v1::EvaluateModelRequest& request);

  // QUEUED -> CANCELLED at once; RUNNING -> CANCELLING, then CANCELLED once the trainer has
  // stopped after its current step. FAILED_PRECONDITION for a finished job. A job that finishes
  // training while the cancel arrives may still succeed (its model is complete).
  absl::StatusOr<v1::Job> Cancel(const std::string& job_id, const std::string& reason);

  absl::StatusOr<v1::Job> GetJob(const std::string& job_id);

  // Sets job.queue_position (how many queued jobs run before it; 0 unless QUEUED), which the
  // store does not keep. GetJob, Submit and Cancel return jobs with it set.
  void SetQueuePosition(v1::Job& job);

  // Stops starting jobs and interrupts the running ones, which write a checkpoint and return
  // to QUEUED. Returns when no job runs. Idempotent.
  void Drain();

  // Jobs waiting in the queue.
  int QueuedCount();

 private:
  struct QueueEntry {
    int32_t priority;
    int64_t order;  // submission order: earlier first within a priority
    std::string job_id;
    bool operator<(const QueueEntry& other) const;
  };
  // A job a worker has claimed.
  struct Running {
    Cancellable* trainer = nullptr;  // the trainer or evaluation, once built
    bool cancel_requested = false;
    bool interrupted_for_drain = false;
  };

  JobManager(const ServerConfig& config, Dependencies dependencies);
  absl::Status Recover();
  // Both submits' common part, from the request_id check on: `job` holds a normalized spec.
  absl::StatusOr<v1::Job> SubmitNormalized(const std::string& request_id, v1::Job job);
  // Submit's second half, once a queue place is reserved: stores the job and enqueues it.
  absl::StatusOr<v1::Job> StoreAndEnqueue(const std::string& request_id, v1::Job job);
  void WorkerLoop();
  void Enqueue(const v1::Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void SetQueuePositionLocked(v1::Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Sets the jobs-by-state gauge from the store (at start-up; ChangeState keeps it current).
  void CountJobsByState();
  void RemoveRunDirectory(const std::string& job_id);
  // Finishes what a crash around a job's completion left (see JobRunner::FinishSucceeded):
  // puts a RUNNING job's set-aside checkpoints back; removes the run directories of ended
  // jobs and, for a SUCCEEDED job whose history lacks it, records the SUCCEEDED state change.
  void SweepEndedRuns();

  // JobRunner::Host.
  absl::Status Emit(const std::string& job_id, v1::MetricsEvent event) override
      ABSL_LOCKS_EXCLUDED(mutex_, events_mutex_);
  absl::StatusOr<v1::Job> ChangeState(const std::string& job_id,
                                      const std::vector<v1::JobState>& from, v1::JobState to,
                                      const std::string& message, const JobEdit& edit) override
      ABSL_LOCKS_EXCLUDED(mutex_, events_mutex_);
  absl::Status TransitionRecorded(
      const std::string& job_id, const TransitionEvent& event,
      const std::function<absl::Status(const TransitionEvent&)>& transition) override
      ABSL_LOCKS_EXCLUDED(mutex_, events_mutex_);
  bool AttachTrainer(const std::string& job_id, Cancellable* trainer) override
      ABSL_LOCKS_EXCLUDED(mutex_);
  void DetachTrainer(const std::string& job_id) override ABSL_LOCKS_EXCLUDED(mutex_);
  bool InterruptedForDrain(const std::string& job_id) override ABSL_LOCKS_EXCLUDED(mutex_);
  void RetireJobSeries(const std::string& job_id) override ABSL_LOCKS_EXCLUDED(mutex_);
  // Removes retired per-job metric series once their retention has passed; ends on Drain.
  void ReapLoop() ABSL_LOCKS_EXCLUDED(mutex_);
  // The job's last event sequence, read from the store the first time.
  absl::StatusOr<int64_t*> LastSequenceLocked(const std::string& job_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(events_mutex_);

  const ServerConfig config_;
  Dependencies deps_;

  absl::Mutex mutex_;
  std::vector<QueueEntry> queue_ ABSL_GUARDED_BY(mutex_);  // a heap
  int64_t next_order_ ABSL_GUARDED_BY(mutex_) = 0;
  bool draining_ ABSL_GUARDED_BY(mutex_) = false;
  // Queue places held by submits between their limit check and their Enqueue.
  int reserved_places_ ABSL_GUARDED_BY(mutex_) = 0;
  std::map<std::string, Running> running_ ABSL_GUARDED_BY(mutex_);
  // Finished jobs' metric series by when to remove them; reaper_wake_ tells the reaper that
  // one was added.
  std::multimap<absl::Time, std::string> retired_series_ ABSL_GUARDED_BY(mutex_);
  bool reaper_wake_ ABSL_GUARDED_BY(mutex_) = false;

  // Serialises event numbering per job, and keeps publishing in sequence order.
  absl::Mutex events_mutex_;
  std::map<std::string, int64_t> last_sequence_ ABSL_GUARDED_BY(events_mutex_);

  std::vector<std::thread> workers_;
  std::thread reaper_;
};

}  // namespace verdict::server

#endif  // VERDICT_SERVER_JOB_MANAGER_H_
