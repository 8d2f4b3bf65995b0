// JobStore: the server's persistent state -- training jobs, their metrics event logs, uploaded
// datasets and the model registry (versions and aliases) -- behind one interface, so that the
// services, the job queue and the workers share one durable source of truth and tests can
// build any of them on a real store in a scratch directory.
//
// The store keeps the verdict.v1 messages themselves (Job, MetricsEvent, Dataset, Model); it
// indexes the few fields it queries by and treats the rest as opaque. It validates only what
// its own invariants need (ids present, sequence numbers increasing, versions assigned once);
// request validation (names, ranges, paths) is the services' job.
//
// Thread-safety: every method may be called from any thread at any time; each call is atomic
// (it sees and leaves a consistent store) and, once it returns OK, durable.
//
// Errors: NOT_FOUND names the missing job, dataset, model, version or alias; ALREADY_EXISTS
// names the conflicting id or request_id; INVALID_ARGUMENT for a malformed argument or page
// token; FAILED_PRECONDITION after Close() and for a state that forbids the change.
//
// Example:
//   ASSIGN_OR_RETURN(std::unique_ptr<JobStore> store, SqliteJobStore::Open("verdict.db"));
//   absl::Status created = store->CreateJob(job);
//   if (absl::IsAlreadyExists(created) && !job.request_id().empty()) {
//     ASSIGN_OR_RETURN(v1::Job existing, store->FindJobByRequestId(job.request_id()));
//     ...  // compare specs: a retry gets `existing`, a different spec is ALREADY_EXISTS
//   }
#ifndef VERDICT_SERVER_JOB_STORE_H_
#define VERDICT_SERVER_JOB_STORE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "verdict/v1/datasets.pb.h"
#include "verdict/v1/models.pb.h"
#include "verdict/v1/training.pb.h"

namespace verdict::server {

// Pagination as common.proto defines it: page_size 0 means kDefaultPageSize, above
// kMaxPageSize means kMaxPageSize, negative is INVALID_ARGUMENT; page_token is empty for the
// first page, else a next_page_token returned by the same List call with the same filter.
struct PageRequest {
  static constexpr int32_t kDefaultPageSize = 50;
  static constexpr int32_t kMaxPageSize = 1000;

  int32_t page_size = 0;
  std::string page_token;
};

// One page of a listing; next_page_token is empty on the last page.
template <typename T>
struct Page {
  std::vector<T> items;
  std::string next_page_token;
};

// Which jobs ListJobs returns (ListJobsRequest's filters).
struct JobFilter {
  // Only jobs in one of these states; empty means every state.
  std::vector<v1::JobState> states;
  // Only jobs whose spec.output_model_name is this; empty means any.
  std::string output_model_name;
};

// Changes TransitionJob and CompleteJobWithModel make to a job besides its state (end time,
// error, attempt, progress). It is applied to the stored job before the new state is set, and
// must not change id, request_id, create_time or state.
using JobEdit = std::function<void(v1::Job&)>;

// The StateChange event a state change records (TransitionJob and the completions take one,
// or null): called inside the transaction with the job as it will be stored, it returns the
// event, numbered by the caller as the job's next (see AppendEvents), and the store appends it
// in the same transaction -- so a reader never sees the new state without its event, nor the
// event without the state.
using TransitionEvent = std::function<v1::MetricsEvent(const v1::Job& stored)>;

// What CompleteJobWithModel did: the job as stored (SUCCEEDED, result_model set) and the
// version registered for it.
struct CompletedJob {
  v1::Job job;
  v1::Model model;
  v1::JobState from_state = v1::JOB_STATE_UNSPECIFIED;  // RUNNING or CANCELLING
};

// What DeleteEventsAfterStep did.
struct DeletedEvents {
  // How many train and eval events it removed.
  int64_t deleted = 0;
  // The job's last sequence number, unchanged (see DeleteEventsAfterStep): the resumed run's
  // next event is last_sequence + 1.
  int64_t last_sequence = 0;
};

class JobStore {
 public:
  virtual ~JobStore() = default;

