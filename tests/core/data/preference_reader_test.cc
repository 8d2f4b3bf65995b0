#include "core/data/preference_reader.h"

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/data/data_format.h"
#include "core/data/line_reader.h"
#include "core/util/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/data/gzip_for_test.h"
#include "tests/testing/test_paths.h"

namespace verdict {
namespace {

using ::testing::AllOf;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using ::verdict::testing::Gzip;
using ::verdict::testing::ScratchDir;
using ::verdict::testing::TestDataPath;
using ::verdict::testing::WriteBytes;

constexpr char kHelpful[] = "hh-rlhf/helpful-base/test.jsonl.gz";
constexpr char kHarmless[] = "hh-rlhf/harmless-base/test.jsonl.gz";
constexpr char kUltraFeedback[] = "preference/ultrafeedback-binarized-sample/train_clean.jsonl";
// Lines 1-39 and 121 of kHelpful as LLaMA-Factory ShareGPT records, a JSON array (SOURCES.md).
constexpr char kShareGpt[] = "preference/llama-factory-sharegpt/hh-helpful-40.json";

PreferenceData ReadOrDie(const std::string& text, const PreferenceReaderOptions& options = {}) {
  absl::StatusOr<PreferenceData> data = ReadPreferenceString(text, "mem", options);
  EXPECT_TRUE(data.ok()) << data.status();
  return data.ok() ? *std::move(data) : PreferenceData{};
}

PreferencePair OnlyPair(const std::string& line, ChatFormat format = ChatFormat::kHhRlhf) {
  PreferenceReaderOptions options;
  options.chat_format = format;
  PreferenceData data = ReadOrDie(line, options);
  EXPECT_EQ(data.pairs.size(), 1u) << line;
  return data.pairs.empty() ? PreferencePair{} : data.pairs[0];
}

// --- The bundled real data ---------------------------------------------------------------

TEST(PreferenceReaderTest, ReadsHelpfulBaseAndDropsItsTwoIdenticalPairs) {
  absl::StatusOr<PreferenceData> data = ReadPreferenceFile(TestDataPath(kHelpful));
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->stats.lines, 2354);
  EXPECT_EQ(data->stats.identical_dropped, 2);
  EXPECT_EQ(data->stats.invalid_lines, 0);
  ASSERT_EQ(data->pairs.size(), 2352u);
  EXPECT_EQ(data->stats.pairs, 2352);
  EXPECT_EQ(data->stats.Summary(), "2352 pairs from 2354 lines (2 identical dropped)");

  // Lines 722 and 2169 hold chosen == rejected; every other line is a pair, in order.
  std::vector<int64_t> expected_lines;
  for (int64_t line = 1; line <= 2354; ++line) {
    if (line != 722 && line != 2169) expected_lines.push_back(line);
  }
  std::vector<int64_t> lines;
  for (const PreferencePair& pair : data->pairs) {
    lines.push_back(pair.line);
    EXPECT_THAT(pair.prompt, StartsWith("\n\nHuman: ")) << pair.line;
    EXPECT_THAT(pair.prompt, EndsWith("\n\nAssistant:")) << pair.line;
    EXPECT_NE(pair.chosen, pair.rejected) << pair.line;
    EXPECT_FALSE(pair.margin.has_value());
  }
  EXPECT_EQ(lines, expected_lines);

  const PreferencePair& first = data->pairs[0];
  EXPECT_EQ(first.prompt,
            "\n\nHuman: Do you know why turkeys became the official food of thanksgiving?"
            "\n\nAssistant:");
  EXPECT_THAT(first.chosen, StartsWith(" To be honest, I don\u2019t know anything about that."));
  EXPECT_THAT(first.rejected, StartsWith(" I know that the American Indians were the first"));
}

TEST(PreferenceReaderTest, HhRlhfPromptPlusResponseGivesBackTheTranscript) {
  absl::StatusOr<PreferenceData> data = ReadPreferenceFile(TestDataPath(kHarmless));
  ASSERT_TRUE(data.ok()) << data.status();
  ASSERT_EQ(data->pairs.size(), 2312u);
  EXPECT_EQ(data->stats.identical_dropped, 0);

  // Compare with the raw transcripts, read independently of the pair reader.
  auto lines = LineReader::OpenFile(TestDataPath(kHarmless));
  ASSERT_TRUE(lines.ok()) << lines.status();
  TextLine line;
  for (const PreferencePair& pair : data->pairs) {
    ASSERT_TRUE(*(*lines)->Next(&line));
    ASSERT_EQ(line.number, pair.line);
    nlohmann::json raw = nlohmann::json::parse(line.text.begin(), line.text.end());
    ASSERT_EQ(pair.prompt + pair.chosen, raw["chosen"].get<std::string>()) << pair.line;
    ASSERT_EQ(pair.prompt + pair.rejected, raw["rejected"].get<std::string>()) << pair.line;
    // The prompt reaches the last assistant tag the two transcripts share: what the
    // responses still have in common holds none.
    const size_t shared =
        std::mismatch(pair.chosen.begin(),
                      pair.chosen.begin() + std::min(pair.chosen.size(), pair.rejected.size()),
                      pair.rejected.begin())
            .first -
        pair.chosen.begin();
    ASSERT_EQ(pair.chosen.substr(0, shared).find("\n\nAssistant:"), std::string::npos) << pair.line;
  }
}

TEST(PreferenceReaderTest, ReadsUltraFeedbackWithExplicitPromptsIgnoringExtraKeys) {
  absl::StatusOr<PreferenceData> data = ReadPreferenceFile(TestDataPath(kUltraFeedback));
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->stats.lines, 1000);
  EXPECT_EQ(data->stats.identical_dropped, 4);
  ASSERT_EQ(data->pairs.size(), 996u);
  for (const PreferencePair& pair : data->pairs) {
    EXPECT_NE(pair.line, 307);
    EXPECT_NE(pair.line, 656);
    EXPECT_NE(pair.line, 911);
    EXPECT_NE(pair.line, 998);
    EXPECT_FALSE(pair.margin.has_value());  // metadata.score_* is not a margin
  }
  const PreferencePair& first = data->pairs[0];
  EXPECT_EQ(first.prompt, "how to cook t-bone in the oven");
  EXPECT_THAT(first.chosen, StartsWith("To cook a delicious T-bone steak in the oven"));
  EXPECT_THAT(first.rejected, StartsWith("To cook a T-bone steak in the oven, you will need"));
}

