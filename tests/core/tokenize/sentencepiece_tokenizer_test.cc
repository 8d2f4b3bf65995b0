#include "core/tokenize/sentencepiece_tokenizer.h"

#include <memory>
#include <string>
#include <vector>

#include "core/util/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"

namespace verdict {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

std::unique_ptr<SentencePieceTokenizer> LoadOrDie(
    const std::string& relative_path,
    const SentencePieceTokenizer::Options& options = SentencePieceTokenizer::Options()) {
  auto tokenizer = SentencePieceTokenizer::Load(testing::TestDataPath(relative_path), options);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? std::move(*tokenizer) : nullptr;
}

std::vector<std::string> Pieces(const SentencePieceTokenizer& tokenizer,
                                const std::vector<int32_t>& ids) {
  std::vector<std::string> pieces;
  for (int32_t id : ids) pieces.push_back(tokenizer.IdToPiece(id));
  return pieces;
}

constexpr char kLlama2[] = "tokenizers/llama2/tokenizer.model";
constexpr char kStories[] = "models/stories260K-hf/tokenizer.model";
constexpr char kSentencePieceTest[] = "tokenizers/sentencepiece-test/test_model.model";

TEST(SentencePieceTokenizerTest, ReadsLlama2SpecialTokensFromTheModel) {
  auto tokenizer = LoadOrDie(kLlama2);
  ASSERT_NE(tokenizer, nullptr);
  const SpecialTokens& special = tokenizer->special_tokens();
  EXPECT_EQ(special.unk, 0);
  EXPECT_EQ(special.bos, 1);
  EXPECT_EQ(special.eos, 2);
  EXPECT_EQ(special.pad, -1);  // Llama 2 defines none
  EXPECT_EQ(special.cls, -1);
  EXPECT_EQ(special.sep, -1);
  EXPECT_TRUE(special.add_bos);  // LlamaTokenizer's defaults
  EXPECT_FALSE(special.add_eos);
  EXPECT_EQ(tokenizer->vocab_size(), 32000);
}

TEST(SentencePieceTokenizerTest, EncodesLikeLlama2Tokenizer) {
  auto tokenizer = LoadOrDie(kLlama2);
  ASSERT_NE(tokenizer, nullptr);
  auto ids = tokenizer->Encode("Hello world, the reward model prefers the chosen response.");
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(Pieces(*tokenizer, *ids),
              ElementsAre("▁Hello", "▁world", ",", "▁the", "▁reward", "▁model", "▁pre", "fers",
                          "▁the", "▁chosen", "▁response", "."));
}

TEST(SentencePieceTokenizerTest, EncodesStoriesPromptAsTheReferenceIds) {
  auto tokenizer = LoadOrDie(kStories);
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->special_tokens().bos, 1);
  auto ids = tokenizer->Encode("Once upon a time");
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(*ids, ElementsAre(403, 407, 261, 378));
  EXPECT_EQ(tokenizer->vocab_size(), 512);
}

TEST(SentencePieceTokenizerTest, FallsBackToBytesForCharactersOutsideTheVocabulary) {
  auto tokenizer = LoadOrDie(kLlama2);
  ASSERT_NE(tokenizer, nullptr);
  auto ids = tokenizer->Encode("a\nb");
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(Pieces(*tokenizer, *ids), ElementsAre("▁a", "<0x0A>", "b"));
  EXPECT_EQ(tokenizer->Decode(*ids), "a\nb");
}

TEST(SentencePieceTokenizerTest, DecodeRoundTripsText) {
  auto tokenizer = LoadOrDie(kLlama2);
  ASSERT_NE(tokenizer, nullptr);
  for (const std::string text :
       {"Hello world, the reward model prefers the chosen response.",
        "Human: Can you help?\n\nAssistant: Sure! 😀 Ça va, 東京.", "tabs\tand  spaces"}) {
    auto ids = tokenizer->Encode(text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(tokenizer->Decode(*ids), text);
  }
}

TEST(SentencePieceTokenizerTest, DecodeSkipsSpecialTokensAndUnknownIds) {
  auto tokenizer = LoadOrDie(kLlama2);
  ASSERT_NE(tokenizer, nullptr);
  auto ids = tokenizer->Encode("Hello world");
  ASSERT_TRUE(ids.ok()) << ids.status();
  std::vector<int32_t> framed = {1};
  framed.insert(framed.end(), ids->begin(), ids->end());
  framed.insert(framed.end(), {2, 0, -5, 32000});
  EXPECT_EQ(tokenizer->Decode(framed), "Hello world");
}

TEST(SentencePieceTokenizerTest, MapsCharactersWithoutPiecesToUnkWithoutByteFallback) {
  // sentencepiece's own test model: unigram, 1000 pieces, no byte fallback.
  auto tokenizer = LoadOrDie(kSentencePieceTest);
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->vocab_size(), 1000);
  EXPECT_EQ(tokenizer->special_tokens().unk, 0);
  EXPECT_EQ(tokenizer->special_tokens().bos, 1);
  EXPECT_EQ(tokenizer->special_tokens().eos, 2);
  auto ids = tokenizer->Encode("hello 東");
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(*ids, ::testing::Contains(0));
  auto plain = tokenizer->Encode("hello world");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_THAT(*plain, ::testing::Not(::testing::Contains(0)));
  EXPECT_EQ(tokenizer->Decode(*plain), "hello world");
}

