// The progress lines verdict-train's rank 0 prints for verdictd carry every callback and the
// result exactly (doubles round-trip), and an error keeps its code.
#include "core/train/progress_stream.h"

#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict {
namespace {

using ::testing::ElementsAre;

TEST(ProgressStreamTest, EveryCallbackAndTheResultReadBackExactly) {
  std::stringstream out;
  TrainerCallbacks writer = ProgressLineCallbacks(out);
  DataSummary summary;
  summary.train_pairs = 97;
  summary.parameters = 162689;
  summary.resumed_from_step = 4;
  writer.on_start(summary);
  TrainStepMetrics step;
  step.step = 5;
  step.total_steps = 8;
  step.loss = 0.1 + 0.2;  // not a short decimal
  step.learning_rate = 1.0 / 3;
  step.tokens = 1234;
  step.sync_seconds = 0.25;
  writer.on_step(step);
  EvalMetrics eval;
  eval.step = 8;
  eval.accuracy = 2.0 / 3;
  eval.pairs = 16;
  writer.on_eval(eval);
  writer.on_checkpoint_started(8);
  writer.on_checkpoint(8, "/runs/job/checkpoint-00000008");
  writer.on_log("a line with \"quotes\"\nand a newline");
  TrainingResult result;
  result.output_dir = "/models/m";
  result.steps = 8;
  result.final_eval = eval;
  result.reward_std = 0.7;
  out << ProgressResultLine(result) << "\n";

  std::vector<std::string> seen;
  TrainerCallbacks reader;
  reader.on_start = [&](const DataSummary& s) {
    EXPECT_EQ(s.train_pairs, 97);
    EXPECT_EQ(s.parameters, 162689);
    EXPECT_EQ(s.resumed_from_step, 4);
    seen.push_back("start");
  };
  reader.on_step = [&](const TrainStepMetrics& m) {
    EXPECT_EQ(m.step, 5);
    EXPECT_EQ(m.total_steps, 8);
    EXPECT_EQ(m.loss, 0.1 + 0.2);
    EXPECT_EQ(m.learning_rate, 1.0 / 3);
    EXPECT_EQ(m.tokens, 1234);
    EXPECT_EQ(m.sync_seconds, 0.25);
    seen.push_back("step");
  };
  reader.on_eval = [&](const EvalMetrics& m) {
    EXPECT_EQ(m.accuracy, 2.0 / 3);
    EXPECT_EQ(m.pairs, 16);
    seen.push_back("eval");
  };
  reader.on_checkpoint_started = [&](int64_t s) { seen.push_back("started " + std::to_string(s)); };
  reader.on_checkpoint = [&](int64_t s, const std::string& path) {
    seen.push_back("checkpoint " + std::to_string(s) + " " + path);
  };
  reader.on_log = [&](const std::string& line) { seen.push_back(line); };
  ProgressEnd end;
  for (absl::string_view line : absl::StrSplit(out.str(), '\n', absl::SkipEmpty())) {
    ASSERT_TRUE(ReadProgressLine(line, reader, end).ok()) << line;
  }
  EXPECT_THAT(seen, ElementsAre("start", "step", "eval", "started 8",
                                "checkpoint 8 /runs/job/checkpoint-00000008",
                                "a line with \"quotes\"\nand a newline"));
  ASSERT_TRUE(end.result.has_value());
  EXPECT_EQ(end.result->output_dir, "/models/m");
  EXPECT_EQ(end.result->steps, 8);
  EXPECT_EQ(end.result->final_eval.accuracy, 2.0 / 3);
  EXPECT_EQ(end.result->reward_std, 0.7);
  EXPECT_TRUE(end.error.ok());
}

TEST(ProgressStreamTest, AnErrorKeepsItsCodeAndOtherLinesAreRefused) {
  ProgressEnd end;
  ASSERT_TRUE(ReadProgressLine(ProgressErrorLine(absl::CancelledError("cancelled at step 3")), {}, end).ok());
  EXPECT_TRUE(absl::IsCancelled(end.error));
  EXPECT_EQ(end.error.message(), "cancelled at step 3");
  ASSERT_TRUE(ReadProgressLine(ProgressErrorLine(absl::InvalidArgumentError("bad line 7")), {}, end).ok());
  EXPECT_TRUE(absl::IsInvalidArgument(end.error));
  EXPECT_FALSE(end.result.has_value());
  EXPECT_FALSE(ReadProgressLine("step 3/8 loss 0.69", {}, end).ok());
  EXPECT_FALSE(ReadProgressLine(R"({"event":"party"})", {}, end).ok());
}

}  // namespace
}  // namespace verdict
