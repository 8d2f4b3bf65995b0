#include "server/auth.h"

#include <grpcpp/security/auth_context.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/util/file_util.h"
#include "core/util/status_macros.h"

namespace verdict::server {
namespace {

// Values left in a token file from an example or a template; compared without case.
constexpr std::array<absl::string_view, 12> kPlaceholders = {
    "changeme",  "change-me",  "change_me",  "token",      "secret", "password",
    "replaceme", "replace-me", "your-token", "your_token", "xxx",    "<token>"};

constexpr absl::string_view kHashPrefix = "sha256:";

bool IsPlaceholder(absl::string_view token) {
  for (absl::string_view placeholder : kPlaceholders) {
    if (absl::EqualsIgnoreCase(token, placeholder)) return true;
  }
  return false;
}

bool HasControlOrSpace(absl::string_view text) {
  for (const char c : text) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return true;
  }
  return false;
}

absl::Status LineError(const std::string& path, int line, absl::string_view what,
                       absl::string_view flag = "--token_file") {
  return absl::InvalidArgumentError(absl::StrCat(flag, " ", path, " line ", line, ": ", what));
}

// The stored secret of a line: a sha256:<hex> hash or a plain token (hashed here).
absl::StatusOr<Sha256> ParseSecret(const std::string& path, int line, absl::string_view secret,
                                   absl::string_view flag = "--token_file") {
  if (absl::StartsWith(secret, kHashPrefix)) {
    const absl::string_view hex = secret.substr(kHashPrefix.size());
    bool valid = hex.size() == 64;
    for (const char c : hex) valid = valid && absl::ascii_isxdigit(c);
    if (!valid) {
      return LineError(path, line,
                       "a sha256: hash must be 64 hex digits (printf %s \"$TOKEN\" | sha256sum)",
                       flag);
    }
    const std::string bytes = absl::HexStringToBytes(absl::AsciiStrToLower(hex));
    Sha256 hash;
    std::copy(bytes.begin(), bytes.end(), hash.begin());
    return hash;
  }
  if (IsPlaceholder(secret)) {
    return LineError(path, line,
                     "the secret is a placeholder such as changeme; write a real one (e.g. "
                     "openssl rand -hex 32)",
                     flag);
  }
  return HashToken(secret);
}

}  // namespace

constexpr MethodRole kMethodRoleTable[] = {
    // Scoring, and reading what can be scored.
    {"/verdict.v1.ScoringService/ScoreBatch", Role::kScore},
    {"/verdict.v1.ModelService/ListModels", Role::kScore},
    {"/verdict.v1.ModelService/GetModel", Role::kScore},
    {"/verdict.v1.ModelService/DownloadModel", Role::kScore},
    {"/verdict.v1.ModelService/WatchModels", Role::kScore},
    // Training: jobs, their metrics, the datasets they read.
    {"/verdict.v1.TrainingService/SubmitTrainingJob", Role::kTrain},
    {"/verdict.v1.TrainingService/GetJob", Role::kTrain},
    {"/verdict.v1.TrainingService/ListJobs", Role::kTrain},
    {"/verdict.v1.TrainingService/StreamMetrics", Role::kTrain},
    {"/verdict.v1.TrainingService/EvaluateModel", Role::kTrain},
    {"/verdict.v1.DatasetService/UploadDataset", Role::kTrain},
    {"/verdict.v1.DatasetService/GetDataset", Role::kTrain},
    {"/verdict.v1.DatasetService/ListDatasets", Role::kTrain},
    {"/verdict.v1.DatasetService/DeleteDataset", Role::kTrain},
    {"/verdict.v1.DatasetService/InspectDataset", Role::kTrain},
    // What changes what is served, or stops someone else's work.
    {"/verdict.v1.TrainingService/CancelJob", Role::kAdmin},
    {"/verdict.v1.ModelService/ImportModel", Role::kAdmin},
    {"/verdict.v1.ModelService/SetModelAlias", Role::kAdmin},
    {"/verdict.v1.ModelService/DeleteModelAlias", Role::kAdmin},
    {"/verdict.v1.ModelService/DeleteModelVersion", Role::kAdmin},
    {"/verdict.v1.ModelService/LoadModel", Role::kAdmin},
    {"/verdict.v1.ModelService/UnloadModel", Role::kAdmin},
};
const absl::Span<const MethodRole> kMethodRoles = kMethodRoleTable;

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kScore:
      return "score";
    case Role::kTrain:
      return "train";
    case Role::kAdmin:
      return "admin";
  }
  return "admin";
}

