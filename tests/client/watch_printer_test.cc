#include "client/watch_printer.h"

#include <algorithm>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict::client {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using verdict::v1::Job;
using verdict::v1::MetricsEvent;

MetricsEvent Train(int64_t step, double seconds, double loss, double accuracy) {
  MetricsEvent e;
  e.set_step(step);
  e.mutable_time()->set_seconds(static_cast<int64_t>(seconds));
  e.mutable_time()->set_nanos(
      static_cast<int32_t>((seconds - static_cast<int64_t>(seconds)) * 1e9));
  e.mutable_train()->set_loss(loss);
  e.mutable_train()->set_accuracy(accuracy);
  e.mutable_train()->set_pairs_per_second(80);
  e.mutable_train()->set_learning_rate(1e-4);
  return e;
}

MetricsEvent State(verdict::v1::JobState from, verdict::v1::JobState to, const std::string& why) {
  MetricsEvent e;
  e.mutable_state_change()->set_from_state(from);
  e.mutable_state_change()->set_to_state(to);
  e.mutable_state_change()->set_message(why);
  return e;
}

Job RunningJob(int64_t total) {
  Job job;
  job.set_id("job-1");
  job.set_state(verdict::v1::JOB_STATE_RUNNING);
  job.mutable_progress()->set_total_steps(total);
  return job;
}

TEST(RenderBarTest, FillsInProportionToTheSteps) {
  EXPECT_EQ(RenderBar(0, 10, 12), "[..........]");
  EXPECT_EQ(RenderBar(5, 10, 12), "[#####.....]");
  EXPECT_EQ(RenderBar(10, 10, 12), "[##########]");
  EXPECT_EQ(RenderBar(3, 0, 6), "[....]");    // total unknown
  EXPECT_EQ(RenderBar(20, 10, 6), "[####]");  // never overflows
}

TEST(WatchPrinterTest, LinesStylePrintsOneLinePerEventWithTheTotalAndAnEta) {
  std::ostringstream out;
  WatchPrinter printer(out, WatchStyle::kLines);
  printer.SetJob(RunningJob(100));
  printer.OnEvent(State(verdict::v1::JOB_STATE_QUEUED, verdict::v1::JOB_STATE_RUNNING, "started"));
  printer.OnEvent(Train(10, 1000.0, 0.69, 0.5));
  printer.OnEvent(Train(20, 1002.0, 0.60, 0.75));  // 0.2 s per step, 80 steps left
  ASSERT_TRUE(printer.EstimatedSecondsLeft().has_value());
  EXPECT_NEAR(*printer.EstimatedSecondsLeft(), 16.0, 1e-6);
  MetricsEvent eval;
  eval.set_step(20);
  eval.mutable_eval()->set_accuracy(0.8);
  eval.mutable_eval()->set_loss(0.45);
  eval.mutable_eval()->set_pairs(100);
  printer.OnEvent(eval);
  MetricsEvent log;
  log.mutable_log()->set_level(verdict::v1::LogLine::LEVEL_WARNING);
  log.mutable_log()->set_text("3 lines skipped");
  printer.OnEvent(log);
  const std::string text = out.str();
  EXPECT_THAT(text, HasSubstr("job job-1 QUEUED -> RUNNING: started\n"));
  EXPECT_THAT(text, HasSubstr("step 10/100  loss 0.6900  acc 0.500"));
  EXPECT_THAT(text, HasSubstr("step 20/100  loss 0.6000  acc 0.750  margin 0.000  lr 1.00e-04  "
                              "80.0 pairs/s  ETA 16.0s\n"));
  EXPECT_THAT(text, HasSubstr("eval @ step 20: loss 0.4500  accuracy 0.800"));
  EXPECT_THAT(text, HasSubstr("(100 pairs, "));
  EXPECT_THAT(text, HasSubstr("[warning] 3 lines skipped\n"));
  EXPECT_THAT(text, Not(HasSubstr("\r")));
}

