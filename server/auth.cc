#include "server/auth.h"

#include <openssl/crypto.h>

namespace verdict::server {

grpc::Status Authenticator::Check(const grpc::CallbackServerContext& context) const {
  return Check(context.client_metadata());
}

grpc::Status Authenticator::Check(
    const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) const {
  if (token_.empty()) return grpc::Status::OK;
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "missing \"authorization: Bearer <token>\" metadata");
  }
  const std::string value(it->second.data(), it->second.size());
  const std::string expected = "Bearer " + token_;
  // Constant-time comparison: the token is a secret.
  if (value.size() != expected.size() || CRYPTO_memcmp(value.data(), expected.data(), value.size()) != 0) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "invalid token");
  }
  return grpc::Status::OK;
}

}  // namespace verdict::server
