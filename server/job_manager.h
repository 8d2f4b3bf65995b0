// JobManager: the training job queue and its workers.
//
// Submit() validates a spec (filling in every default), persists the job as QUEUED and
// returns at once; `max_concurrent_jobs` worker threads take jobs by priority, then
// submission order, and run the core Trainer. Every event a job produces (state changes, train
// steps, evaluations, log lines) is numbered, stored in the JobStore, then published to the
// EventHub for live watchers. A job that succeeds registers its model as a new version of
// its output name.
//
// Durability: every state change is stored before the call that caused it returns. On
// Create(), jobs left RUNNING or CANCELLING by a crash are re-queued (attempt + 1) and resume
// from their last checkpoint; their events after that checkpoint's step are removed, so the
// history has each step once. Drain() (SIGTERM) interrupts running jobs, which checkpoint and
// go back to QUEUED to resume at the next start.
//
// Thread safety: all public methods may be called from any thread.
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
#include "server/event_hub.h"
#include "server/job_store.h"
#include "server/server_config.h"
#include "server/spec_conversion.h"
#include "verdict/v1/training.pb.h"

namespace verdict {
class Logger;
class ServerMetrics;
class Trainer;
}  // namespace verdict

namespace verdict::server {

class JobManager {
 public:
  struct Dependencies {
    JobStore* store = nullptr;      // required
    EventHub* events = nullptr;     // required
    SpecResolvers resolvers;        // required
    Logger* logger = nullptr;       // optional
    ServerMetrics* metrics = nullptr;  // optional
    // Called after a trained model is registered (e.g. to refresh the serving registry).
    std::function<void(const v1::Model&)> on_model_registered;
  };

  static absl::StatusOr<std::unique_ptr<JobManager>> Create(const ServerConfig& config,
                                                            Dependencies dependencies);
  // Drains (see Drain) and joins the workers.
  ~JobManager();

  // Validates and enqueues; with validate_only returns the normalized job without storing it.
  // A request_id seen before returns the job it created if the spec is equal, else
  // ALREADY_EXISTS. RESOURCE_EXHAUSTED when max_queued_jobs jobs are already queued.
  absl::StatusOr<v1::Job> Submit(const v1::SubmitTrainingJobRequest& request);

  // QUEUED -> CANCELLED at once; RUNNING -> CANCELLING, then CANCELLED once the trainer has
  // stopped after its current step. FAILED_PRECONDITION for a finished job.
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

  JobManager(const ServerConfig& config, Dependencies dependencies);
  absl::Status Recover();
  void WorkerLoop();
  void RunJob(const std::string& job_id);
  absl::Status Enqueue(const v1::Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void SetQueuePositionLocked(v1::Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Stores the new state and emits its StateChange event.
  absl::Status ChangeState(v1::Job& job, v1::JobState to, const std::string& message);
  // Numbers, stores and publishes one event of `job`.
  absl::Status Emit(const std::string& job_id, v1::MetricsEvent event);
  absl::StatusOr<v1::Model> RegisterModel(const v1::Job& job, const std::string& output_dir,
                                          int64_t parameters, double reward_mean, double reward_std,
                                          int64_t eval_pairs);
  // Sets the jobs-by-state gauge from the store (at start-up; ChangeState keeps it current).
  void CountJobsByState();
  // Where a job's checkpoints live; removed once the job ends (the registered model is what
  // remains of it).
  std::string RunDirectory(const std::string& job_id) const;
  void RemoveRunDirectory(const std::string& job_id);

  const ServerConfig config_;
  Dependencies deps_;

  absl::Mutex mutex_;
  std::vector<QueueEntry> queue_ ABSL_GUARDED_BY(mutex_);  // a heap
  int64_t next_order_ ABSL_GUARDED_BY(mutex_) = 0;
  bool draining_ ABSL_GUARDED_BY(mutex_) = false;
  std::map<std::string, Trainer*> running_ ABSL_GUARDED_BY(mutex_);
  std::map<std::string, bool> interrupted_for_drain_ ABSL_GUARDED_BY(mutex_);

  // Serialises event numbering per job and job-message updates.
  absl::Mutex events_mutex_;
  std::map<std::string, int64_t> last_sequence_ ABSL_GUARDED_BY(events_mutex_);

  std::vector<std::thread> workers_;
};

}  // namespace verdict::server

#endif  // VERDICT_SERVER_JOB_MANAGER_H_
