#include "server/auth.h"

#include <openssl/crypto.h>

#include <array>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/util/file_util.h"

namespace verdict::server {
namespace {

// One refusal line per interval at most.
constexpr absl::Duration kRefusalLogInterval = absl::Seconds(1);

// Values left in a token file from an example or a template; compared without case.
constexpr std::array<absl::string_view, 12> kPlaceholders = {
    "changeme",  "change-me",  "change_me",  "token",      "secret", "password",
    "replaceme", "replace-me", "your-token", "your_token", "xxx",    "<token>"};

}  // namespace

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  auto content = ReadFileToString(path);
  if (!content.ok()) {
    return absl::Status(content.status().code(),
                        absl::StrCat("--token_file: ", content.status().message()));
  }
  const std::string token(absl::StripAsciiWhitespace(*content));
  if (token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--token_file ", path,
        " is empty: that would turn authentication off; write a token into it (e.g. openssl "
        "rand -hex 32), or leave --token_file out to run without authentication"));
  }
  for (const char c : token) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--token_file ", path,
          ": the token has whitespace or control characters inside it; it must be one word"));
    }
  }
  for (absl::string_view placeholder : kPlaceholders) {
    if (absl::EqualsIgnoreCase(token, placeholder)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--token_file ", path, " holds the placeholder \"", placeholder,
                       "\", not a token; write a real one into it (e.g. openssl rand -hex 32)"));
    }
  }
  return token;
}

grpc::Status Authenticator::Check(const grpc::CallbackServerContext& context) const {
  if (token_.empty()) return grpc::Status::OK;
  return Check(context.client_metadata(), context.peer());
}

grpc::Status Authenticator::Check(const Metadata& metadata, const std::string& peer) const {
  grpc::Status status = Check(metadata);
  if (!status.ok()) LogRefusal(status, peer);
  return status;
}

grpc::Status Authenticator::Check(const Metadata& metadata) const {
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

void Authenticator::LogRefusal(const grpc::Status& status, const std::string& peer) const {
  if (logger_ == nullptr || !logger_->Enabled(LogLevel::kWarning)) return;
  int64_t suppressed = 0;
  {
    absl::MutexLock lock(&log_mutex_);
    const absl::Time now = absl::Now();
    if (now - last_logged_ < kRefusalLogInterval) {
      ++unlogged_;
      return;
    }
    last_logged_ = now;
    suppressed = unlogged_;
    unlogged_ = 0;
  }
  logger_->Warning("auth.refused")
      .With("reason", status.error_message() == "invalid token" ? "invalid_token" : "no_token")
      .With("peer", peer)
      .With("unlogged_since_last", suppressed);
}

}  // namespace verdict::server
