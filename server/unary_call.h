// ServeUnary: the preamble and ending every unary handler shares. It checks the caller's
// credentials, runs the handler's body and finishes the call with the body's absl::Status,
// mapped to a grpc::Status by ToGrpcStatus (the one mapping). Handlers whose work finishes later
// (a model load, a batcher callback) check Authenticator themselves and finish from there.
//
// Example:
//   grpc::ServerUnaryReactor* ModelService::GetModel(grpc::CallbackServerContext* context,
//                                                    const v1::GetModelRequest* request,
//                                                    v1::Model* response) {
//     return ServeUnary(context, *auth_, [&]() -> absl::Status {
//       RETURN_IF_ERROR(ValidateModelRef("model", request->model()));
//       ...
//       return absl::OkStatus();
//     });
//   }
//
// Runs on the calling gRPC thread; the body must not block on slow work (see STYLE.md).
#ifndef VERDICT_SERVER_UNARY_CALL_H_
#define VERDICT_SERVER_UNARY_CALL_H_

#include <utility>

#include <grpcpp/server_context.h>

#include "absl/status/status.h"
#include "server/auth.h"
#include "server/status_conversion.h"

namespace verdict::server {

template <typename Body>
grpc::ServerUnaryReactor* ServeUnary(grpc::CallbackServerContext* context,
                                     const Authenticator& auth, Body&& body) {
  if (grpc::Status denied = auth.Check(*context); !denied.ok()) {
    return FinishUnary(context, denied);
  }
  const absl::Status status = std::forward<Body>(body)();
  return FinishUnary(context, status);
}

}  // namespace verdict::server

#endif  // VERDICT_SERVER_UNARY_CALL_H_
