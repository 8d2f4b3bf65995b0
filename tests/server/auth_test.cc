#include "server/auth.h"

#include <google/protobuf/descriptor.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/audit.h"
#include "tests/testing/test_paths.h"
#include "verdict/v1/datasets.pb.h"
#include "verdict/v1/models.pb.h"
#include "verdict/v1/scoring.pb.h"
#include "verdict/v1/training.pb.h"

namespace verdict::server {
namespace {

using Metadata = Authenticator::Metadata;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kScore[] = "/verdict.v1.ScoringService/ScoreBatch";
constexpr char kListJobs[] = "/verdict.v1.TrainingService/ListJobs";
constexpr char kSetAlias[] = "/verdict.v1.ModelService/SetModelAlias";

std::string Sha256Hex(absl::string_view text) {
  const Sha256 hash = HashToken(text);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(hash.data()), hash.size()));
}

TokenSet MustParse(const std::string& content) {
  auto tokens = ParseTokenFile("tokens", content);
  EXPECT_TRUE(tokens.ok()) << tokens.status();
  return tokens.ok() ? *tokens : TokenSet{};
}

Metadata Bearer(const std::string& value) {
  static std::set<std::string> storage;  // string_refs must outlive the call
  const std::string& header = *storage.insert("Bearer " + value).first;
  return Metadata{{"authorization", header}};
}

// Every method of every verdict service, from the generated descriptors: a new RPC that is
// not in kMethodRoles fails here instead of silently needing admin.
TEST(MethodRolesTest, EveryMethodOfEveryServiceHasARole) {
  // Linking the generated messages registers their files in the generated pool.
  const std::vector<const google::protobuf::FileDescriptor*> files = {
      v1::ScoreBatchRequest::descriptor()->file(), v1::GetModelRequest::descriptor()->file(),
      v1::GetJobRequest::descriptor()->file(), v1::GetDatasetRequest::descriptor()->file()};
  std::set<std::string> in_proto;
  for (const google::protobuf::FileDescriptor* file : files) {
    for (int s = 0; s < file->service_count(); ++s) {
      const google::protobuf::ServiceDescriptor* service = file->service(s);
      for (int m = 0; m < service->method_count(); ++m) {
        in_proto.insert(absl::StrCat("/", service->full_name(), "/", service->method(m)->name()));
      }
    }
  }
  std::set<std::string> in_table;
  for (const MethodRole& entry : kMethodRoles) {
    EXPECT_TRUE(in_table.insert(std::string(entry.method)).second) << "twice: " << entry.method;
  }
  EXPECT_EQ(in_table, in_proto);
  EXPECT_EQ(in_proto.size(), kMethodRoles.size());
  // Every audited method exists.
  for (const std::string& method : in_proto) {
    if (IsAuditedMethod(method)) EXPECT_EQ(RequiredRole(method) >= Role::kTrain, true) << method;
  }
}

TEST(MethodRolesTest, ScoringAndModelReadsNeedScoreJobsTrainAliasesAdmin) {
  EXPECT_EQ(RequiredRole(kScore), Role::kScore);
  EXPECT_EQ(RequiredRole("/verdict.v1.ModelService/GetModel"), Role::kScore);
  EXPECT_EQ(RequiredRole(kListJobs), Role::kTrain);
  EXPECT_EQ(RequiredRole("/verdict.v1.TrainingService/StreamMetrics"), Role::kTrain);
  EXPECT_EQ(RequiredRole("/verdict.v1.DatasetService/UploadDataset"), Role::kTrain);
  EXPECT_EQ(RequiredRole(kSetAlias), Role::kAdmin);
  EXPECT_EQ(RequiredRole("/verdict.v1.ModelService/ImportModel"), Role::kAdmin);
  EXPECT_EQ(RequiredRole("/verdict.v1.TrainingService/CancelJob"), Role::kAdmin);
  EXPECT_EQ(RequiredRole("/verdict.v1.NewService/Unknown"), Role::kAdmin);  // fail closed
}

