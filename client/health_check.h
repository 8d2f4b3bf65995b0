// CheckHealth: the standard gRPC health check (grpc.health.v1.Health/Check) without generated
// stubs.
//
// Debian ships no generated code for grpc/health/v1/health.proto, and the two messages are
// tiny, so the request is encoded and the response decoded by hand and sent through
// grpc::GenericStub:
//   message HealthCheckRequest  { string service = 1; }
//   message HealthCheckResponse { ServingStatus status = 1; }  // 0 UNKNOWN, 1 SERVING,
//                                                              // 2 NOT_SERVING, 3 SERVICE_UNKNOWN
// Thread-safe (no shared state beyond the channel).
#ifndef VERDICT_CLIENT_HEALTH_CHECK_H_
#define VERDICT_CLIENT_HEALTH_CHECK_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/connection.h"

namespace verdict::client {

enum class ServingStatus { kUnknown = 0, kServing = 1, kNotServing = 2, kServiceUnknown = 3 };

// "SERVING", "NOT_SERVING", ...
std::string ServingStatusName(ServingStatus status);

// The wire form of a HealthCheckRequest, and the status in a HealthCheckResponse's bytes
// (INVALID_ARGUMENT if they are not one).
std::string EncodeHealthCheckRequest(absl::string_view service);
absl::StatusOr<ServingStatus> DecodeHealthCheckResponse(absl::string_view bytes);

// Asks the server about `service` ("" for the server as a whole, or e.g.
// "verdict.v1.ScoringService"). gRPC errors keep their code (NOT_FOUND for a service the
// server does not know).
absl::StatusOr<ServingStatus> CheckHealth(Connection& connection, absl::string_view service);

}  // namespace verdict::client

#endif  // VERDICT_CLIENT_HEALTH_CHECK_H_
