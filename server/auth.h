// Bearer-token authentication for every RPC: with a token configured, each call must carry
// metadata "authorization: Bearer <token>" (UNAUTHENTICATED otherwise). Health checks and
// reflection stay open so probes and tools work. Immutable after construction: thread-safe.
#ifndef VERDICT_SERVER_AUTH_H_
#define VERDICT_SERVER_AUTH_H_

#include <string>

#include <grpcpp/server_context.h>

namespace verdict::server {

class Authenticator {
 public:
  explicit Authenticator(std::string token) : token_(std::move(token)) {}

  // OK, or UNAUTHENTICATED with the reason.
  grpc::Status Check(const grpc::CallbackServerContext& context) const;

 private:
  const std::string token_;
};

}  // namespace verdict::server

#endif  // VERDICT_SERVER_AUTH_H_
