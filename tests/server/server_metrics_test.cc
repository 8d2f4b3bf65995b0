#include "server/server_metrics.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/metric_family.h"
#include "prometheus/text_serializer.h"
#include "tests/testing/loopback_http.h"
#include "tests/testing/test_paths.h"

namespace verdict {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

const absl::Time kStart = absl::FromUnixSeconds(1764424800);  // 2025-11-29T14:00:00Z

// Calls every ServerMetrics method, so that every family has at least one series.
void ExerciseEveryMethod(ServerMetrics& metrics) {
  metrics.RecordRpc("/verdict.v1.ScoringService/ScoreBatch", absl::StatusCode::kOk,
                    absl::Milliseconds(3));
  metrics.RecordRpc("SubmitTrainingJob", absl::StatusCode::kInvalidArgument,
                    absl::Microseconds(80));
  metrics.SetScoringQueueDepth("helpful", 12);
  metrics.SetScoringQueueCapacity("helpful", 4096);
  metrics.RecordScoringQueueWait("helpful", "3", absl::Milliseconds(2));
  metrics.RecordScoringBatch("helpful", "3", 32, 4096, absl::Milliseconds(15));
  metrics.RecordScoringRejected("helpful", "3", ScoringRejection::kQueueFull, 5);
  metrics.RecordScoringRejected("helpful", "3", ScoringRejection::kDeadlineExceeded);
  metrics.RecordScoringRejected("helpful", "3", ScoringRejection::kCancelled);
  metrics.RecordScoringRejected("helpful", "3", ScoringRejection::kInvalid);
  metrics.RecordScoringRejected("helpful", "3", ScoringRejection::kForwardFailed);
  metrics.RecordScoringRejected("helpful", "3", ScoringRejection::kShuttingDown);
  metrics.RecordScoringRejected("", "", ScoringRejection::kModelNotFound);
  metrics.RecordScoringRejected("helpful", "", ScoringRejection::kLoadFailed);
  metrics.RecordScoringRejected("", "", ScoringRejection::kUnauthenticated);
  metrics.SetModelLoaded("helpful", "3", true);
  metrics.SetModelLoaded("helpful", "2", false);
  metrics.SetJobCount("JOB_STATE_SUCCEEDED", 4);
  metrics.RecordJobStateChange("", "queued");
  metrics.RecordJobStateChange("queued", "running");
  metrics.RecordTrainingStep("job-1", {120, 1.5, 0.52, 0.74, 85.5, 21000});
  metrics.RecordTrainingEval("job-1", 0.71);
  metrics.RecordCheckpoint(absl::Milliseconds(420));
  metrics.RecordJobFinished("JOB_STATE_FAILED", absl::Seconds(95));
  metrics.SetDeviceMemoryBytes("cuda:0", int64_t{3} << 30);
}

std::string Serialize(prometheus::Registry& registry) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry.Collect());
  return out.str();
}

const prometheus::MetricFamily* FindFamily(const std::vector<prometheus::MetricFamily>& families,
                                           const std::string& name) {
  for (const auto& family : families) {
    if (family.name == name) return &family;
  }
  return nullptr;
}

// The series of family `name` whose labels are exactly `labels`, if any.
std::optional<prometheus::ClientMetric> FindSeries(
    prometheus::Registry& registry, const std::string& name,
    const std::map<std::string, std::string>& labels) {
  const auto families = registry.Collect();
  const prometheus::MetricFamily* family = FindFamily(families, name);
  if (family == nullptr) return std::nullopt;
  for (const auto& metric : family->metric) {
    std::map<std::string, std::string> have;
    for (const auto& label : metric.label) have[label.name] = label.value;
    if (have == labels) return metric;
  }
  return std::nullopt;
}

double GaugeValue(prometheus::Registry& registry, const std::string& name,
                  const std::map<std::string, std::string>& labels) {
  auto series = FindSeries(registry, name, labels);
  EXPECT_TRUE(series.has_value()) << name;
  return series ? series->gauge.value : -1;
}