  // ---- Jobs ---------------------------------------------------------------------------------
  //
  // A stored Job is the message as last written, except for `last_sequence`, which the store
  // owns: every Job it returns carries the job's current last sequence number (see
  // LastSequence), whatever the written message said. id, request_id and create_time are
  // fixed at creation; the datasets the spec names (train_data and eval.dataset by
  // dataset_id) are recorded then too, so DeleteDataset can refuse to delete one a live job
  // reads.

  // Persists a new job. INVALID_ARGUMENT if job.id is empty; ALREADY_EXISTS if the id is
  // taken or if job.request_id is non-empty and another job already has it (the message
  // names that job; fetch it with FindJobByRequestId); NOT_FOUND if the spec names a dataset
  // id that does not exist. The check and the insert are one atomic step, so of two
  // concurrent submits with one request_id exactly one succeeds.
  virtual absl::Status CreateJob(const v1::Job& job) = 0;

  // The job with this id; NOT_FOUND names the id.
  virtual absl::StatusOr<v1::Job> GetJob(absl::string_view job_id) = 0;

  // The job created with this non-empty request_id; NOT_FOUND if none.
  virtual absl::StatusOr<v1::Job> FindJobByRequestId(absl::string_view request_id) = 0;

  // Replaces the stored job with `job` (same id). NOT_FOUND if absent; INVALID_ARGUMENT if
  // request_id or create_time differ from the stored ones. A blind write: whatever changed
  // since `job` was read is lost. The job manager never uses it (it would undo a concurrent
  // cancel); it changes jobs only with TransitionJob, UpdateJobProgress and
  // CompleteJobWithModel.
  virtual absl::Status UpdateJob(const v1::Job& job) = 0;

  // Compare-and-set state change, in one transaction: if the stored job's state is one of
  // `from`, applies `edit` (may be null; it sees the stored job, old state included), sets the
  // state to `to`, writes the job and appends `event`'s event (may be null); returns the job as
  // stored. FAILED_PRECONDITION naming the job's actual state when it is in
  // none of `from` (nothing is written); INVALID_ARGUMENT if `edit` changes id, request_id,
  // create_time or state; NOT_FOUND for an unknown job.
  virtual absl::StatusOr<v1::Job> TransitionJob(absl::string_view job_id,
                                                const std::vector<v1::JobState>& from,
                                                v1::JobState to, const JobEdit& edit,
                                                const TransitionEvent& event) = 0;

  // Replaces the job's progress and nothing else (never its state), so a progress save cannot
  // undo a concurrent state change. FAILED_PRECONDITION once the job is SUCCEEDED, FAILED or
  // CANCELLED (its progress is final); NOT_FOUND for an unknown job.
  virtual absl::Status UpdateJobProgress(absl::string_view job_id,
                                         const v1::JobProgress& progress) = 0;

  // Exactly-once completion of a training job, in one transaction: registers `model` (version
  // 0, as AddModelVersion; training_job_id must be `job_id`) as the next version of its name --
  // or reuses the version already registered with this training_job_id, if any -- and moves the
  // job from RUNNING or CANCELLING (the run finished before the cancel took effect) to
  // SUCCEEDED with result_model naming that version, then applies `edit` and appends `event`'s
  // event (may be null). Either all of this happens or none of it. FAILED_PRECONDITION naming the state if the job is in another state;
  // INVALID_ARGUMENT for a bad model or edit; NOT_FOUND for an unknown job.
  virtual absl::StatusOr<CompletedJob> CompleteJobWithModel(absl::string_view job_id,
                                                            const v1::Model& model,
                                                            const JobEdit& edit,
                                                            const TransitionEvent& event) = 0;

