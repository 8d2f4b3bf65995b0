#include "core/tokenize/pair_encoding.h"

#include <memory>
#include <string>
#include <vector>

#include "core/tokenize/sentencepiece_tokenizer.h"
#include "core/tokenize/wordpiece_tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"

namespace verdict {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

std::unique_ptr<Tokenizer> Bert() {
  auto tokenizer = WordPieceTokenizer::Load(
      testing::TestDataPath("tokenizers/bert-base-uncased/vocab.txt"));
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? std::move(*tokenizer) : nullptr;
}

std::unique_ptr<Tokenizer> SentencePiece(
    const std::string& relative_path,
    const SentencePieceTokenizer::Options& options = SentencePieceTokenizer::Options()) {
  auto tokenizer = SentencePieceTokenizer::Load(testing::TestDataPath(relative_path), options);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? std::move(*tokenizer) : nullptr;
}

PairEncodingOptions Options(PairFraming framing, int64_t max_length = 0,
                            TruncationPolicy policy = TruncationPolicy::kTruncate) {
  PairEncodingOptions options;
  options.framing = framing;
  options.max_length = max_length;
  options.policy = policy;
  return options;
}

// "The quick brown fox jumps over the lazy dog" in bert-base-uncased.
const std::vector<int32_t> kFoxIds = {1996, 4248, 2829, 4419, 14523, 2058, 1996, 13971, 3899};
constexpr char kFox[] = "The quick brown fox jumps over the lazy dog";

TEST(EncodePairTest, FramesAnEncoderPairWithClsAndSep) {
  auto bert = Bert();
  ASSERT_NE(bert, nullptr);
  auto pair = EncodePair(*bert, "Hello world", "Hi there", Options(PairFraming::kTextPair));
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_THAT(pair->ids, ElementsAre(101, 7592, 2088, 102, 7632, 2045, 102));
  EXPECT_EQ(pair->prompt_length, 4u);
  EXPECT_FALSE(pair->truncated);
}

TEST(EncodePairTest, FramesADecoderPairWithBosOnlyAsLlamaTokenizerDoes) {
  auto stories = SentencePiece("models/stories260K-hf/tokenizer.model");
  ASSERT_NE(stories, nullptr);
  auto pair = EncodePair(*stories, "Once upon", " a time", Options(PairFraming::kJoined));
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_THAT(pair->ids, ElementsAre(1, 403, 407, 261, 378));
  EXPECT_EQ(pair->prompt_length, 3u);
}

TEST(EncodePairTest, EndsADecoderPairWithEosWhenTheTokenizerAddsIt) {
  SentencePieceTokenizer::Options options;
  options.add_bos = false;
  options.add_eos = true;
  auto stories = SentencePiece("models/stories260K-hf/tokenizer.model", options);
  ASSERT_NE(stories, nullptr);
  auto pair = EncodePair(*stories, "Once upon", " a time", Options(PairFraming::kJoined));
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_THAT(pair->ids, ElementsAre(403, 407, 261, 378, 2));
  EXPECT_EQ(pair->prompt_length, 2u);
}

TEST(EncodePairTest, EncodesADecoderPairAsOneText) {
  auto llama = SentencePiece("tokenizers/llama2/tokenizer.model");
  ASSERT_NE(llama, nullptr);
  const std::string prompt = "\n\nHuman: Is the sky blue?\n\nAssistant:";
  const std::string response = " Yes, on a clear day.";
  auto pair = EncodePair(*llama, prompt, response, Options(PairFraming::kJoined));
  ASSERT_TRUE(pair.ok()) << pair.status();
  auto whole = llama->Encode(prompt + response);
  ASSERT_TRUE(whole.ok()) << whole.status();
  std::vector<int32_t> expected = {1};
  expected.insert(expected.end(), whole->begin(), whole->end());
  EXPECT_THAT(pair->ids, ElementsAreArray(expected));
  const std::vector<int32_t> response_ids(pair->ids.begin() + pair->prompt_length,
                                          pair->ids.end());
  EXPECT_EQ(llama->Decode(response_ids), "Yes, on a clear day.");
}

TEST(EncodePairTest, JoinedWithEosAppendsTheEosUnlessTheTextEndsWithIt) {
  auto stories = SentencePiece("models/stories260K-hf/tokenizer.model");
  ASSERT_NE(stories, nullptr);
  auto pair = EncodePair(*stories, "Once upon", " a time", Options(PairFraming::kJoinedWithEos));
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_THAT(pair->ids, ElementsAre(1, 403, 407, 261, 378, 2));
  // Truncation keeps the appended EOS, as it keeps the frame.
  auto truncated =
      EncodePair(*stories, "Once upon", " a time", Options(PairFraming::kJoinedWithEos, 5));
  ASSERT_TRUE(truncated.ok()) << truncated.status();
  EXPECT_THAT(truncated->ids, ElementsAre(1, 407, 261, 378, 2));
}

TEST(EncodePairTest, JoinedEncodesAWordPiecePairAsOneText) {
  auto bert = Bert();
  ASSERT_NE(bert, nullptr);
  // "Hello" + "world" is one word, "helloworld", as tokenizer("Helloworld") reads it.
  auto pair = EncodePair(*bert, "Hello", "world", Options(PairFraming::kJoinedWithEos));
  ASSERT_TRUE(pair.ok()) << pair.status();
  auto whole = bert->Encode("Helloworld");
  ASSERT_TRUE(whole.ok());
  std::vector<int32_t> expected = {101};
  expected.insert(expected.end(), whole->begin(), whole->end());
  expected.push_back(102);
  EXPECT_THAT(pair->ids, ElementsAreArray(expected));
  // [CLS] and "hello", the piece the prompt alone also starts with; "##world" is the response's.
  EXPECT_EQ(pair->prompt_length, 2u);
}

TEST(EncodePairTest, AsRenderedAddsNothing) {
  auto stories = SentencePiece("models/stories260K-hf/tokenizer.model");
  ASSERT_NE(stories, nullptr);
  auto pair = EncodePair(*stories, "Once upon", " a time", Options(PairFraming::kAsRendered));
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_THAT(pair->ids, ElementsAre(403, 407, 261, 378));
}

TEST(EncodePairTest, UsesBosAndEosAsClsAndSepForSentencePieceEncoders) {
  auto stories = SentencePiece("models/stories260K-hf/tokenizer.model");
  ASSERT_NE(stories, nullptr);
  auto pair = EncodePair(*stories, "Once upon", "a time", Options(PairFraming::kTextPair));
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_THAT(pair->ids, ElementsAre(1, 403, 407, 2, 261, 378, 2));
}

TEST(EncodePairTest, TruncatesThePromptFromItsStartFirst) {
  auto bert = Bert();
  ASSERT_NE(bert, nullptr);
  // 3 special + 9 prompt + 2 response = 14 tokens; 10 allowed: the prompt loses 4 at its start.
  auto pair = EncodePair(*bert, kFox, "Hi there", Options(PairFraming::kTextPair, 10));
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_THAT(pair->ids, ElementsAre(101, 14523, 2058, 1996, 13971, 3899, 102, 7632, 2045, 102));
  EXPECT_EQ(pair->prompt_length, 7u);
  EXPECT_TRUE(pair->truncated);
}

TEST(EncodePairTest, TruncatesTheResponseEndOnceThePromptIsGone) {
  auto bert = Bert();
  ASSERT_NE(bert, nullptr);
  auto pair = EncodePair(*bert, "Hi there", kFox, Options(PairFraming::kTextPair, 7));
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_THAT(pair->ids, ElementsAre(101, 102, 1996, 4248, 2829, 4419, 102));
  EXPECT_EQ(pair->prompt_length, 2u);
  EXPECT_TRUE(pair->truncated);
}

TEST(EncodePairTest, TruncatesADecoderPromptKeepingBos) {
  auto stories = SentencePiece("models/stories260K-hf/tokenizer.model");
  ASSERT_NE(stories, nullptr);
  auto pair = EncodePair(*stories, "Once upon", " a time", Options(PairFraming::kJoined, 4));
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_THAT(pair->ids, ElementsAre(1, 407, 261, 378));
  EXPECT_EQ(pair->prompt_length, 2u);
}

TEST(EncodePairTest, LeavesAPairThatFitsExactlyAlone) {
  auto bert = Bert();
  ASSERT_NE(bert, nullptr);
  auto pair = EncodePair(*bert, kFox, "Hi there", Options(PairFraming::kTextPair, 14));
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_EQ(pair->ids.size(), 14u);
  EXPECT_FALSE(pair->truncated);
}

TEST(EncodePairTest, DropsAnOverlongPairWithItsLengthInTheError) {
  auto bert = Bert();
  ASSERT_NE(bert, nullptr);
  auto pair = EncodePair(*bert, kFox, "Hi there",
                         Options(PairFraming::kTextPair, 13, TruncationPolicy::kDrop));
  EXPECT_EQ(pair.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(std::string(pair.status().message()), HasSubstr("14 tokens"));
  EXPECT_THAT(std::string(pair.status().message()), HasSubstr("max_length 13"));
}

TEST(EncodePairTest, RejectsAMaxLengthWithNoRoomBesideTheSpecialTokens) {
  auto bert = Bert();
  ASSERT_NE(bert, nullptr);
  auto pair = EncodePair(*bert, kFox, "Hi there", Options(PairFraming::kTextPair, 3));
  EXPECT_EQ(pair.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(EncodePairTest, TruncatesAPromptBeforeAnEmptyResponse) {
  auto bert = Bert();
  ASSERT_NE(bert, nullptr);
  auto pair = EncodePair(*bert, kFox, "", Options(PairFraming::kTextPair, 5));
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_THAT(pair->ids, ElementsAre(101, 13971, 3899, 102, 102));
}

TEST(EncodePairTest, PassesOnInvalidUtf8AsInvalidArgument) {
  auto bert = Bert();
  ASSERT_NE(bert, nullptr);
  auto pair = EncodePair(*bert, "fine", "bad \xff", Options(PairFraming::kTextPair));
  EXPECT_EQ(pair.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ParseTruncationPolicyTest, ParsesTheTwoPoliciesAndRejectsOthers) {
  EXPECT_EQ(*ParseTruncationPolicy("truncate"), TruncationPolicy::kTruncate);
  EXPECT_EQ(*ParseTruncationPolicy("drop"), TruncationPolicy::kDrop);
  auto unknown = ParseTruncationPolicy("Drop");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unknown.status().message()), HasSubstr("Drop"));
}

}  // namespace
}  // namespace verdict
