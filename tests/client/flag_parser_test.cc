#include "client/flag_parser.h"

#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict::client {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct Flags {
  std::string name;
  std::optional<std::string> maybe;
  std::optional<int64_t> steps;
  int64_t limit = 50;
  std::optional<double> lr;
  bool watch = false;
  bool progress = true;
};

FlagParser MakeParser(Flags& f) {
  FlagParser parser("verdict test [flags] ARG", "A test command.");
  parser.AddString("name", &f.name, "NAME", "The name.");
  parser.AddString("maybe", &f.maybe, "TEXT", "Optional text.");
  parser.AddInt("steps", &f.steps, "N", "Steps.");
  parser.AddInt("limit", &f.limit, "N", "Limit.");
  parser.AddSection("More:");
  parser.AddDouble("lr", &f.lr, "LR", "Learning rate,\nover two lines.");
  parser.AddBool("watch", &f.watch, "Follow it.");
  parser.AddBool("progress", &f.progress, "Show a bar.");
  return parser;
}

TEST(FlagParserTest, ParsesEveryValueFormAndKeepsPositionalsInOrder) {
  Flags f;
  FlagParser parser = MakeParser(f);
  auto positional = parser.Parse({"first", "--name", "a b", "--steps=-3", "second", "--lr", "1e-4",
                                  "--watch", "--no-progress", "--limit=7", "-", "--", "--name"});
  ASSERT_TRUE(positional.ok()) << positional.status();
  EXPECT_THAT(*positional, ElementsAre("first", "second", "-", "--name"));
  EXPECT_EQ(f.name, "a b");
  EXPECT_EQ(f.steps, -3);
  EXPECT_EQ(f.limit, 7);
  EXPECT_DOUBLE_EQ(*f.lr, 1e-4);
  EXPECT_TRUE(f.watch);
  EXPECT_FALSE(f.progress);
  EXPECT_FALSE(f.maybe.has_value());
  EXPECT_FALSE(parser.help_requested());
}

TEST(FlagParserTest, TheLastOfARepeatedFlagWinsAndBooleansTakeExplicitValues) {
  Flags f;
  FlagParser parser = MakeParser(f);
  ASSERT_TRUE(parser.Parse({"--steps", "1", "--steps", "2", "--watch=false", "--maybe="}).ok());
  EXPECT_EQ(f.steps, 2);
  EXPECT_FALSE(f.watch);
  EXPECT_EQ(f.maybe, "");  // given, though empty
}

// An optional boolean tells "not given" (a job file's value stands) from an explicit false.
TEST(FlagParserTest, AnOptionalBooleanStaysUnsetUnlessGiven) {
  std::optional<bool> sharing, other;
  FlagParser parser("verdict test [flags]", "A test command.");
  parser.AddBool("sharing", &sharing, "Share.");
  parser.AddBool("other", &other, "Other.");
  ASSERT_TRUE(parser.Parse({"--sharing=false"}).ok());
  EXPECT_EQ(sharing, false);
  EXPECT_FALSE(other.has_value());
  ASSERT_TRUE(parser.Parse({"--no-other", "--sharing"}).ok());
  EXPECT_EQ(other, false);
  EXPECT_EQ(sharing, true);
  EXPECT_FALSE(parser.Parse({"--sharing=maybe"}).ok());
}

TEST(FlagParserTest, RejectsUnknownFlagsMissingValuesAndWrongTypesNamingTheFlag) {
  Flags f;
  FlagParser parser = MakeParser(f);
  EXPECT_THAT(parser.Parse({"--nmae", "x"}).status().message(), HasSubstr("unknown flag --nmae"));
  EXPECT_THAT(parser.Parse({"-x"}).status().message(), HasSubstr("unknown flag '-x'"));
  EXPECT_THAT(parser.Parse({"--steps"}).status().message(), HasSubstr("--steps needs a value (N)"));
  EXPECT_THAT(parser.Parse({"--steps", "ten"}).status().message(),
              HasSubstr("--steps: expected an integer, got 'ten'"));
  EXPECT_THAT(parser.Parse({"--lr=fast"}).status().message(),
              HasSubstr("--lr: expected a number, got 'fast'"));
  EXPECT_THAT(parser.Parse({"--watch=maybe"}).status().message(),
              HasSubstr("--watch: expected true or false"));
  EXPECT_THAT(parser.Parse({"--no-name"}).status().message(), HasSubstr("unknown flag --no-name"));
}

TEST(FlagParserTest, StopsAtTheFirstPositionalWhenAskedSoCommandsParseTheirOwnFlags) {
  Flags f;
  FlagParser parser = MakeParser(f);
  auto rest = parser.Parse({"--name", "n", "submit", "--steps", "4", "--bogus"},
                           /*stop_at_first_positional=*/true);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_THAT(*rest, ElementsAre("submit", "--steps", "4", "--bogus"));
  EXPECT_EQ(f.name, "n");
  EXPECT_FALSE(f.steps.has_value());
}

TEST(FlagParserTest, HelpListsEveryFlagBySectionWithAlignedText) {
  Flags f;
  FlagParser parser = MakeParser(f);
  ASSERT_TRUE(parser.Parse({"-h"}).ok());
  EXPECT_TRUE(parser.help_requested());
  const std::string help = parser.Help();
  EXPECT_THAT(help, HasSubstr("Usage: verdict test [flags] ARG\n\nA test command.\n"));
  EXPECT_THAT(help, HasSubstr("\nFlags:\n  --name NAME                 The name.\n"));
  EXPECT_THAT(help, HasSubstr("\nMore:\n  --lr LR                     Learning rate,\n"
                              "                              over two lines.\n"));
  EXPECT_THAT(help, HasSubstr("  --watch                     Follow it.\n"));
}

}  // namespace
}  // namespace verdict::client