double CounterValue(prometheus::Registry& registry, const std::string& name,
                    const std::map<std::string, std::string>& labels) {
  auto series = FindSeries(registry, name, labels);
  EXPECT_TRUE(series.has_value()) << name;
  return series ? series->counter.value : -1;
}

std::vector<double> UpperBounds(const prometheus::ClientMetric& metric) {
  std::vector<double> bounds;
  for (const auto& bucket : metric.histogram.bucket) bounds.push_back(bucket.upper_bound);
  return bounds;
}

// The full path of `name` on PATH, or empty.
std::string FindOnPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return "";
  for (absl::string_view dir : absl::StrSplit(path, ':', absl::SkipEmpty())) {
    std::filesystem::path candidate = std::filesystem::path(std::string(dir)) / name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return "";
}

// Reads a whole file.
std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(ServerMetricsTest, ExportsEveryFamilyInAFormatPromtoolAccepts) {
  const std::string promtool = FindOnPath("promtool");
  if (promtool.empty()) GTEST_SKIP() << "promtool (Debian package prometheus) is not installed";

  prometheus::Registry registry;
  ServerMetrics metrics(registry, {"0.1.0", "abc123", "cpu"}, kStart);
  ExerciseEveryMethod(metrics);

  const auto families = registry.Collect();
  EXPECT_GE(families.size(), 24u);
  for (const auto& family : families) {
    EXPECT_FALSE(family.metric.empty()) << family.name << " was not exercised by this test";
    EXPECT_EQ(family.name.rfind("verdict_", 0), 0u) << family.name;
  }

  verdict::testing::ScratchDir scratch;
  const std::string metrics_file = scratch.Path("metrics.txt");
  const std::string report_file = scratch.Path("promtool.txt");
  std::ofstream(metrics_file) << Serialize(registry);
  const std::string command =
      absl::StrCat(promtool, " check metrics < ", metrics_file, " > ", report_file, " 2>&1");
  const int status = std::system(command.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "promtool check metrics says:\n"
                                    << ReadAll(report_file) << "\nabout:\n"
                                    << ReadAll(metrics_file);
}

TEST(ServerMetricsTest, PromtoolRejectsABadlyNamedCounterSoTheCheckAboveCanFail) {
  const std::string promtool = FindOnPath("promtool");
  if (promtool.empty()) GTEST_SKIP() << "promtool (Debian package prometheus) is not installed";
  prometheus::Registry registry;
  prometheus::BuildCounter().Name("verdict_requests").Help("no _total").Register(registry).Add({});
  verdict::testing::ScratchDir scratch;
  const std::string metrics_file = scratch.Path("metrics.txt");
  std::ofstream(metrics_file) << Serialize(registry);
  const int status = std::system(
      absl::StrCat(promtool, " check metrics < ", metrics_file, " > /dev/null 2>&1").c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 0);
}

TEST(ServerMetricsTest, HistogramsUseTheDocumentedBuckets) {
  prometheus::Registry registry;
  ServerMetrics metrics(registry, {"0.1.0", "abc123", "cpu"}, kStart);
  ExerciseEveryMethod(metrics);

  const std::vector<double> latency = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                       0.01,    0.025,  0.05,    0.1,    0.25,  0.5,    1,
                                       2.5,     5,      10,      30,     60};
  EXPECT_EQ(ServerMetrics::LatencyBuckets(), latency);
  const double kInf = std::numeric_limits<double>::infinity();
  auto with_inf = [&](std::vector<double> bounds) {
    bounds.push_back(kInf);
    return bounds;
  };

  auto rpc = FindSeries(registry, "verdict_rpc_duration_seconds", {{"method", "ScoreBatch"}});
  ASSERT_TRUE(rpc.has_value());
  EXPECT_THAT(UpperBounds(*rpc), ElementsAreArray(with_inf(latency)));

  for (const char* name : {"verdict_scoring_queue_seconds", "verdict_scoring_compute_seconds"}) {
    auto series = FindSeries(registry, name, {{"model", "helpful"}, {"version", "3"}});
    ASSERT_TRUE(series.has_value()) << name;
    EXPECT_THAT(UpperBounds(*series), ElementsAreArray(with_inf(latency))) << name;
  }

  auto items =
      FindSeries(registry, "verdict_scoring_batch_items", {{"model", "helpful"}, {"version", "3"}});
  ASSERT_TRUE(items.has_value());
  EXPECT_THAT(UpperBounds(*items),
              ElementsAreArray({1., 2., 4., 8., 16., 32., 64., 128., 256., 512., 1024., kInf}));
  // 32 items fall in the le=32 bucket and every one above it, not in le=16.
  EXPECT_EQ(items->histogram.bucket[4].cumulative_count, 0u);
  EXPECT_EQ(items->histogram.bucket[5].cumulative_count, 1u);

  auto tokens = FindSeries(registry, "verdict_scoring_batch_tokens",
                           {{"model", "helpful"}, {"version", "3"}});
  ASSERT_TRUE(tokens.has_value());
  std::vector<double> token_bounds;
  for (int e = 6; e <= 18; ++e) token_bounds.push_back(static_cast<double>(1 << e));
  EXPECT_THAT(UpperBounds(*tokens), ElementsAreArray(with_inf(token_bounds)));
  EXPECT_DOUBLE_EQ(tokens->histogram.sample_sum, 4096);

  auto checkpoint = FindSeries(registry, "verdict_checkpoint_duration_seconds", {});
  ASSERT_TRUE(checkpoint.has_value());
  EXPECT_EQ(UpperBounds(*checkpoint).front(), 0.01);
  EXPECT_EQ(UpperBounds(*checkpoint)[UpperBounds(*checkpoint).size() - 2], 600);

  auto job = FindSeries(registry, "verdict_job_duration_seconds", {{"state", "failed"}});
  ASSERT_TRUE(job.has_value());
  EXPECT_EQ(UpperBounds(*job).front(), 1);
  EXPECT_EQ(UpperBounds(*job)[UpperBounds(*job).size() - 2], 604800);  // a week
  EXPECT_DOUBLE_EQ(job->histogram.sample_sum, 95);
}

