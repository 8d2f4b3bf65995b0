// The model directory: one writer (the trainer's WriteModelDirectory), readers for each side
// file, and the one max-length rule.
#include "core/model/model_directory.h"

#include <filesystem>

#include "core/model/reward_model.h"
#include "core/tokenize/tokenizer.h"
#include "core/util/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"

namespace verdict {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::verdict::testing::ScratchDir;
using ::verdict::testing::TestDataPath;

TEST(ModelDirectoryTest, WritesAWholeDirectoryThatReadsBack) {
  ScratchDir scratch;
  auto model = LoadRewardModel(TestDataPath("golden/distilbert"), ModelOptions{});
  auto tokenizer = LoadTokenizerFromDirectory(TestDataPath("tokenizers/bert-base-uncased"));
  ASSERT_TRUE(model.ok()) << model.status();
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  ModelDirectoryExtras extras;
  extras.encoding = {InputRule::kChat, 64, TruncationPolicy::kDrop, ChatFormat::kLlama2};
  extras.reward_stats = {0.5, 2.0, 10, 0.9, 0.3};
  extras.training_args_json = R"({"max_length": 32})";
  const std::string dir = scratch.Path("model");
  ASSERT_TRUE(WriteModelDirectory(dir, **model, **tokenizer, extras).ok());
  EXPECT_FALSE(fs::exists(dir + ".tmp"));
  for (const char* file :
       {kModelConfigFile, kModelWeightsFile, kEncodingFile, kTrainingArgsFile, kRewardStatsFile}) {
    EXPECT_TRUE(fs::exists(ModelFilePath(dir, file))) << file;
  }
  auto config = ReadModelDirectoryConfig(dir);
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->family, ModelFamily::kEncoder);
  auto settings = ReadEncodingSettings(dir);
  ASSERT_TRUE(settings.ok()) << settings.status();
  // encoding.json, not training_args.json.
  EXPECT_EQ(settings->input_rule, InputRule::kChat);
  EXPECT_EQ(settings->max_length, 64);
  EXPECT_EQ(settings->truncation, TruncationPolicy::kDrop);
  EXPECT_EQ(settings->chat_format, ChatFormat::kLlama2);
  auto stats = ReadRewardStats(dir);
  ASSERT_TRUE(stats.ok() && stats->has_value());
  EXPECT_EQ((*stats)->mean, 0.5);
  EXPECT_EQ((*stats)->std, 2.0);
  EXPECT_EQ((*stats)->pairs, 10);
}

TEST(ModelDirectoryTest, AbsentSideFilesGiveTheDefaultsAndMalformedOnesNameTheFile) {
  ScratchDir scratch;
  const std::string dir = scratch.Path("empty");
  fs::create_directories(dir);
  auto settings = ReadEncodingSettings(dir);
  ASSERT_TRUE(settings.ok());
  EXPECT_EQ(settings->max_length, EncodingSettings().max_length);
  auto stats = ReadRewardStats(dir);
  ASSERT_TRUE(stats.ok());
  EXPECT_FALSE(stats->has_value());
  ASSERT_TRUE(WriteFileAtomically(ModelFilePath(dir, kRewardStatsFile), R"({"mean": 1, "std": 0})").ok());
  stats = ReadRewardStats(dir);
  ASSERT_TRUE(stats.ok());
  EXPECT_FALSE(stats->has_value()) << "a std of 0 cannot normalise";
  ASSERT_TRUE(WriteFileAtomically(ModelFilePath(dir, kTrainingArgsFile), R"({"max_length": -3})").ok());
  EXPECT_THAT(ReadEncodingSettings(dir).status().message(), HasSubstr(kTrainingArgsFile));
}

TEST(ModelDirectoryTest, OlderDirectoriesReadTrainingArgsWithThePairRule) {
  ScratchDir scratch;
  const std::string dir = scratch.Path("old");
  fs::create_directories(dir);
  ASSERT_TRUE(WriteFileAtomically(ModelFilePath(dir, kTrainingArgsFile),
                                  R"({"max_length": 64, "chat_format": "chatml"})")
                  .ok());
  ASSERT_TRUE(HasEncodingRecord(dir));
  auto settings = ReadEncodingSettings(dir);
  ASSERT_TRUE(settings.ok()) << settings.status();
  EXPECT_EQ(settings->input_rule, InputRule::kPair);
  EXPECT_EQ(settings->chat_format, ChatFormat::kChatML);
  EXPECT_EQ(*ImpliedChatFormat(dir), ChatFormat::kChatML);
}

// A Hugging Face directory records nothing: TRL's rule, and its chat template's format when
// it is a known one; an unknown template is reported by ImpliedChatFormat.
TEST(ModelDirectoryTest, HuggingFaceDirectoriesTakeTheirChatTemplatesFormat) {
  ScratchDir scratch;
  const std::string dir = scratch.Path("hf");
  fs::create_directories(dir);
  EXPECT_FALSE(HasEncodingRecord(dir));
  EXPECT_EQ(*ImpliedChatFormat(dir), ChatFormat::kHhRlhf) << "no tokenizer_config.json";
  fs::copy_file(TestDataPath("tokenizers/qwen3/tokenizer_config.json"),
                ModelFilePath(dir, "tokenizer_config.json"));
  auto settings = ReadEncodingSettings(dir);
  ASSERT_TRUE(settings.ok()) << settings.status();
  EXPECT_EQ(settings->input_rule, InputRule::kConcat);
  EXPECT_EQ(settings->chat_format, ChatFormat::kQwen3);
  ASSERT_TRUE(WriteFileAtomically(ModelFilePath(dir, "tokenizer_config.json"),
                                  R"({"chat_template": "{{ messages | tojson }}"})")
                  .ok());
  EXPECT_EQ(ImpliedChatFormat(dir).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadEncodingSettings(dir)->chat_format, ChatFormat::kHhRlhf);
}

TEST(ModelDirectoryTest, MaxLengthIsCappedAtAnEncodersPositionsOnly) {
  ModelConfig encoder;
  encoder.family = ModelFamily::kEncoder;
  encoder.max_position_embeddings = 512;
  EXPECT_EQ(MaxSequenceLength(encoder), 512);
  EXPECT_EQ(EffectiveMaxLength(encoder, 1024), 512);
  EXPECT_EQ(EffectiveMaxLength(encoder, 128), 128);
  EXPECT_EQ(EffectiveMaxLength(encoder, 0), 512);
  ModelConfig decoder;
  decoder.family = ModelFamily::kDecoder;
  decoder.max_position_embeddings = 2048;
  EXPECT_EQ(MaxSequenceLength(decoder), 0);
  EXPECT_EQ(EffectiveMaxLength(decoder, 4096), 4096);
}

}  // namespace
}  // namespace verdict