TEST(PreferenceReaderTest, ReadsUploadedBytesExactlyAsTheFile) {
  for (const char* name : {kHelpful, kUltraFeedback}) {
    absl::StatusOr<std::string> bytes = ReadFileToString(TestDataPath(name));
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    absl::StatusOr<PreferenceData> from_file = ReadPreferenceFile(TestDataPath(name));
    absl::StatusOr<PreferenceData> from_memory = ReadPreferenceString(*bytes, "upload");
    ASSERT_TRUE(from_file.ok() && from_memory.ok());
    ASSERT_EQ(from_file->pairs.size(), from_memory->pairs.size());
    for (size_t i = 0; i < from_file->pairs.size(); ++i) {
      const PreferencePair& a = from_file->pairs[i];
      const PreferencePair& b = from_memory->pairs[i];
      ASSERT_TRUE(a.prompt == b.prompt && a.chosen == b.chosen && a.rejected == b.rejected &&
                  a.line == b.line)
          << name << " pair " << i;
    }
  }
}

TEST(PreferenceReaderTest, StreamsPairsOneAtATime) {
  auto reader = PreferenceReader::OpenFile(TestDataPath(kHelpful));
  ASSERT_TRUE(reader.ok()) << reader.status();
  PreferencePair pair;
  ASSERT_TRUE(*(*reader)->Next(&pair));
  EXPECT_EQ(pair.line, 1);
  EXPECT_EQ((*reader)->stats().lines, 1);
  EXPECT_EQ((*reader)->stats().pairs, 1);
}

// --- Layouts -----------------------------------------------------------------------------

TEST(PreferenceReaderTest, ImplicitPromptIsCutBackToTheLastSharedAssistantTurn) {
  // The transcripts part in the second human turn: the prompt stops before the shared answer.
  PreferencePair pair = OnlyPair(
      R"({"chosen": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Tell a joke\n\nAssistant: No.",)"
      R"( "rejected": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Tell a story\n\nAssistant: Once."})");
  EXPECT_EQ(pair.prompt, "\n\nHuman: Hi\n\nAssistant:");
  EXPECT_EQ(pair.chosen, " Hello\n\nHuman: Tell a joke\n\nAssistant: No.");
  EXPECT_EQ(pair.rejected, " Hello\n\nHuman: Tell a story\n\nAssistant: Once.");
}

TEST(PreferenceReaderTest, ImplicitPromptIsEmptyWithoutAnAssistantTag) {
  PreferencePair pair =
      OnlyPair(R"({"chosen": "The sky is blue", "rejected": "The sky is green"})");
  EXPECT_EQ(pair.prompt, "");
  EXPECT_EQ(pair.chosen, "The sky is blue");
  EXPECT_EQ(pair.rejected, "The sky is green");
}

TEST(PreferenceReaderTest, ConversationsWithoutAPromptShareTheirLeadingMessages) {
  const std::string messages =
      R"({"chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],)"
      R"( "rejected": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Go away."}]})";
  const std::string transcript =
      R"({"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!", "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."})";
  PreferencePair from_messages = OnlyPair(messages);
  PreferencePair from_transcript = OnlyPair(transcript);
  EXPECT_EQ(from_messages.prompt, "\n\nHuman: Hi\n\nAssistant:");
  EXPECT_EQ(from_messages.prompt, from_transcript.prompt);
  EXPECT_EQ(from_messages.chosen, from_transcript.chosen);
  EXPECT_EQ(from_messages.rejected, from_transcript.rejected);

  PreferencePair chatml = OnlyPair(messages, ChatFormat::kChatML);
  EXPECT_EQ(chatml.prompt, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(chatml.chosen, "Hello!<|im_end|>\n");
  EXPECT_EQ(chatml.rejected, "Go away.<|im_end|>\n");

  PreferencePair llama2 = OnlyPair(messages, ChatFormat::kLlama2);
  EXPECT_EQ(llama2.prompt, "[INST] Hi [/INST]");
  EXPECT_EQ(llama2.chosen, " Hello!");
}

TEST(PreferenceReaderTest, ConversationsWithAPromptRenderItBeforeEachResponse) {
  PreferencePair pair = OnlyPair(
      R"({"prompt": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}],)"
      R"( "chosen": [{"role": "assistant", "content": "Hello!"}],)"
      R"( "rejected": [{"role": "assistant", "content": "What?"}], "margin": 0.5})",
      ChatFormat::kChatML);
  EXPECT_EQ(pair.prompt,
            "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(pair.chosen, "Hello!<|im_end|>\n");
  EXPECT_EQ(pair.rejected, "What?<|im_end|>\n");
  EXPECT_EQ(pair.margin, 0.5);
}

TEST(PreferenceReaderTest, ReadsMarginsAsNumbersAndNullAsNone) {
  PreferenceData data =
      ReadOrDie(R"({"prompt": "p", "chosen": "a", "rejected": "b", "margin": 1.5})"
                "\n"
                R"({"prompt": "p", "chosen": "a", "rejected": "b", "margin": 2})"
                "\n"
                R"({"prompt": "p", "chosen": "a", "rejected": "b", "margin": -0.25})"
                "\n"
                R"({"prompt": "p", "chosen": "a", "rejected": "b", "margin": null})"
                "\n"
                R"({"prompt": null, "chosen": "a", "rejected": "b"})"
                "\n");
  ASSERT_EQ(data.pairs.size(), 5u);
  EXPECT_EQ(data.pairs[0].margin, 1.5);
  EXPECT_EQ(data.pairs[1].margin, 2.0);
  EXPECT_EQ(data.pairs[2].margin, -0.25);
  EXPECT_FALSE(data.pairs[3].margin.has_value());
  EXPECT_EQ(data.pairs[4].prompt, "");
}

TEST(PreferenceReaderTest, KeepsASubsetStringAndRefusesAnyOtherType) {
  PreferenceData data =
      ReadOrDie(R"({"prompt": "p", "chosen": "a", "rejected": "b", "subset": "helpful-base"})"
                "\n"
                R"({"prompt": "p", "chosen": "a", "rejected": "b", "subset": null})"
                "\n"
                R"({"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],)"
                R"( "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}],)"
                R"( "subset": "chat"})"
                "\n");
  ASSERT_EQ(data.pairs.size(), 3u);
  EXPECT_EQ(data.pairs[0].subset, "helpful-base");
  EXPECT_EQ(data.pairs[1].subset, "");
  EXPECT_EQ(data.pairs[2].subset, "chat");
  absl::StatusOr<PreferenceData> bad = ReadPreferenceString(
      R"({"prompt": "p", "chosen": "a", "rejected": "b", "subset": 3})", "mem");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), ::testing::HasSubstr("mem:1: \"subset\" must be a string"));
}

