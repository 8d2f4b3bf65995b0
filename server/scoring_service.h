// ScoringService: ScoreBatch. The handler validates the request and asks the registry for the
// model version (ModelRegistry::AcquireAsync); the rest runs when the version is there: at
// once on gRPC's thread when it is loaded, else on the registry's loader thread when its load
// is done, so no gRPC thread ever waits for a load. It tokenizes the items exactly as training
// did and hands them to that version's DynamicBatcher with a completion callback; the
// batcher's thread finishes the RPC. Queue and compute times also go out as trailing metadata
// ("verdict-queue-time-us", "verdict-compute-time-us").
//
// Every request refused here is counted in verdict_scoring_rejected_total (reasons
// unauthenticated, invalid, model_not_found, load_failed, shutting_down), as the batcher
// counts its own (queue_full, deadline_exceeded, cancelled, forward_failed, ...).
// Thread safety: as gRPC calls it; collaborators are thread-safe.
#ifndef VERDICT_SERVER_SCORING_SERVICE_H_
#define VERDICT_SERVER_SCORING_SERVICE_H_

#include "server/auth.h"
#include "server/model_registry.h"
#include "server/server_config.h"
#include "server/server_metrics.h"
#include "verdict/v1/scoring.grpc.pb.h"

namespace verdict::server {

class ScoringService final : public v1::ScoringService::CallbackService {
 public:
  ScoringService(const ServerConfig& config, ModelRegistry* registry, const Authenticator* auth)
      : config_(config), registry_(registry), auth_(auth), metrics_(registry->metrics()) {}

  grpc::ServerUnaryReactor* ScoreBatch(grpc::CallbackServerContext* context,
                                       const v1::ScoreBatchRequest* request,
                                       v1::ScoreBatchResponse* response) override;

 private:
  // The half after the version is known (or is known not to be had).
  void Continue(grpc::CallbackServerContext* context, const v1::ScoreBatchRequest* request,
                v1::ScoreBatchResponse* response, grpc::ServerUnaryReactor* reactor,
                absl::Time arrival, absl::StatusOr<std::shared_ptr<LoadedModel>> acquired) const;
  void CountRefusal(const std::string& model, const std::string& version,
                    ScoringRejection reason) const;

  const ServerConfig config_;
  ModelRegistry* const registry_;
  const Authenticator* const auth_;
  ServerMetrics* const metrics_;  // null without metrics
};

}  // namespace verdict::server

#endif  // VERDICT_SERVER_SCORING_SERVICE_H_
