// Training SentencePiece vocabularies in memory, on real dialogue text (HH-RLHF).
#include <zlib.h>

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/tokenize/sentencepiece_tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"

namespace verdict {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::Not;

// The "chosen" transcripts of the first `count` pairs of HH-RLHF helpful-base's test split.
std::vector<std::string> ReadHelpfulTranscripts(size_t count) {
  const std::string path = testing::TestDataPath("hh-rlhf/helpful-base/test.jsonl.gz");
  gzFile file = gzopen(path.c_str(), "rb");
  EXPECT_NE(file, nullptr) << path;
  std::vector<std::string> texts;
  if (file == nullptr) return texts;
  std::string line;
  char buffer[1 << 16];
  while (texts.size() < count && gzgets(file, buffer, sizeof(buffer)) != nullptr) {
    line += buffer;
    if (line.empty() || line.back() != '\n') continue;  // a line longer than the buffer
    texts.push_back(nlohmann::json::parse(line).at("chosen").get<std::string>());
    line.clear();
  }
  gzclose(file);
  EXPECT_EQ(texts.size(), count);
  return texts;
}

const std::vector<std::string>& Transcripts() {
  static const auto* texts = new std::vector<std::string>(ReadHelpfulTranscripts(200));
  return *texts;
}

SentencePieceTokenizer::TrainOptions SmallVocabulary(SentencePieceTokenizer::ModelType type) {
  SentencePieceTokenizer::TrainOptions options;
  options.vocab_size = 800;
  options.model_type = type;
  return options;
}

std::unique_ptr<SentencePieceTokenizer> TrainOrDie(
    const SentencePieceTokenizer::TrainOptions& options) {
  auto tokenizer = SentencePieceTokenizer::Train(Transcripts(), options);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? std::move(*tokenizer) : nullptr;
}

class SentencePieceTrainingTest
    : public ::testing::TestWithParam<SentencePieceTokenizer::ModelType> {};

TEST_P(SentencePieceTrainingTest, TrainsTheSameModelTwiceFromTheSameText) {
  auto first = TrainOrDie(SmallVocabulary(GetParam()));
  auto second = TrainOrDie(SmallVocabulary(GetParam()));
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(first->SerializedModel(), second->SerializedModel());
}

TEST_P(SentencePieceTrainingTest, ReservesPadUnkBosEosAtTheFirstFourIds) {
  auto tokenizer = TrainOrDie(SmallVocabulary(GetParam()));
  ASSERT_NE(tokenizer, nullptr);
  const SpecialTokens& special = tokenizer->special_tokens();
  EXPECT_EQ(special.pad, 0);
  EXPECT_EQ(special.unk, 1);
  EXPECT_EQ(special.bos, 2);
  EXPECT_EQ(special.eos, 3);
  EXPECT_THAT((std::vector<std::string>{tokenizer->IdToPiece(0), tokenizer->IdToPiece(1),
                                        tokenizer->IdToPiece(2), tokenizer->IdToPiece(3)}),
              ElementsAre("<pad>", "<unk>", "<s>", "</s>"));
  EXPECT_EQ(tokenizer->vocab_size(), 800);
}

TEST_P(SentencePieceTrainingTest, RepresentsUnseenCharactersAsBytes) {
  auto tokenizer = TrainOrDie(SmallVocabulary(GetParam()));
  ASSERT_NE(tokenizer, nullptr);
  const std::string text = "Привет 東京 🙂 — fine.";
  auto ids = tokenizer->Encode(text);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(*ids, Not(::testing::Contains(tokenizer->special_tokens().unk)));
  EXPECT_EQ(tokenizer->Decode(*ids), text);
}

TEST_P(SentencePieceTrainingTest, KeepsTextExactlyThroughEncodeAndDecode) {
  auto tokenizer = TrainOrDie(SmallVocabulary(GetParam()));
  ASSERT_NE(tokenizer, nullptr);
  // Whitespace is not normalised away: the text comes back byte for byte.
  for (const std::string& text : {Transcripts()[7], Transcripts()[123],
                                  std::string("  two  spaces\tand a tab ")}) {
    auto ids = tokenizer->Encode(text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(tokenizer->Decode(*ids), text);
  }
}

TEST_P(SentencePieceTrainingTest, LoadsBackFromTheSerializedModel) {
  auto trained = TrainOrDie(SmallVocabulary(GetParam()));
  ASSERT_NE(trained, nullptr);
  auto loaded =
      SentencePieceTokenizer::FromSerializedProto(trained->SerializedModel(), trained->options());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  for (const std::string& text : {Transcripts()[0], Transcripts()[199]}) {
    EXPECT_THAT(*(*loaded)->Encode(text), ElementsAreArray(*trained->Encode(text)));
  }
  EXPECT_EQ((*loaded)->special_tokens().pad, 0);
}

INSTANTIATE_TEST_SUITE_P(
    ModelTypes, SentencePieceTrainingTest,
    ::testing::Values(SentencePieceTokenizer::ModelType::kUnigram,
                      SentencePieceTokenizer::ModelType::kBpe),
    [](const ::testing::TestParamInfo<SentencePieceTokenizer::ModelType>& info) {
      return info.param == SentencePieceTokenizer::ModelType::kBpe ? "Bpe" : "Unigram";
    });

TEST(SentencePieceTrainingErrorsTest, ExplainsAVocabularyTooLargeForTheText) {
  SentencePieceTokenizer::TrainOptions options;
  options.vocab_size = 50000;
  auto tokenizer = SentencePieceTokenizer::Train(
      std::vector<std::string>(Transcripts().begin(), Transcripts().begin() + 20), options);
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(tokenizer.status().message()), HasSubstr("vocab_size 50000"));
  EXPECT_THAT(std::string(tokenizer.status().message()), HasSubstr("hard_vocab_limit"));
}

TEST(SentencePieceTrainingOptionsTest, AcceptsASmallerVocabularyWithoutAHardLimit) {
  SentencePieceTokenizer::TrainOptions options;
  options.vocab_size = 50000;
  options.hard_vocab_limit = false;
  auto tokenizer = SentencePieceTokenizer::Train(
      std::vector<std::string>(Transcripts().begin(), Transcripts().begin() + 20), options);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_LT((*tokenizer)->vocab_size(), 50000);
  EXPECT_GT((*tokenizer)->vocab_size(), 260);  // 4 specials + 256 bytes + learnt pieces
}

TEST(SentencePieceTrainingErrorsTest, ExplainsAVocabularyTooSmallForBytesAndCharacters) {
  SentencePieceTokenizer::TrainOptions options;
  options.vocab_size = 200;
  auto tokenizer = SentencePieceTokenizer::Train(Transcripts(), options);
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(tokenizer.status().message()), HasSubstr("too small"));
}

