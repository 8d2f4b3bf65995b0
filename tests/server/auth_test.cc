#include "server/auth.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"

namespace verdict::server {
namespace {

using Metadata = Authenticator::Metadata;
using ::testing::HasSubstr;

TEST(AuthenticatorTest, WithoutATokenEveryCallPasses) {
  EXPECT_TRUE(Authenticator("").Check(Metadata{}).ok());
}

TEST(AuthenticatorTest, ABearerTokenMustMatchExactly) {
  const Authenticator auth("s3cret");
  const std::string key = "authorization";
  const std::string good = "Bearer s3cret";
  EXPECT_TRUE(auth.Check(Metadata{{key, good}}).ok());

  for (const std::string bad : {"Bearer s3cre", "Bearer s3cret ", "bearer s3cret", "s3cret",
                                "Bearer S3CRET", ""}) {
    const grpc::Status status = auth.Check(Metadata{{key, bad}});
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << bad;
    EXPECT_EQ(status.error_message(), "invalid token") << bad;
  }
}

TEST(AuthenticatorTest, MissingMetadataSaysWhatToSend) {
  const grpc::Status status = Authenticator("s3cret").Check(Metadata{});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(status.error_message().find("authorization: Bearer"), std::string::npos);
}

// An empty --token_file used to give an empty token, i.e. no authentication at all.
TEST(ReadTokenFileTest, RefusesEmptyWhitespaceAndPlaceholderTokens) {
  verdict::testing::ScratchDir scratch;
  auto write = [&](const std::string& name, const std::string& content) {
    const std::string path = scratch.Path(name);
    std::ofstream(path) << content;
    return path;
  };
  for (const auto& [name, content, says] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"empty", "", "is empty"},
           {"blank", " \n\t\n", "is empty"},
           {"changeme", "changeme\n", "placeholder"},
           {"token", "  TOKEN ", "placeholder"},
           {"two-words", "abc def", "whitespace"}}) {
    auto token = ReadTokenFile(write(name, content));
    EXPECT_EQ(token.status().code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(std::string(token.status().message()), HasSubstr("--token_file")) << name;
    EXPECT_THAT(std::string(token.status().message()), HasSubstr(says)) << name;
  }
  auto token = ReadTokenFile(write("good", "  9f8e7d6c5b4a\n"));
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, "9f8e7d6c5b4a");
  EXPECT_FALSE(ReadTokenFile(scratch.Path("missing")).ok());
}

TEST(AuthenticatorTest, RefusalsAreLoggedWithoutTheTokenAtMostOncePerSecond) {
  std::ostringstream out;
  Logger logger({LogFormat::kText, LogLevel::kInfo}, out);
  const Authenticator auth("s3cret", &logger);
  const std::string key = "authorization";
  const std::string bad = "Bearer guessed-value";
  for (int i = 0; i < 50; ++i) {
    EXPECT_FALSE(auth.Check(Metadata{{key, bad}}, "ipv4:127.0.0.1:5555").ok());
  }
  EXPECT_TRUE(
      auth.Check(Metadata{{key, std::string("Bearer s3cret")}}, "ipv4:127.0.0.1:5555").ok());
  const std::string log = out.str();
  // One line for the burst, naming the reason and the peer, never a token.
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 1) << log;
  EXPECT_THAT(log, HasSubstr("auth.refused"));
  EXPECT_THAT(log, HasSubstr("reason=invalid_token"));
  EXPECT_THAT(log, HasSubstr("peer=ipv4:127.0.0.1:5555"));
  EXPECT_THAT(log, ::testing::Not(HasSubstr("guessed")));
  EXPECT_THAT(log, ::testing::Not(HasSubstr("s3cret")));
  // Without logging: the metadata-only check.
  EXPECT_FALSE(auth.Check(Metadata{}).ok());
  EXPECT_EQ(out.str(), log);
}

}  // namespace
}  // namespace verdict::server
