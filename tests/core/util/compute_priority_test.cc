#include "core/util/compute_priority.h"

#include <gtest/gtest.h>

#include <optional>
#include <thread>

#include "absl/time/clock.h"

namespace verdict {
namespace {

TEST(ComputePriorityTest, YieldReturnsAtOnceWithoutScoring) {
  ComputePriority priority;
  EXPECT_EQ(priority.YieldToScoring(absl::Seconds(5)), absl::ZeroDuration());
}

TEST(ComputePriorityTest, YieldWaitsUntilTheLastScoringEnds) {
  ComputePriority priority;
  std::optional<ComputePriority::Scoring> first(std::in_place, priority);
  std::optional<ComputePriority::Scoring> second(std::in_place, priority);
  EXPECT_EQ(priority.scoring_in_flight(), 2);
  std::thread scorer([&] {
    absl::SleepFor(absl::Milliseconds(50));
    first.reset();
    absl::SleepFor(absl::Milliseconds(100));
    second.reset();
  });
  const absl::Duration waited = priority.YieldToScoring(absl::Seconds(20));
  scorer.join();
  EXPECT_GE(waited, absl::Milliseconds(140));
  EXPECT_LT(waited, absl::Seconds(10));
  EXPECT_EQ(priority.scoring_in_flight(), 0);
}

TEST(ComputePriorityTest, YieldGivesUpAfterMaxWait) {
  ComputePriority priority;
  ComputePriority::Scoring scoring(priority);
  const absl::Duration waited = priority.YieldToScoring(absl::Milliseconds(100));
  EXPECT_GE(waited, absl::Milliseconds(100));
  EXPECT_LT(waited, absl::Seconds(10));
  EXPECT_EQ(priority.YieldToScoring(absl::ZeroDuration()), absl::ZeroDuration());
}

TEST(ComputePriorityTest, AMovedFromScoringEndsNothing) {
  ComputePriority priority;
  {
    ComputePriority::Scoring scoring(priority);
    ComputePriority::Scoring moved(std::move(scoring));
    EXPECT_EQ(priority.scoring_in_flight(), 1);
  }
  EXPECT_EQ(priority.scoring_in_flight(), 0);
}

}  // namespace
}  // namespace verdict