TEST(PreferenceReaderTest, DropsAndCountsPairsWhoseResponsesAreEqual) {
  PreferenceData data = ReadOrDie(
      R"({"prompt": "p", "chosen": "same", "rejected": "same"})"
      "\n"
      R"({"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "\n\nHuman: q\n\nAssistant: a"})"
      "\n"
      R"({"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],)"
      R"( "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})"
      "\n"
      R"({"prompt": "p", "chosen": "kept", "rejected": "other"})"
      "\n");
  EXPECT_EQ(data.stats.identical_dropped, 3);
  ASSERT_EQ(data.pairs.size(), 1u);
  EXPECT_EQ(data.pairs[0].line, 4);
}

TEST(PreferenceReaderTest, SkipsBlankLinesButCountsThemInLineNumbers) {
  PreferenceData data = ReadOrDie(
      "\n  \t\n"
      R"({"prompt": "p", "chosen": "a", "rejected": "b"})"
      "\r\n"
      "\r\n"
      R"({"prompt": "p", "chosen": "c", "rejected": "d"})");
  ASSERT_EQ(data.pairs.size(), 2u);
  EXPECT_EQ(data.pairs[0].line, 3);
  EXPECT_EQ(data.pairs[1].line, 5);
  EXPECT_EQ(data.pairs[0].rejected, "b");  // no "\r" left over
  EXPECT_EQ(data.stats.blank_lines, 3);
  EXPECT_EQ(data.stats.lines, 5);
}

TEST(PreferenceReaderTest, DoesNotCountBracketsInsideStringsAsNesting) {
  const std::string brackets(100, '[');
  PreferencePair pair =
      OnlyPair(R"({"prompt": "\")" + brackets + R"(", "chosen": "a", "rejected": "b"})");
  EXPECT_EQ(pair.prompt, "\"" + brackets);
}

// --- Malformed lines ---------------------------------------------------------------------

struct MalformedCase {
  const char* name;
  std::string line;
  std::string reason;
};

class MalformedLineTest : public ::testing::TestWithParam<MalformedCase> {
 protected:
  // Two good lines, a blank one, the bad one on line 4, then a good one.
  static std::string Contents() {
    return std::string(R"({"prompt": "p", "chosen": "a", "rejected": "b"})") + "\n" +
           R"({"chosen": "\n\nHuman: q\n\nAssistant: x", "rejected": "\n\nHuman: q\n\nAssistant: y"})" +
           "\n\n" + GetParam().line + "\n" + R"({"prompt": "p", "chosen": "c", "rejected": "d"})" +
           "\n";
  }
};

TEST_P(MalformedLineTest, FailsTheReadNamingFileLineAndReason) {
  ScratchDir dir;
  PreferenceReaderOptions options;
  options.max_line_bytes = 1000;
  for (bool gzip : {false, true}) {
    const std::string path = dir.Path(gzip ? "data.jsonl.gz" : "data.jsonl");
    WriteBytes(path, gzip ? Gzip(Contents()) : Contents());
    absl::StatusOr<PreferenceData> data = ReadPreferenceFile(path, options);
    ASSERT_FALSE(data.ok()) << GetParam().name;
    EXPECT_EQ(data.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(data.status().message()), StartsWith(path + ":4: "));
    EXPECT_THAT(data.status().message(), HasSubstr(GetParam().reason));
  }
}

TEST_P(MalformedLineTest, IsSkippedAndCountedWhenAsked) {
  PreferenceReaderOptions options;
  options.max_line_bytes = 1000;
  options.skip_invalid = true;
  for (bool gzip : {false, true}) {
    absl::StatusOr<PreferenceData> data =
        ReadPreferenceString(gzip ? Gzip(Contents()) : Contents(), "upload", options);
    ASSERT_TRUE(data.ok()) << data.status();
    ASSERT_EQ(data->pairs.size(), 3u);
    EXPECT_EQ(data->pairs[2].line, 5);
    EXPECT_EQ(data->stats.invalid_lines, 1);
    ASSERT_EQ(data->stats.first_invalid.size(), 1u);
    EXPECT_EQ(data->stats.first_invalid[0].line, 4);
    EXPECT_THAT(data->stats.first_invalid[0].reason, HasSubstr(GetParam().reason));
    EXPECT_THAT(data->stats.Summary(), HasSubstr("1 invalid skipped"));
  }
}

