#include "core/tokenize/wordpiece_tokenizer.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"

namespace verdict {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

// Expected ids are what Hugging Face's BertTokenizer (bert-base-uncased) gives; each was
// worked out from vocab.txt with BERT's published algorithm.
class BertUncasedTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto loaded = WordPieceTokenizer::Load(
        testing::TestDataPath("tokenizers/bert-base-uncased/vocab.txt"));
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    tokenizer_ = loaded->release();
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    tokenizer_ = nullptr;
  }

  static std::vector<int32_t> Encode(const std::string& text) {
    auto ids = tokenizer_->Encode(text);
    EXPECT_TRUE(ids.ok()) << ids.status();
    return ids.ok() ? *ids : std::vector<int32_t>{};
  }

  static std::vector<std::string> Tokens(const std::string& text) {
    std::vector<std::string> tokens;
    for (int32_t id : Encode(text)) tokens.push_back(tokenizer_->IdToToken(id));
    return tokens;
  }

  static WordPieceTokenizer* tokenizer_;
};

WordPieceTokenizer* BertUncasedTest::tokenizer_ = nullptr;

TEST_F(BertUncasedTest, FindsSpecialTokensAtBertsIds) {
  const SpecialTokens& special = tokenizer_->special_tokens();
  EXPECT_EQ(special.pad, 0);
  EXPECT_EQ(special.unk, 100);
  EXPECT_EQ(special.cls, 101);
  EXPECT_EQ(special.sep, 102);
  EXPECT_EQ(tokenizer_->TokenToId("[MASK]"), 103);
  EXPECT_EQ(special.bos, -1);
  EXPECT_EQ(special.eos, -1);
  EXPECT_FALSE(special.add_bos);
  EXPECT_FALSE(special.add_eos);
  EXPECT_EQ(tokenizer_->vocab_size(), 30522);
}

TEST_F(BertUncasedTest, LowerCasesAndStripsAccents) {
  EXPECT_THAT(Encode("Héllo, World!"), ElementsAre(7592, 1010, 2088, 999));
  EXPECT_THAT(Tokens("naïve café Ångström"), ElementsAre("naive", "cafe", "ang", "##strom"));
  EXPECT_THAT(Tokens("Ünïcödé"), ElementsAre("unicode"));
}

TEST_F(BertUncasedTest, LowerCasesAFinalCapitalSigmaToFinalSigma) {
  // Python's str.lower() turns a word-final Σ into ς, a medial one into σ.
  EXPECT_THAT(Encode("ΟΔΟΣ ΣΑΣ"), ElementsAre(1169, 29722, 15297, 1173, 14608, 19579));
}

TEST_F(BertUncasedTest, SplitsOnPunctuationAndAsciiSymbols) {
  EXPECT_THAT(Tokens("don't stop-believing... (yes)"),
              ElementsAre("don", "'", "t", "stop", "-", "believing", ".", ".", ".", "(", "yes",
                          ")"));
  EXPECT_THAT(Tokens("a$b+c^d|e"), ElementsAre("a", "$", "b", "+", "c", "^", "d", "|", "e"));
}

TEST_F(BertUncasedTest, PutsEachCjkIdeographInItsOwnWord) {
  // 爱 and 门 (simplified forms) are not in the vocabulary: each alone becomes [UNK], and
  // its neighbours are untouched.
  EXPECT_THAT(Encode("我爱北京天安门 ok"), ElementsAre(1855, 100, 1781, 1755, 1811, 1820, 100, 7929));
}

TEST_F(BertUncasedTest, SplitsUnknownWordsIntoContinuations) {
  EXPECT_THAT(Tokens("unaffable"), ElementsAre("una", "##ffa", "##ble"));
  EXPECT_THAT(Encode("unaffable"), ElementsAre(14477, 20961, 3468));
  EXPECT_THAT(Tokens("xyzzyqwv"), ElementsAre("x", "##y", "##zzy", "##q", "##w", "##v"));
}

TEST_F(BertUncasedTest, DropsControlCharactersAndTreatsOtherWhitespaceAsSpace) {
  // A tab separates words; NUL, the soft hyphen (Cf), U+FFFD and the zero-width space (Cf)
  // vanish and join their neighbours; the ideographic space separates.
  static constexpr char kText[] = "tab\there\0nul\u00adsoft\ufffdx\u200bzw";
  EXPECT_THAT(Encode(std::string(kText, sizeof(kText) - 1)),
              ElementsAre(21628, 2182, 11231, 4877, 15794, 2595, 2480, 2860));
  EXPECT_THAT(Tokens("\u3000wide\u3000space\n"), ElementsAre("wide", "space"));
}

