#include "client/scoring.h"

#include <zlib.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"

namespace verdict::client {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

TEST(ModelRefTest, ParsesNamesVersionsAndAliasesAndPrintsThemBack) {
  auto latest = ParseModelRef("helpful-rm");
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(latest->name(), "helpful-rm");
  EXPECT_EQ(latest->selector_case(), verdict::v1::ModelRef::SELECTOR_NOT_SET);
  auto version = ParseModelRef("helpful-rm:12");
  EXPECT_EQ(version->version(), 12);
  auto alias = ParseModelRef("helpful-rm:production");
  EXPECT_EQ(alias->alias(), "production");
  for (const char* text : {"helpful-rm", "helpful-rm:12", "helpful-rm:production"}) {
    EXPECT_EQ(ModelRefToString(*ParseModelRef(text)), text);
  }
  EXPECT_FALSE(ParseModelRef("").ok());
  EXPECT_FALSE(ParseModelRef(":3").ok());
  EXPECT_FALSE(ParseModelRef("m:").ok());
  EXPECT_THAT(ParseModelRef("m:0").status().message(), HasSubstr("versions start at 1"));
}

TEST(ScoreLineTest, ReadsEachLayoutIntoItems) {
  auto single = ParseScoreLine(R"({"id": 3, "prompt": "P", "response": "R"})");
  ASSERT_TRUE(single.ok()) << single.status();
  EXPECT_EQ(single->kind, ScoreLine::Kind::kSingle);
  ASSERT_EQ(single->items.size(), 1u);
  EXPECT_EQ(single->items[0].prompt_response().prompt(), "P");
  EXPECT_EQ(single->items[0].prompt_response().response(), "R");

  auto no_prompt = ParseScoreLine(R"({"response": "R"})");
  EXPECT_EQ(no_prompt->items[0].prompt_response().prompt(), "");

  auto chat = ParseScoreLine(
      R"({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]})");
  ASSERT_TRUE(chat.ok()) << chat.status();
  ASSERT_EQ(chat->items[0].conversation().messages_size(), 2);
  EXPECT_EQ(chat->items[0].conversation().messages(1).content(), "Yo");

  auto explicit_pair = ParseScoreLine(R"({"prompt": "P", "chosen": "A", "rejected": "B"})");
  ASSERT_EQ(explicit_pair->kind, ScoreLine::Kind::kPair);
  EXPECT_EQ(explicit_pair->items[0].prompt_response().response(), "A");
  EXPECT_EQ(explicit_pair->items[1].prompt_response().response(), "B");
  EXPECT_EQ(explicit_pair->items[1].prompt_response().prompt(), "P");

  auto chat_pair = ParseScoreLine(
      R"({"prompt": [{"role": "user", "content": "Q"}],
          "chosen": [{"role": "assistant", "content": "good"}],
          "rejected": [{"role": "assistant", "content": "bad"}]})");
  ASSERT_TRUE(chat_pair.ok()) << chat_pair.status();
  EXPECT_EQ(chat_pair->items[0].conversation().messages_size(), 2);
  EXPECT_EQ(chat_pair->items[1].conversation().messages(1).content(), "bad");

  EXPECT_EQ(ParseScoreLine("   ")->kind, ScoreLine::Kind::kBlank);
}

TEST(ScoreLineTest, RejectsLinesThatAreNoLayoutNamingTheKey) {
  EXPECT_THAT(ParseScoreLine("{oops").status().message(), HasSubstr("not valid JSON"));
  EXPECT_THAT(ParseScoreLine("[1]").status().message(), HasSubstr("expected a JSON object"));
  EXPECT_THAT(ParseScoreLine(R"({"prompt": "p"})").status().message(), HasSubstr("\"response\""));
  EXPECT_THAT(ParseScoreLine(R"({"chosen": "a"})").status().message(),
              HasSubstr("needs both \"chosen\" and \"rejected\""));
  EXPECT_THAT(ParseScoreLine(R"({"messages": [{"role": "user"}]})").status().message(),
              HasSubstr("\"messages\"[0]"));
  EXPECT_THAT(ParseScoreLine(R"({"chosen": "a", "rejected": [1]})").status().message(),
              HasSubstr("two strings or two message lists"));
}

TEST(ScoreLineTest, RenderingKeepsEveryKeyInOrderAndAddsTheScores) {
  auto single = ParseScoreLine(R"({"z": 1, "prompt": "P", "a": [true], "response": "R"})");
  EXPECT_EQ(RenderScoredLine(*single, {0.5}),
            R"({"z":1,"prompt":"P","a":[true],"response":"R","score":0.5})");
  auto pair = ParseScoreLine(R"({"chosen": "é", "rejected": "B"})");
  EXPECT_EQ(RenderScoredLine(*pair, {1.25, -2.0}),
            "{\"chosen\":\"é\",\"rejected\":\"B\",\"chosen_score\":1.25,\"rejected_score\":-2.0}");
  EXPECT_EQ(RenderScoredLine(*ParseScoreLine(""), {}), "");
}

TEST(SplitImplicitPromptTest, CutsAfterTheLastSharedAssistantMarker) {
  const SplitPair split = SplitImplicitPrompt(
      "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Joke?\n\nAssistant: Knock knock.",
      "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Joke?\n\nAssistant: No.");
  EXPECT_EQ(split.prompt, "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Joke?\n\nAssistant:");
  EXPECT_EQ(split.chosen, " Knock knock.");
  EXPECT_EQ(split.rejected, " No.");
  // Nothing shared: no prompt.
  const SplitPair none = SplitImplicitPrompt("abc", "xyz");
  EXPECT_EQ(none.prompt, "");
  EXPECT_EQ(none.chosen, "abc");
}

TEST(SplitImplicitPromptTest, SplitsEveryRealHhRlhfPairIntoAPromptEndingWithTheMarker) {
  gzFile file =
      gzopen(verdict::testing::TestDataPath("hh-rlhf/helpful-base/test.jsonl.gz").c_str(), "rb");
  ASSERT_NE(file, nullptr);
  std::string text;
  char buffer[1 << 16];
  int n;
  while ((n = gzread(file, buffer, sizeof(buffer))) > 0) text.append(buffer, n);
  gzclose(file);
  int pairs = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const Json pair = Json::parse(text.substr(start, end - start));
    start = end + 1;
    const std::string chosen = pair["chosen"], rejected = pair["rejected"];
    const SplitPair split = SplitImplicitPrompt(chosen, rejected);
    ASSERT_TRUE(absl::EndsWith(split.prompt, "\n\nAssistant:")) << chosen;
    EXPECT_EQ(split.prompt + split.chosen, chosen);
    EXPECT_EQ(split.prompt + split.rejected, rejected);
    ++pairs;
  }
  EXPECT_EQ(pairs, 2354);
}

}  // namespace
}  // namespace verdict::client