std::optional<Role> ParseRole(absl::string_view text) {
  for (Role role : {Role::kScore, Role::kTrain, Role::kAdmin}) {
    if (text == RoleName(role)) return role;
  }
  return std::nullopt;
}

Role RequiredRole(absl::string_view method) {
  for (const MethodRole& entry : kMethodRoles) {
    if (entry.method == method) return entry.role;
  }
  return Role::kAdmin;
}

Sha256 HashToken(absl::string_view token) {
  Sha256 hash;
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), hash.data());
  return hash;
}

absl::StatusOr<TokenSet> ParseTokenFile(const std::string& path, absl::string_view content) {
  const absl::string_view trimmed = absl::StripAsciiWhitespace(content);
  if (trimmed.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--token_file ", path,
        " is empty: that would turn authentication off; write `role name token` lines into it "
        "(e.g. admin ops $(openssl rand -hex 32)), or leave --token_file out to run without "
        "authentication"));
  }
  // The old format: the whole file is one token, for one admin.
  if (!absl::StrContains(trimmed, ' ') && !absl::StrContains(trimmed, '\t') &&
      !absl::StrContains(trimmed, '\n') && !absl::StartsWith(trimmed, "#")) {
    if (HasControlOrSpace(trimmed)) {
      return LineError(path, 1, "the token has control characters inside it");
    }
    if (IsPlaceholder(trimmed)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--token_file ", path,
          " holds a placeholder such as changeme, not a token; write a real one into it (e.g. "
          "openssl rand -hex 32)"));
    }
    ASSIGN_OR_RETURN(Sha256 hash, ParseSecret(path, 1, trimmed));
    return TokenSet{TokenEntry{Role::kAdmin, "default", hash}};
  }
  TokenSet tokens;
  absl::flat_hash_set<std::string> names;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(content, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || absl::StartsWith(line, "#")) continue;
    std::vector<absl::string_view> words =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (words.size() != 3) {
      return LineError(path, line_number,
                       absl::StrCat("expected `role name token` (or `role name sha256:<hex>`), "
                                    "found ",
                                    words.size(), " words"));
    }
    TokenEntry entry;
    const std::optional<Role> role = ParseRole(words[0]);
    if (!role.has_value()) {
      return LineError(path, line_number, "unknown role; roles are score, train and admin");
    }
    entry.role = *role;
    entry.name = std::string(words[1]);
    if (HasControlOrSpace(entry.name) || HasControlOrSpace(words[2])) {
      return LineError(path, line_number, "control characters in the name or the token");
    }
    if (!names.insert(entry.name).second) {
      return LineError(path, line_number,
                       absl::StrCat("the name \"", entry.name, "\" is used by an earlier line"));
    }
    ASSIGN_OR_RETURN(entry.hash, ParseSecret(path, line_number, words[2]));
    for (const TokenEntry& earlier : tokens) {
      if (earlier.hash == entry.hash) {
        return LineError(path, line_number,
                         absl::StrCat("the same token as \"", earlier.name,
                                      "\"; each caller needs its own token"));
      }
    }
    tokens.push_back(std::move(entry));
  }
  if (tokens.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--token_file ", path,
                     " has only comments: that would turn authentication "
                     "off; write `role name token` lines into it"));
  }
  return tokens;
}

absl::StatusOr<TokenSet> ReadTokenFile(const std::string& path) {
  auto content = ReadFileToString(path);
  if (!content.ok()) {
    return absl::Status(content.status().code(),
                        absl::StrCat("--token_file: ", content.status().message()));
  }
  return ParseTokenFile(path, *content);
}