INSTANTIATE_TEST_SUITE_P(
    EveryKindOfDamage, MalformedLineTest,
    ::testing::Values(
        MalformedCase{"BadJson", R"({"chosen": "a", "rejected": })", "invalid JSON: "},
        MalformedCase{"TruncatedJson", R"({"chosen": "a", "rejec)", "invalid JSON: "},
        MalformedCase{"LoneSurrogateEscape", R"({"chosen": "\ud800", "rejected": "b"})",
                      "invalid JSON: "},
        MalformedCase{"NotAnObject", R"(["a", "b"])", "expected a JSON object, got array"},
        MalformedCase{"MissingRejected", R"({"chosen": "a"})", "missing \"rejected\""},
        MalformedCase{"MissingChosen", R"({"prompt": "p", "rejected": "a"})", "missing \"chosen\""},
        MalformedCase{"ChosenIsANumber", R"({"chosen": 3, "rejected": "b"})",
                      "\"chosen\" must be a string or a list of messages, got number"},
        MalformedCase{"RejectedIsAnObject", R"({"chosen": "a", "rejected": {}})",
                      "\"rejected\" must be a string or a list of messages, got object"},
        MalformedCase{"PromptIsANumber", R"({"prompt": 1, "chosen": "a", "rejected": "b"})",
                      "\"prompt\" must be a string"},
        MalformedCase{"MarginIsAString", R"({"chosen": "a", "rejected": "b", "margin": "high"})",
                      "\"margin\" must be a number, got string"},
        MalformedCase{"MarginOverflows", R"({"chosen": "a", "rejected": "b", "margin": 1e999})",
                      "invalid JSON: "},
        MalformedCase{"InvalidUtf8", "{\"chosen\": \"a\xff\", \"rejected\": \"b\"}",
                      "invalid UTF-8 at byte 14"},
        MalformedCase{"OverlongUtf8", "{\"chosen\": \"\xc0\xaf\", \"rejected\": \"b\"}",
                      "invalid UTF-8 at byte 13"},
        MalformedCase{"EncodedSurrogate", "{\"chosen\": \"\xed\xa0\x80\", \"rejected\": \"b\"}",
                      "invalid UTF-8 at byte 13"},
        MalformedCase{"CutUtf8Sequence", "{\"chosen\": \"\xe2\x80\", \"rejected\": \"b\"}",
                      "invalid UTF-8 at byte 13"},
        MalformedCase{"MixedLayouts",
                      R"({"chosen": "a", "rejected": [{"role": "assistant", "content": "b"}]})",
                      "must both be strings or both be message lists"},
        MalformedCase{"UnknownRole",
                      R"({"chosen": [{"role": "bot", "content": "a"}], "rejected": []})",
                      "\"chosen\"[0].role: unknown role \"bot\""},
        MalformedCase{
            "ContentIsAList",
            R"({"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ["a"]}], "rejected": []})",
            "\"chosen\"[1].content must be a string"},
        MalformedCase{"MessageIsAString", R"({"chosen": ["hi"], "rejected": ["ho"]})",
                      "\"chosen\"[0] must be an object with \"role\" and \"content\", got string"},
        MalformedCase{
            "ConversationsPartAtAUserTurn",
            R"({"chosen": [{"role": "user", "content": "a"}], "rejected": [{"role": "user", "content": "b"}]})",
            "must part at an assistant message"},
        MalformedCase{
            "ResponseStartsWithTheUser",
            R"({"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "user", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]})",
            "\"chosen\": the response must start with an assistant message"},
        MalformedCase{
            "PromptIsAStringForMessages",
            R"({"prompt": "q", "chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]})",
            "\"prompt\" must be a list of messages"},
        MalformedCase{
            "ShareGptObservationTurn",
            R"({"conversations": [{"from": "human", "value": "q"}, {"from": "observation", "value": "o"}], "chosen": {"from": "gpt", "value": "a"}, "rejected": {"from": "gpt", "value": "b"}})",
            "\"conversations\"[1].from: role \"observation\" is not supported"},
        MalformedCase{
            "ShareGptChosenFromTheHuman",
            R"({"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "human", "value": "a"}, "rejected": {"from": "gpt", "value": "b"}})",
            "\"chosen\".from must be \"gpt\""},
        MalformedCase{
            "ShareGptMissingRejected",
            R"({"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt", "value": "a"}})",
            "missing \"rejected\""},
        MalformedCase{
            "ShareGptConversationsIsAString",
            R"({"conversations": "q", "chosen": {"from": "gpt", "value": "a"}, "rejected": {"from": "gpt", "value": "b"}})",
            "\"conversations\" must be a list of {\"from\", \"value\"} messages, got string"},
        MalformedCase{
            "ShareGptValueIsANumber",
            R"({"conversations": [{"from": "human", "value": 1}], "chosen": {"from": "gpt", "value": "a"}, "rejected": {"from": "gpt", "value": "b"}})",
            "\"conversations\"[0].value must be a string"},
        MalformedCase{"NestedTooDeep",
                      R"({"chosen": "[[[[", "rejected": "b", "x": )" + std::string(40, '[') +
                          std::string(40, ']') + "}",
                      "JSON nested deeper than 32 levels"},
        MalformedCase{
            "LineTooLong",
            R"({"prompt": ")" + std::string(2000, 'x') + R"(", "chosen": "a", "rejected": "b"})",
            "line is longer than 1000 bytes"}),
    [](const ::testing::TestParamInfo<MalformedCase>& info) { return info.param.name; });

TEST(PreferenceReaderTest, KeepsFailingAfterTheFirstBadLine) {
  auto reader = PreferenceReader::FromString(
      "not json\n"
      R"({"prompt": "p", "chosen": "a", "rejected": "b"})",
      "upload");
  PreferencePair pair;
  absl::StatusOr<bool> first = reader->Next(&pair);
  ASSERT_FALSE(first.ok());
  // Line 1 is not JSON: nothing says this is preference data.
  EXPECT_THAT(std::string(first.status().message()),
              StartsWith("upload:1: not preference data: found invalid JSON: "));
  EXPECT_EQ(reader->Next(&pair).status(), first.status());
}

TEST(PreferenceReaderTest, DescribesOnlyTheFirstFewSkippedLines) {
  std::string text;
  for (int i = 0; i < 15; ++i) text += "{}\n";
  text += R"({"prompt": "p", "chosen": "a", "rejected": "b"})";
  PreferenceReaderOptions options;
  options.skip_invalid = true;
  options.max_reported_invalid = 10;
  PreferenceData data = ReadOrDie(text, options);
  EXPECT_EQ(data.pairs.size(), 1u);
  EXPECT_EQ(data.stats.invalid_lines, 15);
  ASSERT_EQ(data.stats.first_invalid.size(), 10u);
  EXPECT_EQ(data.stats.first_invalid[9].line, 10);
  EXPECT_EQ(data.stats.first_invalid[0].reason, "missing \"chosen\"");
  EXPECT_EQ(data.stats.Summary(),
            "1 pair from 16 lines (15 invalid skipped); first invalid: line 1: missing \"chosen\"");
}

TEST(PreferenceReaderTest, FailsOnDamagedGzipEvenWhenSkippingInvalidLines) {
  ScratchDir dir;
  std::string text;
  for (int i = 0; i < 3000; ++i)
    text += R"({"prompt": "p", "chosen": "a", "rejected": "b"})"
            "\n";
  const std::string gzip = Gzip(text);
  const std::string path = dir.Path("cut.jsonl.gz");
  WriteBytes(path, gzip.substr(0, gzip.size() / 2));
  PreferenceReaderOptions options;
  options.skip_invalid = true;
  absl::StatusOr<PreferenceData> data = ReadPreferenceFile(path, options);
  ASSERT_FALSE(data.ok());
  EXPECT_EQ(data.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(data.status().message()), StartsWith(path + ":"));
}

TEST(PreferenceReaderTest, ReportsAMissingFile) {
  ScratchDir dir;
  EXPECT_EQ(ReadPreferenceFile(dir.Path("none.jsonl")).status().code(),
            absl::StatusCode::kNotFound);
}

// --- JSON arrays ------------------------------------------------------------------------

// The lines of a JSON Lines file, read with the project's own line reader (gzip and all).
std::vector<std::string> LinesOf(const std::string& path) {
  std::vector<std::string> lines;
  absl::StatusOr<std::unique_ptr<LineReader>> reader = LineReader::OpenFile(path);
  EXPECT_TRUE(reader.ok()) << reader.status();
  if (!reader.ok()) return lines;
  TextLine line;
  while (true) {
    absl::StatusOr<bool> more = (*reader)->Next(&line);
    EXPECT_TRUE(more.ok()) << more.status();
    if (!more.ok() || !*more) break;
    lines.emplace_back(line.text);
  }
  return lines;
}

void ExpectSamePairs(const std::vector<PreferencePair>& actual,
                     const std::vector<PreferencePair>& expected) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    EXPECT_EQ(actual[i].prompt, expected[i].prompt) << i;
    EXPECT_EQ(actual[i].chosen, expected[i].chosen) << i;
    EXPECT_EQ(actual[i].rejected, expected[i].rejected) << i;
    EXPECT_EQ(actual[i].margin, expected[i].margin) << i;
  }
}

