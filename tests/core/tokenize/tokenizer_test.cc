// LoadTokenizerFromDirectory, and SaveToDirectory -> LoadTokenizerFromDirectory round trips.
#include "core/tokenize/tokenizer.h"

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/tokenize/sentencepiece_tokenizer.h"
#include "core/tokenize/tokenizer_json.h"
#include "core/tokenize/wordpiece_tokenizer.h"
#include "core/util/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"

namespace verdict {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

const std::vector<std::string>& SampleTexts() {
  static const auto* texts = new std::vector<std::string>{
      "Hello world, the reward model prefers the chosen response.",
      "\n\nHuman: What is the capital of France?\n\nAssistant: Paris.",
      "Héllo [SEP] naïve 東京 🙂 ΟΔΟΣ",
      "  spaced\tout  ",
      "",
  };
  return *texts;
}

void ExpectSameEncodings(const Tokenizer& expected, const Tokenizer& actual) {
  for (const std::string& text : SampleTexts()) {
    auto want = expected.Encode(text);
    auto got = actual.Encode(text);
    ASSERT_TRUE(want.ok()) << want.status();
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_THAT(*got, ElementsAreArray(*want)) << text;
  }
  const SpecialTokens& a = expected.special_tokens();
  const SpecialTokens& b = actual.special_tokens();
  EXPECT_EQ(a.bos, b.bos);
  EXPECT_EQ(a.eos, b.eos);
  EXPECT_EQ(a.cls, b.cls);
  EXPECT_EQ(a.sep, b.sep);
  EXPECT_EQ(a.pad, b.pad);
  EXPECT_EQ(a.unk, b.unk);
  EXPECT_EQ(a.add_bos, b.add_bos);
  EXPECT_EQ(a.add_eos, b.add_eos);
  EXPECT_EQ(expected.vocab_size(), actual.vocab_size());
}

nlohmann::json ReadJson(const std::string& path) {
  auto text = ReadFileToString(path);
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? nlohmann::json::parse(*text) : nlohmann::json();
}

void WriteText(const std::string& path, const std::string& text) {
  ASSERT_TRUE(WriteFileAtomically(path, text).ok()) << path;
}

void CopyInto(const std::string& relative_source, const testing::ScratchDir& dir,
              const std::string& name) {
  std::filesystem::copy_file(testing::TestDataPath(relative_source), dir.Path(name));
}

TEST(LoadTokenizerFromDirectoryTest, LoadsTheStoriesModelWithItsConfig) {
  auto tokenizer = LoadTokenizerFromDirectory(testing::TestDataPath("models/stories260K-hf"));
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  ASSERT_NE(dynamic_cast<SentencePieceTokenizer*>(tokenizer->get()), nullptr);
  EXPECT_TRUE((*tokenizer)->special_tokens().add_bos);
  EXPECT_FALSE((*tokenizer)->special_tokens().add_eos);
  EXPECT_EQ(dynamic_cast<SentencePieceTokenizer&>(**tokenizer).options().model_max_length, 512);
  EXPECT_THAT(*(*tokenizer)->Encode("Once upon a time"), ElementsAre(403, 407, 261, 378));
}

TEST(LoadTokenizerFromDirectoryTest, UsesLlamaDefaultsWithoutAConfig) {
  testing::ScratchDir dir;
  CopyInto("tokenizers/llama2/tokenizer.model", dir, "tokenizer.model");
  auto tokenizer = LoadTokenizerFromDirectory(dir.path().string());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_TRUE((*tokenizer)->special_tokens().add_bos);
  EXPECT_FALSE((*tokenizer)->special_tokens().add_eos);
  EXPECT_EQ((*tokenizer)->vocab_size(), 32000);
}

TEST(LoadTokenizerFromDirectoryTest, HonoursAddBosAndAddEosFromTheConfig) {
  testing::ScratchDir dir;
  CopyInto("tokenizers/llama2/tokenizer.model", dir, "tokenizer.model");
  WriteText(dir.Path("tokenizer_config.json"),
            R"({"add_bos_token": false, "add_eos_token": true, "pad_token": null,
                "model_max_length": 1000000000000000019884624838656})");
  auto tokenizer = LoadTokenizerFromDirectory(dir.path().string());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_FALSE((*tokenizer)->special_tokens().add_bos);
  EXPECT_TRUE((*tokenizer)->special_tokens().add_eos);
  EXPECT_EQ((*tokenizer)->special_tokens().pad, -1);
  // transformers' "no limit" sentinel means unknown.
  EXPECT_EQ(dynamic_cast<SentencePieceTokenizer&>(**tokenizer).options().model_max_length, 0);
}

