// The one place where absl::Status becomes grpc::Status (the canonical codes are the same
// numbers in both). Thread-safe free function.
#ifndef VERDICT_SERVER_STATUS_CONVERSION_H_
#define VERDICT_SERVER_STATUS_CONVERSION_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace verdict::server {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace verdict::server

#endif  // VERDICT_SERVER_STATUS_CONVERSION_H_
