// TokenizerJson on Qwen3's real tokenizer.json against the ids, tokens and decodes that Hugging
// Face's Rust tokenizers library produces (tests/data/tokenizers/qwen3/expected.json), and on
// small byte-level BPE files written here for the parts Qwen3 does not use.
#include "core/tokenize/tokenizer_json.h"

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/tokenize/tokenizer.h"
#include "core/util/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"

namespace verdict {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using Json = nlohmann::json;

constexpr char kQwen3Dir[] = "tokenizers/qwen3";

Json ReadJson(const std::string& path) {
  auto text = ReadFileToString(path);
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? Json::parse(*text) : Json();
}

const Json& Expected() {
  static const Json* expected =
      new Json(ReadJson(testing::TestDataPath(std::string(kQwen3Dir) + "/expected.json")));
  return *expected;
}

// Loaded once: the file has 151,643 tokens and 151,387 merges.
const TokenizerJson& Qwen3() {
  static const TokenizerJson* tokenizer = [] {
    auto loaded = TokenizerJson::LoadFromDirectory(testing::TestDataPath(kQwen3Dir));
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    return loaded.ok() ? loaded->release() : nullptr;
  }();
  return *tokenizer;
}

std::vector<int32_t> Ids(const Json& list) { return list.get<std::vector<int32_t>>(); }

TEST(TokenizerJsonQwen3Test, EveryFixtureStringEncodesToTheRecordedIds) {
  ASSERT_EQ(Expected()["cases"].size(), 75u);
  for (const Json& item : Expected()["cases"]) {
    const std::string name = item["name"].get<std::string>();
    const std::string text = item["text"].get<std::string>();
    absl::StatusOr<std::vector<int32_t>> ids = Qwen3().Encode(text);
    ASSERT_TRUE(ids.ok()) << name << ": " << ids.status();
    EXPECT_THAT(*ids, ElementsAreArray(Ids(item["ids_no_special_tokens"]))) << name;
    absl::StatusOr<std::vector<int32_t>> with_special = Qwen3().EncodeWithSpecialTokens(text);
    ASSERT_TRUE(with_special.ok()) << name << ": " << with_special.status();
    EXPECT_THAT(*with_special, ElementsAreArray(Ids(item["ids_add_special_tokens"]))) << name;
    std::vector<std::string> tokens;
    for (int32_t id : *ids) tokens.push_back(Qwen3().IdToToken(id));
    EXPECT_THAT(tokens, ElementsAreArray(item["tokens"].get<std::vector<std::string>>())) << name;
  }
}

TEST(TokenizerJsonQwen3Test, EveryFixtureStringDecodesToTheRecordedText) {
  for (const Json& item : Expected()["cases"]) {
    const std::string name = item["name"].get<std::string>();
    const std::vector<int32_t> ids = Ids(item["ids_no_special_tokens"]);
    EXPECT_EQ(Qwen3().Decode(ids, /*skip_special_tokens=*/false),
              item["decoded"].get<std::string>())
        << name;
    EXPECT_EQ(Qwen3().Decode(ids), item["decoded_skip_special_tokens"].get<std::string>()) << name;
  }
}

TEST(TokenizerJsonQwen3Test, EveryRenderedConversationEncodesToTheRecordedIds) {
  const Json& conversations = Expected()["chat_template"]["conversations"];
  ASSERT_EQ(conversations.size(), 7u);
  for (const Json& conversation : conversations) {
    absl::StatusOr<std::vector<int32_t>> ids =
        Qwen3().EncodeWithSpecialTokens(conversation["rendered"].get<std::string>());
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_THAT(*ids, ElementsAreArray(Ids(conversation["ids"]))) << conversation["name"];
  }
}

TEST(TokenizerJsonQwen3Test, SpecialTokensComeFromTheConfigAndTheAddedTokens) {
  const SpecialTokens& special = Qwen3().special_tokens();
  const Json& ids = Expected()["special_token_ids"];
  EXPECT_EQ(special.bos, -1);  // bos_token: null
  EXPECT_EQ(special.eos, ids["<|im_end|>"].get<int32_t>());
  EXPECT_EQ(special.pad, ids["<|endoftext|>"].get<int32_t>());
  EXPECT_EQ(special.unk, -1);
  EXPECT_EQ(special.cls, -1);
  EXPECT_EQ(special.sep, -1);
  EXPECT_FALSE(special.add_bos);  // the ByteLevel post-processor adds nothing
  EXPECT_FALSE(special.add_eos);
  EXPECT_EQ(Qwen3().vocab_size(), 151669);
  for (const auto& [token, id] : ids.items()) {
    EXPECT_EQ(Qwen3().TokenToId(token), id.get<int32_t>()) << token;
  }
}

}  // namespace
}  // namespace verdict
