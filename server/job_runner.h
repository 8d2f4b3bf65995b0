// JobRunner: one attempt at one training or evaluation job, run on a JobManager worker thread.
//
// Run() moves the job QUEUED -> RUNNING (compare-and-set, so a cancel that won the race keeps
// the job from starting), builds the trainer's configuration from the spec, runs the core
// Trainer (in this process, or with spec.world_size > 1 as verdict-train rank processes whose
// rank 0 streams the same callbacks: rank_group.h) and turns its callbacks into stored progress (UpdateJobProgress: never the state),
// numbered events and metrics, then finishes the job: SUCCEEDED together with its registered
// model version in one store transaction (CompleteJobWithModel), CANCELLED, FAILED, or back to
// QUEUED when the server drains. A crash at any point of the completion leaves the job
// SUCCEEDED once with one version whose directory is written once, and no event twice (see
// FinishSucceeded; the crash-window tests are in tests/server/restart_integration_test.cc).
// The manager keeps the queue, the workers, Cancel and Drain; it
// reaches the runner's trainer only through JobRunner::Host.
//
// Failures to store are never dropped: a state change that fails is logged and, where the job
// can still be finished, the job is failed instead; a job left RUNNING or CANCELLING by a store
// that refused every write is settled by JobManager's recovery at the next start (resumed from
// its checkpoint, or cancelled). A progress save or an event that fails is logged and skipped:
// the next one carries the same information.
//
// Thread safety: a JobRunner is used by one thread (its worker); the trainer callbacks run on
// that thread too. The Host methods are the only things it shares.
#ifndef VERDICT_SERVER_JOB_RUNNER_H_
#define VERDICT_SERVER_JOB_RUNNER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
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

class JobRunner {
 public:
  // What a runner needs from the JobManager that owns it. Called from the runner's thread.
  class Host {
   public:
    virtual ~Host() = default;
    // Numbers, stores and publishes one event of `job_id`.
    virtual absl::Status Emit(const std::string& job_id, v1::MetricsEvent event) = 0;
    // A compare-and-set state change (JobStore::TransitionJob) that also moves the
    // jobs-by-state gauge and emits the StateChange event. Returns the stored job.
    virtual absl::StatusOr<v1::Job> ChangeState(const std::string& job_id,
                                                const std::vector<v1::JobState>& from,
                                                v1::JobState to, const std::string& message,
                                                const JobEdit& edit) = 0;
    // Runs `transition` -- one store call that changes the job's state -- handing it the
    // StateChange event to record in the same transaction: `event`'s event, numbered as the
    // job's next. Once `transition` succeeds, live watchers get the event.
    virtual absl::Status TransitionRecorded(
        const std::string& job_id, const TransitionEvent& event,
        const std::function<absl::Status(const TransitionEvent&)>& transition) = 0;
    // Makes `trainer` reachable by Cancel and Drain until DetachTrainer. Returns true if a
    // cancel or drain came while the job was being prepared (the runner then cancels it).
    virtual bool AttachTrainer(const std::string& job_id, Cancellable* trainer) = 0;
    virtual void DetachTrainer(const std::string& job_id) = 0;
    // Whether Drain (server shutdown), not a user's cancel, interrupted the job.
    virtual bool InterruptedForDrain(const std::string& job_id) = 0;
    // The attempt has ended: drop the job's per-job metric series once they have been scraped
    // (ServerConfig::job_series_retention).
    virtual void RetireJobSeries(const std::string& job_id) = 0;
  };

  struct Dependencies {
    const ServerConfig* config = nullptr;      // required
    JobStore* store = nullptr;                 // required
    const SpecResolvers* resolvers = nullptr;  // required
    Host* host = nullptr;                      // required
    Logger* logger = nullptr;                  // optional
    ServerMetrics* metrics = nullptr;          // optional
    ComputePriority* priority = nullptr;       // optional: training yields to scoring
  };

  JobRunner(Dependencies dependencies, std::string job_id);

  // Runs the attempt to its end (see above). Returns nothing: every outcome is in the store.
  void Run();

  // What every change to a job that is no longer running also does: no phase, no time-left
  // estimate, and an end time once terminal. Shared with the manager's Cancel and recovery.
  static void ApplyStateRules(v1::JobState to, v1::Job& job);

  // Where a job's checkpoints live; removed once the job ends.
  static std::string RunDirectory(const ServerConfig& config, const std::string& job_id);
  // Where they wait, set aside from RunDirectory, while a finished job is being completed:
  // removed once it is SUCCEEDED and its history says so; JobManager::Recover finishes that,
  // or puts them back if the completion did not commit.
  static std::string CompletingDirectory(const ServerConfig& config, const std::string& job_id);

 private:
  // QUEUED -> RUNNING; false if the job must not run (cancelled while queued, or failed).
  bool Start();
  // Trains, in this process or (spec.world_size > 1) in a group of verdict-train processes
  // (rank_group.h); the outcome goes to Finish*. True when the attempt failed because a rank
  // died and the job went back to QUEUED to resume from its checkpoint (RequeueAfterRankFailure).
  bool Train();
  // RUNNING -> QUEUED after a rank died (`error`); false if the job was settled otherwise (a
  // cancel that came meanwhile wins).
  bool RequeueAfterRankFailure(const absl::Status& error);
  // Runs an evaluation job (evaluation_spec set): scores its pairs with the trainer's
  // evaluation code (core/train/pair_evaluation.h) and completes the job with its result
  // (JobStore::CompleteEvaluationJob), or cancels, re-queues or fails it as Train does.
  void Evaluate();
  absl::StatusOr<v1::EvaluationResult> RunEvaluation(Cancellable& cancel);
  void FinishSucceeded(const std::string& output_dir, int64_t parameters, double reward_mean,
                       double reward_std, int64_t eval_pairs);
  void FinishInterrupted(const absl::Status& cancelled);
  // Moves the job (from RUNNING or CANCELLING, or from QUEUED before it started) to FAILED.
  void Fail(const absl::Status& error);
  // Stores the progress (never the state); a failure is logged, the next save repeats it.
  void SaveProgress();
  void EmitOrLog(v1::MetricsEvent event);
  // Observes the job's duration if it reached terminal `state` (UNSPECIFIED: it did not) after
  // it started, and drops its per-job series.
  void RecordEnd(v1::JobState state);
  void RemoveRunDirectory();
  void LogStoreFailure(const char* what, const absl::Status& status);

  const Dependencies deps_;
  const std::string job_id_;
  // The job as this runner last stored or read it; its state is not authoritative (the store's
  // is), only its progress is this runner's to write.
  v1::Job job_;
  bool started_ = false;  // moved to RUNNING by this runner
};

}  // namespace verdict::server

#endif  // VERDICT_SERVER_JOB_RUNNER_H_