TEST(WatchPrinterTest, ProgressBarRedrawsOneLineAndPrintsOtherEventsAboveIt) {
  std::ostringstream out;
  WatchPrinter printer(out, WatchStyle::kProgressBar, 100);
  printer.SetJob(RunningJob(40));
  printer.OnEvent(Train(10, 0, 0.69, 0.5));
  printer.OnEvent(Train(20, 10, 0.5, 0.7));
  EXPECT_EQ(printer.StatusLine(),
            "[###########...........] 20/40  50%  ETA 20.0s  80.0 pairs/s  loss 0.5000  acc 0.700");
  printer.OnEvent(State(verdict::v1::JOB_STATE_RUNNING, verdict::v1::JOB_STATE_SUCCEEDED, "done"));
  Job done = RunningJob(40);
  done.set_state(verdict::v1::JOB_STATE_SUCCEEDED);
  done.mutable_progress()->set_step(40);
  done.mutable_result_model()->set_name("m");
  done.mutable_result_model()->set_version(3);
  printer.Finish(done);
  const std::string text = out.str();
  EXPECT_THAT(text, HasSubstr("\r\033[K[###########...........] 20/40"));
  EXPECT_THAT(text, HasSubstr("\r\033[Kjob job-1 RUNNING -> SUCCEEDED: done\n"));
  EXPECT_THAT(text, HasSubstr("\r\033[K[######################] 40/40 100%"));
  EXPECT_THAT(text, HasSubstr("job job-1 SUCCEEDED: model m version 3\n"));
}

TEST(WatchPrinterTest, TheStatusLineFitsTheTerminal) {
  std::ostringstream out;
  WatchPrinter printer(out, WatchStyle::kProgressBar, 50);
  printer.SetJob(RunningJob(1000000));
  printer.OnEvent(Train(10, 0, 0.69, 0.5));
  printer.OnEvent(Train(20, 1, 0.69, 0.5));
  EXPECT_LT(printer.StatusLine().size(), 50u);
}

TEST(WatchPrinterTest, FinishTellsWhyAJobFailed) {
  std::ostringstream out;
  WatchPrinter printer(out, WatchStyle::kLines);
  Job job;
  job.set_id("job-2");
  job.set_state(verdict::v1::JOB_STATE_FAILED);
  job.set_error_code(3);
  job.set_error_message("train.jsonl:7: missing \"chosen\"");
  printer.Finish(job);
  EXPECT_EQ(out.str(), "job job-2 FAILED: INVALID_ARGUMENT: train.jsonl:7: missing \"chosen\"\n");
}

TEST(WatchPrinterTest, FinishNamesTheVersionAnEvaluationJobEvaluated) {
  std::ostringstream out;
  WatchPrinter printer(out, WatchStyle::kLines);
  Job job;
  job.set_id("job-3");
  job.set_state(verdict::v1::JOB_STATE_SUCCEEDED);
  job.mutable_evaluation_spec()->mutable_model()->set_name("tiny");
  job.mutable_evaluation_spec()->mutable_model()->set_version(2);
  job.mutable_progress()->mutable_last_eval_metrics()->set_accuracy(0.625);
  printer.Finish(job);
  EXPECT_EQ(out.str(), "job job-3 SUCCEEDED: evaluated tiny version 2, eval accuracy 0.625\n");
}

TEST(WatchPrinterTest, JsonStylePrintsEachEventInTheProtoJsonMapping) {
  std::ostringstream out;
  WatchPrinter printer(out, WatchStyle::kJson);
  MetricsEvent e = Train(5, 0, 0.5, 1.0);
  e.set_sequence(7);
  printer.OnEvent(e);
  printer.OnReconnect("UNAVAILABLE", 1);
  printer.Finish(RunningJob(5));
  const std::string text = out.str();
  EXPECT_THAT(text, ::testing::StartsWith("{\"sequence\":\"7\",\"step\":\"5\","));
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1);  // the event alone
}

}  // namespace
}  // namespace verdict::client
