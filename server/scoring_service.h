// ScoringService: ScoreBatch. The handler validates the request, resolves the model version
// once (loading it on first use), tokenizes the items exactly as training did, and hands them
// to that version's DynamicBatcher with a completion callback; the batcher's thread finishes
// the RPC. Queue and compute times also go out as trailing metadata
// ("verdict-queue-time-us", "verdict-compute-time-us").
// Thread safety: as gRPC calls it; collaborators are thread-safe.
#ifndef VERDICT_SERVER_SCORING_SERVICE_H_
#define VERDICT_SERVER_SCORING_SERVICE_H_

#include "server/auth.h"
#include "server/model_registry.h"
#include "server/server_config.h"
#include "verdict/v1/scoring.grpc.pb.h"

namespace verdict::server {

class ScoringService final : public v1::ScoringService::CallbackService {
 public:
  ScoringService(const ServerConfig& config, ModelRegistry* registry, const Authenticator* auth)
      : config_(config), registry_(registry), auth_(auth) {}

  grpc::ServerUnaryReactor* ScoreBatch(grpc::CallbackServerContext* context,
                                       const v1::ScoreBatchRequest* request,
                                       v1::ScoreBatchResponse* response) override;

 private:
  const ServerConfig config_;
  ModelRegistry* const registry_;
  const Authenticator* const auth_;
};

}  // namespace verdict::server

#endif  // VERDICT_SERVER_SCORING_SERVICE_H_