TEST(PreferenceReaderTest, ReadsAJsonArrayAsTheSameJsonLines) {
  const std::vector<std::string> lines = LinesOf(TestDataPath(kHelpful));
  ASSERT_EQ(lines.size(), 2354u);
  absl::StatusOr<PreferenceData> jsonl = ReadPreferenceFile(TestDataPath(kHelpful));
  ASSERT_TRUE(jsonl.ok()) << jsonl.status();

  // One element per line after "[" on line 1, as json.dump(indent=None) per row writes it.
  const std::string array = "[\n" + absl::StrJoin(lines, ",\n") + "\n]\n";
  ScratchDir dir;
  for (bool gzip : {false, true}) {
    const std::string path = dir.Path(gzip ? "helpful.json.gz" : "helpful.json");
    WriteBytes(path, gzip ? Gzip(array) : array);
    absl::StatusOr<PreferenceData> data = ReadPreferenceFile(path);
    ASSERT_TRUE(data.ok()) << data.status();
    ExpectSamePairs(data->pairs, jsonl->pairs);
    for (size_t i = 0; i < data->pairs.size(); ++i) {
      EXPECT_EQ(data->pairs[i].line, jsonl->pairs[i].line + 1);  // the element's own line
    }
    EXPECT_EQ(data->stats.identical_dropped, 2);
    EXPECT_EQ(data->stats.lines, 2356);
  }
}

TEST(PreferenceReaderTest, ReadsASingleLineJsonArrayLongerThanAnyLineLimit) {
  const std::vector<std::string> lines = LinesOf(TestDataPath(kUltraFeedback));
  absl::StatusOr<PreferenceData> jsonl = ReadPreferenceFile(TestDataPath(kUltraFeedback));
  ASSERT_TRUE(jsonl.ok()) << jsonl.status();
  // As json.dump writes a list: one line, elements separated by ", ".
  const std::string array = "[" + absl::StrJoin(lines, ", ") + "]";
  PreferenceReaderOptions options;
  options.max_line_bytes = 64 << 10;  // bounds one element, not the line holding them all
  ASSERT_GT(array.size(), 20 * options.max_line_bytes);
  for (bool gzip : {false, true}) {
    absl::StatusOr<PreferenceData> data =
        ReadPreferenceString(gzip ? Gzip(array) : array, "mem", options);
    ASSERT_TRUE(data.ok()) << data.status();
    ExpectSamePairs(data->pairs, jsonl->pairs);
    for (const PreferencePair& pair : data->pairs) EXPECT_EQ(pair.line, 1);
  }
}

TEST(PreferenceReaderTest, ArrayElementsMayShareAndSpanLines) {
  PreferenceData data = ReadOrDie(
      "\n  [ {\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"},"
      "{\"prompt\": \"p\",\n\"chosen\": \"c\",\r\n \"rejected\": \"d\"}\n,\n"
      "\t{\"chosen\": \"\\n\\nHuman: q\\n\\nAssistant: x]\", "
      "\"rejected\": \"\\n\\nHuman: q\\n\\nAssistant: y}\\\"[\"}\n]\n\n");
  ASSERT_EQ(data.pairs.size(), 3u);
  EXPECT_EQ(data.pairs[0].line, 2);
  EXPECT_EQ(data.pairs[1].line, 2);
  EXPECT_EQ(data.pairs[1].rejected, "d");
  EXPECT_EQ(data.pairs[2].line, 6);  // brackets and quotes inside strings do not count
  EXPECT_EQ(data.pairs[2].chosen, " x]");
  EXPECT_EQ(data.pairs[2].rejected, " y}\"[");
  EXPECT_EQ(data.stats.blank_lines, 1);
  EXPECT_EQ(data.stats.lines, 8);
}

