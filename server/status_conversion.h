// The one place where absl::Status becomes grpc::Status (the canonical codes are the same
// numbers in both), and the way unary handlers finish with either. Thread-safe free functions.
#ifndef VERDICT_SERVER_STATUS_CONVERSION_H_
#define VERDICT_SERVER_STATUS_CONVERSION_H_

#include <grpcpp/server_context.h>
#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace verdict::server {

grpc::Status ToGrpcStatus(const absl::Status& status);

// Finishes a unary callback RPC with `status` and returns its reactor, for a handler to return.
grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* context, const grpc::Status& status);
grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* context, const absl::Status& status);

}  // namespace verdict::server

#endif  // VERDICT_SERVER_STATUS_CONVERSION_H_
