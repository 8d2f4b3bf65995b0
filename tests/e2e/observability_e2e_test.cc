// End to end: the real verdictd binary, scraped by a real Prometheus server, while it trains a
// model and scores requests. It checks what an operator would see: a /metrics page that
// promtool accepts, and Prometheus queries (the ones the dashboard and alerts are built on)
// that give sensible numbers, agreeing with what the API itself reports. Every process is
// stopped on every path: the test owns them (ChildProcess) and the kernel kills them should
// the test itself be killed.
//
// Needs the Debian package prometheus (prometheus and promtool); skipped without it.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/child_process.h"
#include "tests/testing/loopback_http.h"
#include "tests/e2e/prometheus_server.h"
#include "tests/testing/test_paths.h"
#include "verdict/v1/datasets.grpc.pb.h"
#include "verdict/v1/models.grpc.pb.h"
#include "verdict/v1/scoring.grpc.pb.h"
#include "verdict/v1/training.grpc.pb.h"

namespace verdict::testing {
namespace {

namespace fs = std::filesystem;

using ::testing::AllOf;
using ::testing::Ge;
using ::testing::Gt;
using ::testing::Le;
using ::testing::Lt;

// Bounds for a loaded two-core machine; the happy path takes a fraction of each.
constexpr absl::Duration kStartupTimeout = absl::Seconds(60);
constexpr absl::Duration kRpcTimeout = absl::Seconds(60);
constexpr absl::Duration kTrainingTimeout = absl::Seconds(120);
constexpr absl::Duration kScrapeTimeout = absl::Seconds(45);
constexpr absl::Duration kStopTimeout = absl::Seconds(30);

constexpr char kScrapeJob[] = "verdict";  // as in deploy/prometheus/prometheus.yml
constexpr char kScoringModel[] = "golden-llama";

// The executable `program` on $PATH, or "" if there is none.
std::string FindOnPath(const std::string& program) {
  const char* path = std::getenv("PATH");
  for (absl::string_view dir :
       absl::StrSplit(path == nullptr ? "" : path, ':', absl::SkipEmpty())) {
    const fs::path candidate = fs::path(std::string(dir)) / program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return "";
}

std::string LoopbackTarget(int port) { return absl::StrCat("127.0.0.1:", port); }

std::unique_ptr<grpc::ClientContext> Context(absl::Duration timeout = kRpcTimeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return context;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

// verdictd as its users run it: the binary, with flags, in its own process.
struct Verdictd {
  std::unique_ptr<ChildProcess> process;
  int port = 0;
  int metrics_port = 0;
};

// Starts verdictd on free loopback ports (it picks them, and prints them on stdout) with its
// state, data and model roots under `root`.
absl::StatusOr<Verdictd> StartVerdictd(const fs::path& root) {
  ChildProcess::Options options;
  options.log_path = (root / "verdictd.log").string();
  Verdictd server;
  auto process = ChildProcess::Start(
      {VERDICTD_PATH, "--host=127.0.0.1", "--port=0", "--metrics_port=0",
       absl::StrCat("--state_dir=", (root / "state").string()),
       absl::StrCat("--data_dir=", (root / "data").string()),
       absl::StrCat("--model_dir=", (root / "models").string()),
       // Two cores are shared by training, scoring and Prometheus: one intra-op thread each.
       "--threads=1", "--drain_grace_seconds=10"},
      options);
  if (!process.ok()) return process.status();
  server.process = std::move(*process);
  absl::StatusOr<std::string> line =
      server.process->WaitForLogLine("verdictd listening on", kStartupTimeout);
  if (!line.ok()) return line.status();
  // "verdictd listening on 127.0.0.1:PORT, metrics on :MPORT/metrics"
  std::smatch match;
  if (!std::regex_search(*line, match,
                         std::regex(R"(listening on \S+:(\d+), metrics on :(\d+)/metrics)")) ||
      !absl::SimpleAtoi(match[1].str(), &server.port) ||
      !absl::SimpleAtoi(match[2].str(), &server.metrics_port)) {
    return absl::DataLossError(absl::StrCat("cannot read the ports from \"", *line, "\""));
  }
  return server;
}

// Puts a scorable reward model into `model_root` (verdictd's --model_dir) as "golden-llama".
// stories260K-hf is a language model without a reward head, which ImportModel refuses; the
// golden Llama reward checkpoint (vocabulary 1000) with stories260K's 512-piece tokenizer is a
// reward model of the same family.
void PrepareScoringModel(const fs::path& model_root) {
  const fs::path dir = model_root / "golden-llama";
  fs::create_directories(dir);
  fs::copy_file(TestDataPath("golden/llama/config.json"), dir / "config.json");
  fs::copy_file(TestDataPath("golden/llama/model.safetensors"), dir / "model.safetensors");
  fs::copy_file(TestDataPath("models/stories260K-hf/tokenizer.model"), dir / "tokenizer.model");
}

// Registers the model PrepareScoringModel put in place as kScoringModel, version 1.
grpc::Status ImportScoringModel(v1::ModelService::Stub& models) {
  v1::ImportModelRequest request;
  request.set_name(kScoringModel);
  request.set_path("golden-llama");
  v1::Model model;
  return models.ImportModel(Context().get(), request, &model);
}

// The /metrics page, as a scraper gets it.
std::string Scrape(int metrics_port) {
  absl::StatusOr<HttpResponse> response = HttpGet(metrics_port, "/metrics");
  if (!response.ok()) {
    ADD_FAILURE() << "GET /metrics: " << response.status();
    return "";
  }
  EXPECT_EQ(response->status_code, 200) << response->body;
  return response->body;
}

// Runs `promtool check metrics` on an exposition; fails the test on any complaint.
void ExpectPromtoolAccepts(const std::string& promtool, const std::string& exposition,
                           const fs::path& scratch, const std::string& name) {
  SCOPED_TRACE(name);
  ASSERT_FALSE(exposition.empty());
  const fs::path input = scratch / (name + ".txt");
  std::ofstream(input, std::ios::binary) << exposition;
  ChildProcess::Options options;
  options.stdin_path = input.string();
  options.log_path = (scratch / (name + ".promtool.log")).string();
  auto promtool_process = ChildProcess::Start({promtool, "check", "metrics"}, options);
  ASSERT_TRUE(promtool_process.ok()) << promtool_process.status();
  absl::StatusOr<int> code = (*promtool_process)->Wait(kStopTimeout);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << "promtool check metrics says:\n" << (*promtool_process)->Log();
  EXPECT_EQ((*promtool_process)->Log(), "") << "promtool check metrics complains";
}

// Sends ScoreBatch requests one after another from its own thread until stopped, the way an
// RLHF loop would (with a short pause, so that the training job keeps a core).
class ScoringLoop {
 public:
  ScoringLoop(v1::ScoringService::Stub* stub, v1::ScoreBatchRequest request)
      : stub_(stub), request_(std::move(request)), thread_([this] { Run(); }) {}
  ~ScoringLoop() { Stop(); }

  void Stop() {
    if (!stop_.HasBeenNotified()) stop_.Notify();
    if (thread_.joinable()) thread_.join();
  }

  int64_t ok_calls() const { return ok_calls_.load(); }
  int64_t failed_calls() const { return failed_calls_.load(); }
  std::string first_error() const {
    absl::MutexLock lock(&mutex_);
    return first_error_;
  }

 private:
  void Run() {
    do {
      v1::ScoreBatchResponse response;
      const grpc::Status status =
          stub_->ScoreBatch(Context(absl::Seconds(30)).get(), request_, &response);
      if (status.ok() && response.scores_size() == request_.items_size()) {
        ok_calls_.fetch_add(1);
        continue;
      }
      failed_calls_.fetch_add(1);
      absl::MutexLock lock(&mutex_);
      if (first_error_.empty()) {
        first_error_ = absl::StrCat("code ", status.error_code(), ": ", status.error_message(),
                                    " (", response.scores_size(), " scores)");
      }
    } while (!stop_.WaitForNotificationWithTimeout(absl::Milliseconds(40)));
  }

  v1::ScoringService::Stub* const stub_;
  const v1::ScoreBatchRequest request_;
  absl::Notification stop_;
  std::atomic<int64_t> ok_calls_{0};
  std::atomic<int64_t> failed_calls_{0};
  mutable absl::Mutex mutex_;
  std::string first_error_ ABSL_GUARDED_BY(mutex_);
  std::thread thread_;  // last: starts once everything above is built
};

v1::ScoreBatchRequest ScoringRequest() {
  v1::ScoreBatchRequest request;
  request.mutable_model()->set_name(kScoringModel);
  const char* const kResponses[] = {" Nairobi is the capital of Kenya.", " Figure it out yourself.",
                                    " A ripe banana is yellow.", " I am not sure, maybe blue?"};
  for (const char* response : kResponses) {
    v1::PromptResponse* item = request.add_items()->mutable_prompt_response();
    item->set_prompt("\n\nHuman: Tell me something true.\n\nAssistant:");
    item->set_response(response);
  }
  return request;
}

grpc::Status Upload(v1::DatasetService::Stub& stub, const std::string& name,
                    const std::string& bytes, v1::Dataset* dataset) {
  auto context = Context();
  std::unique_ptr<grpc::ClientWriter<v1::UploadDatasetRequest>> writer =
      stub.UploadDataset(context.get(), dataset);
  v1::UploadDatasetRequest request;
  request.mutable_metadata()->set_name(name);
  request.mutable_metadata()->set_expected_size_bytes(static_cast<int64_t>(bytes.size()));
  writer->Write(request);
  constexpr size_t kChunkBytes = 1 << 20;
  for (size_t offset = 0; offset < bytes.size(); offset += kChunkBytes) {
    request.set_chunk(bytes.substr(offset, kChunkBytes));
    if (!writer->Write(request)) break;
  }
  writer->WritesDone();
  return writer->Finish();
}

// encoder-tiny from scratch on the uploaded data: a 400-piece tokenizer, `max_steps` steps of
// 8 pairs, metrics logged every 2 steps.
v1::TrainingJobSpec SmallJob(const std::string& dataset_id, int64_t max_steps) {
  v1::TrainingJobSpec spec;
  spec.set_output_model_name("e2e-trained");
  spec.set_preset("encoder-tiny");
  spec.mutable_tokenizer()->mutable_train()->set_vocab_size(400);
  spec.mutable_train_data()->set_dataset_id(dataset_id);
  spec.mutable_eval()->set_eval_fraction(0.05);
  spec.mutable_eval()->set_max_pairs(32);
  v1::Hyperparameters* hyperparameters = spec.mutable_hyperparameters();
  hyperparameters->set_per_device_train_batch_size(8);
  hyperparameters->set_max_steps(max_steps);
  hyperparameters->set_max_length(128);
  spec.set_logging_steps(2);
  spec.set_save_steps(0);
  return spec;
}

bool IsTerminal(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}

absl::StatusOr<v1::Job> WaitForTerminal(v1::TrainingService::Stub& stub,
                                        const std::string& job_id) {
  const absl::Time deadline = absl::Now() + kTrainingTimeout;
  v1::GetJobRequest request;
  request.set_job_id(job_id);
  v1::Job job;
  while (true) {
    const grpc::Status status = stub.GetJob(Context().get(), request, &job);
    if (!status.ok())
      return absl::UnavailableError(absl::StrCat("GetJob: ", status.error_message()));
    if (IsTerminal(job.state())) return job;
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("job ", job_id, " still ", v1::JobState_Name(job.state()), " at step ",
                       job.progress().step(), " after ", absl::FormatDuration(kTrainingTimeout)));
    }
    absl::SleepFor(absl::Milliseconds(250));
  }
}

// The single value of an instant query; fails the test unless there is exactly one sample.
double QueryOne(const PrometheusServer& prometheus, const std::string& promql) {
  absl::StatusOr<std::vector<PromSample>> samples = prometheus.Query(promql);
  if (!samples.ok()) {
    ADD_FAILURE() << promql << ": " << samples.status();
    return std::nan("");
  }
  if (samples->size() != 1) {
    ADD_FAILURE() << promql << ": " << samples->size() << " samples, expected 1";
    return std::nan("");
  }
  return samples->front().value;
}

// Polls `promql` until it returns exactly one sample >= `at_least`; its last error otherwise.
absl::Status WaitForQuery(const PrometheusServer& prometheus, const std::string& promql,
                          double at_least, absl::Time deadline) {
  std::string last;
  while (true) {
    absl::StatusOr<std::vector<PromSample>> samples = prometheus.Query(promql);
    if (samples.ok() && samples->size() == 1 && samples->front().value >= at_least) {
      return absl::OkStatus();
    }
    last = !samples.ok() ? samples.status().ToString()
           : samples->empty()
               ? "no samples"
               : absl::StrCat(samples->size(), " samples, first ", samples->front().value);
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat(promql, " did not reach ", at_least, ": ", last));
    }
    absl::SleepFor(absl::Milliseconds(250));
  }
}

