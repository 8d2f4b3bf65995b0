// ScoringService: ScoreBatch over gRPC. Authenticates the call and hands it to BatchScoring
// (batch_scoring.h), which validates, tokenizes and batches it; the batcher's thread finishes
// the RPC. Queue and compute times also go out as trailing metadata ("verdict-queue-time-us",
// "verdict-compute-time-us").
//
// Thread safety: as gRPC calls it; collaborators are thread-safe.
#ifndef VERDICT_SERVER_SCORING_SERVICE_H_
#define VERDICT_SERVER_SCORING_SERVICE_H_

#include "server/auth.h"
#include "server/batch_scoring.h"
#include "verdict/v1/scoring.grpc.pb.h"

namespace verdict::server {

class ScoringService final : public v1::ScoringService::CallbackService {
 public:
  ScoringService(const BatchScoring* scoring, const Authenticator* auth)
      : scoring_(scoring), auth_(auth) {}

  grpc::ServerUnaryReactor* ScoreBatch(grpc::CallbackServerContext* context,
                                       const v1::ScoreBatchRequest* request,
                                       v1::ScoreBatchResponse* response) override;

 private:
  const BatchScoring* const scoring_;
  const Authenticator* const auth_;
};

}  // namespace verdict::server

#endif  // VERDICT_SERVER_SCORING_SERVICE_H_