TEST(ParseTokenFileTest, ReadsRolesNamesPlainAndHashedTokens) {
  const TokenSet tokens = MustParse(
      absl::StrCat("# role name token\n"
                   "score  dashboards  plain-score-token-1\n"
                   "\n"
                   "train\ttrainer-1\tsha256:",
                   Sha256Hex("hashed-train-token"), "\n",
                   "admin ops SHA256:", absl::AsciiStrToUpper(Sha256Hex("admin-token-xyz")), "\n"));
  ASSERT_EQ(tokens.size(), 3u);
  EXPECT_EQ(tokens[0].role, Role::kScore);
  EXPECT_EQ(tokens[0].name, "dashboards");
  EXPECT_EQ(tokens[0].hash, HashToken("plain-score-token-1"));
  EXPECT_EQ(tokens[1].role, Role::kTrain);
  EXPECT_EQ(tokens[1].hash, HashToken("hashed-train-token"));
  // An upper-case prefix is not the prefix: that line holds a plain token "SHA256:...".
  EXPECT_EQ(tokens[2].role, Role::kAdmin);
  EXPECT_NE(tokens[2].hash, HashToken("admin-token-xyz"));
}

TEST(ParseTokenFileTest, AOneWordFileIsOneAdminTokenAsBefore) {
  const TokenSet tokens = MustParse("  9f8e7d6c5b4a\n");
  ASSERT_EQ(tokens.size(), 1u);
  EXPECT_EQ(tokens[0].role, Role::kAdmin);
  EXPECT_EQ(tokens[0].name, "default");
  EXPECT_EQ(tokens[0].hash, HashToken("9f8e7d6c5b4a"));
  const TokenSet hashed = MustParse(absl::StrCat("sha256:", Sha256Hex("9f8e7d6c5b4a")));
  ASSERT_EQ(hashed.size(), 1u);
  EXPECT_EQ(hashed[0].hash, HashToken("9f8e7d6c5b4a"));
}

// Each bad file is refused with its line number and without the token in the message.
TEST(ParseTokenFileTest, RefusesBadFilesNamingTheLineNeverTheToken) {
  const std::string good = "score a secret-value-aaaa\n";
  for (const auto& [name, content, says] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"empty", "", "is empty"},
           {"blank", " \n\t\n", "is empty"},
           {"comments only", "# admin ops x\n", "only comments"},
           {"placeholder", "changeme\n", "placeholder"},
           {"placeholder upper case", "  TOKEN ", "placeholder"},
           {"placeholder in a line", good + "admin ops changeme\n",
            "line 2: the secret is a placeholder"},
           {"two words", good + "admin secret-value-bbbb\n", "line 2: expected `role name token`"},
           {"four words", good + "admin ops secret-value-bbbb extra\n", "line 2: expected"},
           {"unknown role", good + "\nroot ops secret-value-bbbb\n", "line 3: unknown role"},
           {"duplicate name", good + "admin a secret-value-bbbb\n", "line 2: the name \"a\""},
           {"duplicate token", good + "admin b secret-value-aaaa\n",
            "line 2: the same token as \"a\""},
           {"short hash", good + "admin b sha256:abcd\n", "line 2: a sha256: hash must be 64"},
           {"non-hex hash", good + "admin b sha256:" + std::string(64, 'g') + "\n",
            "line 2: a sha256:"},
           {"control character", good + "admin b secret\x01value\n",
            "line 2: control characters"}}) {
    auto tokens = ParseTokenFile("/etc/verdict/tokens", content);
    EXPECT_EQ(tokens.status().code(), absl::StatusCode::kInvalidArgument) << name;
    const std::string message(tokens.status().message());
    EXPECT_THAT(message, HasSubstr("--token_file /etc/verdict/tokens")) << name;
    EXPECT_THAT(message, HasSubstr(says)) << name;
    EXPECT_THAT(message, Not(HasSubstr("secret-value"))) << name;
  }
}