TEST_F(BertUncasedTest, TurnsAWordOverOneHundredCharactersIntoUnk) {
  EXPECT_THAT(Encode(std::string(101, 'a')), ElementsAre(100));
  const std::vector<int32_t> hundred = Encode(std::string(100, 'a'));
  ASSERT_EQ(hundred.size(), 50u);  // aaa, then 48 x ##aa, then ##a
  EXPECT_EQ(tokenizer_->IdToToken(hundred.front()), "aaa");
  EXPECT_EQ(tokenizer_->IdToToken(hundred.back()), "##a");
}

TEST_F(BertUncasedTest, TurnsAWordWithNoMatchingPiecesIntoOneUnk) {
  EXPECT_THAT(Tokens("emoji 🙂 ok"), ElementsAre("em", "##oj", "##i", "[UNK]", "ok"));
}

TEST_F(BertUncasedTest, KeepsVerbatimSpecialTokensWhole) {
  EXPECT_THAT(Encode("[CLS] hello[SEP]world [MASK]"), ElementsAre(101, 7592, 102, 2088, 103));
  EXPECT_THAT(Encode("[PAD][UNK]"), ElementsAre(0, 100));
  // Matching is case-sensitive, as in transformers: lower case is ordinary text.
  EXPECT_THAT(Tokens("hello [sep] world"), ElementsAre("hello", "[", "sep", "]", "world"));
}

TEST_F(BertUncasedTest, EncodesEmptyAndBlankTextAsNothing) {
  EXPECT_THAT(Encode(""), ElementsAre());
  EXPECT_THAT(Encode(" \t\n "), ElementsAre());
}

TEST_F(BertUncasedTest, RejectsInvalidUtf8) {
  for (const std::string& bad : {std::string("ab\xff"), std::string("\xc3"),
                                 std::string("\xed\xa0\x80"), std::string("\xc0\xaf")}) {
    auto ids = tokenizer_->Encode(bad);
    EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument) << ids.status();
    EXPECT_THAT(std::string(ids.status().message()), HasSubstr("UTF-8"));
  }
}

TEST_F(BertUncasedTest, DecodeMergesContinuationsAndSkipsSpecialTokens) {
  EXPECT_EQ(tokenizer_->Decode({101, 14477, 20961, 3468, 102, 0, 0}), "unaffable");
  EXPECT_EQ(tokenizer_->Decode({101, 100, 103, 102}), "");
  EXPECT_EQ(tokenizer_->Decode({-1, 7592, 30522, 99999}), "hello");
}

TEST_F(BertUncasedTest, DecodeRoundTripsLowerCasedText) {
  const std::string text = "Hello, world! Don't stop: the reward model prefers it.";
  EXPECT_EQ(tokenizer_->Decode(Encode(text)),
            "hello, world! don't stop : the reward model prefers it.");
}

TEST_F(BertUncasedTest, EncodesAConcatenationAsOneText) {
  auto split = tokenizer_->EncodeConcatenated("Hello wor", "ld");
  ASSERT_TRUE(split.ok()) << split.status();
  // As tokenizer("Hello world") reads it: the join is inside the word "world".
  EXPECT_THAT(split->ids, ElementsAreArray(Encode("Hello world")));
  // "hello" is the first part's; the pieces of the word across the join are the second's.
  EXPECT_EQ(split->first_length, 1u);
}

TEST(WordPieceTokenizerTest, KeepsCaseWhenNotLowerCasing) {
  WordPieceTokenizer::Options options;
  options.do_lower_case = false;
  auto tokenizer = WordPieceTokenizer::FromTokens(
      {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Héllo", "hello", "H", "##é", "##llo"},
      options);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_THAT(*(*tokenizer)->Encode("Héllo hello"), ElementsAre(5, 6));

  auto uncased = WordPieceTokenizer::FromTokens(
      {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Héllo", "hello"});
  ASSERT_TRUE(uncased.ok()) << uncased.status();
  EXPECT_THAT(*(*uncased)->Encode("Héllo hello"), ElementsAre(6, 6));
}

TEST(WordPieceTokenizerTest, RejectsAVocabularyWithoutUnk) {
  auto tokenizer = WordPieceTokenizer::FromTokens({"[PAD]", "[CLS]", "hello"});
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(tokenizer.status().message()), HasSubstr("[UNK]"));
}

TEST(WordPieceTokenizerTest, ReportsAMissingVocabularyFile) {
  auto tokenizer = WordPieceTokenizer::Load(testing::TestDataPath("no-such/vocab.txt"));
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace verdict