TEST(PreferenceReaderTest, AnEmptyJsonArrayHoldsNoPairs) {
  PreferenceData data = ReadOrDie(" [ \n ] \n");
  EXPECT_TRUE(data.pairs.empty());
  EXPECT_EQ(data.stats.invalid_lines, 0);
}

TEST(PreferenceReaderTest, BadArrayElementsAreNamedByTheLineTheyStartOn) {
  const std::string text =
      "[\n"
      "  {\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"},\n"
      "  {\n"
      "    \"prompt\": \"p\",\n"
      "    \"chosen\": \"c\"\n"
      "  },\n"
      "  {\"prompt\": \"p\",\n"
      "   \"chosen\": \"c\",, \"rejected\": \"d\"},\n"
      "  {\"prompt\": \"p\", \"chosen\": \"e\", \"rejected\": \"f\"}\n"
      "]\n";
  absl::StatusOr<PreferenceData> failed = ReadPreferenceString(text, "data.json");
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().message(), "data.json:3: missing \"rejected\"");

  PreferenceReaderOptions options;
  options.skip_invalid = true;
  PreferenceData data = ReadOrDie(text, options);
  ASSERT_EQ(data.pairs.size(), 2u);
  EXPECT_EQ(data.pairs[1].line, 9);
  EXPECT_EQ(data.stats.invalid_lines, 2);
  ASSERT_EQ(data.stats.first_invalid.size(), 2u);
  EXPECT_EQ(data.stats.first_invalid[0].line, 3);
  EXPECT_EQ(data.stats.first_invalid[1].line, 7);
  // The parser's position is counted in the file, not in the element.
  EXPECT_THAT(data.stats.first_invalid[1].reason,
              AllOf(StartsWith("invalid JSON: "), HasSubstr("at line 8, column 18")));
}

struct FrameCase {
  const char* name;
  std::string text;
  std::string message;  // the whole message, "NAME:LINE: reason"
};

class BrokenArrayTest : public ::testing::TestWithParam<FrameCase> {};

