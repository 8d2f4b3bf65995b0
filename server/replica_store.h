// ReplicaModelStore: the JobStore of a scoring replica (verdictd --role=scoring), which keeps
// no store of its own. It holds, in memory, the model versions the replica has downloaded into
// its cache and the aliases it serves, as the ModelFollower (model_follower.h) mirrors them
// from the control plane; the ModelRegistry resolves ScoreBatch's references in it, exactly as
// it does in the SQLite store of a control plane. Everything else -- jobs, events, datasets,
// and changes to the registry through the API (ImportModel, SetModelAlias, ...) -- answers
// FAILED_PRECONDITION naming the role: those belong to the control plane.
//
// Thread safety: every method may be called from any thread.
#ifndef VERDICT_SERVER_REPLICA_STORE_H_
#define VERDICT_SERVER_REPLICA_STORE_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/job_store.h"

namespace verdict::server {

class ReplicaModelStore final : public JobStore {
 public:
  // `control_plane` names where the registry lives, for the errors.
  explicit ReplicaModelStore(std::string control_plane)
      : control_plane_(std::move(control_plane)) {}

  // ---- The follower's side ------------------------------------------------------------------
  // Adds (or replaces) a version, `model` as the control plane describes it with storage_path
  // set to the cached copy; its aliases are ignored (see SetServedAlias).
  void PutVersion(v1::Model model);
  // Forgets a version and every alias pointing at it.
  void RemoveVersion(const std::string& name, int64_t version);
  // Points `alias` (may be "latest": it then overrides the highest cached version) of `name`
  // at `version`, which must have been put. The move is atomic: a request resolves the old or
  // the new version, never neither.
  void SetServedAlias(const std::string& name, const std::string& alias, int64_t version);
  void RemoveServedAlias(const std::string& name, const std::string& alias);
  // The version `alias` of `name` points at here, 0 when unset.
  int64_t ServedVersion(const std::string& name, const std::string& alias);
  // Every version held, and the (name, version) pairs some alias points at.
  std::vector<std::pair<std::string, int64_t>> Versions();
  bool IsReferenced(const std::string& name, int64_t version);

  // ---- JobStore -----------------------------------------------------------------------------
  absl::Status CreateJob(const v1::Job&) override { return Refuse("jobs"); }
  absl::StatusOr<v1::Job> GetJob(absl::string_view) override { return Refuse("jobs"); }
  absl::StatusOr<v1::Job> FindJobByRequestId(absl::string_view) override { return Refuse("jobs"); }
  absl::Status UpdateJob(const v1::Job&) override { return Refuse("jobs"); }
  absl::StatusOr<v1::Job> TransitionJob(absl::string_view, const std::vector<v1::JobState>&,
                                        v1::JobState, const JobEdit&,
                                        const TransitionEvent&) override {
    return Refuse("jobs");
  }
  absl::Status UpdateJobProgress(absl::string_view, const v1::JobProgress&) override {
    return Refuse("jobs");
  }
  absl::StatusOr<CompletedJob> CompleteJobWithModel(absl::string_view, const v1::Model&,
                                                    const JobEdit&,
                                                    const TransitionEvent&) override {
    return Refuse("jobs");
  }
  absl::StatusOr<v1::Job> CompleteEvaluationJob(absl::string_view, const v1::EvaluationResult&,
                                                const JobEdit&,
                                                const TransitionEvent&) override {
    return Refuse("jobs");
  }
  absl::StatusOr<v1::EvaluationResult> FindEvaluation(absl::string_view, int64_t,
                                                      absl::string_view) override {
    return Refuse("evaluations");
  }
  absl::StatusOr<Page<v1::Job>> ListJobs(const JobFilter&, const PageRequest&) override {
    return Refuse("jobs");
  }
  absl::StatusOr<std::vector<v1::Job>> ListJobsInStates(
      const std::vector<v1::JobState>&) override {
    return Refuse("jobs");
  }
  absl::Status AppendEvents(absl::string_view, const std::vector<v1::MetricsEvent>&) override {
    return Refuse("jobs");
  }
  absl::StatusOr<std::vector<v1::MetricsEvent>> ReadEvents(absl::string_view, int64_t,
                                                           int64_t) override {
    return Refuse("jobs");
  }
  absl::StatusOr<int64_t> LastSequence(absl::string_view) override { return Refuse("jobs"); }
  absl::StatusOr<int64_t> SequenceBeforeStep(absl::string_view, int64_t) override {
    return Refuse("jobs");
  }
  absl::StatusOr<DeletedEvents> DeleteEventsAfterStep(absl::string_view, int64_t) override {
    return Refuse("jobs");
  }
  absl::Status CreateDataset(const v1::Dataset&) override { return Refuse("datasets"); }
  absl::StatusOr<v1::Dataset> GetDataset(absl::string_view) override { return Refuse("datasets"); }
  absl::StatusOr<Page<v1::Dataset>> ListDatasets(const PageRequest&) override {
    return Refuse("datasets");
  }
  absl::Status DeleteDataset(absl::string_view) override { return Refuse("datasets"); }

  absl::StatusOr<v1::Model> AddModelVersion(const v1::Model&) override {
    return Refuse("changes to the model registry");
  }
  absl::StatusOr<v1::Model> GetModelVersion(absl::string_view name, int64_t version) override;
  absl::StatusOr<v1::Model> GetModel(const v1::ModelRef& ref) override;
  absl::StatusOr<Page<v1::Model>> ListModels(absl::string_view name,
                                             const PageRequest& page) override;
  absl::StatusOr<v1::Model> SetAlias(absl::string_view, absl::string_view, int64_t) override {
    return Refuse("changes to the model registry");
  }
  absl::StatusOr<v1::Model> DeleteAlias(absl::string_view, absl::string_view) override {
    return Refuse("changes to the model registry");
  }
  absl::StatusOr<int64_t> ResolveAlias(absl::string_view name, absl::string_view alias) override;
  absl::StatusOr<v1::Model> DeleteModelVersion(absl::string_view, int64_t) override {
    return Refuse("changes to the model registry");
  }
  absl::Status Close() override { return absl::OkStatus(); }

 private:
  struct Name {
    std::map<int64_t, v1::Model> versions;
    std::map<std::string, int64_t> aliases;
  };
  absl::Status Refuse(absl::string_view what) const;
  // The version with its aliases filled in.
  v1::Model Describe(const Name& entry, const v1::Model& model) const;
  absl::StatusOr<int64_t> ResolveLocked(absl::string_view name, absl::string_view alias)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  const std::string control_plane_;
  absl::Mutex mutex_;
  std::map<std::string, Name, std::less<>> names_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace verdict::server

#endif  // VERDICT_SERVER_REPLICA_STORE_H_