absl::StatusOr<std::vector<BasicAuthUser>> ReadBasicAuthFile(const std::string& path) {
  constexpr absl::string_view kFlag = "--metrics_basic_auth_file";
  auto content = ReadFileToString(path);
  if (!content.ok()) {
    return absl::Status(content.status().code(),
                        absl::StrCat(kFlag, ": ", content.status().message()));
  }
  std::vector<BasicAuthUser> users;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(*content, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || absl::StartsWith(line, "#")) continue;
    std::vector<absl::string_view> words =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (words.size() != 2 || !absl::StartsWith(words[1], kHashPrefix) ||
        absl::StrContains(words[0], ':')) {
      return LineError(path, line_number, "expected `user sha256:<hex of the password>`", kFlag);
    }
    BasicAuthUser user;
    user.user = std::string(words[0]);
    for (const BasicAuthUser& earlier : users) {
      if (earlier.user == user.user) {
        return LineError(path, line_number, "the user is named by an earlier line", kFlag);
      }
    }
    ASSIGN_OR_RETURN(user.hash, ParseSecret(path, line_number, words[1], kFlag));
    users.push_back(std::move(user));
  }
  if (users.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kFlag, " ", path, " names no user: that would leave /metrics open"));
  }
  return users;
}

bool CheckBasicAuth(const std::vector<BasicAuthUser>& users, const std::string& user,
                    const std::string& password) {
  const Sha256 hash = HashToken(password);
  bool match = false;
  for (const BasicAuthUser& entry : users) {
    const bool same = CRYPTO_memcmp(hash.data(), entry.hash.data(), hash.size()) == 0;
    match = match || (same && entry.user == user);
  }
  return match;
}

std::string ClientCertificateIdentity(const grpc::ServerContextBase& context) {
  const std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) return "";
  std::vector<std::string> names;
  for (const grpc::string_ref& name : auth->GetPeerIdentity()) {
    names.emplace_back(name.data(), name.size());
  }
  return absl::StrJoin(names, ",");
}

std::string CallerIdentity(const std::string& token_name, const grpc::ServerContextBase& context) {
  const std::string cert = ClientCertificateIdentity(context);
  std::vector<std::string> parts;
  if (!token_name.empty()) parts.push_back(absl::StrCat("token:", token_name));
  if (!cert.empty()) parts.push_back(absl::StrCat("cert:", cert));
  return parts.empty() ? "anonymous" : absl::StrJoin(parts, " ");
}

Authenticator::Authenticator(TokenSet tokens, Logger* logger)
    : logger_(logger), tokens_(std::make_shared<const TokenSet>(std::move(tokens))) {}

Authenticator::Authenticator(const std::string& admin_token, Logger* logger)
    : Authenticator(admin_token.empty()
                        ? TokenSet{}
                        : TokenSet{TokenEntry{Role::kAdmin, "default", HashToken(admin_token)}},
                    logger) {}

bool Authenticator::enabled() const {
  absl::MutexLock lock(&mutex_);
  return !tokens_->empty();
}

absl::Status Authenticator::Reload(TokenSet tokens) {
  absl::MutexLock lock(&mutex_);
  if (tokens.empty() != tokens_->empty()) {
    return absl::FailedPreconditionError(
        "turning authentication on or off takes a restart, not a reload");
  }
  tokens_ = std::make_shared<const TokenSet>(std::move(tokens));
  return absl::OkStatus();
}

void Authenticator::RegisterCall(const grpc::ServerContextBase* context, std::string method) {
  absl::MutexLock lock(&mutex_);
  calls_[context] = CallInfo{std::move(method), "", false};
}

void Authenticator::UnregisterCall(const grpc::ServerContextBase* context) {
  absl::MutexLock lock(&mutex_);
  calls_.erase(context);
}

std::optional<std::string> Authenticator::AcceptedCaller(
    const grpc::ServerContextBase* context) const {
  absl::MutexLock lock(&mutex_);
  if (tokens_->empty()) return "";
  auto it = calls_.find(context);
  if (it == calls_.end() || !it->second.accepted) return std::nullopt;
  return it->second.caller;
}