TEST(ObservabilityEndToEndTest, PrometheusScrapesTrainingAndScoringFromARealVerdictd) {
  const std::string prometheus_binary = FindOnPath("prometheus");
  const std::string promtool = FindOnPath("promtool");
  if (prometheus_binary.empty() || promtool.empty()) {
    GTEST_SKIP() << "prometheus and promtool (Debian package prometheus) are not installed";
  }
  const absl::Time test_start = absl::Now();
  ScratchDir scratch;
  PrepareScoringModel(scratch.path() / "models");

  // --- verdictd, and its /metrics page as promtool sees it -----------------------------------
  absl::StatusOr<Verdictd> verdictd = StartVerdictd(scratch.path());
  ASSERT_TRUE(verdictd.ok()) << verdictd.status();
  ExpectPromtoolAccepts(promtool, Scrape(verdictd->metrics_port), scratch.path(), "fresh-scrape");

  // --- Prometheus scraping it every second, with the alert rules we ship ----------------------
  PrometheusServer::Options prometheus_options;
  prometheus_options.binary = prometheus_binary;
  prometheus_options.work_dir = scratch.path() / "prometheus";
  prometheus_options.job_name = kScrapeJob;
  prometheus_options.target = LoopbackTarget(verdictd->metrics_port);
  prometheus_options.rule_files = {
      (fs::path(VERDICT_SOURCE_DIR) / "deploy" / "prometheus" / "alerts.yaml").string()};
  prometheus_options.startup_timeout = kStartupTimeout;
  absl::StatusOr<std::unique_ptr<PrometheusServer>> prometheus =
      PrometheusServer::Start(prometheus_options);
  ASSERT_TRUE(prometheus.ok()) << prometheus.status();

  // --- the workload: a model to score with, scoring in a loop, a training job ---------------
  auto channel =
      grpc::CreateChannel(LoopbackTarget(verdictd->port), grpc::InsecureChannelCredentials());
  auto datasets = v1::DatasetService::NewStub(channel);
  auto models = v1::ModelService::NewStub(channel);
  auto scoring = v1::ScoringService::NewStub(channel);
  auto training = v1::TrainingService::NewStub(channel);

  grpc::Status status = ImportScoringModel(*models);
  ASSERT_TRUE(status.ok()) << "ImportModel: " << status.error_message();

  v1::Dataset dataset;
  status = Upload(*datasets, "helpful-concise",
                  ReadFile(TestDataPath("synthetic/helpful-concise.jsonl")), &dataset);
  ASSERT_TRUE(status.ok()) << "UploadDataset: " << status.error_message();

  ScoringLoop scoring_loop(scoring.get(), ScoringRequest());

  v1::SubmitTrainingJobRequest submit;
  *submit.mutable_spec() = SmallJob(dataset.id(), /*max_steps=*/40);
  v1::Job job;
  status = training->SubmitTrainingJob(Context().get(), submit, &job);
  ASSERT_TRUE(status.ok()) << "SubmitTrainingJob: " << status.error_message();
  absl::StatusOr<v1::Job> finished = WaitForTerminal(*training, job.id());
  ASSERT_TRUE(finished.ok()) << finished.status();
  ASSERT_EQ(finished->state(), v1::JOB_STATE_SUCCEEDED) << finished->error_message();
  const absl::Time job_done = absl::Now();

  // --- wait until Prometheus holds a successful scrape taken after the job ended, and
  // enough scoring history for a rate over 30 s -----------------------------------------------
  const absl::Time scrape_deadline = absl::Now() + kScrapeTimeout;
  const std::string up = absl::StrCat("up{job=\"", kScrapeJob, "\"}");
  const absl::Status scraped_after_job =
      // timestamp() of a plain selector is the scrape's time; of an expression such as
      // `up == 1` it is the query's evaluation time, which made this wait pass at once.
      WaitForQuery(**prometheus, absl::StrCat("timestamp(", up, ")"),
                   absl::ToDoubleSeconds(job_done - absl::UnixEpoch()), scrape_deadline);
  ASSERT_TRUE(scraped_after_job.ok()) << scraped_after_job << "\nPrometheus' log:\n"
                                      << (*prometheus)->Log();
  const std::string score_batch_count = absl::StrCat("verdict_rpc_duration_seconds_count{job=\"",
                                                     kScrapeJob, "\", method=\"ScoreBatch\"}");
  const absl::Status enough_history =
      WaitForQuery(**prometheus, absl::StrCat("count_over_time(", score_batch_count, "[30s])"), 5,
                   scrape_deadline);
  ASSERT_TRUE(enough_history.ok())
      << enough_history << "\nscoring loop: " << scoring_loop.ok_calls() << " ok, "
      << scoring_loop.failed_calls() << " failed, first error " << scoring_loop.first_error();

  // --- what Prometheus says ------------------------------------------------------------------
  EXPECT_EQ(QueryOne(**prometheus, up), 1);

  // The loss gauge holds the job's last logged loss, the same number the API reports; a
  // fresh pairwise model starts near ln 2 ≈ 0.69.
  const std::string job_label =
      absl::StrCat("{job=\"", kScrapeJob, "\", job_id=\"", job.id(), "\"}");
  const double loss = QueryOne(**prometheus, absl::StrCat("verdict_training_loss", job_label));
  EXPECT_THAT(loss, AllOf(Gt(0), Lt(2)));
  const double api_loss = finished->progress().last_train_metrics().loss();
  EXPECT_NEAR(loss, api_loss, 1e-9 * std::max(1.0, std::abs(api_loss)));
  EXPECT_EQ(QueryOne(**prometheus, absl::StrCat("verdict_training_step", job_label)), 40);
  EXPECT_THAT(QueryOne(**prometheus, absl::StrCat("verdict_training_accuracy", job_label)),
              AllOf(Ge(0), Le(1)));
  // Several scrapes saw the job's gauges, not just the last one.
  EXPECT_GE(QueryOne(**prometheus,
                     absl::StrCat("count_over_time(verdict_training_loss", job_label, "[5m])")),
            2);
  EXPECT_EQ(QueryOne(**prometheus,
                     absl::StrCat("verdict_jobs{job=\"", kScrapeJob, "\", state=\"succeeded\"}")),
            1);
  EXPECT_EQ(QueryOne(**prometheus,
                     absl::StrCat("verdict_jobs{job=\"", kScrapeJob, "\", state=\"running\"}")),
            0);

  // ScoreBatch latency, as the dashboard and VerdictScoringLatencyHigh compute it. The method
  // label is the bare method name, not the gRPC path.
  const double p99 = QueryOne(
      **prometheus,
      absl::StrCat(
          "histogram_quantile(0.99, sum by (le) (rate(verdict_rpc_duration_seconds_bucket{job=\"",
          kScrapeJob, "\", method=\"ScoreBatch\"}[30s])))"));
  EXPECT_TRUE(std::isfinite(p99)) << p99;
  EXPECT_THAT(p99, AllOf(Gt(0), Lt(5)));
  EXPECT_GT(QueryOne(**prometheus, absl::StrCat("sum(verdict_scoring_batch_items_count{job=\"",
                                                kScrapeJob, "\"})")),
            0);
  EXPECT_GT(QueryOne(**prometheus,
                     absl::StrCat("sum(verdict_scoring_items_total{job=\"", kScrapeJob, "\"})")),
            0);
  EXPECT_GT(QueryOne(**prometheus, absl::StrCat("sum(verdict_rpc_requests_total{job=\"", kScrapeJob,
                                                "\", method=\"ScoreBatch\", code=\"OK\"})")),
            0);
  EXPECT_EQ(QueryOne(**prometheus, absl::StrCat("sum(verdict_rpc_requests_total{job=\"", kScrapeJob,
                                                "\", method=\"UploadDataset\", code=\"OK\"})")),
            1);

  // Every shipped alert rule evaluates without error against the live series.
  absl::StatusOr<nlohmann::json> rules = (*prometheus)->ApiGet("/api/v1/rules");
  ASSERT_TRUE(rules.ok()) << rules.status();
  int rule_count = 0;
  for (const nlohmann::json& group : rules->value("groups", nlohmann::json::array())) {
    for (const nlohmann::json& rule : group.value("rules", nlohmann::json::array())) {
      ++rule_count;
      EXPECT_EQ(JsonString(rule, "health"), "ok")
          << JsonString(rule, "name", "?") << ": " << JsonString(rule, "lastError");
    }
  }
  EXPECT_GT(rule_count, 0);
  // None of the alerts for failures is pending. (VerdictScoringLatencyHigh is left out: its
  // threshold is about production hardware, not a shared two-core test machine.)
  absl::StatusOr<nlohmann::json> alerts = (*prometheus)->ApiGet("/api/v1/alerts");
  ASSERT_TRUE(alerts.ok()) << alerts.status();
  for (const nlohmann::json& alert : alerts->value("alerts", nlohmann::json::array())) {
    const std::string name =
        JsonString(alert.value("labels", nlohmann::json::object()), "alertname");
    EXPECT_EQ(name, "VerdictScoringLatencyHigh")
        << "alert " << JsonString(alert, "state") << ": " << alert.dump();
  }

  // --- the page after the workload, with every kind of series, is still promtool-clean ------
  scoring_loop.Stop();
  EXPECT_GT(scoring_loop.ok_calls(), 0);
  EXPECT_EQ(scoring_loop.failed_calls(), 0) << scoring_loop.first_error();
  ExpectPromtoolAccepts(promtool, Scrape(verdictd->metrics_port), scratch.path(), "busy-scrape");

  // --- clean shutdown ----------------------------------------------------------------------
  absl::StatusOr<int> verdictd_exit = verdictd->process->Stop(SIGTERM, kStopTimeout);
  ASSERT_TRUE(verdictd_exit.ok()) << verdictd_exit.status();
  EXPECT_EQ(*verdictd_exit, 0) << "verdictd's log:\n" << verdictd->process->Log();
  absl::StatusOr<int> prometheus_exit = (*prometheus)->Stop(kStopTimeout);
  ASSERT_TRUE(prometheus_exit.ok()) << prometheus_exit.status();
  EXPECT_EQ(*prometheus_exit, 0) << (*prometheus)->Log();

  std::cout << "end-to-end run took " << absl::FormatDuration(absl::Now() - test_start) << " ("
            << scoring_loop.ok_calls() << " ScoreBatch calls, p99 " << p99 << " s)\n";
}