TEST(ServerMetricsTest, NormalisesMethodCodeAndStateLabels) {
  prometheus::Registry registry;
  ServerMetrics metrics(registry, {"0.1.0", "abc123", "cpu"}, kStart);
  metrics.RecordRpc("/verdict.v1.ScoringService/ScoreBatch", absl::StatusCode::kOk,
                    absl::Milliseconds(1));
  metrics.RecordRpc("ScoreBatch", absl::StatusCode::kOk, absl::Milliseconds(1));
  metrics.RecordRpc("ScoreBatch", absl::StatusCode::kResourceExhausted, absl::Milliseconds(1));

  EXPECT_EQ(CounterValue(registry, "verdict_rpc_requests_total",
                         {{"method", "ScoreBatch"}, {"code", "OK"}}),
            2);
  EXPECT_EQ(CounterValue(registry, "verdict_rpc_requests_total",
                         {{"method", "ScoreBatch"}, {"code", "RESOURCE_EXHAUSTED"}}),
            1);
  auto duration = FindSeries(registry, "verdict_rpc_duration_seconds", {{"method", "ScoreBatch"}});
  ASSERT_TRUE(duration.has_value());
  EXPECT_EQ(duration->histogram.sample_count, 3u);

  metrics.SetJobCount("JOB_STATE_QUEUED", 2);
  metrics.RecordJobStateChange("queued", "RUNNING");
  EXPECT_EQ(GaugeValue(registry, "verdict_jobs", {{"state", "queued"}}), 1);
  EXPECT_EQ(GaugeValue(registry, "verdict_jobs", {{"state", "running"}}), 1);
}

