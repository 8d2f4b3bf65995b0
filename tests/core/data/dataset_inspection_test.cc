#include "core/data/dataset_inspection.h"

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "core/data/preference_reader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"

namespace verdict {
namespace {

using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;
using ::verdict::testing::ScratchDir;
using ::verdict::testing::TestDataPath;

const std::string kMalformed = "preference/malformed/mixed-problems.jsonl";

auto IsInvalid(int64_t line, const std::string& reason_part) {
  return ::testing::AllOf(Field(&InvalidLine::line, line),
                          Field(&InvalidLine::reason, HasSubstr(reason_part)));
}

TEST(DatasetInspectionTest, ListsEveryInvalidLineWithItsNumberAndReason) {
  absl::StatusOr<DatasetInspection> report =
      InspectPreferenceFile(TestDataPath(kMalformed), InspectionOptions{});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->stopped, "");
  EXPECT_FALSE(report->gzip);
  EXPECT_FALSE(report->stats.json_array);
  EXPECT_EQ(report->stats.lines, 13);
  EXPECT_EQ(report->stats.pairs, 6);
  EXPECT_EQ(report->stats.blank_lines, 1);
  EXPECT_EQ(report->stats.identical_dropped, 1);
  EXPECT_EQ(report->stats.invalid_lines, 5);
  EXPECT_THAT(report->stats.first_invalid,
              ElementsAre(IsInvalid(3, "missing \"rejected\""), IsInvalid(5, "invalid JSON"),
                          IsInvalid(8, "\"chosen\" must be a string"),
                          IsInvalid(11, "\"margin\" must be a number"),
                          IsInvalid(13, "expected a JSON object")));
  EXPECT_EQ(report->stats.pairs_by_layout[static_cast<int>(PreferenceLayout::kExplicitPrompt)], 6);
  EXPECT_FALSE(report->lengths.has_value());
}

TEST(DatasetInspectionTest, CapsTheListButCountsEveryInvalidLine) {
  InspectionOptions options;
  options.max_invalid_reported = 2;
  absl::StatusOr<DatasetInspection> report =
      InspectPreferenceFile(TestDataPath(kMalformed), options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->stats.invalid_lines, 5);
  EXPECT_THAT(report->stats.first_invalid,
              ElementsAre(Field(&InvalidLine::line, 3), Field(&InvalidLine::line, 5)));
}

TEST(DatasetInspectionTest, TrainingStillRefusesTheFileAtItsFirstBadLine) {
  absl::StatusOr<PreferenceData> read = ReadPreferenceFile(TestDataPath(kMalformed));
  ASSERT_FALSE(read.ok());
  EXPECT_THAT(read.status().message(), HasSubstr(":3: missing \"rejected\""));
}

TEST(DatasetInspectionTest, DetectsLayoutsAndTheJsonArrayContainer) {
  absl::StatusOr<DatasetInspection> report = InspectPreferenceFile(
      TestDataPath("preference/llama-factory-sharegpt/hh-helpful-40.json"), InspectionOptions{});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->stats.json_array);
  EXPECT_EQ(report->stats.pairs, 40);
  EXPECT_EQ(report->stats.pairs_by_layout[static_cast<int>(PreferenceLayout::kShareGpt)], 40);

  report = InspectPreferenceFile(TestDataPath("hh-rlhf/helpful-base/test.jsonl.gz"),
                                 InspectionOptions{});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->gzip);
  EXPECT_EQ(report->stats.pairs,
            report->stats.pairs_by_layout[static_cast<int>(PreferenceLayout::kImplicitPrompt)]);
  EXPECT_GT(report->stats.pairs, 2000);
}

TEST(DatasetInspectionTest, ReportsWhatStoppedTheReadWithItsLine) {
  ScratchDir dir;
  std::ofstream(dir.Path("broken.json"))
      << "[\n{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n"
         "{\"prompt\": \"p\", \"chosen\": \"c\", \"rejected\": \"d\"}\n]\n";
  absl::StatusOr<DatasetInspection> report =
      InspectPreferenceFile(dir.Path("broken.json"), InspectionOptions{});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->stats.pairs, 1);
  EXPECT_THAT(report->stopped, HasSubstr("broken.json:3:"));
}

TEST(DatasetInspectionTest, HistogramsTokenLengthsAndCountsTruncatedPairs) {
  InspectionOptions options;
  // Characters of the longer side stand in for tokens: the statistics, not a tokenizer, are
  // under test here (the server test uses a real tokenizer).
  options.pair_tokens = [](const PreferencePair& pair) -> absl::StatusOr<int64_t> {
    return static_cast<int64_t>(pair.prompt.size() +
                                std::max(pair.chosen.size(), pair.rejected.size()));
  };
  options.max_length = 100;
  absl::StatusOr<DatasetInspection> report =
      InspectPreferenceFile(TestDataPath(kMalformed), options);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_TRUE(report->lengths.has_value());
  const TokenLengthStats& lengths = *report->lengths;
  EXPECT_EQ(lengths.pairs, 6);
  int64_t in_bars = 0;
  for (const LengthBucket& bar : lengths.histogram) in_bars += bar.pairs;
  EXPECT_EQ(in_bars, 6);
  EXPECT_EQ(lengths.histogram.front().max_tokens, 128);  // the shortest pair's bar comes first
  EXPECT_GE(lengths.histogram.back().max_tokens, lengths.max_tokens);
  EXPECT_LT(lengths.histogram.back().max_tokens / 2, lengths.max_tokens);
  EXPECT_LE(lengths.min_tokens, lengths.p50_tokens);
  EXPECT_LE(lengths.p50_tokens, lengths.p95_tokens);
  EXPECT_LE(lengths.p95_tokens, lengths.max_tokens);
  // Lines 2, 4, 10 and 12 are longer than 100 characters (line 1 is exactly 100: kept whole).
  EXPECT_EQ(lengths.truncated_pairs, 4);
  EXPECT_EQ(lengths.min_tokens, 79);
  EXPECT_EQ(lengths.max_tokens, 298);
}

}  // namespace
}  // namespace verdict
