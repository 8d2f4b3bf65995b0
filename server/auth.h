// Who may call what: bearer tokens with roles, checked per RPC method against one table.
//
// A token file (--token_file) lists one caller per line:
//
//   # role   name        token, or sha256:<64 hex digits> of the token
//   score    dashboards  sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//   train    trainer-1   3b1e5c0d9a7f...
//   admin    ops         sha256:...
//
// Roles are ordered: `score` (ScoreBatch and model reads), `train` (jobs, datasets, metrics
// streams, and all `score` may do), `admin` (everything: imports, aliases, loads, cancellations).
// kMethodRoles below says which role each RPC needs; a test checks that every method of every
// verdict service is in it. A method missing from the table needs `admin` (fail closed).
// A file holding a single word (the old format) is one admin token named "default".
//
// A call must carry "authorization: Bearer <token>": none or an unknown token is UNAUTHENTICATED,
// a token whose role is too low PERMISSION_DENIED naming the role needed. Health checks and
// reflection are not verdict services and stay open. Messages and logs never quote a token.
// Tokens are compared by their SHA-256 in constant time, so a stored hash and a stored token
// are checked alike.
//
// Every refusal is one "audit" log line (who, what, outcome, peer); see audit.h for the rest.
// Refusals of unknown callers are limited to kMaxRefusalLinesPerSecond lines a second (a client
// hammering with a wrong token cannot flood the log); the next line counts those left out.
//
// Which method a Check() is for: the server's CallRegistry interceptor (audit.h) records each
// call's method under its ServerContext before the handler runs; Check(context) looks it up.
//
// Thread safety: every method may be called from any thread. Reload() swaps the token set
// under a mutex; a call checked before the swap keeps the old verdict.
#ifndef VERDICT_SERVER_AUTH_H_
#define VERDICT_SERVER_AUTH_H_

#include <grpcpp/server_context.h>
#include <grpcpp/support/string_ref.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "server/logging.h"

namespace verdict::server {

enum class Role { kScore = 0, kTrain = 1, kAdmin = 2 };

// "score", "train", "admin".
absl::string_view RoleName(Role role);
std::optional<Role> ParseRole(absl::string_view text);

// The minimum role of each verdict RPC, by full method name as gRPC spells it
// ("/verdict.v1.ScoringService/ScoreBatch").
struct MethodRole {
  absl::string_view method;
  Role role;
};
extern const absl::Span<const MethodRole> kMethodRoles;
// The role `method` needs; kAdmin for a method not in the table.
Role RequiredRole(absl::string_view method);

using Sha256 = std::array<unsigned char, 32>;
Sha256 HashToken(absl::string_view token);

// One caller a token file names.
struct TokenEntry {
  Role role = Role::kScore;
  std::string name;
  Sha256 hash{};
};

// The callers of a token file. Empty: authentication off (no --token_file).
using TokenSet = std::vector<TokenEntry>;

// Parses a token file's `content` (read from `path`, which messages name). INVALID_ARGUMENT,
// naming --token_file, the file and the line number, for: an empty or whitespace-only file; a
// line that is not `role name token`; an unknown role; a duplicate name or token; a token that
// is a placeholder ("changeme", "token", "secret", ...) or holds control characters; a hash
// that is not sha256: and 64 hex digits. Messages never quote a token.
absl::StatusOr<TokenSet> ParseTokenFile(const std::string& path, absl::string_view content);
// Reads and parses `path`.
absl::StatusOr<TokenSet> ReadTokenFile(const std::string& path);

// /metrics basic auth (--metrics_basic_auth_file): lines `user sha256:<hex of the password>`
// (printf %s "$PASSWORD" | sha256sum). INVALID_ARGUMENT with the line number for a malformed
// line, a duplicate user, or a file naming no user.
struct BasicAuthUser {
  std::string user;
  Sha256 hash{};
};
absl::StatusOr<std::vector<BasicAuthUser>> ReadBasicAuthFile(const std::string& path);
// Whether `user` with `password` is one of `users` (the password compared by hash, in
// constant time).
bool CheckBasicAuth(const std::vector<BasicAuthUser>& users, const std::string& user,
                    const std::string& password);

// Who a call came from, as logs name it: the token's name ("token:ops"), else the client
// certificate's identity ("cert:CN"), else "anonymous"; with both, both ("token:ops cert:CN").
std::string CallerIdentity(const std::string& token_name, const grpc::ServerContextBase& context);
// The verified client certificate's identity: its SAN(s) or else its subject CN; "" without one.
std::string ClientCertificateIdentity(const grpc::ServerContextBase& context);

class Authenticator {
 public:
  static constexpr int kMaxRefusalLinesPerSecond = 20;

  // An empty set turns authentication off. `logger` (may be null: no logging) must outlive
  // the authenticator.
  explicit Authenticator(TokenSet tokens, Logger* logger = nullptr);
  // One admin token named "default"; "" turns authentication off.
  explicit Authenticator(const std::string& admin_token, Logger* logger = nullptr);

  using Metadata = std::multimap<grpc::string_ref, grpc::string_ref>;

  // The outcome of checking one call.
  struct Verdict {
    grpc::Status status;
    std::string caller;  // token name; "" for no or an unknown token
  };

  // OK, UNAUTHENTICATED or PERMISSION_DENIED for the call's method (see the header comment);
  // a refusal is logged.
  grpc::Status Check(const grpc::CallbackServerContext& context) const;
  // The same for `method`, on a call's metadata; logs a refusal with `peer` and `cert` (the
  // client certificate's identity) when `log` holds.
  Verdict Check(absl::string_view method, const Metadata& metadata, const std::string& peer = "",
                const std::string& cert = "", bool log = true) const;

  // Replaces the token set (SIGHUP). Turning authentication on or off this way is refused
  // (FAILED_PRECONDITION): that takes a restart, so a bad reload cannot open the server.
  absl::Status Reload(TokenSet tokens);
  bool enabled() const;

  // The call registry CallRegistry fills: the method of each call in flight, by its context.
  void RegisterCall(const grpc::ServerContextBase* context, std::string method);
  void UnregisterCall(const grpc::ServerContextBase* context);
  // The token name a Check() of the call accepted; "" with authentication off; nullopt if no
  // Check() accepted it (refused, or not checked yet).
  std::optional<std::string> AcceptedCaller(const grpc::ServerContextBase* context) const;

 private:
  void LogRefusal(absl::string_view method, const Verdict& verdict, const std::string& peer,
                  const std::string& cert) const;

  Logger* const logger_;
  mutable absl::Mutex mutex_;
  std::shared_ptr<const TokenSet> tokens_ ABSL_GUARDED_BY(mutex_);
  struct CallInfo {
    std::string method;
    std::string caller;
    bool accepted = false;
  };
  mutable absl::flat_hash_map<const grpc::ServerContextBase*, CallInfo> calls_
      ABSL_GUARDED_BY(mutex_);
  mutable absl::Mutex log_mutex_;
  mutable absl::Time window_start_ ABSL_GUARDED_BY(log_mutex_) = absl::InfinitePast();
  mutable int window_lines_ ABSL_GUARDED_BY(log_mutex_) = 0;
  mutable int64_t unlogged_ ABSL_GUARDED_BY(log_mutex_) = 0;
};

}  // namespace verdict::server

#endif  // VERDICT_SERVER_AUTH_H_