TEST(ServerMetricsTest, ExportsEveryJobStateAtZeroBeforeAnyJob) {
  prometheus::Registry registry;
  ServerMetrics metrics(registry, {"0.1.0", "abc123", "cpu"}, kStart);
  for (const char* state :
       {"queued", "running", "cancelling", "succeeded", "failed", "cancelled"}) {
    EXPECT_EQ(GaugeValue(registry, "verdict_jobs", {{"state", state}}), 0) << state;
  }
  for (const char* state : {"succeeded", "failed", "cancelled"}) {
    auto series = FindSeries(registry, "verdict_job_duration_seconds", {{"state", state}});
    ASSERT_TRUE(series.has_value()) << state;
    EXPECT_EQ(series->histogram.sample_count, 0u);
  }
}

TEST(ServerMetricsTest, CountsScoredAndRejectedItems) {
  prometheus::Registry registry;
  ServerMetrics metrics(registry, {"0.1.0", "abc123", "cpu"}, kStart);
  metrics.RecordScoringBatch("helpful", "3", 32, 4096, absl::Milliseconds(15));
  metrics.RecordScoringBatch("helpful", "3", 8, 512, absl::Milliseconds(5));
  // A failed forward took its time but scored nothing.
  metrics.RecordScoringBatch("helpful", "3", 16, 512, absl::Milliseconds(1), /*ok=*/false);
  metrics.RecordScoringRejected("helpful", "3", ScoringRejection::kQueueFull, 5);
  metrics.RecordScoringRejected("helpful", "3", ScoringRejection::kQueueFull, 2);
  metrics.RecordScoringRejected("helpful", "3", ScoringRejection::kForwardFailed);
  metrics.SetScoringQueueCapacity("helpful", 4096);
  metrics.SetScoringQueueDepth("helpful", 12);
  metrics.SetScoringQueueDepth("helpful", 3);

  const std::map<std::string, std::string> v3 = {{"model", "helpful"}, {"version", "3"}};
  EXPECT_EQ(CounterValue(registry, "verdict_scoring_items_total", v3), 40);
  EXPECT_EQ(CounterValue(registry, "verdict_scoring_rejected_total",
                         {{"model", "helpful"}, {"version", "3"}, {"reason", "queue_full"}}),
            7);
  EXPECT_EQ(CounterValue(registry, "verdict_scoring_rejected_total",
                         {{"model", "helpful"}, {"version", "3"}, {"reason", "forward_failed"}}),
            1);
  EXPECT_EQ(GaugeValue(registry, "verdict_scoring_queue_depth", {{"model", "helpful"}}), 3);
  EXPECT_EQ(GaugeValue(registry, "verdict_scoring_queue_capacity", {{"model", "helpful"}}), 4096);
  auto compute = FindSeries(registry, "verdict_scoring_compute_seconds", v3);
  ASSERT_TRUE(compute.has_value());
  EXPECT_EQ(compute->histogram.sample_count, 3u);
  EXPECT_NEAR(compute->histogram.sample_sum, 0.021, 1e-12);
}

// A hot swap shows as two versions; unloading one removes its series (bounded cardinality)
// and leaves the other's and the name's queue gauges.
TEST(ServerMetricsTest, RemovesTheSeriesOfAnUnloadedVersionOnly) {
  prometheus::Registry registry;
  ServerMetrics metrics(registry, {"0.1.0", "abc123", "cpu"}, kStart);
  for (const char* version : {"1", "2"}) {
    metrics.RecordScoringBatch("helpful", version, 4, 64, absl::Milliseconds(1));
    metrics.RecordScoringQueueWait("helpful", version, absl::Milliseconds(1));
    metrics.RecordScoringRejected("helpful", version, ScoringRejection::kCancelled);
  }
  metrics.SetScoringQueueCapacity("helpful", 64);
  metrics.RemoveScoringVersion("helpful", "1");
  for (const char* family : {"verdict_scoring_items_total", "verdict_scoring_batch_items",
                             "verdict_scoring_batch_tokens", "verdict_scoring_compute_seconds",
                             "verdict_scoring_queue_seconds"}) {
    EXPECT_FALSE(FindSeries(registry, family, {{"model", "helpful"}, {"version", "1"}}).has_value())
        << family;
    EXPECT_TRUE(FindSeries(registry, family, {{"model", "helpful"}, {"version", "2"}}).has_value())
        << family;
  }
  EXPECT_FALSE(FindSeries(registry, "verdict_scoring_rejected_total",
                          {{"model", "helpful"}, {"version", "1"}, {"reason", "cancelled"}})
                   .has_value());
  EXPECT_EQ(CounterValue(registry, "verdict_scoring_rejected_total",
                         {{"model", "helpful"}, {"version", "2"}, {"reason", "cancelled"}}),
            1);
  EXPECT_EQ(GaugeValue(registry, "verdict_scoring_queue_capacity", {{"model", "helpful"}}), 64);
}

