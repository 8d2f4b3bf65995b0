#include "core/train/lr_schedule.h"

#include "gtest/gtest.h"

namespace verdict {
namespace {

TEST(LrScheduleTest, WarmsUpLinearlyThenDecaysToZero) {
  LrSchedule linear{LrScheduleKind::kLinear, 1.0, 10, 110};
  EXPECT_DOUBLE_EQ(linear.At(0), 0.0);
  EXPECT_DOUBLE_EQ(linear.At(5), 0.5);
  EXPECT_DOUBLE_EQ(linear.At(10), 1.0);
  EXPECT_DOUBLE_EQ(linear.At(60), 0.5);
  EXPECT_DOUBLE_EQ(linear.At(110), 0.0);
}

TEST(LrScheduleTest, CosineIsHalfwayAtTheMiddleAndConstantStaysPut) {
  LrSchedule cosine{LrScheduleKind::kCosine, 2.0, 0, 100};
  EXPECT_DOUBLE_EQ(cosine.At(0), 2.0);
  EXPECT_NEAR(cosine.At(50), 1.0, 1e-12);
  EXPECT_NEAR(cosine.At(100), 0.0, 1e-12);
  LrSchedule constant{LrScheduleKind::kConstant, 3.0, 0, 100};
  EXPECT_DOUBLE_EQ(constant.At(99), 3.0);
}

TEST(LrScheduleTest, LinearAndCosineDecayToTheMinimumRatio) {
  LrSchedule linear{LrScheduleKind::kLinear, 1.0, 0, 100, /*min_ratio=*/0.1};
  EXPECT_DOUBLE_EQ(linear.At(0), 1.0);
  EXPECT_DOUBLE_EQ(linear.At(50), 0.55);
  EXPECT_DOUBLE_EQ(linear.At(100), 0.1);
  EXPECT_DOUBLE_EQ(linear.At(500), 0.1);  // past the end (a resumed run's last step) stays put
  LrSchedule cosine{LrScheduleKind::kCosine, 2.0, 10, 110, /*min_ratio=*/0.5};
  EXPECT_DOUBLE_EQ(cosine.At(5), 1.0);  // warm-up is unchanged
  EXPECT_NEAR(cosine.At(60), 1.5, 1e-12);
  EXPECT_NEAR(cosine.At(110), 1.0, 1e-12);
}

TEST(LrScheduleTest, UnknownKindIsNamed) {
  EXPECT_FALSE(ParseLrScheduleKind("step").ok());
  EXPECT_TRUE(ParseLrScheduleKind("cosine").ok());
}

}  // namespace
}  // namespace verdict
