// What SentencePieceTokenizer does when its module cannot be loaded: clear errors, no crash.
//
// The module is loaded once per process, so this binary has its own process and points
// VERDICT_SENTENCEPIECE_MODULE at a file that is not a shared library before the first load.
#include <stdlib.h>

#include <string>
#include <vector>

#include "core/tokenize/sentencepiece_module.h"
#include "core/tokenize/sentencepiece_tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"

namespace verdict {
namespace {

using ::testing::HasSubstr;

TEST(SentencePieceModuleUnavailableTest, EveryEntryPointFailsWithTheReasonAndThePath) {
  const std::string not_a_module = testing::TestDataPath("SOURCES.md");
  ASSERT_EQ(setenv(kSentencePieceModuleEnvVar, not_a_module.c_str(), 1), 0);

  auto module = LoadSentencePieceModule();
  ASSERT_FALSE(module.ok());
  EXPECT_EQ(module.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(module.status().message(), HasSubstr(not_a_module));
  // dlerror()'s own words.
  EXPECT_THAT(module.status().message(), HasSubstr("ELF"));
  EXPECT_THAT(module.status().message(), HasSubstr(kSentencePieceModuleEnvVar));

  auto loaded = SentencePieceTokenizer::Load(
      testing::TestDataPath("tokenizers/llama2/tokenizer.model"));
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(loaded.status().message(), HasSubstr(not_a_module));

  SentencePieceTokenizer::TrainOptions options;
  options.vocab_size = 300;
  auto trained = SentencePieceTokenizer::Train({"a few words to train on"}, options);
  ASSERT_FALSE(trained.ok());
  EXPECT_EQ(trained.status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace verdict