// The distinct values of label `label` on the samples of `metric` (a full sample name, such as
// "verdict_scoring_batch_items_count") in a text exposition.
std::set<std::string> LabelValues(const std::string& exposition, const std::string& metric,
                                  const std::string& label) {
  std::set<std::string> values;
  const std::regex value_of_label("[{,]" + label + R"re(="((?:[^"\\]|\\.)*)")re");
  for (absl::string_view line : absl::StrSplit(exposition, '\n')) {
    if (!absl::StartsWith(line, metric + "{")) continue;
    const std::string text(line.substr(0, line.find('}')));
    std::smatch match;
    if (std::regex_search(text, match, value_of_label)) values.insert(match[1].str());
  }
  return values;
}

// The value of the sample `series` (name and labels as prometheus-cpp writes them) in
// `exposition`, or NaN when it has none.
double SampleValue(const std::string& exposition, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(exposition, '\n')) {
    double value = 0;
    if (absl::ConsumePrefix(&line, series + " ") && absl::SimpleAtod(line, &value)) return value;
  }
  return std::nan("");
}

// The dashboard's $model variable takes its values from verdict_models_loaded{model} (the model
// name, as server_metrics.h says every scoring series is labelled): a scoring series labelled
// otherwise (it once was "name:version") leaves every scoring panel filtered by $model empty.
// The queue gauges must be there too, or the queue panels and the VerdictScoringQueueSaturated
// alert never see a series.
TEST(ObservabilityEndToEndTest, ScoringSeriesNameTheModelAsVerdictModelsLoadedDoes) {
  ScratchDir scratch;
  PrepareScoringModel(scratch.path() / "models");
  absl::StatusOr<Verdictd> verdictd = StartVerdictd(scratch.path());
  ASSERT_TRUE(verdictd.ok()) << verdictd.status();
  auto channel =
      grpc::CreateChannel(LoopbackTarget(verdictd->port), grpc::InsecureChannelCredentials());
  grpc::Status status = ImportScoringModel(*v1::ModelService::NewStub(channel));
  ASSERT_TRUE(status.ok()) << "ImportModel: " << status.error_message();
  v1::ScoreBatchResponse response;
  status = v1::ScoringService::NewStub(channel)->ScoreBatch(Context().get(), ScoringRequest(),
                                                            &response);
  ASSERT_TRUE(status.ok()) << "ScoreBatch: " << status.error_message();

  const std::string exposition = Scrape(verdictd->metrics_port);
  const std::set<std::string> loaded = LabelValues(exposition, "verdict_models_loaded", "model");
  EXPECT_EQ(loaded, std::set<std::string>{kScoringModel});
  for (const char* metric :
       {"verdict_scoring_items_total", "verdict_scoring_batch_items_count",
        "verdict_scoring_batch_tokens_count", "verdict_scoring_compute_seconds_count",
        "verdict_scoring_queue_seconds_count", "verdict_scoring_queue_depth",
        "verdict_scoring_queue_capacity"}) {
    EXPECT_EQ(LabelValues(exposition, metric, "model"), loaded) << metric;
  }
  // The batch that scored the request took it out of the queue before the reply was sent;
  // the capacity is verdictd's default --max_queued_items.
  const std::string model_label = absl::StrCat("{model=\"", kScoringModel, "\"}");
  EXPECT_EQ(SampleValue(exposition, "verdict_scoring_queue_depth" + model_label), 0);
  EXPECT_EQ(SampleValue(exposition, "verdict_scoring_queue_capacity" + model_label), 4096);

  absl::StatusOr<int> exit_code = verdictd->process->Stop(SIGTERM, kStopTimeout);
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0);
}

}  // namespace
}  // namespace verdict::testing