TEST(ServerMetricsTest, SetsBuildInfoStartTimeAndModelGauges) {
  prometheus::Registry registry;
  ServerMetrics metrics(registry, {"0.1.0", "abc123", "cuda:0"}, kStart);
  EXPECT_EQ(GaugeValue(registry, "verdict_build_info",
                       {{"version", "0.1.0"}, {"commit", "abc123"}, {"device", "cuda:0"}}),
            1);
  EXPECT_EQ(GaugeValue(registry, "verdict_start_time_seconds", {}), 1764424800);

  metrics.SetModelLoaded("helpful", "3", true);
  EXPECT_EQ(GaugeValue(registry, "verdict_models_loaded", {{"model", "helpful"}, {"version", "3"}}),
            1);
  metrics.SetModelLoaded("helpful", "3", false);
  EXPECT_EQ(GaugeValue(registry, "verdict_models_loaded", {{"model", "helpful"}, {"version", "3"}}),
            0);
  metrics.SetDeviceMemoryBytes("cuda:0", 1234567890123);
  EXPECT_EQ(GaugeValue(registry, "verdict_device_memory_bytes", {{"device", "cuda:0"}}),
            1234567890123.0);
}

TEST(ServerMetricsTest, RemoveJobDropsOnlyThatJobsSeries) {
  prometheus::Registry registry;
  ServerMetrics metrics(registry, {"0.1.0", "abc123", "cpu"}, kStart);
  metrics.RecordTrainingStep("job-1", {120, 1.5, 0.52, 0.74, 85.5, 21000});
  metrics.RecordTrainingEval("job-1", 0.71);
  metrics.RecordTrainingStep("job-2", {7, 0.1, 0.69, 0.5, 10, 2000});

  EXPECT_EQ(GaugeValue(registry, "verdict_training_step", {{"job_id", "job-1"}}), 120);
  EXPECT_EQ(GaugeValue(registry, "verdict_training_epoch", {{"job_id", "job-1"}}), 1.5);
  EXPECT_EQ(GaugeValue(registry, "verdict_training_loss", {{"job_id", "job-1"}}), 0.52);
  EXPECT_EQ(GaugeValue(registry, "verdict_training_accuracy", {{"job_id", "job-1"}}), 0.74);
  EXPECT_EQ(GaugeValue(registry, "verdict_training_eval_accuracy", {{"job_id", "job-1"}}), 0.71);
  EXPECT_EQ(GaugeValue(registry, "verdict_training_pairs_per_second", {{"job_id", "job-1"}}), 85.5);
  EXPECT_EQ(GaugeValue(registry, "verdict_training_tokens_per_second", {{"job_id", "job-1"}}),
            21000);

  metrics.RemoveJob("job-1");
  metrics.RemoveJob("never-existed");
  for (const char* name :
       {"verdict_training_step", "verdict_training_epoch", "verdict_training_loss",
        "verdict_training_accuracy", "verdict_training_eval_accuracy",
        "verdict_training_pairs_per_second", "verdict_training_tokens_per_second"}) {
    EXPECT_FALSE(FindSeries(registry, name, {{"job_id", "job-1"}}).has_value()) << name;
  }
  EXPECT_EQ(GaugeValue(registry, "verdict_training_step", {{"job_id", "job-2"}}), 7);
  // A removed job that logs again (a resumed job) gets fresh series.
  metrics.RecordTrainingStep("job-1", {121, 1.5, 0.5, 0.75, 80, 20000});
  EXPECT_EQ(GaugeValue(registry, "verdict_training_step", {{"job_id", "job-1"}}), 121);
}

