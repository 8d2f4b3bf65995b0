#include "server/scoring_service.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "server/proto_time.h"
#include "server/status_conversion.h"

namespace verdict::server {

grpc::ServerUnaryReactor* ScoringService::ScoreBatch(grpc::CallbackServerContext* context,
                                                     const v1::ScoreBatchRequest* request,
                                                     v1::ScoreBatchResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  ScoringCall call;
  if (grpc::Status auth = auth_->Check(*context); !auth.ok()) {
    scoring_->CountRefused(ScoringRejection::kUnauthenticated);
    reactor->Finish(auth);
    return reactor;
  }
  if (context->deadline() != std::chrono::system_clock::time_point::max()) {
    call.deadline = absl::FromChrono(context->deadline());
  }
  call.is_cancelled = [context] { return context->IsCancelled(); };
  call.done = [context, reactor, response](absl::Status status) {
    if (status.ok()) {
      auto micros = [](const google::protobuf::Duration& d) {
        return absl::StrCat(absl::ToInt64Microseconds(FromDuration(d)));
      };
      context->AddTrailingMetadata("verdict-queue-time-us", micros(response->queue_time()));
      context->AddTrailingMetadata("verdict-compute-time-us", micros(response->compute_time()));
    }
    reactor->Finish(ToGrpcStatus(status));
  };
  scoring_->Score(request, response, std::move(call));
  return reactor;
}

}  // namespace verdict::server