TEST(LoadTokenizerFromDirectoryTest, ReadsThePadTokenWrittenAsAnAddedToken) {
  testing::ScratchDir dir;
  CopyInto("tokenizers/llama2/tokenizer.model", dir, "tokenizer.model");
  WriteText(dir.Path("tokenizer_config.json"), R"({"pad_token": "</s>"})");
  // special_tokens_map.json wins over tokenizer_config.json, as in transformers.
  WriteText(dir.Path("special_tokens_map.json"),
            R"({"pad_token": {"content": "<unk>", "lstrip": false, "normalized": false}})");
  auto tokenizer = LoadTokenizerFromDirectory(dir.path().string());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->special_tokens().pad, 0);
}

TEST(LoadTokenizerFromDirectoryTest, NamesAWronglyTypedConfigField) {
  testing::ScratchDir dir;
  CopyInto("tokenizers/llama2/tokenizer.model", dir, "tokenizer.model");
  for (const std::string config :
       {R"({"add_bos_token": "yes"})", R"({"add_eos_token": 1})", R"({"pad_token": 3})",
        R"({"model_max_length": "512"})"}) {
    WriteText(dir.Path("tokenizer_config.json"), config);
    auto tokenizer = LoadTokenizerFromDirectory(dir.path().string());
    EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument) << config;
    const std::string field = nlohmann::json::parse(config).begin().key();
    EXPECT_THAT(std::string(tokenizer.status().message()), HasSubstr(field));
  }
}

TEST(LoadTokenizerFromDirectoryTest, RejectsAConfigThatIsNotJson) {
  testing::ScratchDir dir;
  CopyInto("tokenizers/bert-base-uncased/vocab.txt", dir, "vocab.txt");
  WriteText(dir.Path("tokenizer_config.json"), "{\"do_lower_case\": tru");
  auto tokenizer = LoadTokenizerFromDirectory(dir.path().string());
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(tokenizer.status().message()), HasSubstr("tokenizer_config.json"));
}

TEST(LoadTokenizerFromDirectoryTest, LoadsAVocabTxtAsWordPiece) {
  testing::ScratchDir dir;
  CopyInto("tokenizers/bert-base-uncased/vocab.txt", dir, "vocab.txt");
  auto tokenizer = LoadTokenizerFromDirectory(dir.path().string());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  auto* wordpiece = dynamic_cast<WordPieceTokenizer*>(tokenizer->get());
  ASSERT_NE(wordpiece, nullptr);
  EXPECT_TRUE(wordpiece->options().do_lower_case);
  EXPECT_THAT(*wordpiece->Encode("Héllo, World!"), ElementsAre(7592, 1010, 2088, 999));

  WriteText(dir.Path("tokenizer_config.json"), R"({"do_lower_case": false})");
  auto cased = LoadTokenizerFromDirectory(dir.path().string());
  ASSERT_TRUE(cased.ok()) << cased.status();
  EXPECT_FALSE(dynamic_cast<WordPieceTokenizer&>(**cased).options().do_lower_case);

  WriteText(dir.Path("tokenizer_config.json"), R"({"do_lower_case": "true"})");
  auto wrong = LoadTokenizerFromDirectory(dir.path().string());
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(wrong.status().message()), HasSubstr("do_lower_case"));
}

TEST(LoadTokenizerFromDirectoryTest, TakesTheTokenizerClassFromTheModelTypeWhenUnnamed) {
  testing::ScratchDir dir;
  CopyInto("tokenizers/bert-base-uncased/vocab.txt", dir, "vocab.txt");
  WriteText(dir.Path("config.json"), R"({"model_type": "distilbert"})");
  auto tokenizer = LoadTokenizerFromDirectory(dir.path().string());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ(dynamic_cast<WordPieceTokenizer&>(**tokenizer).options().tokenizer_class,
            "DistilBertTokenizer");
}

