// Input rules against ids built by hand from each tokenizer's own special tokens: TRL's concat
// rule (`tokenizer(prompt + response + eos_token)`) on an encoder's WordPiece, a decoder's
// SentencePiece and a tokenizer.json; conversations encoded as their chat template renders
// them (the Qwen3 ids Hugging Face recorded); the pair and chat rules.
#include "core/model/input_rule.h"

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core/tokenize/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/test_paths.h"

namespace verdict {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::verdict::testing::TestDataPath;

std::unique_ptr<Tokenizer> Load(const std::string& dir) {
  auto tokenizer = LoadTokenizerFromDirectory(TestDataPath(dir));
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? std::move(*tokenizer) : nullptr;
}

std::vector<int32_t> Ids(const Tokenizer& tokenizer, const std::string& text) {
  auto ids = tokenizer.Encode(text);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : std::vector<int32_t>{};
}

std::vector<int32_t> Concat(std::vector<int32_t> a, const std::vector<int32_t>& b,
                            const std::vector<int32_t>& c = {}) {
  a.insert(a.end(), b.begin(), b.end());
  a.insert(a.end(), c.begin(), c.end());
  return a;
}

std::vector<int32_t> Encoded(const Tokenizer& tokenizer, const InputEncoding& encoding,
                             const std::string& prompt, const std::string& response,
                             TextOrigin origin = TextOrigin::kPlain) {
  auto encoded = EncodeInput(tokenizer, encoding, prompt, response, origin);
  EXPECT_TRUE(encoded.ok()) << encoded.status();
  return encoded.ok() ? encoded->ids : std::vector<int32_t>{};
}

InputEncoding Rule(InputRule rule, bool encoder, ChatFormat format = ChatFormat::kHhRlhf) {
  InputEncoding encoding;
  encoding.rule = rule;
  encoding.encoder = encoder;
  encoding.chat_format = format;
  return encoding;
}

constexpr char kPrompt[] = "\n\nHuman: Is the sky blue?\n\nAssistant:";
constexpr char kResponse[] = " Yes, on a clear day.";

TEST(InputRuleTest, ConcatOnWordPieceIsClsTextSepWithNoEos) {
  auto bert = Load("tokenizers/bert-base-uncased");
  ASSERT_NE(bert, nullptr);
  // bert-base-uncased: [CLS] 101, [SEP] 102; it has no EOS, so TRL appends none.
  const std::vector<int32_t> expected =
      Concat({101}, Ids(*bert, std::string(kPrompt) + kResponse), {102});
  EXPECT_THAT(Encoded(*bert, Rule(InputRule::kConcat, true), kPrompt, kResponse),
              ElementsAreArray(expected));
  // The pair rule is BERT's text-pair form.
  EXPECT_THAT(Encoded(*bert, Rule(InputRule::kPair, true), kPrompt, kResponse),
              ElementsAreArray(Concat(Concat({101}, Ids(*bert, kPrompt), {102}),
                                      Ids(*bert, kResponse), {102})));
}

TEST(InputRuleTest, ConcatOnSentencePieceIsBosTextEos) {
  // stories260K-hf: LlamaTokenizer, add_bos_token true, add_eos_token false; <s> 1, </s> 2.
  auto llama = Load("models/stories260K-hf");
  ASSERT_NE(llama, nullptr);
  const std::vector<int32_t> text = Ids(*llama, std::string(kPrompt) + kResponse);
  EXPECT_THAT(Encoded(*llama, Rule(InputRule::kConcat, false), kPrompt, kResponse),
              ElementsAreArray(Concat({1}, text, {2})));
  // The pair rule on a decoder: the tokenizer's own frame only.
  EXPECT_THAT(Encoded(*llama, Rule(InputRule::kPair, false), kPrompt, kResponse),
              ElementsAreArray(Concat({1}, text)));
}

TEST(InputRuleTest, ConcatOnTokenizerJsonAppendsItsEosOnce) {
  // Qwen3: no BOS, eos_token <|im_end|> = 151645 (tokenizer_config.json).
  auto qwen = Load("tokenizers/qwen3");
  ASSERT_NE(qwen, nullptr);
  const std::vector<int32_t> text = Ids(*qwen, std::string(kPrompt) + kResponse);
  EXPECT_THAT(Encoded(*qwen, Rule(InputRule::kConcat, false), kPrompt, kResponse),
              ElementsAreArray(Concat({}, text, {151645})));
  // A text that already ends with the EOS gets no second one, as TRL checks endswith().
  EXPECT_THAT(Encoded(*qwen, Rule(InputRule::kConcat, false), kPrompt,
                      std::string(kResponse) + "<|im_end|>"),
              ElementsAreArray(Concat({}, text, {151645})));
  // An empty response is scored on the prompt and the EOS.
  EXPECT_THAT(Encoded(*qwen, Rule(InputRule::kConcat, false), kPrompt, ""),
              ElementsAreArray(Concat({}, Ids(*qwen, kPrompt), {151645})));
}

// The conversations Hugging Face rendered with Qwen3's real chat template, and their ids:
// a conversation is encoded as its rendering stands, under concat and chat alike.
TEST(InputRuleTest, ConversationsAreTheirChatTemplatesIds) {
  auto qwen = Load("tokenizers/qwen3");
  ASSERT_NE(qwen, nullptr);
  std::ifstream in(TestDataPath("tokenizers/qwen3/expected.json"));
  const nlohmann::json expected = nlohmann::json::parse(in);
  int checked = 0;
  for (const nlohmann::json& conversation : expected["chat_template"]["conversations"]) {
    const nlohmann::json& messages = conversation["messages"];
    if (conversation["add_generation_prompt"].get<bool>() ||
        messages.back()["role"] != "assistant") {
      continue;
    }
    SCOPED_TRACE(conversation["name"].get<std::string>());
    std::vector<ChatMessage> chat;
    for (const nlohmann::json& m : messages) {
      chat.push_back({*ParseChatRole(m["role"].get<std::string>()), m["content"].get<std::string>()});
    }
    auto text = RenderPromptAndResponse(absl::MakeConstSpan(chat).first(chat.size() - 1),
                                        absl::MakeConstSpan(chat).last(1), ChatFormat::kQwen3);
    ASSERT_TRUE(text.ok()) << text.status();
    const auto ids = conversation["ids"].get<std::vector<int32_t>>();
    for (InputRule rule : {InputRule::kConcat, InputRule::kChat}) {
      EXPECT_THAT(Encoded(*qwen, Rule(rule, false, ChatFormat::kQwen3), text->prompt,
                          text->response, TextOrigin::kRendered),
                  ElementsAreArray(ids));
    }
    ++checked;
  }
  EXPECT_GE(checked, 3);
}

TEST(InputRuleTest, ChatRendersPlainTextAsAUserAndAnAssistantTurn) {
  auto qwen = Load("tokenizers/qwen3");
  ASSERT_NE(qwen, nullptr);
  EXPECT_THAT(
      Encoded(*qwen, Rule(InputRule::kChat, false, ChatFormat::kQwen3), "Why?", "Because."),
      ElementsAreArray(Ids(*qwen,
                           "<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n"
                           "<think>\n\n</think>\n\nBecause.<|im_end|>\n")));
  // hh-rlhf writes no special tokens: its rendering is framed as plain text.
  auto llama = Load("models/stories260K-hf");
  ASSERT_NE(llama, nullptr);
  EXPECT_THAT(Encoded(*llama, Rule(InputRule::kChat, false), "Why?", "Because."),
              ElementsAreArray(Concat({1}, Ids(*llama, "\n\nHuman: Why?\n\nAssistant: Because."),
                                      {2})));
  // A format whose rules the text breaks is reported.
  auto refused = EncodeInput(*llama, Rule(InputRule::kChat, false, ChatFormat::kLlama2), "",
                             "Hello", TextOrigin::kPlain);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(InputRuleTest, NamesParseBackAndUnknownOnesAreRefused) {
  for (InputRule rule : {InputRule::kConcat, InputRule::kPair, InputRule::kChat}) {
    EXPECT_EQ(*ParseInputRule(InputRuleName(rule)), rule);
  }
  auto unknown = ParseInputRule("trl");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unknown.status().message(), HasSubstr("concat"));
}

}  // namespace
}  // namespace verdict
