// sentencepiece in a process that also holds LibTorch, libprotobuf and gRPC's generated code.
//
// Debian's libsentencepiece.so exports its own protobuf-lite; linked into such a process it
// took over libprotobuf's symbols (a crash in protobuf's static initialisation) or lost its own
// (models refused). This binary links LibTorch and verdict_proto next to verdict_tokenize, so
// the clash comes back here first if sentencepiece ever leaks into the global scope again.
#include "core/tokenize/sentencepiece_module.h"

#include <dlfcn.h>

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "absl/strings/str_split.h"
#include "core/tokenize/sentencepiece_tokenizer.h"
#include "core/util/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"
#include "verdict/v1/scoring.pb.h"

namespace verdict {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr char kLlama2[] = "tokenizers/llama2/tokenizer.model";

// Prompts and chosen responses of the first `count` synthetic preference pairs.
std::vector<std::string> ReadSyntheticTexts(size_t count) {
  auto jsonl = ReadFileToString(testing::TestDataPath("synthetic/helpful-concise.jsonl"));
  EXPECT_TRUE(jsonl.ok()) << jsonl.status();
  std::vector<std::string> texts;
  if (!jsonl.ok()) return texts;
  for (absl::string_view line : absl::StrSplit(*jsonl, '\n', absl::SkipEmpty())) {
    if (texts.size() >= count) break;
    const nlohmann::json pair = nlohmann::json::parse(line.begin(), line.end());
    texts.push_back(pair.at("prompt").get<std::string>() + pair.at("chosen").get<std::string>());
  }
  EXPECT_EQ(texts.size(), count);
  return texts;
}

// Where the dynamic linker finds `symbol` for the executable: the file that defines it, or
// empty when no library in the global scope does.
std::string GlobalDefinitionOf(const char* symbol) {
  void* address = dlsym(RTLD_DEFAULT, symbol);
  if (address == nullptr) return "";
  Dl_info info;
  if (dladdr(address, &info) == 0 || info.dli_fname == nullptr) return "?";
  return info.dli_fname;
}

TEST(SentencePieceModuleTest, TrainsAndLoadsInAProcessWithLibTorch) {
  // LibTorch is really in use here, not just linked.
  EXPECT_EQ(at::arange(6).sum().item<int64_t>(), 15);

  auto llama = SentencePieceTokenizer::Load(testing::TestDataPath(kLlama2));
  ASSERT_TRUE(llama.ok()) << llama.status();
  auto ids = (*llama)->Encode("Hello world");
  ASSERT_TRUE(ids.ok()) << ids.status();
  std::vector<std::string> pieces;
  for (int32_t id : *ids) pieces.push_back((*llama)->IdToPiece(id));
  EXPECT_THAT(pieces, ElementsAre("▁Hello", "▁world"));

  SentencePieceTokenizer::TrainOptions options;
  options.vocab_size = 400;
  // sentencepiece logs to std::cerr, which this executable holds a copy of (a copy
  // relocation): the module must write to that copy, not to libstdc++'s unconstructed one.
  options.verbose = true;
  std::cerr << "training a sentencepiece model, verbose\n";
  ::testing::internal::CaptureStderr();
  auto trained = SentencePieceTokenizer::Train(ReadSyntheticTexts(300), options);
  const std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(trained.ok()) << trained.status();
  EXPECT_THAT(log, HasSubstr("LOG(INFO)"));
  EXPECT_EQ((*trained)->vocab_size(), 400);

  const std::string text = "Human: What is the capital of Kenya?";
  auto trained_ids = (*trained)->Encode(text);
  ASSERT_TRUE(trained_ids.ok()) << trained_ids.status();
  EXPECT_EQ((*trained)->Decode(*trained_ids), text);

  auto reloaded = SentencePieceTokenizer::FromSerializedProto((*trained)->SerializedModel());
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_EQ((*reloaded)->Encode(text).value(), *trained_ids);
}

TEST(SentencePieceModuleTest, KeepsSentencePieceOutOfTheGlobalSymbolScope) {
  auto module = LoadSentencePieceModule();
  ASSERT_TRUE(module.ok()) << module.status();
  auto tokenizer = SentencePieceTokenizer::Load(testing::TestDataPath(kLlama2));
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();

  EXPECT_THAT(GlobalDefinitionOf("_ZN13sentencepiece22SentencePieceProcessorC1Ev"), IsEmpty());
  EXPECT_THAT(GlobalDefinitionOf(sentencepiece_backend::kModuleEntryPoint), IsEmpty());
  // A protobuf function libsentencepiece.so exports too: the process must still get
  // libprotobuf's.
  EXPECT_THAT(GlobalDefinitionOf("_ZN6google8protobuf11MessageLite15ParseFromStringERKNSt7__"
                                 "cxx1112basic_stringIcSt11char_traitsIcESaIcEEE"),
              HasSubstr("libprotobuf.so"));
}

TEST(SentencePieceModuleTest, ProtobufMessagesWorkAfterSentencePieceIsLoaded) {
  auto tokenizer = SentencePieceTokenizer::Load(testing::TestDataPath(kLlama2));
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();

  v1::ScoreBatchRequest request;
  request.mutable_model()->set_name("helpful");
  v1::PromptResponse* item = request.add_items()->mutable_prompt_response();
  item->set_prompt("Human: What color is a ripe banana?");
  item->set_response("Yellow.");
  std::string wire;
  ASSERT_TRUE(request.SerializeToString(&wire));

  v1::ScoreBatchRequest parsed;
  ASSERT_TRUE(parsed.ParseFromString(wire));
  ASSERT_EQ(parsed.items_size(), 1);
  EXPECT_EQ(parsed.items(0).prompt_response().response(), "Yellow.");
  // Reflection and descriptors: the full runtime, where the clash used to crash.
  EXPECT_EQ(parsed.GetDescriptor()->full_name(), "verdict.v1.ScoreBatchRequest");
  EXPECT_THAT(parsed.DebugString(), HasSubstr("prompt_response"));
}

TEST(SentencePieceModuleSearchPathTest, LooksNextToTheExecutableThenInLibThenInTheBuildTree) {
  EXPECT_THAT(SentencePieceModuleSearchPath(nullptr, "/opt/verdict/bin",
                                            "/src/build/core/tokenize/libverdict_sentencepiece.so"),
              ElementsAre("/opt/verdict/bin/libverdict_sentencepiece.so",
                          "/opt/verdict/bin/../lib/verdict/libverdict_sentencepiece.so",
                          "/src/build/core/tokenize/libverdict_sentencepiece.so"));
  EXPECT_THAT(SentencePieceModuleSearchPath("", "", "/b/libverdict_sentencepiece.so"),
              ElementsAre("/b/libverdict_sentencepiece.so"));
}

TEST(SentencePieceModuleSearchPathTest, TakesOnlyTheEnvironmentVariableWhenItIsSet) {
  EXPECT_THAT(SentencePieceModuleSearchPath("/elsewhere/sp.so", "/opt/verdict/bin",
                                            "/b/libverdict_sentencepiece.so"),
              ElementsAre("/elsewhere/sp.so"));
}

}  // namespace
}  // namespace verdict
