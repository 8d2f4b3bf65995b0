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

TEST(LrScheduleTest, UnknownKindIsNamed) {
  EXPECT_FALSE(ParseLrScheduleKind("step").ok());
  EXPECT_TRUE(ParseLrScheduleKind("cosine").ok());
}

}  // namespace
}  // namespace verdict
