#include "core/data/dataset_split.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/data/gzip_for_test.h"
#include "tests/testing/test_paths.h"

namespace verdict {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::verdict::testing::ScratchDir;
using ::verdict::testing::TestDataPath;
using ::verdict::testing::WriteBytes;

constexpr char kHelpful[] = "hh-rlhf/helpful-base/test.jsonl.gz";
constexpr char kUltraTrain[] = "preference/ultrafeedback-binarized-sample/train_clean.jsonl";
constexpr char kUltraEval[] = "preference/ultrafeedback-binarized-sample/eval_clean.jsonl";

// Pairs numbered by line 1..n.
std::vector<PreferencePair> NumberedPairs(int n) {
  std::vector<PreferencePair> pairs(n);
  for (int i = 0; i < n; ++i) {
    pairs[i].chosen = "c" + std::to_string(i);
    pairs[i].line = i + 1;
  }
  return pairs;
}

std::vector<int64_t> Lines(const std::vector<PreferencePair>& pairs) {
  std::vector<int64_t> lines;
  for (const PreferencePair& pair : pairs) lines.push_back(pair.line);
  return lines;
}

TEST(SplitTrainEvalTest, SameSeedGivesTheSameSplit) {
  auto a = SplitTrainEval(NumberedPairs(1000), 0.1, 7);
  auto b = SplitTrainEval(NumberedPairs(1000), 0.1, 7);
  auto c = SplitTrainEval(NumberedPairs(1000), 0.1, 8);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(Lines(a->eval), Lines(b->eval));
  EXPECT_EQ(Lines(a->train), Lines(b->train));
  EXPECT_NE(Lines(a->eval), Lines(c->eval));
}

TEST(SplitTrainEvalTest, DrawsTheSameEvalPairsOnEveryPlatform) {
  // Pinned (and checked against a separate Python model of the draw): a change here would
  // silently change every experiment's eval set.
  auto split = SplitTrainEval(NumberedPairs(10), 0.3, 42);
  ASSERT_TRUE(split.ok()) << split.status();
  EXPECT_THAT(Lines(split->eval), ElementsAre(3, 4, 5));
}

TEST(SplitTrainEvalTest, KeepsEveryPairOnceInInputOrder) {
  auto split = SplitTrainEval(NumberedPairs(2352), 0.05, 1);
  ASSERT_TRUE(split.ok()) << split.status();
  EXPECT_EQ(split->eval.size(), 118u);  // round(0.05 * 2352)
  EXPECT_EQ(split->train.size(), 2352u - 118u);
  std::vector<int64_t> train = Lines(split->train);
  std::vector<int64_t> eval = Lines(split->eval);
  EXPECT_TRUE(std::is_sorted(train.begin(), train.end()));
  EXPECT_TRUE(std::is_sorted(eval.begin(), eval.end()));
  std::vector<int64_t> all = train;
  all.insert(all.end(), eval.begin(), eval.end());
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all, Lines(NumberedPairs(2352)));
  EXPECT_EQ(split->eval[0].chosen, "c" + std::to_string(split->eval[0].line - 1));
}

TEST(SplitTrainEvalTest, ZeroFractionKeepsEverythingForTraining) {
  auto split = SplitTrainEval(NumberedPairs(50), 0.0, 3);
  ASSERT_TRUE(split.ok());
  EXPECT_EQ(split->train.size(), 50u);
  EXPECT_TRUE(split->eval.empty());
}

TEST(SplitTrainEvalTest, AnyPositiveFractionHoldsOutAtLeastOnePairAndNeverAll) {
  EXPECT_EQ(SplitTrainEval(NumberedPairs(10), 0.001, 3)->eval.size(), 1u);
  EXPECT_EQ(SplitTrainEval(NumberedPairs(2), 0.5, 3)->eval.size(), 1u);
  EXPECT_EQ(SplitTrainEval(NumberedPairs(10), 0.99, 3)->eval.size(), 9u);
  EXPECT_EQ(SplitTrainEval(NumberedPairs(1), 0.5, 3)->eval.size(), 0u);
  EXPECT_EQ(SplitTrainEval(NumberedPairs(0), 0.5, 3)->train.size(), 0u);
}

TEST(SplitTrainEvalTest, RejectsFractionsOutsideZeroToOne) {
  for (double fraction : {1.0, -0.1, std::numeric_limits<double>::quiet_NaN()}) {
    auto split = SplitTrainEval(NumberedPairs(10), fraction, 3);
    EXPECT_EQ(split.status().code(), absl::StatusCode::kInvalidArgument) << fraction;
    EXPECT_THAT(split.status().message(), HasSubstr("eval_fraction must be in [0, 1)"));
  }
}

TEST(LoadTrainEvalDataTest, CarvesEvalOutOfTheTrainingFile) {
  PreferenceDataSpec spec;
  spec.train_path = TestDataPath(kHelpful);
  spec.eval_fraction = 0.05;
  spec.seed = 42;
  auto data = LoadTrainEvalData(spec);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->train.size() + data->eval.size(), 2352u);
  EXPECT_EQ(data->eval.size(), 118u);
  EXPECT_EQ(data->train_stats.identical_dropped, 2);
  EXPECT_EQ(data->eval_stats.lines, 0);
  auto again = LoadTrainEvalData(spec);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(Lines(again->eval), Lines(data->eval));
}

TEST(LoadTrainEvalDataTest, ReadsASeparateEvalFile) {
  PreferenceDataSpec spec;
  spec.train_path = TestDataPath(kUltraTrain);
  spec.eval_path = TestDataPath(kUltraEval);
  auto data = LoadTrainEvalData(spec);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->train.size(), 996u);
  EXPECT_EQ(data->eval.size(), 199u);  // 200 lines, line 44 has chosen == rejected
  EXPECT_EQ(data->eval_stats.identical_dropped, 1);
}

TEST(LoadTrainEvalDataTest, RejectsTwoWaysOfChoosingEval) {
  PreferenceDataSpec spec;
  spec.train_path = TestDataPath(kUltraTrain);
  spec.eval_path = TestDataPath(kUltraEval);
  spec.eval_fraction = 0.1;
  auto data = LoadTrainEvalData(spec);
  EXPECT_EQ(data.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(data.status().message(), HasSubstr("eval_path and eval_fraction"));
  EXPECT_THAT(LoadTrainEvalData(PreferenceDataSpec{}).status().message(),
              HasSubstr("train_path is empty"));
}

TEST(LoadTrainEvalDataTest, RejectsDataWithNothingToTrainOn) {
  ScratchDir dir;
  WriteBytes(dir.Path("empty.jsonl"),
             "\n"
             R"({"prompt": "p", "chosen": "a", "rejected": "a"})");
  PreferenceDataSpec spec;
  spec.train_path = dir.Path("empty.jsonl");
  auto data = LoadTrainEvalData(spec);
  EXPECT_EQ(data.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(data.status().message(), HasSubstr("no usable preference pair"));
  EXPECT_THAT(data.status().message(), HasSubstr("1 identical dropped"));
}

TEST(LoadTrainEvalDataTest, PassesReaderErrorsThrough) {
  ScratchDir dir;
  WriteBytes(dir.Path("bad.jsonl"), "{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n{oops\n");
  PreferenceDataSpec spec;
  spec.train_path = dir.Path("bad.jsonl");
  auto data = LoadTrainEvalData(spec);
  EXPECT_EQ(data.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(data.status().message(), HasSubstr("bad.jsonl:2: invalid JSON"));
}

}  // namespace
}  // namespace verdict