  // Exactly-once completion of an evaluation job (EvaluateModel), in one transaction: moves
  // the job from RUNNING or CANCELLING to SUCCEEDED with evaluation_result set to `result`,
  // applies `edit`, appends `event`'s event (may be null), and records `result` with the model version it names (Model.evaluations,
  // FindEvaluation). FAILED_PRECONDITION naming the state if the job is in another state;
  // INVALID_ARGUMENT if result.job_id is not `job_id`; NOT_FOUND for an unknown job or model
  // version.
  virtual absl::StatusOr<v1::Job> CompleteEvaluationJob(absl::string_view job_id,
                                                        const v1::EvaluationResult& result,
                                                        const JobEdit& edit,
                                                        const TransitionEvent& event) = 0;

  // The newest recorded evaluation of `name` version `version` on the uploaded dataset
  // `dataset_id`; NOT_FOUND when there is none.
  virtual absl::StatusOr<v1::EvaluationResult> FindEvaluation(absl::string_view name,
                                                              int64_t version,
                                                              absl::string_view dataset_id) = 0;

  // Jobs matching `filter`, newest first (create_time, then id, descending).
  virtual absl::StatusOr<Page<v1::Job>> ListJobs(const JobFilter& filter,
                                                 const PageRequest& page) = 0;

  // Every job in one of `states` (empty means every state), oldest first: the server's
  // start-up scan that resumes RUNNING jobs and re-queues QUEUED ones in submission order.
  virtual absl::StatusOr<std::vector<v1::Job>> ListJobsInStates(
      const std::vector<v1::JobState>& states) = 0;

  // ---- Metrics events -----------------------------------------------------------------------
  //
  // Each job has an append-only log of MetricsEvents keyed by sequence number. The caller
  // numbers them (it fans them out to live watchers before or while storing them); the store
  // keeps the job's last sequence number, the highest ever appended, and refuses any number
  // not above it. Numbers are never reused, even after DeleteEventsAfterStep removes events:
  // a watcher that saw a removed event and reconnects with after_sequence set to its number
  // must still receive everything appended since.

  // Appends `events` to the job's log in one transaction (all or none). Each event's sequence
  // must be >= 1 and above the previous one (the job's last sequence for the first):
  // ALREADY_EXISTS for a number the job has already used, INVALID_ARGUMENT for a batch out of
  // order. An event's job_id must be empty or `job_id` (it is stored as `job_id`). NOT_FOUND
  // for an unknown job.
  virtual absl::Status AppendEvents(absl::string_view job_id,
                                    const std::vector<v1::MetricsEvent>& events) = 0;

  // The job's stored events with sequence > after_sequence, in sequence order, at most
  // `limit` of them (0 means all; negative is INVALID_ARGUMENT). NOT_FOUND for an unknown job.
  virtual absl::StatusOr<std::vector<v1::MetricsEvent>> ReadEvents(absl::string_view job_id,
                                                                   int64_t after_sequence,
                                                                   int64_t limit) = 0;

  // The highest sequence number the job has used, 0 before its first event; the next event
  // is LastSequence + 1. NOT_FOUND for an unknown job.
  virtual absl::StatusOr<int64_t> LastSequence(absl::string_view job_id) = 0;

  // Where a replay "from step `step`" starts (StreamMetricsRequest.from_step): the
  // after_sequence that makes ReadEvents begin at the first stored event whose step is
  // >= `step`, or LastSequence if there is none yet (follow live from now).
  virtual absl::StatusOr<int64_t> SequenceBeforeStep(absl::string_view job_id,
                                                     int64_t step) = 0;

  // For a job resuming from a checkpoint taken at `step`: removes its train and eval events
  // with step > `step`, which the resumed run will produce again, so a replay shows each step
  // once. StateChange and LogLine events are kept (they record what happened, e.g. the
  // interruption). The last sequence number does not go back: the resumed run continues at
  // LastSequence + 1, and the log has gaps where the removed events were (the one exception
  // to the "no gaps" of MetricsEvent.sequence; replays and after_sequence are unaffected).
  virtual absl::StatusOr<DeletedEvents> DeleteEventsAfterStep(absl::string_view job_id,
                                                              int64_t step) = 0;

