// BatchScoring: one ScoreBatch request, whichever transport carried it (gRPC's ScoringService,
// the HTTP endpoints in http_scoring.h). It validates the request, asks the registry for the
// model version (ModelRegistry::AcquireAsync), tokenizes the items exactly as training did and
// hands them to that version's DynamicBatcher; `done` runs when the scores are back.
//
// No caller thread waits for a model load: the rest of Score() runs at once when the version
// is loaded, else on the registry's loader thread when its load is done.
//
// Every request refused here is counted in verdict_scoring_rejected_total (reasons invalid,
// model_not_found, load_failed, shutting_down; a transport's own refusals through CountRefused),
// as the batcher counts its own (queue_full, deadline_exceeded, cancelled, forward_failed).
//
// Thread safety: Score() may be called from any number of threads at once.
#ifndef VERDICT_SERVER_BATCH_SCORING_H_
#define VERDICT_SERVER_BATCH_SCORING_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "server/model_registry.h"
#include "server/server_config.h"
#include "server/server_metrics.h"
#include "verdict/v1/scoring.pb.h"

namespace verdict {
class ComputePriority;
}  // namespace verdict

namespace verdict::server {

// What the transport knows about one call.
struct ScoringCall {
  absl::Time arrival = absl::Now();
  // The items are not run once it passes (DEADLINE_EXCEEDED instead).
  absl::Time deadline = absl::InfiniteFuture();
  // True once the caller has gone away; asked before each batch. May be empty.
  std::function<bool()> is_cancelled;
  // Called exactly once, on any thread: OK with the response filled in, or why not.
  std::function<void(absl::Status)> done;
};

class BatchScoring {
 public:
  // `priority` (optional): every request counts as scoring in flight from Score() until its
  // reply, for training to yield to (ServerConfig::training_yield).
  BatchScoring(const ServerConfig& config, ModelRegistry* registry,
               ComputePriority* priority = nullptr)
      : config_(config), registry_(registry), metrics_(registry->metrics()), priority_(priority) {}

  // Scores `request` into `response`; both must stay alive until call.done has run.
  void Score(const v1::ScoreBatchRequest* request, v1::ScoreBatchResponse* response,
             ScoringCall call) const;

  // A request the transport refused before Score() (its credentials, a body that is not a
  // request), counted with the others.
  void CountRefused(ScoringRejection reason) const;

 private:
  // The half after the version is known (or is known not to be had).
  void Continue(const v1::ScoreBatchRequest* request, v1::ScoreBatchResponse* response,
                ScoringCall call, absl::StatusOr<std::shared_ptr<LoadedModel>> acquired) const;
  void CountRefusal(const std::string& model, const std::string& version,
                    ScoringRejection reason) const;

  const ServerConfig config_;
  ModelRegistry* const registry_;
  ServerMetrics* const metrics_;  // null without metrics
  ComputePriority* const priority_;  // may be null
};

}  // namespace verdict::server

#endif  // VERDICT_SERVER_BATCH_SCORING_H_