// transformers' AutoTokenizer (fast) reads tokenizer.json even where the slow tokenizer's
// files are present too.
TEST(LoadTokenizerFromDirectoryTest, PrefersTokenizerJsonToTokenizerModelAndVocabTxt) {
  testing::ScratchDir dir;
  CopyInto("tokenizers/qwen3/tokenizer.json", dir, "tokenizer.json");
  CopyInto("tokenizers/qwen3/tokenizer_config.json", dir, "tokenizer_config.json");
  CopyInto("tokenizers/llama2/tokenizer.model", dir, "tokenizer.model");
  CopyInto("tokenizers/bert-base-uncased/vocab.txt", dir, "vocab.txt");
  auto tokenizer = LoadTokenizerFromDirectory(dir.path().string());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  ASSERT_NE(dynamic_cast<TokenizerJson*>(tokenizer->get()), nullptr);
  EXPECT_THAT(*(*tokenizer)->Encode("Hello world"), ElementsAre(9707, 1879));
  EXPECT_EQ((*tokenizer)->special_tokens().eos, 151645);  // <|im_end|>, from the config

  // Without tokenizer.json the order stays tokenizer.model, then vocab.txt.
  std::filesystem::remove(dir.Path("tokenizer.json"));
  std::filesystem::remove(dir.Path("tokenizer_config.json"));  // Qwen3's names Qwen3 tokens
  tokenizer = LoadTokenizerFromDirectory(dir.path().string());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_NE(dynamic_cast<SentencePieceTokenizer*>(tokenizer->get()), nullptr);
}

TEST(LoadTokenizerFromDirectoryTest, ReportsAnUnsupportedTokenizerJsonByName) {
  testing::ScratchDir dir;
  WriteText(dir.Path("tokenizer.json"),
            R"({"model": {"type": "WordPiece", "vocab": {"[UNK]": 0}, "unk_token": "[UNK]"}})");
  auto tokenizer = LoadTokenizerFromDirectory(dir.path().string());
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(tokenizer.status().message()), HasSubstr("unsupported model WordPiece"));
}

// BERT and Llama 2 repositories ship a tokenizer.json of a kind TokenizerJson refuses next to
// vocab.txt / tokenizer.model; those load as before.
TEST(LoadTokenizerFromDirectoryTest, FallsBackToTheSlowTokenizerFromAnUnsupportedTokenizerJson) {
  testing::ScratchDir dir;
  WriteText(dir.Path("tokenizer.json"),
            R"({"model": {"type": "WordPiece", "vocab": {"[UNK]": 0}, "unk_token": "[UNK]"}})");
  CopyInto("tokenizers/bert-base-uncased/vocab.txt", dir, "vocab.txt");
  auto tokenizer = LoadTokenizerFromDirectory(dir.path().string());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_NE(dynamic_cast<WordPieceTokenizer*>(tokenizer->get()), nullptr);
  // A malformed tokenizer.json is an error, not a reason to fall back.
  WriteText(dir.Path("tokenizer.json"), "{\"model\": ");
  tokenizer = LoadTokenizerFromDirectory(dir.path().string());
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(LoadTokenizerFromDirectoryTest, ReportsADirectoryWithoutATokenizer) {
  testing::ScratchDir dir;
  WriteText(dir.Path("tokenizer_config.json"), "{}");
  auto tokenizer = LoadTokenizerFromDirectory(dir.path().string());
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(tokenizer.status().message()), HasSubstr(dir.path().string()));
}

TEST(SaveToDirectoryTest, RoundTripsLlama2WithItsOptions) {
  SentencePieceTokenizer::Options options;
  options.add_eos = true;
  options.model_max_length = 4096;
  auto original =
      SentencePieceTokenizer::Load(testing::TestDataPath("tokenizers/llama2/tokenizer.model"),
                                   options);
  ASSERT_TRUE(original.ok()) << original.status();
  testing::ScratchDir dir;
  const std::string target = dir.Path("saved/tokenizer");  // created on the way
  ASSERT_TRUE((*original)->SaveToDirectory(target).ok());

  const nlohmann::json config = ReadJson(target + "/tokenizer_config.json");
  EXPECT_EQ(config.at("tokenizer_class"), "LlamaTokenizer");
  EXPECT_EQ(config.at("add_bos_token"), true);
  EXPECT_EQ(config.at("add_eos_token"), true);
  EXPECT_EQ(config.at("bos_token"), "<s>");
  EXPECT_EQ(config.at("eos_token"), "</s>");
  EXPECT_EQ(config.at("unk_token"), "<unk>");
  EXPECT_TRUE(config.at("pad_token").is_null());
  EXPECT_EQ(config.at("model_max_length"), 4096);
  const nlohmann::json special = ReadJson(target + "/special_tokens_map.json");
  EXPECT_EQ(special, nlohmann::json::parse(
                         R"({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})"));
  auto model = ReadFileToString(target + "/tokenizer.model");
  auto source = ReadFileToString(testing::TestDataPath("tokenizers/llama2/tokenizer.model"));
  ASSERT_TRUE(model.ok() && source.ok());
  EXPECT_EQ(*model, *source);

  auto loaded = LoadTokenizerFromDirectory(target);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ExpectSameEncodings(**original, **loaded);
}

