// Bearer-token authentication for every RPC: with a token configured, each call must carry
// metadata "authorization: Bearer <token>" (UNAUTHENTICATED otherwise). Health checks and
// reflection stay open so probes and tools work.
//
// A refused call is logged as one "auth.refused" line (reason and peer, never a token), at
// most one line per second: a client hammering with a wrong token cannot flood the log; the
// next line says how many refusals it stands for.
//
// ReadTokenFile reads --token_file and refuses what would silently turn authentication off
// (an empty file) or be guessed at once (a placeholder).
//
// Thread safety: Check may be called from any thread; the token is immutable and the log's
// rate limit is under a mutex.
#ifndef VERDICT_SERVER_AUTH_H_
#define VERDICT_SERVER_AUTH_H_

#include <cstdint>
#include <map>
#include <string>

#include <grpcpp/server_context.h>
#include <grpcpp/support/string_ref.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/logging.h"

namespace verdict::server {

// The token in `path`: its content without surrounding whitespace. INVALID_ARGUMENT, naming
// the flag and the file, for an empty or whitespace-only file, a token with whitespace or
// control characters inside, or a placeholder ("changeme", "token", "secret", ...); the
// reading error for a file that cannot be read. The message never quotes the token.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

class Authenticator {
 public:
  // An empty token turns authentication off (the server was given no --token_file).
  // `logger` (may be null: no logging) must outlive the authenticator.
  explicit Authenticator(std::string token, Logger* logger = nullptr)
      : token_(std::move(token)), logger_(logger) {}

  using Metadata = std::multimap<grpc::string_ref, grpc::string_ref>;

  // OK, or UNAUTHENTICATED with the reason; a refusal is logged (rate-limited).
  grpc::Status Check(const grpc::CallbackServerContext& context) const;
  // The same, on a call's client metadata and the peer's address (logged on a refusal).
  grpc::Status Check(const Metadata& metadata, const std::string& peer) const;
  // The same, without logging.
  grpc::Status Check(const Metadata& metadata) const;

 private:
  void LogRefusal(const grpc::Status& status, const std::string& peer) const;

  const std::string token_;
  Logger* const logger_;
  mutable absl::Mutex log_mutex_;
  mutable absl::Time last_logged_ ABSL_GUARDED_BY(log_mutex_) = absl::InfinitePast();
  mutable int64_t unlogged_ ABSL_GUARDED_BY(log_mutex_) = 0;
};

}  // namespace verdict::server

#endif  // VERDICT_SERVER_AUTH_H_