grpc::Status Authenticator::Check(const grpc::CallbackServerContext& context) const {
  const grpc::ServerContextBase* base = &context;
  std::string method;
  {
    absl::MutexLock lock(&mutex_);
    if (tokens_->empty()) return grpc::Status::OK;
    auto it = calls_.find(base);
    // Not registered (no CallRegistry installed): the strictest role.
    if (it != calls_.end()) method = it->second.method;
  }
  Verdict verdict =
      Check(method, context.client_metadata(), context.peer(), ClientCertificateIdentity(context));
  if (verdict.status.ok()) {
    absl::MutexLock lock(&mutex_);
    if (auto it = calls_.find(base); it != calls_.end()) {
      it->second.caller = verdict.caller;
      it->second.accepted = true;
    }
  }
  return verdict.status;
}

Authenticator::Verdict Authenticator::Check(absl::string_view method, const Metadata& metadata,
                                            const std::string& peer, const std::string& cert,
                                            bool log) const {
  std::shared_ptr<const TokenSet> tokens;
  {
    absl::MutexLock lock(&mutex_);
    tokens = tokens_;
  }
  Verdict verdict;
  if (tokens->empty()) return verdict;
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    verdict.status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                  "missing \"authorization: Bearer <token>\" metadata");
  } else {
    const absl::string_view value(it->second.data(), it->second.size());
    constexpr absl::string_view kBearer = "Bearer ";
    const TokenEntry* match = nullptr;
    if (absl::StartsWith(value, kBearer)) {
      // Compared by hash, in constant time, against every entry (no early exit), so timing
      // tells neither the token nor which entry matched.
      const Sha256 hash = HashToken(value.substr(kBearer.size()));
      for (const TokenEntry& entry : *tokens) {
        if (CRYPTO_memcmp(hash.data(), entry.hash.data(), hash.size()) == 0) match = &entry;
      }
    }
    if (match == nullptr) {
      verdict.status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "invalid token");
    } else {
      verdict.caller = match->name;
      const Role needed = RequiredRole(method);
      if (match->role < needed) {
        verdict.status = grpc::Status(
            grpc::StatusCode::PERMISSION_DENIED,
            absl::StrCat("this call needs the ", RoleName(needed), " role; the token \"",
                         match->name, "\" has ", RoleName(match->role)));
      }
    }
  }
  if (!verdict.status.ok() && log) LogRefusal(method, verdict, peer, cert);
  return verdict;
}

void Authenticator::LogRefusal(absl::string_view method, const Verdict& verdict,
                               const std::string& peer, const std::string& cert) const {
  if (logger_ == nullptr || !logger_->Enabled(LogLevel::kWarning)) return;
  int64_t unlogged = 0;
  if (verdict.caller.empty()) {
    // Unknown callers cost nothing to repeat: bound their lines.
    absl::MutexLock lock(&log_mutex_);
    const absl::Time now = absl::Now();
    if (now - window_start_ >= absl::Seconds(1)) {
      window_start_ = now;
      window_lines_ = 0;
    }
    if (window_lines_ >= kMaxRefusalLinesPerSecond) {
      ++unlogged_;
      return;
    }
    ++window_lines_;
    unlogged = unlogged_;
    unlogged_ = 0;
  }
  std::string who = verdict.caller.empty() ? "" : absl::StrCat("token:", verdict.caller);
  if (!cert.empty()) who = absl::StrCat(who, who.empty() ? "" : " ", "cert:", cert);
  if (who.empty()) who = "anonymous";
  const bool unauthenticated = verdict.status.error_code() == grpc::StatusCode::UNAUTHENTICATED;
  LogEvent event = logger_->Warning("audit");
  event.With("who", who)
      .With("what", method.empty() ? absl::string_view("unknown") : method)
      .With("outcome", unauthenticated ? "UNAUTHENTICATED" : "PERMISSION_DENIED")
      .With("reason",
            unauthenticated
                ? (verdict.status.error_message() == "invalid token" ? "invalid_token" : "no_token")
                : "role")
      .With("peer", peer);
  if (unlogged > 0) event.With("unlogged_since_last", unlogged);
}

}  // namespace verdict::server