TEST(SentencePieceTokenizerTest, RejectsInvalidUtf8) {
  auto tokenizer = LoadOrDie(kLlama2);
  ASSERT_NE(tokenizer, nullptr);
  auto ids = tokenizer->Encode("caf\xc3");
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
  auto split = tokenizer->EncodeConcatenated("ok", "\xff");
  EXPECT_EQ(split.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SentencePieceTokenizerTest, EncodeConcatenatedSplitsAtTheJoin) {
  auto tokenizer = LoadOrDie(kLlama2);
  ASSERT_NE(tokenizer, nullptr);
  const std::string prompt = "Human: Is the sky blue?\n\nAssistant:";
  const std::string response = " Yes, on a clear day.";
  auto split = tokenizer->EncodeConcatenated(prompt, response);
  ASSERT_TRUE(split.ok()) << split.status();
  auto joined = tokenizer->Encode(prompt + response);
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_THAT(split->ids, ElementsAreArray(*joined));
  const std::vector<int32_t> response_ids(split->ids.begin() + split->first_length,
                                          split->ids.end());
  EXPECT_EQ(Pieces(*tokenizer, response_ids).front(), "▁Yes");
  EXPECT_EQ(tokenizer->Decode(response_ids), "Yes, on a clear day.");
  const std::vector<int32_t> prompt_ids(split->ids.begin(),
                                        split->ids.begin() + split->first_length);
  EXPECT_EQ(tokenizer->Decode(prompt_ids), prompt);
}

TEST(SentencePieceTokenizerTest, EncodeConcatenatedCountsAStraddlingPieceAsFirst) {
  auto tokenizer = LoadOrDie(kLlama2);
  ASSERT_NE(tokenizer, nullptr);
  auto split = tokenizer->EncodeConcatenated("Hello wor", "ld again");
  ASSERT_TRUE(split.ok()) << split.status();
  EXPECT_THAT(Pieces(*tokenizer, split->ids), ElementsAre("▁Hello", "▁world", "▁again"));
  EXPECT_EQ(split->first_length, 2u);

  auto empty_first = tokenizer->EncodeConcatenated("", "Hello");
  ASSERT_TRUE(empty_first.ok()) << empty_first.status();
  EXPECT_EQ(empty_first->first_length, 0u);
  EXPECT_EQ(empty_first->ids.size(), 1u);

  auto empty_second = tokenizer->EncodeConcatenated("Hello", "");
  ASSERT_TRUE(empty_second.ok()) << empty_second.status();
  EXPECT_EQ(empty_second->first_length, 1u);
}

TEST(SentencePieceTokenizerTest, EncodeConcatenatedCountsEveryByteOfASplitCharacterAsOne) {
  // The emoji becomes four byte pieces that all begin where the character begins.
  auto tokenizer = LoadOrDie(kStories);
  ASSERT_NE(tokenizer, nullptr);
  auto split = tokenizer->EncodeConcatenated("hi", "🙂");
  ASSERT_TRUE(split.ok()) << split.status();
  const std::vector<int32_t> second(split->ids.begin() + split->first_length, split->ids.end());
  EXPECT_THAT(Pieces(*tokenizer, second), ElementsAre("<0xF0>", "<0x9F>", "<0x99>", "<0x82>"));
}

TEST(SentencePieceTokenizerTest, TakesAddBosAndAddEosFromOptions) {
  SentencePieceTokenizer::Options options;
  options.add_bos = false;
  options.add_eos = true;
  auto tokenizer = LoadOrDie(kLlama2, options);
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_FALSE(tokenizer->special_tokens().add_bos);
  EXPECT_TRUE(tokenizer->special_tokens().add_eos);
}

TEST(SentencePieceTokenizerTest, TakesThePadTokenFromOptions) {
  SentencePieceTokenizer::Options options;
  options.pad_token = "<unk>";
  auto tokenizer = LoadOrDie(kLlama2, options);
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->special_tokens().pad, 0);

  options.pad_token = "<not-a-piece>";
  auto missing = SentencePieceTokenizer::Load(testing::TestDataPath(kLlama2), options);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("<not-a-piece>"));
}

TEST(SentencePieceTokenizerTest, LoadsFromSerializedProtoAsFromTheFile) {
  auto bytes = ReadFileToString(testing::TestDataPath(kStories));
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto tokenizer = SentencePieceTokenizer::FromSerializedProto(*bytes);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_THAT(*(*tokenizer)->Encode("Once upon a time"), ElementsAre(403, 407, 261, 378));
  EXPECT_EQ((*tokenizer)->SerializedModel(), *bytes);
}

TEST(SentencePieceTokenizerTest, ReportsMissingAndBrokenModels) {
  auto missing = SentencePieceTokenizer::Load(testing::TestDataPath("no-such.model"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);

  auto broken = SentencePieceTokenizer::FromSerializedProto("this is not a model proto");
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kInvalidArgument);

  auto not_a_model = SentencePieceTokenizer::Load(
      testing::TestDataPath("tokenizers/bert-base-uncased/vocab.txt"));
  EXPECT_EQ(not_a_model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(not_a_model.status().message()), HasSubstr("vocab.txt"));
}

}  // namespace
}  // namespace verdict