TEST(SaveToDirectoryTest, RoundTripsATrainedTokenizerWithItsPadToken) {
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i) {
    texts.push_back("Human: How do I bake bread number " + std::to_string(i) +
                    "?\nAssistant: Mix flour, water, salt and yeast; knead, rest, bake.");
  }
  SentencePieceTokenizer::TrainOptions options;
  options.vocab_size = 400;
  options.hard_vocab_limit = false;
  options.model_type = SentencePieceTokenizer::ModelType::kBpe;
  auto original = SentencePieceTokenizer::Train(texts, options);
  ASSERT_TRUE(original.ok()) << original.status();
  testing::ScratchDir dir;
  ASSERT_TRUE((*original)->SaveToDirectory(dir.path().string()).ok());
  EXPECT_EQ(ReadJson(dir.Path("tokenizer_config.json")).at("pad_token"), "<pad>");
  EXPECT_EQ(ReadJson(dir.Path("special_tokens_map.json")).at("pad_token"), "<pad>");

  auto loaded = LoadTokenizerFromDirectory(dir.path().string());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->special_tokens().pad, 0);
  ExpectSameEncodings(**original, **loaded);
}

TEST(SaveToDirectoryTest, RoundTripsTokenizerJsonWithItsConfig) {
  auto original = LoadTokenizerFromDirectory(testing::TestDataPath("tokenizers/qwen3"));
  ASSERT_TRUE(original.ok()) << original.status();
  testing::ScratchDir dir;
  ASSERT_TRUE((*original)->SaveToDirectory(dir.Path("saved")).ok());
  const nlohmann::json config = ReadJson(dir.Path("saved/tokenizer_config.json"));
  EXPECT_EQ(config.at("tokenizer_class"), "Qwen2Tokenizer");
  EXPECT_EQ(config, ReadJson(testing::TestDataPath("tokenizers/qwen3/tokenizer_config.json")));
  auto reloaded = LoadTokenizerFromDirectory(dir.Path("saved"));
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  ASSERT_NE(dynamic_cast<TokenizerJson*>(reloaded->get()), nullptr);
  ExpectSameEncodings(**original, **reloaded);
}

TEST(SaveToDirectoryTest, RoundTripsBertAsWordPiece) {
  WordPieceTokenizer::Options options;
  options.tokenizer_class = "DistilBertTokenizer";
  options.model_max_length = 512;
  auto original = WordPieceTokenizer::Load(
      testing::TestDataPath("tokenizers/bert-base-uncased/vocab.txt"), options);
  ASSERT_TRUE(original.ok()) << original.status();
  testing::ScratchDir dir;
  ASSERT_TRUE((*original)->SaveToDirectory(dir.path().string()).ok());

  auto vocab = ReadFileToString(dir.Path("vocab.txt"));
  auto source = ReadFileToString(testing::TestDataPath("tokenizers/bert-base-uncased/vocab.txt"));
  ASSERT_TRUE(vocab.ok() && source.ok());
  EXPECT_EQ(*vocab, *source);
  const nlohmann::json config = ReadJson(dir.Path("tokenizer_config.json"));
  EXPECT_EQ(config.at("tokenizer_class"), "DistilBertTokenizer");
  EXPECT_EQ(config.at("do_lower_case"), true);
  EXPECT_EQ(config.at("cls_token"), "[CLS]");
  EXPECT_EQ(config.at("model_max_length"), 512);
  EXPECT_EQ(ReadJson(dir.Path("special_tokens_map.json")),
            nlohmann::json::parse(R"({"unk_token": "[UNK]", "sep_token": "[SEP]",
                                      "pad_token": "[PAD]", "cls_token": "[CLS]",
                                      "mask_token": "[MASK]"})"));

  auto loaded = LoadTokenizerFromDirectory(dir.path().string());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ExpectSameEncodings(**original, **loaded);
  EXPECT_EQ(dynamic_cast<WordPieceTokenizer&>(**loaded).options().tokenizer_class,
            "DistilBertTokenizer");
}

}  // namespace
}  // namespace verdict
