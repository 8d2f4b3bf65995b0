#include "server/auth.h"

#include <map>
#include <string>

#include "gtest/gtest.h"

namespace verdict::server {
namespace {

using Metadata = std::multimap<grpc::string_ref, grpc::string_ref>;

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

}  // namespace
}  // namespace verdict::server
