#include "server/validation.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict::server {
namespace {

using ::testing::StartsWith;

void ExpectInvalid(const absl::Status& status, const std::string& field) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), StartsWith(field + ": "));
}

TEST(ValidationTest, ModelNamesAreLowercaseWithDotsDashesAndUnderscores) {
  for (const char* good : {"reward-model", "rm.v2", "7b_rm", "a"}) {
    EXPECT_TRUE(ValidateModelName("name", good).ok()) << good;
  }
  for (const std::string bad : {std::string(""), std::string("Reward"), std::string("-rm"),
                                std::string(".rm"), std::string("rm/x"), std::string(65, 'a')}) {
    ExpectInvalid(ValidateModelName("name", bad), "name");
  }
  EXPECT_TRUE(ValidateModelName("name", std::string(64, 'a')).ok());
}

TEST(ValidationTest, AliasesStartWithALetterAndLatestIsReserved) {
  EXPECT_TRUE(ValidateAlias("alias", "prod", false).ok());
  EXPECT_TRUE(ValidateAlias("alias", "latest", true).ok());
  ExpectInvalid(ValidateAlias("alias", "latest", false), "alias");
  ExpectInvalid(ValidateAlias("alias", "1prod", false), "alias");
  ExpectInvalid(ValidateAlias("alias", "pro.d", false), "alias");
  ExpectInvalid(ValidateAlias("alias", std::string(33, 'a'), false), "alias");
}

TEST(ValidationTest, ModelRefsCheckNameVersionAndAliasWithTheirPaths) {
  v1::ModelRef ref;
  ref.set_name("rm");
  EXPECT_TRUE(ValidateModelRef("model", ref).ok());
  ref.set_version(0);
  ExpectInvalid(ValidateModelRef("model", ref), "model.version");
  ref.set_version(3);
  EXPECT_TRUE(ValidateModelRef("model", ref).ok());
  ref.set_alias("Prod");
  ExpectInvalid(ValidateModelRef("model", ref), "model.alias");
  ref.set_alias("latest");
  EXPECT_TRUE(ValidateModelRef("model", ref).ok());
  ref.set_name("");
  ExpectInvalid(ValidateModelRef("model", ref), "model.name");
}

TEST(ValidationTest, ModelSpecsNameAVersionOrAnAlias) {
  v1::ModelRef ref = ParseModelSpec("rm");
  EXPECT_EQ(ref.name(), "rm");
  EXPECT_EQ(ref.version(), 0);
  EXPECT_TRUE(ref.alias().empty());
  ref = ParseModelSpec("rm:7");
  EXPECT_EQ(ref.name(), "rm");
  EXPECT_EQ(ref.version(), 7);
  ref = ParseModelSpec("rm:prod");
  EXPECT_EQ(ref.alias(), "prod");
  EXPECT_EQ(ref.version(), 0);
  ExpectInvalid(ValidateModelRef("model", ParseModelSpec(":3")), "model.name");
}

TEST(ValidationTest, IdsAreShortAndAlphanumeric) {
  EXPECT_TRUE(ValidateId("job_id", "job-00ff_A").ok());
  ExpectInvalid(ValidateId("job_id", ""), "job_id");
  ExpectInvalid(ValidateId("job_id", "job/1"), "job_id");
  ExpectInvalid(ValidateId("job_id", std::string(65, 'a')), "job_id");
}

TEST(ValidationTest, RangesAreInclusive) {
  EXPECT_TRUE(ValidateRange("n", 1, 1, 10).ok());
  EXPECT_TRUE(ValidateRange("n", 10, 1, 10).ok());
  ExpectInvalid(ValidateRange("n", 0, 1, 10), "n");
  ExpectInvalid(ValidateRange("n", 11, 1, 10), "n");
}

TEST(ValidationTest, ErrorsQuoteAtMostABoundedPrefixOfAHostileValue) {
  const std::string huge(16 << 10, 'x');
  const absl::Status status = ValidateId("job_id", huge + "/");
  ExpectInvalid(status, "job_id");
  EXPECT_LT(status.message().size(), 200u);
  EXPECT_THAT(std::string(status.message()), ::testing::HasSubstr("(16385 bytes)"));
  EXPECT_LT(ValidateModelName("name", huge).message().size(), 200u);
  EXPECT_EQ(QuoteForMessage("short"), "\"short\"");
}

}  // namespace
}  // namespace verdict::server
