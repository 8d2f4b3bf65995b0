// TokenizerJson on Qwen3's real tokenizer.json against the ids, tokens and decodes that Hugging
// Face's Rust tokenizers library produces (tests/data/tokenizers/qwen3/expected.json), and on
// small byte-level BPE files written here for the parts Qwen3 does not use.
#include "core/tokenize/tokenizer_json.h"

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "core/data/chat_format.h"
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

// The conversations rendered by the qwen3 chat format, tokenized as transformers' `tokenizer(text)`
// does, give the ids the real template and the Rust library give.
TEST(TokenizerJsonQwen3Test, TheQwen3ChatFormatTokenizesToTheRecordedIds) {
  for (const Json& conversation : Expected()["chat_template"]["conversations"]) {
    std::vector<ChatMessage> messages;
    for (const Json& message : conversation["messages"]) {
      messages.push_back({*ParseChatRole(message["role"].get<std::string>()),
                          message["content"].get<std::string>()});
    }
    ChatRenderOptions options;
    options.add_generation_prompt = conversation["add_generation_prompt"].get<bool>();
    options.enable_thinking = conversation["template_kwargs"].value("enable_thinking", true);
    absl::StatusOr<std::string> text = RenderChat(messages, ChatFormat::kQwen3, options);
    ASSERT_TRUE(text.ok()) << text.status();
    absl::StatusOr<std::vector<int32_t>> ids = Qwen3().EncodeWithSpecialTokens(*text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_THAT(*ids, ElementsAreArray(Ids(conversation["ids"]))) << conversation["name"];
  }
}

TEST(TokenizerJsonQwen3Test, EncodeConcatenatedSplitsAtTheJoin) {
  absl::StatusOr<SplitEncoding> split = Qwen3().EncodeConcatenated("Hello", " world");
  ASSERT_TRUE(split.ok()) << split.status();
  EXPECT_THAT(split->ids, ElementsAre(9707, 1879));
  EXPECT_EQ(split->first_length, 1u);
  // A prompt ending in a special token, as a rendered chat prompt does.
  split = Qwen3().EncodeConcatenated("<|im_start|>assistant\n", "Hi<|im_end|>\n");
  ASSERT_TRUE(split.ok()) << split.status();
  EXPECT_EQ(split->ids, *Qwen3().Encode("<|im_start|>assistant\nHi<|im_end|>\n"));
  EXPECT_EQ(Qwen3().Decode({split->ids.begin(), split->ids.begin() + split->first_length}, false),
            "<|im_start|>assistant\n");
  // "e" + a combining acute accent across the join: NFC makes one "é", which belongs to the
  // first part because it starts there.
  split = Qwen3().EncodeConcatenated("cafe", "\u0301 au lait");
  ASSERT_TRUE(split.ok()) << split.status();
  EXPECT_EQ(split->ids, *Qwen3().Encode("caf\u00e9 au lait"));
  EXPECT_EQ(Qwen3().Decode({split->ids.begin(), split->ids.begin() + split->first_length}),
            "caf\u00e9");
  EXPECT_EQ(Qwen3().Decode({split->ids.begin() + split->first_length, split->ids.end()}),
            " au lait");
  // The same where the composed character starts a token.
  split = Qwen3().EncodeConcatenated("a\ne", "\u0301");
  ASSERT_TRUE(split.ok()) << split.status();
  EXPECT_EQ(split->ids, *Qwen3().Encode("a\n\u00e9"));
  EXPECT_EQ(split->first_length, split->ids.size());
}

// One loaded tokenizer serves several threads at once (PCRE2's compiled pattern and JIT code
// are shared, match data is per call).
TEST(TokenizerJsonQwen3Test, EncodesFromSeveralThreadsAtOnce) {
  const Json& cases = Expected()["cases"];
  std::vector<std::vector<std::vector<int32_t>>> results(4);
  std::vector<std::thread> threads;
  for (size_t k = 0; k < results.size(); ++k) {
    threads.emplace_back([&cases, &result = results[k]] {
      for (int round = 0; round < 5; ++round) {
        for (const Json& item : cases) {
          result.push_back(Qwen3().Encode(item["text"].get<std::string>()).value());
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const auto& result : results) {
    ASSERT_EQ(result.size(), 5 * cases.size());
    for (size_t i = 0; i < result.size(); ++i) {
      EXPECT_EQ(result[i], Ids(cases[i % cases.size()]["ids_no_special_tokens"]));
    }
  }
}

TEST(TokenizerJsonQwen3Test, RejectsInvalidUtf8) {
  absl::StatusOr<std::vector<int32_t>> ids = Qwen3().Encode("bad \xC3\x28 byte");
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
}

// GPT-2's bytes_to_unicode(), to write small byte-level vocabularies.
std::string ByteChar(int byte) {
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable =
        (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    const int c = printable ? b : next++;
    if (b == byte) {
      std::string out;
      if (c < 0x80) {
        out.push_back(static_cast<char>(c));
      } else {
        out.push_back(static_cast<char>(0xC0 | (c >> 6)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
      }
      return out;
    }
  }
  return "";
}

Json AddedToken(int id, const std::string& content, bool lstrip = false) {
  return {{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", lstrip},
          {"rstrip", false}, {"normalized", false}, {"special", true}};
}

// A byte-level BPE over the 256 byte characters (id = byte) and a few merges that spell
// "hello" and " w"; <s> 261, </s> 262, <mask> 263 (lstrip), "xyz" 264 (reachable only whole).
Json TinyTokenizer() {
  Json vocab = Json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteChar(b)] = b;
  const std::string space = ByteChar(' ');
  vocab["he"] = 256;
  vocab["ll"] = 257;
  vocab["hell"] = 258;
  vocab["hello"] = 259;
  vocab[space + "w"] = 260;
  vocab["xyz"] = 264;
  Json model = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"ignore_merges", false},
                {"vocab", vocab},
                {"merges", {"h e", "l l", "he ll", "hell o", space + " w"}}};
  return {
      {"version", "1.0"},
      {"added_tokens",
       {AddedToken(261, "<s>"), AddedToken(262, "</s>"), AddedToken(263, "<mask>", true)}},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"post_processor", {{"type", "ByteLevel"}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", model}};
}

std::unique_ptr<TokenizerJson> Load(const Json& tokenizer, const Json& config = Json()) {
  auto loaded = TokenizerJson::FromStrings(tokenizer.dump(), config.is_null() ? "" : config.dump());
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  return loaded.ok() ? std::move(*loaded) : nullptr;
}

std::vector<int32_t> Bytes(absl::string_view text) {
  return std::vector<int32_t>(reinterpret_cast<const uint8_t*>(text.data()),
                              reinterpret_cast<const uint8_t*>(text.data()) + text.size());
}

TEST(TokenizerJsonTest, MergesLowestRankFirstInEitherMergeForm) {
  std::unique_ptr<TokenizerJson> tokenizer = Load(TinyTokenizer());
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_THAT(*tokenizer->Encode("hello world"), ElementsAre(259, 260, 'o', 'r', 'l', 'd'));
  Json pairs = TinyTokenizer();
  Json merges = Json::array();
  for (const Json& merge : pairs["model"]["merges"]) {
    const std::string text = merge.get<std::string>();
    merges.push_back({text.substr(0, text.find(' ')), text.substr(text.find(' ') + 1)});
  }
  pairs["model"]["merges"] = merges;
  std::unique_ptr<TokenizerJson> from_pairs = Load(pairs);
  ASSERT_NE(from_pairs, nullptr);
  EXPECT_EQ(*from_pairs->Encode("hello world"), *tokenizer->Encode("hello world"));
  EXPECT_EQ(tokenizer->Decode(*tokenizer->Encode("hello world")), "hello world");
}

TEST(TokenizerJsonTest, DecodeReplacesBrokenUtf8AsRustDoes) {
  std::unique_ptr<TokenizerJson> tokenizer = Load(TinyTokenizer());
  EXPECT_EQ(tokenizer->Decode({0xC3, 0xA9}), "\u00e9");
  EXPECT_EQ(tokenizer->Decode({0xC3, 'a'}), "\uFFFDa");
  // A truncated four-byte sequence is one maximal invalid part: one U+FFFD.
  EXPECT_EQ(tokenizer->Decode({0xF0, 0x9F, 0x98, '!'}), "\uFFFD!");
  EXPECT_EQ(tokenizer->Decode({0xFF, 0xED, 0xA0, 0x80}), "\uFFFD\uFFFD\uFFFD\uFFFD");
}

TEST(TokenizerJsonTest, IgnoreMergesTakesAWholeWordFromTheVocabulary) {
  Json json = TinyTokenizer();
  EXPECT_EQ(*Load(json)->Encode("xyz"), Bytes("xyz"));
  json["model"]["ignore_merges"] = true;
  EXPECT_THAT(*Load(json)->Encode("xyz"), ElementsAre(264));
}

TEST(TokenizerJsonTest, AddedTokensAreMatchedFirstAndLstripTakesTheSpace) {
  std::unique_ptr<TokenizerJson> tokenizer = Load(TinyTokenizer());
  EXPECT_THAT(*tokenizer->Encode("a <mask>b</s>"), ElementsAre('a', 263, 'b', 262));
  EXPECT_EQ(tokenizer->Decode({'a', 263, 'b', 262}, /*skip_special_tokens=*/false), "a<mask>b</s>");
  EXPECT_EQ(tokenizer->Decode({'a', 263, 'b', 262}), "ab");
}

TEST(TokenizerJsonTest, TemplateProcessingAddsBosAsLlama3Does) {
  Json json = TinyTokenizer();
  // As Meta-Llama-3's tokenizer.json writes it.
  json["post_processor"] = Json::parse(R"({
    "type": "Sequence",
    "processors": [
      {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
      {"type": "TemplateProcessing",
       "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                  {"Sequence": {"id": "A", "type_id": 0}}],
       "pair": [],
       "special_tokens": {"<s>": {"id": "<s>", "ids": [261], "tokens": ["<s>"]}}}]})");
  std::unique_ptr<TokenizerJson> tokenizer = Load(json, Json::parse(R"({"eos_token": "</s>"})"));
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_THAT(*tokenizer->Encode("hello"), ElementsAre(259));
  EXPECT_THAT(*tokenizer->EncodeWithSpecialTokens("hello"), ElementsAre(261, 259));
  EXPECT_EQ(tokenizer->special_tokens().bos, 261);
  EXPECT_EQ(tokenizer->special_tokens().eos, 262);
  EXPECT_TRUE(tokenizer->special_tokens().add_bos);
  EXPECT_FALSE(tokenizer->special_tokens().add_eos);
}

TEST(TokenizerJsonTest, RobertaProcessingWrapsInClsAndSep) {
  Json json = TinyTokenizer();
  json["post_processor"] = {{"type", "RobertaProcessing"},
                            {"sep", {"</s>", 262}},
                            {"cls", {"<s>", 261}},
                            {"trim_offsets", true},
                            {"add_prefix_space", true}};
  json["pre_tokenizer"]["add_prefix_space"] = true;
  std::unique_ptr<TokenizerJson> tokenizer = Load(json);
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_THAT(*tokenizer->EncodeWithSpecialTokens("hello"), ElementsAre(261, ' ', 259, 262));
  EXPECT_EQ(tokenizer->special_tokens().cls, 261);
  EXPECT_EQ(tokenizer->special_tokens().sep, 262);
}

TEST(TokenizerJsonTest, RefusesWhatItDoesNotImplementByName) {
  const auto refused = [](const Json& json) {
    absl::StatusOr<std::unique_ptr<TokenizerJson>> loaded =
        TokenizerJson::FromStrings(json.dump(), "", "test/tokenizer.json");
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kUnimplemented);
    return std::string(loaded.status().message());
  };
  Json json = TinyTokenizer();
  json["model"]["type"] = "WordPiece";
  EXPECT_THAT(refused(json), HasSubstr("unsupported model WordPiece"));
  json["model"]["type"] = "Unigram";
  EXPECT_THAT(refused(json), HasSubstr("unsupported model Unigram"));
  json = TinyTokenizer();
  json["model"]["byte_fallback"] = true;
  EXPECT_THAT(refused(json), HasSubstr("byte_fallback"));
  json = TinyTokenizer();
  json["normalizer"] = {{"type", "Sequence"},
                        {"normalizers", {{{"type", "NFC"}}, {{"type", "Lowercase"}}}}};
  EXPECT_THAT(refused(json), HasSubstr("unsupported normalizer Lowercase"));
  json = TinyTokenizer();
  json["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\u2581"}};
  EXPECT_THAT(refused(json), HasSubstr("unsupported pre_tokenizer Metaspace"));
  json = TinyTokenizer();
  json["pre_tokenizer"] = nullptr;
  EXPECT_THAT(refused(json), HasSubstr("without a ByteLevel step"));
  json = TinyTokenizer();
  json["decoder"] = {{"type", "WordPiece"}};
  EXPECT_THAT(refused(json), HasSubstr("unsupported decoder WordPiece"));
  json = TinyTokenizer();
  json["post_processor"] = {{"type", "Foo"}};
  EXPECT_THAT(refused(json), HasSubstr("unsupported post_processor Foo"));
  EXPECT_THAT(refused(json), HasSubstr("test/tokenizer.json"));
}

TEST(TokenizerJsonTest, NamesASpecialTokenThatIsNotInTheVocabulary) {
  absl::StatusOr<std::unique_ptr<TokenizerJson>> loaded =
      TokenizerJson::FromStrings(TinyTokenizer().dump(), R"({"pad_token": "<pad>"})");
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(loaded.status().message(), HasSubstr("pad_token \"<pad>\""));
}

}  // namespace
}  // namespace verdict