TEST(ReadTokenFileTest, ReadsTheFileAndNamesTheFlagWhenItCannot) {
  verdict::testing::ScratchDir scratch;
  const std::string path = scratch.Path("tokens");
  std::ofstream(path) << "admin ops a-real-token-123\n";
  auto tokens = ReadTokenFile(path);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(tokens->size(), 1u);
  auto missing = ReadTokenFile(scratch.Path("missing"));
  EXPECT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("--token_file"));
}

TEST(AuthenticatorTest, WithoutTokensEveryCallPasses) {
  EXPECT_TRUE(Authenticator(TokenSet{}).Check(kSetAlias, Metadata{}).status.ok());
}

TEST(AuthenticatorTest, EachRoleReachesItsMethodsAndNoMore) {
  const Authenticator auth(
      MustParse(absl::StrCat("score s score-token-123\n"
                             "train t sha256:",
                             Sha256Hex("train-token-123"), "\nadmin a admin-token-123\n")));
  const std::map<std::string, std::vector<bool>> allowed = {// method: score, train, admin
                                                            {kScore, {true, true, true}},
                                                            {kListJobs, {false, true, true}},
                                                            {kSetAlias, {false, false, true}}};
  const std::vector<std::string> tokens = {"score-token-123", "train-token-123", "admin-token-123"};
  for (const auto& [method, expected] : allowed) {
    for (size_t i = 0; i < tokens.size(); ++i) {
      const Authenticator::Verdict verdict = auth.Check(method, Bearer(tokens[i]));
      EXPECT_EQ(verdict.status.ok(), expected[i]) << method << " " << tokens[i];
      EXPECT_EQ(verdict.caller, std::string(1, "sta"[i]));
      if (!expected[i]) {
        EXPECT_EQ(verdict.status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
        EXPECT_THAT(verdict.status.error_message(),
                    HasSubstr(absl::StrCat("needs the ", RoleName(RequiredRole(method)), " role")));
        EXPECT_THAT(verdict.status.error_message(), Not(HasSubstr("token-123")));
      }
    }
  }
}

TEST(AuthenticatorTest, NoOrUnknownTokensAreUnauthenticated) {
  const Authenticator auth(MustParse("score s score-token-123\n"));
  for (const std::string bad : {"score-token-12", "score-token-123 ", "SCORE-TOKEN-123", ""}) {
    const Authenticator::Verdict verdict = auth.Check(kScore, Bearer(bad));
    EXPECT_EQ(verdict.status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << bad;
    EXPECT_EQ(verdict.status.error_message(), "invalid token") << bad;
    EXPECT_EQ(verdict.caller, "");
  }
  const std::string lower = "bearer score-token-123";
  EXPECT_EQ(auth.Check(kScore, Metadata{{"authorization", lower}}).status.error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  const grpc::Status missing = auth.Check(kScore, Metadata{}).status;
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(missing.error_message(), HasSubstr("authorization: Bearer"));
}

TEST(AuthenticatorTest, ReloadAppliesTheNewSetAndRefusesTurningAuthOff) {
  Authenticator auth(MustParse("admin old old-token-123\n"));
  EXPECT_TRUE(auth.Check(kSetAlias, Bearer("old-token-123")).status.ok());
  ASSERT_TRUE(auth.Reload(MustParse("score new new-token-123\n")).ok());
  EXPECT_EQ(auth.Check(kSetAlias, Bearer("old-token-123")).status.error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(auth.Check(kSetAlias, Bearer("new-token-123")).status.error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(auth.Check(kScore, Bearer("new-token-123")).status.ok());
  EXPECT_EQ(auth.Reload({}).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(auth.Check(kScore, Bearer("new-token-123")).status.ok());
}

TEST(AuthenticatorTest, EveryRefusalIsAnAuditLineWithoutTheToken) {
  std::ostringstream out;
  Logger logger({LogFormat::kJson, LogLevel::kInfo}, out);
  const Authenticator auth(MustParse("score dashboards score-token-123\n"), &logger);
  EXPECT_FALSE(
      auth.Check(kSetAlias, Bearer("score-token-123"), "ipv4:127.0.0.1:1", "client-1").status.ok());
  EXPECT_FALSE(auth.Check(kSetAlias, Bearer("guessed-value"), "ipv4:127.0.0.1:2").status.ok());
  EXPECT_FALSE(auth.Check(kSetAlias, Metadata{}, "ipv4:127.0.0.1:3").status.ok());
  EXPECT_TRUE(auth.Check(kScore, Bearer("score-token-123"), "ipv4:127.0.0.1:4").status.ok());
  std::vector<std::string> lines = absl::StrSplit(out.str(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << out.str();
  EXPECT_THAT(lines[0], HasSubstr(R"("event":"audit")"));
  EXPECT_THAT(lines[0], HasSubstr(R"("who":"token:dashboards cert:client-1")"));
  EXPECT_THAT(lines[0], HasSubstr(R"("what":"/verdict.v1.ModelService/SetModelAlias")"));
  EXPECT_THAT(lines[0], HasSubstr(R"("outcome":"PERMISSION_DENIED")"));
  EXPECT_THAT(lines[1], HasSubstr(R"("who":"anonymous")"));
  EXPECT_THAT(lines[1], HasSubstr(R"("reason":"invalid_token")"));
  EXPECT_THAT(lines[1], HasSubstr(R"("outcome":"UNAUTHENTICATED")"));
  EXPECT_THAT(lines[2], HasSubstr(R"("reason":"no_token")"));
  EXPECT_THAT(lines[2], HasSubstr(R"("peer":"ipv4:127.0.0.1:3")"));
  EXPECT_THAT(out.str(), Not(HasSubstr("score-token-123")));
  EXPECT_THAT(out.str(), Not(HasSubstr("guessed")));
}

TEST(AuthenticatorTest, UnknownCallersCannotFloodTheLog) {
  std::ostringstream out;
  Logger logger({LogFormat::kText, LogLevel::kInfo}, out);
  const Authenticator auth(MustParse("score s score-token-123\n"), &logger);
  for (int i = 0; i < 500; ++i) {
    EXPECT_FALSE(auth.Check(kScore, Bearer("guessed-value"), "ipv4:127.0.0.1:5555").status.ok());
  }
  const std::string log = out.str();
  const auto lines = std::count(log.begin(), log.end(), '\n');
  // A burst within a second or two: at most two windows' worth of lines.
  EXPECT_GE(lines, Authenticator::kMaxRefusalLinesPerSecond);
  EXPECT_LE(lines, 2 * Authenticator::kMaxRefusalLinesPerSecond) << log;
  // Without logging.
  EXPECT_FALSE(auth.Check(kScore, Metadata{}, "", "", /*log=*/false).status.ok());
  EXPECT_EQ(out.str(), log);
}

TEST(BasicAuthFileTest, ReadsUsersWithHashedPasswordsAndChecksThem) {
  verdict::testing::ScratchDir scratch;
  const std::string path = scratch.Path("metrics-users");
  std::ofstream(path) << "# scrapers\nprometheus sha256:" << Sha256Hex("scrape-pass-1") << "\n";
  auto users = ReadBasicAuthFile(path);
  ASSERT_TRUE(users.ok()) << users.status();
  EXPECT_TRUE(CheckBasicAuth(*users, "prometheus", "scrape-pass-1"));
  EXPECT_FALSE(CheckBasicAuth(*users, "prometheus", "scrape-pass-2"));
  EXPECT_FALSE(CheckBasicAuth(*users, "other", "scrape-pass-1"));
  for (const auto& [content, says] : std::vector<std::pair<std::string, std::string>>{
           {"", "names no user"},
           {"prometheus plain-password\n", "line 1: expected `user sha256:"},
           {"a sha256:" + Sha256Hex("x") + "\na sha256:" + Sha256Hex("y") + "\n", "line 2"}}) {
    std::ofstream(path) << content;
    auto bad = ReadBasicAuthFile(path);
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << content;
    EXPECT_THAT(std::string(bad.status().message()), HasSubstr("--metrics_basic_auth_file"));
    EXPECT_THAT(std::string(bad.status().message()), HasSubstr(says)) << content;
  }
}

}  // namespace
}  // namespace verdict::server