  // ---- Datasets -----------------------------------------------------------------------------
  //
  // Metadata only; the server owns the files.

  // INVALID_ARGUMENT if dataset.id is empty; ALREADY_EXISTS if it is taken.
  virtual absl::Status CreateDataset(const v1::Dataset& dataset) = 0;

  // NOT_FOUND names the id.
  virtual absl::StatusOr<v1::Dataset> GetDataset(absl::string_view dataset_id) = 0;

  // Newest first (create_time, then id, descending).
  virtual absl::StatusOr<Page<v1::Dataset>> ListDatasets(const PageRequest& page) = 0;

  // NOT_FOUND names the id; FAILED_PRECONDITION naming the job while a QUEUED, RUNNING or
  // CANCELLING job's spec names the dataset.
  virtual absl::Status DeleteDataset(absl::string_view dataset_id) = 0;

  // ---- Model registry -----------------------------------------------------------------------
  //
  // Every Model returned carries its aliases, sorted, "latest" included on the highest
  // version, and its evaluations (the newest per dataset, newest first; written only by
  // CompleteEvaluationJob). The store never keeps `aliases`, `loaded` or `device` from a written message:
  // aliases live in their own table and loaded/device are the server's runtime state (always
  // false/empty here). Versions are deleted only by DeleteModelVersion. "latest" is reserved: it always means the
  // highest version and cannot be set or deleted.

  // Registers `model` (version 0: the store assigns it) as the next version of model.name(),
  // 1 for a new name, atomically. Returns the stored version. INVALID_ARGUMENT for an empty
  // name or a non-zero version.
  virtual absl::StatusOr<v1::Model> AddModelVersion(const v1::Model& model) = 0;

  // NOT_FOUND names the model (and the version when the model exists).
  virtual absl::StatusOr<v1::Model> GetModelVersion(absl::string_view name, int64_t version) = 0;

  // The version `ref` names: its version, its alias ("latest" included) or, with neither
  // set, the highest version. NOT_FOUND as GetModelVersion and ResolveAlias.
  virtual absl::StatusOr<v1::Model> GetModel(const v1::ModelRef& ref) = 0;

  // Versions of `name` (empty: of every model), by name, then newest version first.
  virtual absl::StatusOr<Page<v1::Model>> ListModels(absl::string_view name,
                                                     const PageRequest& page) = 0;

  // Points `alias` of `name` at `version`, moving it if it pointed elsewhere. Returns that
  // version. NOT_FOUND for an unknown name or version; INVALID_ARGUMENT for "latest" or an
  // empty alias.
  virtual absl::StatusOr<v1::Model> SetAlias(absl::string_view name, absl::string_view alias,
                                             int64_t version) = 0;

  // Removes `alias` of `name`. Returns the version it pointed at. NOT_FOUND if it is not set;
  // INVALID_ARGUMENT for "latest".
  virtual absl::StatusOr<v1::Model> DeleteAlias(absl::string_view name,
                                                absl::string_view alias) = 0;

  // The version `alias` of `name` points at; "latest" is the highest version. NOT_FOUND for
  // an unknown name or an unset alias.
  virtual absl::StatusOr<int64_t> ResolveAlias(absl::string_view name,
                                               absl::string_view alias) = 0;
  // Removes version `version` of `name` with its evaluations. Returns it as it was.
  // FAILED_PRECONDITION naming the alias while one points at it -- "latest" included, so the
  // highest version stays and version numbers are never reused; NOT_FOUND as GetModelVersion.
  virtual absl::StatusOr<v1::Model> DeleteModelVersion(absl::string_view name,
                                                       int64_t version) = 0;

  // ---- Lifetime -----------------------------------------------------------------------------

  // Releases the store's resources. Later calls fail with FAILED_PRECONDITION, except Close,
  // which does nothing. The destructor closes a store that is still open.
  virtual absl::Status Close() = 0;
};

}  // namespace verdict::server

#endif  // VERDICT_SERVER_JOB_STORE_H_
