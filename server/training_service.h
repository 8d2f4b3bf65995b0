// TrainingService: gRPC front of the JobManager (SubmitTrainingJob, EvaluateModel, GetJob,
// ListJobs, CancelJob) and the StreamMetrics stream, on the callback API. Handlers validate, hand work to
// the JobManager or the store, and return; StreamMetrics is a reactor that replays stored
// events and then follows the job live through the EventHub, never blocking training.
// Thread safety: gRPC calls the handlers from its own threads; the service holds no state of
// its own beyond pointers to thread-safe collaborators.
#ifndef VERDICT_SERVER_TRAINING_SERVICE_H_
#define VERDICT_SERVER_TRAINING_SERVICE_H_

#include "server/auth.h"
#include "server/event_hub.h"
#include "server/job_manager.h"
#include "server/job_store.h"
#include "verdict/v1/training.grpc.pb.h"

namespace verdict::server {

class TrainingService final : public v1::TrainingService::CallbackService {
 public:
  TrainingService(JobManager* jobs, JobStore* store, EventHub* events, const Authenticator* auth)
      : jobs_(jobs), store_(store), events_(events), auth_(auth) {}

  grpc::ServerUnaryReactor* SubmitTrainingJob(grpc::CallbackServerContext* context,
                                              const v1::SubmitTrainingJobRequest* request,
                                              v1::Job* response) override;
  grpc::ServerUnaryReactor* EvaluateModel(grpc::CallbackServerContext* context,
                                          const v1::EvaluateModelRequest* request,
                                          v1::Job* response) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* context,
                                   const v1::GetJobRequest* request, v1::Job* response) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* context,
                                     const v1::ListJobsRequest* request,
                                     v1::ListJobsResponse* response) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* context,
                                      const v1::CancelJobRequest* request,
                                      v1::Job* response) override;
  grpc::ServerWriteReactor<v1::MetricsEvent>* StreamMetrics(
      grpc::CallbackServerContext* context, const v1::StreamMetricsRequest* request) override;

 private:
  JobManager* const jobs_;
  JobStore* const store_;
  EventHub* const events_;
  const Authenticator* const auth_;
};

}  // namespace verdict::server

#endif  // VERDICT_SERVER_TRAINING_SERVICE_H_