TEST(ServerMetricsTest, CountsExactlyUnderConcurrentCallers) {
  prometheus::Registry registry;
  ServerMetrics metrics(registry, {"0.1.0", "abc123", "cpu"}, kStart);
  constexpr int kThreads = 8;
  constexpr int kCallsPerThread = 2000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&metrics, t] {
      for (int i = 0; i < kCallsPerThread; ++i) {
        metrics.RecordRpc("ScoreBatch", absl::StatusCode::kOk, absl::Microseconds(100));
        metrics.RecordScoringBatch(absl::StrCat("model-", t % 2), "1", 1, 64,
                                   absl::Microseconds(10));
        metrics.RecordJobStateChange("", "queued");
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(CounterValue(registry, "verdict_rpc_requests_total",
                         {{"method", "ScoreBatch"}, {"code", "OK"}}),
            kThreads * kCallsPerThread);
  EXPECT_EQ(CounterValue(registry, "verdict_scoring_items_total",
                         {{"model", "model-0"}, {"version", "1"}}) +
                CounterValue(registry, "verdict_scoring_items_total",
                             {{"model", "model-1"}, {"version", "1"}}),
            kThreads * kCallsPerThread);
  EXPECT_EQ(GaugeValue(registry, "verdict_jobs", {{"state", "queued"}}),
            kThreads * kCallsPerThread);
}

// The body of GET <path> on 127.0.0.1:<port>, failing the test unless it is a 200.
std::string MetricsPage(int port, const std::string& path) {
  auto response = verdict::testing::HttpGet(port, path);
  EXPECT_TRUE(response.ok()) << response.status();
  if (!response.ok()) return "";
  EXPECT_EQ(response->status_code, 200);
  return response->body;
}

// One test, not two: every exposer that has run costs up to 2 s to destroy (civetweb).
TEST(StartMetricsExposerTest, ServesTheRegistryOverHttpAndReportsItsPortInUse) {
  auto registry = std::make_shared<prometheus::Registry>();
  ServerMetrics metrics(*registry, {"0.1.0", "abc123", "cpu"}, kStart);
  metrics.RecordRpc("ScoreBatch", absl::StatusCode::kOk, absl::Milliseconds(3));

  auto exposer = StartMetricsExposer("127.0.0.1", 0, registry);
  ASSERT_TRUE(exposer.ok()) << exposer.status();
  const std::vector<int> ports = (*exposer)->GetListeningPorts();
  ASSERT_EQ(ports.size(), 1u);
  ASSERT_GT(ports[0], 0);

  const std::string response = MetricsPage(ports[0], "/metrics");
  EXPECT_THAT(response,
              HasSubstr(R"(verdict_build_info{commit="abc123",device="cpu",version="0.1.0"} 1)"));
  EXPECT_THAT(response,
              HasSubstr(R"(verdict_rpc_requests_total{code="OK",method="ScoreBatch"} 1)"));
  EXPECT_THAT(
      response,
      HasSubstr(R"(verdict_rpc_duration_seconds_bucket{method="ScoreBatch",le="0.005"} 1)"));

  // Series recorded after the exposer started show up in the next scrape.
  metrics.SetModelLoaded("helpful", "3", true);
  EXPECT_THAT(MetricsPage(ports[0], "/metrics"),
              HasSubstr(R"(verdict_models_loaded{model="helpful",version="3"} 1)"));

  // A second server on the same port gets a status naming the address, not an exception.
  auto second = StartMetricsExposer("127.0.0.1", ports[0], registry);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(second.status().message()),
              HasSubstr(absl::StrCat("127.0.0.1:", ports[0])));
}

TEST(StartMetricsExposerTest, RejectsAnOutOfRangePortAndANullRegistry) {
  auto registry = std::make_shared<prometheus::Registry>();
  EXPECT_EQ(StartMetricsExposer("127.0.0.1", 70000, registry).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StartMetricsExposer("127.0.0.1", 0, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace verdict
