// SqliteJobStore: the JobStore kept in one SQLite database file (default
// ./verdict-data/verdict.db), the server's only persistent state besides the dataset and
// model files.
//
// Durability: WAL journal with synchronous=FULL, so a change is on disk before the call that
// made it returns; a crash or power loss loses no acknowledged job, event, dataset or model.
// Every change runs in one transaction (BEGIN IMMEDIATE, so its checks and writes cannot
// interleave with another writer's).
//
// Schema: versioned by PRAGMA user_version. Open() applies, in order and each in its own
// transaction, the migration steps the file has not had yet (all of them for a new or empty
// file), and refuses (FAILED_PRECONDITION) a file whose version is newer than this code's
// kSchemaVersion, written by a newer verdictd. Tables (version 1):
//   jobs(id PK, request_id UNIQUE, state, output_model_name, create_ns, last_sequence, job)
//   job_datasets(job_id, dataset_id)           dataset ids each job's spec names
//   events(job_id, sequence, step, kind, event) PK (job_id, sequence)
//   datasets(id PK, create_ns, dataset)
//   model_versions(name, version, model)        PK (name, version)
//   model_aliases(name, alias, version)         PK (name, alias)
// where job, event, dataset and model are the serialized verdict.v1 messages.
//
// Thread-safety: thread-safe. One SQLite connection, used under one mutex, so calls run one
// at a time; each is a few indexed statements and a commit. Only one process should open a
// file at a time (SQLite's locking keeps a second one consistent but it would wait on the
// busy timeout).
#ifndef VERDICT_SERVER_SQLITE_JOB_STORE_H_
#define VERDICT_SERVER_SQLITE_JOB_STORE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "server/job_store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace verdict::server {

class SqliteJobStore : public JobStore {
 public:
  // The schema version this code writes (the number of migration steps it knows).
  static const int kSchemaVersion;

  // Opens (creating it and its parent directory if missing) the database at `path` and
  // brings its schema up to kSchemaVersion. DATA_LOSS if the file is not a SQLite database;
  // FAILED_PRECONDITION if its schema is newer than kSchemaVersion.
  static absl::StatusOr<std::unique_ptr<SqliteJobStore>> Open(const std::string& path);

  ~SqliteJobStore() override;
  SqliteJobStore(const SqliteJobStore&) = delete;
  SqliteJobStore& operator=(const SqliteJobStore&) = delete;

  absl::Status CreateJob(const v1::Job& job) override;
  absl::StatusOr<v1::Job> GetJob(absl::string_view job_id) override;
  absl::StatusOr<v1::Job> FindJobByRequestId(absl::string_view request_id) override;
  absl::Status UpdateJob(const v1::Job& job) override;
  absl::StatusOr<v1::Job> TransitionJob(absl::string_view job_id,
                                        const std::vector<v1::JobState>& from, v1::JobState to,
                                        const JobEdit& edit, const TransitionEvent& event) override;
  absl::Status UpdateJobProgress(absl::string_view job_id,
                                 const v1::JobProgress& progress) override;
  absl::StatusOr<CompletedJob> CompleteJobWithModel(absl::string_view job_id,
                                                    const v1::Model& model,
                                                    const JobEdit& edit,
                                                    const TransitionEvent& event) override;
  absl::StatusOr<v1::Job> CompleteEvaluationJob(absl::string_view job_id,
                                                const v1::EvaluationResult& result,
                                                const JobEdit& edit,
                                                const TransitionEvent& event) override;
  absl::StatusOr<v1::EvaluationResult> FindEvaluation(absl::string_view name, int64_t version,
                                                      absl::string_view dataset_id) override;
  absl::StatusOr<Page<v1::Job>> ListJobs(const JobFilter& filter,
                                         const PageRequest& page) override;
  absl::StatusOr<std::vector<v1::Job>> ListJobsInStates(
      const std::vector<v1::JobState>& states) override;

  absl::Status AppendEvents(absl::string_view job_id,
                            const std::vector<v1::MetricsEvent>& events) override;
  absl::StatusOr<std::vector<v1::MetricsEvent>> ReadEvents(absl::string_view job_id,
                                                           int64_t after_sequence,
                                                           int64_t limit) override;
  absl::StatusOr<int64_t> LastSequence(absl::string_view job_id) override;
  absl::StatusOr<int64_t> SequenceBeforeStep(absl::string_view job_id, int64_t step) override;
  absl::StatusOr<DeletedEvents> DeleteEventsAfterStep(absl::string_view job_id,
                                                      int64_t step) override;