TEST_P(BrokenArrayTest, FailsWithTheLineEvenWhenSkippingInvalidRecords) {
  for (bool skip_invalid : {false, true}) {
    PreferenceReaderOptions options;
    options.skip_invalid = skip_invalid;
    for (bool gzip : {false, true}) {
      const std::string& text = GetParam().text;
      absl::StatusOr<PreferenceData> data =
          ReadPreferenceString(gzip ? Gzip(text) : text, "data.json", options);
      ASSERT_FALSE(data.ok());
      EXPECT_EQ(data.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_EQ(data.status().message(), GetParam().message);
    }
  }
}

constexpr char kRecord[] = R"({"prompt": "p", "chosen": "a", "rejected": "b"})";

INSTANTIATE_TEST_SUITE_P(
    EveryBrokenFrame, BrokenArrayTest,
    ::testing::Values(
        FrameCase{"MissingClosingBracket", absl::StrCat("[\n", kRecord, ",\n", kRecord, "\n"),
                  "data.json:3: the JSON array is not closed: ']' is missing at the end of the "
                  "file"},
        FrameCase{"TrailingComma", absl::StrCat("[\n", kRecord, ",\n]\n"),
                  "data.json:3: ',' before ']': a JSON array has no trailing comma"},
        FrameCase{"MissingComma", absl::StrCat("[\n", kRecord, "\n", kRecord, "\n]"),
                  "data.json:3: expected ',' or ']' after element 1 of the JSON array, found '{'"},
        FrameCase{"DoubledComma", absl::StrCat("[", kRecord, ",\n , ", kRecord, "]"),
                  "data.json:2: expected element 2 of the JSON array, found ','"},
        FrameCase{"GarbageAfterTheArray", absl::StrCat("[", kRecord, "]\n\n  x\n"),
                  "data.json:3: unexpected 'x' after the closing ']' of the JSON array"},
        FrameCase{"SecondArray", absl::StrCat("[", kRecord, "]\n[", kRecord, "]\n"),
                  "data.json:2: unexpected '[' after the closing ']' of the JSON array"},
        FrameCase{"EndsInsideAnElement",
                  absl::StrCat("[", kRecord, ",\n {\"prompt\": \"p\",\n \"chosen\": \"a"),
                  "data.json:3: the file ends inside element 2 of the JSON array (it starts at "
                  "line 2)"}),
    [](const ::testing::TestParamInfo<FrameCase>& info) { return info.param.name; });

// --- LLaMA-Factory ShareGPT --------------------------------------------------------------

TEST(PreferenceReaderTest, ReadsLlamaFactoryShareGptAsTheHhRlhfLinesItWasMadeFrom) {
  absl::StatusOr<PreferenceData> helpful = ReadPreferenceFile(TestDataPath(kHelpful));
  ASSERT_TRUE(helpful.ok()) << helpful.status();
  std::vector<PreferencePair> expected;
  for (const PreferencePair& pair : helpful->pairs) {
    if (pair.line <= 39 || pair.line == 121) expected.push_back(pair);
  }
  ASSERT_EQ(expected.size(), 40u);
  EXPECT_EQ(expected.back().rejected, " ");  // line 121's rejected reply is empty

  absl::StatusOr<PreferenceData> array = ReadPreferenceFile(TestDataPath(kShareGpt));
  ASSERT_TRUE(array.ok()) << array.status();
  ExpectSamePairs(array->pairs, expected);
  EXPECT_EQ(array->pairs[0].line, 2);

  // The same records as JSON Lines, and gzip-compressed: the same pairs.
  absl::StatusOr<std::string> text = ReadFileToString(TestDataPath(kShareGpt));
  ASSERT_TRUE(text.ok());
  std::string jsonl;
  for (const auto& record : nlohmann::json::parse(*text)) jsonl += record.dump() + "\n";
  for (const std::string& bytes : {jsonl, Gzip(jsonl), Gzip(*text)}) {
    PreferenceData data = ReadOrDie(bytes);
    ExpectSamePairs(data.pairs, expected);
  }
}

TEST(PreferenceReaderTest, ShareGptRendersLikeTheConversationalLayout) {
  const std::string sharegpt =
      R"({"system": "Be brief.", "conversations": [{"from": "human", "value": "Hi"},)"
      R"( {"from": "gpt", "value": "Hello."}, {"from": "user", "value": "Sky?"}],)"
      R"( "chosen": {"from": "gpt", "value": "Blue."},)"
      R"( "rejected": {"from": "assistant", "value": "Green."}, "margin": 0.5})";
  const std::string conversational =
      R"({"prompt": [{"role": "system", "content": "Be brief."},)"
      R"( {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},)"
      R"( {"role": "user", "content": "Sky?"}],)"
      R"( "chosen": [{"role": "assistant", "content": "Blue."}],)"
      R"( "rejected": [{"role": "assistant", "content": "Green."}], "margin": 0.5})";
  for (ChatFormat format : {ChatFormat::kHhRlhf, ChatFormat::kChatML, ChatFormat::kLlama3}) {
    const PreferencePair a = OnlyPair(sharegpt, format);
    const PreferencePair b = OnlyPair(conversational, format);
    EXPECT_EQ(a.prompt, b.prompt);
    EXPECT_EQ(a.chosen, b.chosen);
    EXPECT_EQ(a.rejected, b.rejected);
    EXPECT_EQ(a.margin, 0.5);
  }
  const PreferencePair chatml = OnlyPair(sharegpt, ChatFormat::kChatML);
  EXPECT_EQ(chatml.prompt,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nSky?<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(chatml.chosen, "Blue.<|im_end|>\n");
  // An empty "system" is no system prompt, as in LLaMA-Factory.
  const PreferencePair no_system = OnlyPair(
      R"({"system": "", "conversations": [{"from": "human", "value": "Hi"}],)"
      R"( "chosen": {"from": "gpt", "value": "a"}, "rejected": {"from": "gpt", "value": "b"}})");
  EXPECT_EQ(no_system.prompt, "\n\nHuman: Hi\n\nAssistant:");
}

// LLaMA-Factory's alpaca preference records: before, one was read as an hh-rlhf transcript
// pair with an empty prompt, silently dropping its instruction.
TEST(PreferenceReaderTest, AlpacaRecordsRenderTheirInstructionAsTheUserTurn) {
  const std::string alpaca =
      R"({"system": "Be brief.", "history": [["Hi", "Hello."]], "instruction": "Sky colour?",)"
      R"( "input": "At noon.", "chosen": "Blue.", "rejected": "Green.", "margin": 1})";
  const std::string conversational =
      R"({"prompt": [{"role": "system", "content": "Be brief."},)"
      R"( {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},)"
      R"( {"role": "user", "content": "Sky colour?\nAt noon."}],)"
      R"( "chosen": [{"role": "assistant", "content": "Blue."}],)"
      R"( "rejected": [{"role": "assistant", "content": "Green."}]})";
  for (ChatFormat format : {ChatFormat::kHhRlhf, ChatFormat::kChatML, ChatFormat::kQwen3}) {
    const PreferencePair a = OnlyPair(alpaca, format);
    const PreferencePair b = OnlyPair(conversational, format);
    EXPECT_EQ(a.prompt, b.prompt);
    EXPECT_EQ(a.chosen, b.chosen);
    EXPECT_EQ(a.rejected, b.rejected);
    EXPECT_TRUE(a.conversational);
    EXPECT_EQ(a.margin, 1.0);
  }
  // No input: the instruction alone; no system, no history.
  const PreferencePair plain = OnlyPair(
      R"({"instruction": "Name a colour.", "input": "", "chosen": "Red.", "rejected": "No."})");
  EXPECT_EQ(plain.prompt, "\n\nHuman: Name a colour.\n\nAssistant:");
  EXPECT_EQ(plain.chosen, " Red.");
  // A bad history names itself.
  absl::StatusOr<PreferenceData> bad = ReadPreferenceString(
      R"({"instruction": "q", "history": [["only a query"]], "chosen": "a", "rejected": "b"})",
      "mem");
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("\"history\"[0]"));
}

// --- Files that are not preference data ----------------------------------------------------

struct WrongFileCase {
  const char* name;
  std::string contents;
  std::string found;  // "LINE: not preference data: found ..." after the file name
};

class WrongFormatTest : public ::testing::TestWithParam<WrongFileCase> {};

TEST_P(WrongFormatTest, GetsOneMessageNamingTheFileWhatIsThereAndWhatIsAccepted) {
  ScratchDir dir;
  const std::string path = dir.Path("mystery.data");
  WriteBytes(path, GetParam().contents);
  for (bool skip_invalid : {false, true}) {
    PreferenceReaderOptions options;
    options.skip_invalid = skip_invalid;
    absl::StatusOr<PreferenceData> data = ReadPreferenceFile(path, options);
    ASSERT_FALSE(data.ok()) << GetParam().name;
    EXPECT_EQ(data.status().code(), absl::StatusCode::kInvalidArgument);
    const std::string message(data.status().message());
    EXPECT_THAT(message, StartsWith(absl::StrCat(path, ":", GetParam().found, ". Accepted: ")));
    EXPECT_THAT(message,
                AllOf(HasSubstr("JSON Lines (one record per line) or a JSON array of records, "
                                "plain or gzip"),
                      HasSubstr("{\"prompt\": str, \"chosen\": str, \"rejected\": str} "
                                "(explicit prompt)"),
                      HasSubstr("(hh-rlhf transcripts, implicit prompt)"),
                      HasSubstr("(conversational)"), HasSubstr("(LLaMA-Factory ShareGPT)")));
  }
}

INSTANTIATE_TEST_SUITE_P(
    SeveralWrongFiles, WrongFormatTest,
    ::testing::Values(
        WrongFileCase{"Csv", "question,answer\nWhat is 2+2?,4\n",
                      "1: not preference data: found invalid JSON: parse error at column 1: syntax "
                      "error while parsing value - invalid literal; last read: 'q'"},
        WrongFileCase{"JsonArrayOfNumbers", "[1, 2, 3]\n",
                      "1: not preference data: found a JSON number (element 1 of the array)"},
        WrongFileCase{"QuestionAnswerRecords",
                      "{\"question\": \"q\", \"answer\": \"a\"}\n"
                      "{\"question\": \"r\", \"answer\": \"b\"}\n",
                      "1: not preference data: found a JSON object with keys \"question\", "
                      "\"answer\""},
        WrongFileCase{"QuestionAnswerArray",
                      "\n[\n  {\"question\": \"q\", \"answer\": \"a\"}\n]\n",
                      "3: not preference data: found a JSON object with keys \"question\", "
                      "\"answer\" (element 1 of the array)"},
        WrongFileCase{"OneObjectOverSeveralLines",
                      "{\n  \"data\": [{\"chosen\": \"a\", \"rejected\": \"b\"}]\n}\n",
                      "1: not preference data: found invalid JSON: parse error at column 2: syntax "
                      "error while parsing object key - unexpected end of input; expected string literal (a JSON "
                      "document spread over several lines is not JSON Lines)"},
        WrongFileCase{"ShareGptFineTuningData",
                      "[{\"conversations\": [{\"from\": \"human\", \"value\": \"q\"}, "
                      "{\"from\": \"gpt\", \"value\": \"a\"}]}]",
                      "1: not preference data: found a JSON object with key \"conversations\" "
                      "(element 1 of the array)"},
        WrongFileCase{"Binary", std::string("PAR1\x15\x04\xff\xfe", 8),
                      "1: not preference data: found invalid UTF-8 at byte 7 (not a text "
                      "file?)"}),
    [](const ::testing::TestParamInfo<WrongFileCase>& info) { return info.param.name; });

TEST(PreferenceReaderTest, APreferenceFileWithABadFirstRecordKeepsThePerLineError) {
  absl::StatusOr<PreferenceData> data = ReadPreferenceString(
      "{\"chosen\": \"a\"}\n{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n", "f");
  ASSERT_FALSE(data.ok());
  EXPECT_EQ(data.status().message(), "f:1: missing \"rejected\"");
}

// --- The format option -------------------------------------------------------------------

TEST(PreferenceReaderTest, DataFormatNamesRoundTrip) {
  for (DataFormat format :
       {DataFormat::kAuto, DataFormat::kJsonl, DataFormat::kJson, DataFormat::kShareGpt}) {
    absl::StatusOr<DataFormat> parsed = ParseDataFormat(DataFormatName(format));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, format);
  }
  EXPECT_FALSE(ParseDataFormat("csv").ok());
}