TEST(SentencePieceTrainingErrorsTest, RejectsBadInput) {
  SentencePieceTokenizer::TrainOptions options;
  EXPECT_EQ(SentencePieceTokenizer::Train({}, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SentencePieceTokenizer::Train({"\n\n", ""}, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto bad_utf8 = SentencePieceTokenizer::Train({"fine", "caf\xc3"}, options);
  EXPECT_EQ(bad_utf8.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad_utf8.status().message()), HasSubstr("training text 1"));
  options.vocab_size = 0;
  EXPECT_EQ(SentencePieceTokenizer::Train({"fine"}, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.vocab_size = 1000;
  options.character_coverage = 1.5;
  EXPECT_EQ(SentencePieceTokenizer::Train({"fine"}, options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SentencePieceTrainingOptionsTest, SamplesSentencesDeterministically) {
  SentencePieceTokenizer::TrainOptions options = SmallVocabulary(
      SentencePieceTokenizer::ModelType::kBpe);
  options.max_sentences = 500;
  auto first = SentencePieceTokenizer::Train(Transcripts(), options);
  auto second = SentencePieceTokenizer::Train(Transcripts(), options);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ((*first)->SerializedModel(), (*second)->SerializedModel());
  auto all = TrainOrDie(SmallVocabulary(SentencePieceTokenizer::ModelType::kBpe));
  ASSERT_NE(all, nullptr);
  EXPECT_NE((*first)->SerializedModel(), all->SerializedModel());
}

}  // namespace
}  // namespace verdict