  absl::Status CreateDataset(const v1::Dataset& dataset) override;
  absl::StatusOr<v1::Dataset> GetDataset(absl::string_view dataset_id) override;
  absl::StatusOr<Page<v1::Dataset>> ListDatasets(const PageRequest& page) override;
  absl::Status DeleteDataset(absl::string_view dataset_id) override;

  absl::StatusOr<v1::Model> AddModelVersion(const v1::Model& model) override;
  absl::StatusOr<v1::Model> GetModelVersion(absl::string_view name, int64_t version) override;
  absl::StatusOr<v1::Model> GetModel(const v1::ModelRef& ref) override;
  absl::StatusOr<Page<v1::Model>> ListModels(absl::string_view name,
                                             const PageRequest& page) override;
  absl::StatusOr<v1::Model> SetAlias(absl::string_view name, absl::string_view alias,
                                     int64_t version) override;
  absl::StatusOr<v1::Model> DeleteAlias(absl::string_view name,
                                        absl::string_view alias) override;
  absl::StatusOr<int64_t> ResolveAlias(absl::string_view name,
                                       absl::string_view alias) override;
  absl::StatusOr<v1::Model> DeleteModelVersion(absl::string_view name, int64_t version) override;

  absl::Status Close() override;

 private:
  class Statement;
  class Transaction;

  SqliteJobStore(std::string path, sqlite3* db);

  // Runs PRAGMAs and migrations on a freshly opened connection.
  absl::Status Initialize() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Migrate() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs SQL text with no parameters and no result rows wanted.
  absl::Status Execute(absl::string_view sql, absl::string_view operation)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The cached prepared statement for `sql`, reset and ready to bind.
  absl::StatusOr<Statement> Prepare(const char* sql, absl::string_view operation)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckOpen() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // An error Status from SQLite's result `code` for `operation`.
  absl::Status SqliteError(int code, absl::string_view operation) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::StatusOr<v1::Job> GetJobLocked(absl::string_view job_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<int64_t> LastSequenceLocked(absl::string_view job_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes the job message and its indexed columns (state, output_model_name); the caller
  // holds a transaction and has checked that the job exists with the same identity.
  absl::Status WriteJobLocked(const v1::Job& job, absl::string_view operation)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // WriteJobLocked for a job whose state changed, then appends `event`'s event (if not null).
  absl::Status WriteTransitionedJobLocked(const v1::Job& job, const TransitionEvent& event,
                                          absl::string_view operation)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // AppendEvents' work inside the caller's transaction.
  absl::Status AppendEventsLocked(absl::string_view job_id,
                                  const std::vector<v1::MetricsEvent>& events,
                                  absl::string_view operation) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The stored job with its state checked against `from` and `edit` applied (state `to`).
  absl::StatusOr<v1::Job> TransitionedJobLocked(absl::string_view job_id,
                                                const std::vector<v1::JobState>& from,
                                                v1::JobState to, const JobEdit& edit)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Inserts `model` as the next version of its name; returns it with its version.
  absl::StatusOr<v1::Model> InsertModelVersionLocked(const v1::Model& model,
                                                     absl::string_view operation)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The highest version of `name`; NOT_FOUND if it has none.
  absl::StatusOr<int64_t> LatestVersionLocked(absl::string_view name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<int64_t> ResolveAliasLocked(absl::string_view name, absl::string_view alias)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<v1::Model> GetModelVersionLocked(absl::string_view name, int64_t version)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Fills model->aliases from the alias table, adding "latest" if `version` is `latest`, and
  // model->evaluations from the evaluation table.
  absl::Status AttachAliasesLocked(int64_t latest, v1::Model* model)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  mutable absl::Mutex mu_;
  sqlite3* db_ ABSL_GUARDED_BY(mu_);
  // Prepared statements by SQL text, finalized by Close().
  std::unordered_map<std::string, sqlite3_stmt*> statements_ ABSL_GUARDED_BY(mu_);
};

}  // namespace verdict::server

#endif  // VERDICT_SERVER_SQLITE_JOB_STORE_H_
