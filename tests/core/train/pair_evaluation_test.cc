// DescribePairScores and SummarizePairScores on hand-built rewards: ties count as wrong and
// are counted, every pair lands in one margin bucket, subsets are reported by name.
#include "core/train/pair_evaluation.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace verdict {
namespace {

TEST(PairEvaluationTest, CountsTiesAsWrongAndBucketsByAbsoluteMargin) {
  PairScores scores;
  // margins: +0.05, -0.05, 0 (a tie), +0.3, -3, +10
  scores.chosen = {1.05, 0.95, 2.0, 0.3, -1.0, 10.0};
  scores.rejected = {1.0, 1.0, 2.0, 0.0, 2.0, 0.0};
  scores.loss_sum = 6.0;
  const PairEvalReport report =
      DescribePairScores(scores, {"a", "b", "a", "", "b", "a"});
  EXPECT_EQ(report.metrics.pairs, 6);
  EXPECT_DOUBLE_EQ(report.metrics.accuracy, 3.0 / 6);
  EXPECT_DOUBLE_EQ(report.metrics.loss, 1.0);
  EXPECT_NEAR(report.metrics.margin, (0.05 - 0.05 + 0 + 0.3 - 3 + 10) / 6, 1e-12);
  EXPECT_EQ(report.ties, 1);

  ASSERT_EQ(report.calibration.size(), 7u);
  EXPECT_EQ(report.calibration[0].low, 0.0);
  EXPECT_EQ(report.calibration[0].high, 0.1);
  EXPECT_EQ(report.calibration[0].pairs, 3);  // +0.05, -0.05, the tie
  EXPECT_DOUBLE_EQ(report.calibration[0].accuracy, 1.0 / 3);
  EXPECT_EQ(report.calibration[2].pairs, 1);  // [0.25, 0.5): +0.3
  EXPECT_EQ(report.calibration[2].accuracy, 1.0);
  EXPECT_EQ(report.calibration[5].pairs, 1);  // [2, 4): -3
  EXPECT_EQ(report.calibration[5].accuracy, 0.0);
  EXPECT_EQ(report.calibration[6].pairs, 1);  // >= 4: +10
  EXPECT_TRUE(std::isinf(report.calibration[6].high));

  ASSERT_EQ(report.subsets.size(), 2u);  // the pair without a subset is in neither
  EXPECT_EQ(report.subsets[0].subset, "a");
  EXPECT_EQ(report.subsets[0].pairs, 3);
  EXPECT_DOUBLE_EQ(report.subsets[0].accuracy, 2.0 / 3);
  EXPECT_EQ(report.subsets[1].subset, "b");
  EXPECT_EQ(report.subsets[1].pairs, 2);
  EXPECT_EQ(report.subsets[1].accuracy, 0.0);
}

TEST(PairEvaluationTest, RewardStatisticsCoverBothResponses) {
  PairScores scores;
  scores.chosen = {1.0, 3.0};
  scores.rejected = {-1.0, 1.0};
  const EvalMetrics metrics = SummarizePairScores(scores);
  EXPECT_DOUBLE_EQ(metrics.reward_mean, 1.0);
  EXPECT_DOUBLE_EQ(metrics.reward_std, std::sqrt(2.0));  // population std of {1, 3, -1, 1}
  EXPECT_EQ(DescribePairScores(PairScores{}, {}).metrics.pairs, 0);
}

}  // namespace
}  // namespace verdict