TEST(PreferenceReaderTest, ANamedFormatReadsOnlyFilesOfThatFormat) {
  PreferenceReaderOptions options;
  options.format = DataFormat::kShareGpt;
  absl::StatusOr<PreferenceData> sharegpt = ReadPreferenceFile(TestDataPath(kShareGpt), options);
  ASSERT_TRUE(sharegpt.ok()) << sharegpt.status();
  EXPECT_EQ(sharegpt->pairs.size(), 40u);
  options.format = DataFormat::kJson;
  absl::StatusOr<PreferenceData> json = ReadPreferenceFile(TestDataPath(kShareGpt), options);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_EQ(json->pairs.size(), 40u);

  // hh-rlhf is not ShareGPT.
  options.format = DataFormat::kShareGpt;
  absl::StatusOr<PreferenceData> hh = ReadPreferenceFile(TestDataPath(kHelpful), options);
  ASSERT_FALSE(hh.ok());
  EXPECT_THAT(std::string(hh.status().message()),
              AllOf(StartsWith(TestDataPath(kHelpful) +
                               ":1: not preference data in format sharegpt: found a JSON object "
                               "with keys \"chosen\", \"rejected\". Accepted: "),
                    HasSubstr("(LLaMA-Factory ShareGPT)"), Not(HasSubstr("(explicit prompt)"))));

  // JSON Lines is not a JSON array, and a JSON array is not JSON Lines.
  options.format = DataFormat::kJson;
  absl::StatusOr<PreferenceData> lines = ReadPreferenceFile(TestDataPath(kHelpful), options);
  ASSERT_FALSE(lines.ok());
  EXPECT_THAT(std::string(lines.status().message()),
              StartsWith(TestDataPath(kHelpful) +
                         ":1: not preference data in format json: found no JSON array: the file "
                         "starts with '{', not '['. Accepted: a JSON array of records"));
  options.format = DataFormat::kJsonl;
  absl::StatusOr<PreferenceData> array = ReadPreferenceFile(TestDataPath(kShareGpt), options);
  ASSERT_FALSE(array.ok());
  EXPECT_THAT(std::string(array.status().message()),
              AllOf(StartsWith(TestDataPath(kShareGpt) +
                               ":1: not preference data in format jsonl: found invalid JSON"),
                    HasSubstr("Accepted: JSON Lines (one record per line), plain or gzip")));
}

// --- Empty responses ---------------------------------------------------------------------

TEST(PreferenceReaderTest, AnEmptyResponseIsValidAndTwoAreIdentical) {
  PreferenceData data = ReadOrDie(
      R"({"prompt": "p", "chosen": "", "rejected": "b"})"
      "\n"
      R"({"prompt": "p", "chosen": "a", "rejected": ""})"
      "\n"
      R"({"prompt": "p", "chosen": "", "rejected": ""})"
      "\n"
      R"({"chosen": "\n\nHuman: q\n\nAssistant:", "rejected": "\n\nHuman: q\n\nAssistant: y"})"
      "\n"
      R"({"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": ""}], "rejected": [{"role": "assistant", "content": "y"}]})"
      "\n"
      R"({"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt", "value": "x"}, "rejected": {"from": "gpt", "value": ""}})"
      "\n");
  ASSERT_EQ(data.pairs.size(), 5u);
  EXPECT_EQ(data.stats.identical_dropped, 1);
  EXPECT_EQ(data.pairs[0].chosen, "");
  EXPECT_EQ(data.pairs[1].rejected, "");
  EXPECT_EQ(data.pairs[2].line, 4);
  EXPECT_EQ(data.pairs[2].chosen, "");
  EXPECT_EQ(data.pairs[2].rejected, " y");
  EXPECT_EQ(data.pairs[3].chosen, " ");  // hh-rlhf writes the assistant turn's space
  EXPECT_EQ(data.pairs[4].rejected, " ");
}

}  // namespace
}  // namespace verdict
