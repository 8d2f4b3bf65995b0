// ForwardingJobStore: a JobStore that passes every call to a real one (a SqliteJobStore in a
// scratch directory), for tests that need a seam in one call -- to hold a progress save while
// a cancel lands, to make a state change fail, or to make a store read slow -- and leave the
// rest of the store real. Subclasses override the calls they instrument.
//
// Thread safety: as the wrapped store's.
#ifndef VERDICT_TESTS_SERVER_FORWARDING_JOB_STORE_H_
#define VERDICT_TESTS_SERVER_FORWARDING_JOB_STORE_H_

#include <cstdint>
#include <vector>

#include "server/job_store.h"

namespace verdict::testing {

class ForwardingJobStore : public server::JobStore {
 public:
  explicit ForwardingJobStore(server::JobStore* store) : store_(store) {}

  absl::Status CreateJob(const v1::Job& job) override { return store_->CreateJob(job); }
  absl::StatusOr<v1::Job> GetJob(absl::string_view job_id) override {
    return store_->GetJob(job_id);
  }
  absl::StatusOr<v1::Job> FindJobByRequestId(absl::string_view request_id) override {
    return store_->FindJobByRequestId(request_id);
  }
  absl::Status UpdateJob(const v1::Job& job) override { return store_->UpdateJob(job); }
  absl::StatusOr<v1::Job> TransitionJob(absl::string_view job_id,
                                        const std::vector<v1::JobState>& from, v1::JobState to,
                                        const server::JobEdit& edit,
                                        const server::TransitionEvent& event) override {
    return store_->TransitionJob(job_id, from, to, edit, event);
  }
  absl::Status UpdateJobProgress(absl::string_view job_id,
                                 const v1::JobProgress& progress) override {
    return store_->UpdateJobProgress(job_id, progress);
  }
  absl::StatusOr<server::CompletedJob> CompleteJobWithModel(absl::string_view job_id,
                                                            const v1::Model& model,
                                                            const server::JobEdit& edit,
                                                            const server::TransitionEvent& event) override {
    return store_->CompleteJobWithModel(job_id, model, edit, event);
  }
  absl::StatusOr<v1::Job> CompleteEvaluationJob(absl::string_view job_id,
                                                const v1::EvaluationResult& result,
                                                const server::JobEdit& edit,
                                                const server::TransitionEvent& event) override {
    return store_->CompleteEvaluationJob(job_id, result, edit, event);
  }
  absl::StatusOr<v1::EvaluationResult> FindEvaluation(absl::string_view name, int64_t version,
                                                      absl::string_view dataset_id) override {
    return store_->FindEvaluation(name, version, dataset_id);
  }
  absl::StatusOr<server::Page<v1::Job>> ListJobs(const server::JobFilter& filter,
                                                 const server::PageRequest& page) override {
    return store_->ListJobs(filter, page);
  }
  absl::StatusOr<std::vector<v1::Job>> ListJobsInStates(
      const std::vector<v1::JobState>& states) override {
    return store_->ListJobsInStates(states);
  }
  absl::Status AppendEvents(absl::string_view job_id,
                            const std::vector<v1::MetricsEvent>& events) override {
    return store_->AppendEvents(job_id, events);
  }
  absl::StatusOr<std::vector<v1::MetricsEvent>> ReadEvents(absl::string_view job_id,
                                                           int64_t after_sequence,
                                                           int64_t limit) override {
    return store_->ReadEvents(job_id, after_sequence, limit);
  }
  absl::StatusOr<int64_t> LastSequence(absl::string_view job_id) override {
    return store_->LastSequence(job_id);
  }
  absl::StatusOr<int64_t> SequenceBeforeStep(absl::string_view job_id, int64_t step) override {
    return store_->SequenceBeforeStep(job_id, step);
  }
  absl::StatusOr<server::DeletedEvents> DeleteEventsAfterStep(absl::string_view job_id,
                                                              int64_t step) override {
    return store_->DeleteEventsAfterStep(job_id, step);
  }
  absl::Status CreateDataset(const v1::Dataset& dataset) override {
    return store_->CreateDataset(dataset);
  }
  absl::StatusOr<v1::Dataset> GetDataset(absl::string_view dataset_id) override {
    return store_->GetDataset(dataset_id);
  }
  absl::StatusOr<server::Page<v1::Dataset>> ListDatasets(const server::PageRequest& page) override {
    return store_->ListDatasets(page);
  }
  absl::Status DeleteDataset(absl::string_view dataset_id) override {
    return store_->DeleteDataset(dataset_id);
  }
  absl::StatusOr<v1::Model> AddModelVersion(const v1::Model& model) override {
    return store_->AddModelVersion(model);
  }
  absl::StatusOr<v1::Model> GetModelVersion(absl::string_view name, int64_t version) override {
    return store_->GetModelVersion(name, version);
  }
  absl::StatusOr<v1::Model> GetModel(const v1::ModelRef& ref) override {
    return store_->GetModel(ref);
  }
  absl::StatusOr<server::Page<v1::Model>> ListModels(absl::string_view name,
                                                     const server::PageRequest& page) override {
    return store_->ListModels(name, page);
  }
  absl::StatusOr<v1::Model> SetAlias(absl::string_view name, absl::string_view alias,
                                     int64_t version) override {
    return store_->SetAlias(name, alias, version);
  }
  absl::StatusOr<v1::Model> DeleteAlias(absl::string_view name, absl::string_view alias) override {
    return store_->DeleteAlias(name, alias);
  }
  absl::StatusOr<int64_t> ResolveAlias(absl::string_view name, absl::string_view alias) override {
    return store_->ResolveAlias(name, alias);
  }
  absl::StatusOr<v1::Model> DeleteModelVersion(absl::string_view name,
                                               int64_t version) override {
    return store_->DeleteModelVersion(name, version);
  }
  absl::Status Close() override { return store_->Close(); }

 private:
  server::JobStore* const store_;
};

}  // namespace verdict::testing

#endif  // VERDICT_TESTS_SERVER_FORWARDING_JOB_STORE_H_
