// CallRegistry: the server interceptor that ties each call to its method and writes the audit
// log.
//
// Every call, whatever its service, is registered with the Authenticator under its
// ServerContext (so Authenticator::Check(context) knows the method and its role) and
// unregistered when it ends.
//
// Calls that change what is served or stop someone's work (IsAuditedMethod: imports, alias
// moves and deletions, loads and unloads, dataset deletions, job cancellations) end with one
// structured "audit" log line:
//
//   {"event":"audit","who":"token:ops cert:client-1",
//    "what":"/verdict.v1.ModelService/SetModelAlias",
//    "target":"name: \"rm\" version: 2 alias: \"prod\"","outcome":"OK","peer":"ipv4:..."}
//
// who: the token's name and the verified client certificate's identity (or "anonymous");
// target: the request in protobuf text, at most kMaxTargetBytes; outcome: the status code name.
// Calls the Authenticator refused are logged by it (auth.h), once.
//
// Thread safety: gRPC creates one interceptor per call and drives it from one thread at a time;
// the factory and the Authenticator it shares are thread-safe.
#ifndef VERDICT_SERVER_AUDIT_H_
#define VERDICT_SERVER_AUDIT_H_

#include <grpcpp/support/server_interceptor.h>

#include <string>

#include "absl/strings/string_view.h"
#include "server/auth.h"
#include "server/logging.h"

namespace verdict::server {

inline constexpr size_t kMaxTargetBytes = 256;

// Whether calls of `method` (full name) get an audit line.
bool IsAuditedMethod(absl::string_view method);

class CallRegistryFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // Both must outlive the server. `logger` may be null (no audit lines).
  CallRegistryFactory(Authenticator* auth, Logger* logger) : auth_(auth), logger_(logger) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  Authenticator* const auth_;
  Logger* const logger_;
};

}  // namespace verdict::server

#endif  // VERDICT_SERVER_AUDIT_H_
