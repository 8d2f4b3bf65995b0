// Bearer-token authentication for every RPC: with a token configured, each call must carry
// metadata "authorization: Bearer <token>" (UNAUTHENTICATED otherwise). Health checks and
// reflection stay open so probes and tools work. Immutable after construction: thread-safe.
#ifndef VERDICT_SERVER_AUTH_H_
#define VERDICT_SERVER_AUTH_H_

#include <map>
#include <string>

#include <grpcpp/server_context.h>
#include <grpcpp/support/string_ref.h>

namespace verdict::server {

class Authenticator {
 public:
  explicit Authenticator(std::string token) : token_(std::move(token)) {}

  // OK, or UNAUTHENTICATED with the reason.
  grpc::Status Check(const grpc::CallbackServerContext& context) const;
  // The same, on a call's client metadata.
  grpc::Status Check(const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) const;

 private:
  const std::string token_;
};

}  // namespace verdict::server

#endif  // VERDICT_SERVER_AUTH_H_
