// End-to-end tests of the `verdict` CLI against a real verdictd on a free loopback port: every
// subcommand, their output in text and JSON, and their error paths with exit codes.
//
// One server (and one 10-step model trained through `verdict submit --watch`) is shared by
// the whole suite, so CMake registers this binary as a single CTest test.
#include <signal.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/subprocess.h"
#include "tests/testing/test_paths.h"

namespace verdict::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using Json = nlohmann::json;

constexpr int kExitOk = 0, kExitError = 1, kExitUsage = 2, kExitUnreachable = 3,
              kExitJobCancelled = 5;

std::string SyntheticData() { return TestDataPath("synthetic/helpful-concise.jsonl"); }

std::vector<std::string> ReadLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// What a command printed, for failure messages.
std::string Show(const CommandResult& r) {
  return absl::StrCat("exit ", r.exit_code, "\n--- stdout ---\n", r.out, "--- stderr ---\n", r.err);
}

// A CLI run must never die of a signal or print a C++ exception or a gRPC log line.
void ExpectCleanFailure(const CommandResult& r) {
  EXPECT_LT(r.exit_code, 128) << Show(r);
  EXPECT_THAT(r.err, AllOf(Not(HasSubstr("terminate called")), Not(HasSubstr("what():")),
                           Not(HasSubstr("Aborted"))))
      << Show(r);
}

class CliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new std::string(
        (std::filesystem::temp_directory_path() / absl::StrCat("verdict-cli-test-", getpid()))
            .string());
    std::filesystem::remove_all(*root_);
    std::filesystem::create_directories(*root_);
    // verdict-train is not beside verdictd in the build tree.
    server_ = new ServerProcess(*root_ + "/server", 0,
                                {std::string("--train_worker_binary=") + VERDICT_TRAIN_PATH});
  }

  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    std::filesystem::remove_all(*root_);
    delete root_;
    delete trained_;
    trained_ = nullptr;
  }

  static const ServerProcess& server() { return *server_; }
  static std::string Scratch(const std::string& name) { return *root_ + "/" + name; }

  // `verdict --server <suite server> args...`.
  static CommandResult Verdict(std::vector<std::string> args, const std::string& input = "",
                               std::vector<std::string> env = {}, double timeout = 180) {
    args.insert(args.begin(), {VERDICT_CLI_PATH, "--server", server_->address()});
    return RunCommand(args, input, env, timeout);
  }

  // The suite's model "tiny", trained once through `submit --train ... --watch`.
  struct Trained {
    CommandResult submit;
    std::string job_id;
  };
  static const Trained& TinyModel() {
    if (trained_ == nullptr) {
      trained_ = new Trained;
      trained_->submit = Verdict({"submit", "--train", SyntheticData(), "--preset", "encoder-tiny",
                                  "--vocab-size", "400", "--max-steps", "10", "--logging-steps",
                                  "5", "--lr", "1e-3", "--name", "tiny", "--watch"});
      trained_->job_id = std::string(absl::StripAsciiWhitespace(
          trained_->submit.out.substr(0, trained_->submit.out.find('\n'))));
    }
    return *trained_;
  }

  // The score `verdict score --response` prints, as a number.
  static double ScoreOne(const std::string& model, const std::string& prompt,
                         const std::string& response) {
    CommandResult r =
        Verdict({"score", "--model", model, "--prompt", prompt, "--response", response});
    double score = 0;
    EXPECT_EQ(r.exit_code, kExitOk) << Show(r);
    EXPECT_TRUE(absl::SimpleAtod(absl::StripAsciiWhitespace(r.out), &score)) << Show(r);
    return score;
  }

 private:
  static std::string* root_;
  static ServerProcess* server_;
  static Trained* trained_;
};

std::string* CliTest::root_ = nullptr;
ServerProcess* CliTest::server_ = nullptr;
CliTest::Trained* CliTest::trained_ = nullptr;

TEST_F(CliTest, HelpListsEveryCommandAndTheExitCodes) {
  CommandResult r = RunCommand({VERDICT_CLI_PATH, "--help"});
  ASSERT_EQ(r.exit_code, kExitOk) << Show(r);
  for (const char* command : {"submit", "watch", "jobs", "get", "cancel", "upload", "datasets",
                              "score", "models", "import", "alias", "health"}) {
    EXPECT_THAT(r.out, HasSubstr(absl::StrCat("\n  ", command, " "))) << command;
  }
  EXPECT_THAT(r.out, AllOf(HasSubstr("--server HOST:PORT"), HasSubstr("VERDICT_TOKEN"),
                           HasSubstr("5  the watched job was CANCELLED")));
  CommandResult submit = RunCommand({VERDICT_CLI_PATH, "submit", "--help"});
  EXPECT_EQ(submit.exit_code, kExitOk);
  EXPECT_THAT(submit.out, AllOf(HasSubstr("--max-steps N"), HasSubstr("--file FILE"),
                                HasSubstr("Global flags:")));
  EXPECT_EQ(RunCommand({VERDICT_CLI_PATH, "help", "score"}).out,
            RunCommand({VERDICT_CLI_PATH, "score", "--help"}).out);
}

TEST_F(CliTest, BadFlagsPrintTheUsageAndExitTwo) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"jobs", "--bogus"}, "unknown flag --bogus"},
      {{"submit", "--max-steps", "abc"}, "--max-steps: expected an integer, got 'abc'"},
      {{"submit", "--preset", "encoder-tiny"}, "no training data"},
      {{"submit", "--data-path", "x", "--dataset", "y"}, "at most one of --train, --dataset"},
      {{"submit", "--data-path", "x", "--dtype", "float8"}, "--dtype: expected one of"},
      {{"get"}, "missing arguments"},
      {{"get", "a", "b"}, "unexpected argument 'b'"},
      {{"--output", "yaml", "jobs"}, "--output: expected text or json"},
      {{"jobs", "--state", "sleeping"}, "--state: unknown state 'sleeping'"},
      {{"score", "--response", "x"}, "--model is required"},
      {{"score", "--model", "m:0", "--response", "x"}, "versions start at 1"},
      {{"alias", "m", "one", "prod"}, "expected NAME VERSION ALIAS"},
      {{"frobnicate"}, "unknown command 'frobnicate'"},
      {{"watch", "--from-step"}, "--from-step needs a value"},
  };
  for (const auto& [args, message] : cases) {
    CommandResult r = Verdict(args);
    EXPECT_EQ(r.exit_code, kExitUsage) << Show(r);
    EXPECT_THAT(r.err, HasSubstr(message)) << Show(r);
    EXPECT_TRUE(r.out.empty()) << Show(r);
    ExpectCleanFailure(r);
  }
  CommandResult none = RunCommand({VERDICT_CLI_PATH});
  EXPECT_EQ(none.exit_code, kExitUsage);
  EXPECT_THAT(none.err, HasSubstr("no command given"));
}

TEST_F(CliTest, AnUnreachableServerExitsThreeWithAHint) {
  const std::string nowhere = absl::StrCat("127.0.0.1:", FreeLoopbackPort());
  for (const std::vector<std::string>& args : {std::vector<std::string>{"jobs"},
                                               {"get", "job-1"},
                                               {"health"},
                                               {"watch", "job-1"},
                                               {"score", "--model", "m", "--response", "r"},
                                               {"upload", SyntheticData()}}) {
    std::vector<std::string> argv = {VERDICT_CLI_PATH, "--server", nowhere};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandResult r = RunCommand(argv, "", {}, 30);
    EXPECT_EQ(r.exit_code, kExitUnreachable) << args[0] << "\n" << Show(r);
    EXPECT_THAT(r.err, AllOf(HasSubstr("verdict: UNAVAILABLE: "),
                             HasSubstr(absl::StrCat("is verdictd running at ", nowhere))))
        << Show(r);
    ExpectCleanFailure(r);
  }
  // VERDICT_SERVER is the default address.
  CommandResult r = RunCommand({VERDICT_CLI_PATH, "jobs"}, "", {"VERDICT_SERVER=" + nowhere}, 30);
  EXPECT_EQ(r.exit_code, kExitUnreachable) << Show(r);
  EXPECT_THAT(r.err, HasSubstr(nowhere));
}

TEST_F(CliTest, SubmitUploadsTrainsAndWatchesToSuccess) {
  const Trained& t = TinyModel();
  const CommandResult& r = t.submit;
  ASSERT_EQ(r.exit_code, kExitOk) << Show(r) << "\nserver log:\n" << server().log();
  EXPECT_THAT(t.job_id, ::testing::StartsWith("job-"));
  EXPECT_THAT(r.err, AllOf(HasSubstr("uploaded " + SyntheticData() + " as dataset ds-"),
                           HasSubstr("2000 pairs"), HasSubstr("submitted job " + t.job_id)));
  // Not a terminal: one plain line per event, ending with the outcome.
  EXPECT_THAT(r.out, AllOf(HasSubstr("QUEUED -> RUNNING"), HasSubstr("step 5/10  loss "),
                           HasSubstr("step 10/10  loss "), HasSubstr("eval @ step 10: loss "),
                           HasSubstr("RUNNING -> SUCCEEDED"),
                           HasSubstr("job " + t.job_id + " SUCCEEDED in "),
                           HasSubstr("model tiny version 1")));
}

TEST_F(CliTest, JobsAndGetShowTheJobInTextAndJson) {
  const Trained& t = TinyModel();
  ASSERT_EQ(t.submit.exit_code, kExitOk);
  CommandResult jobs = Verdict({"jobs"});
  ASSERT_EQ(jobs.exit_code, kExitOk) << Show(jobs);
  EXPECT_THAT(jobs.out, AllOf(HasSubstr("ID"), HasSubstr(t.job_id), HasSubstr("SUCCEEDED"),
                              HasSubstr("10/10"), HasSubstr("tiny:1")));
  EXPECT_THAT(Verdict({"jobs", "--state", "failed,cancelling"}).out, Not(HasSubstr(t.job_id)));
  EXPECT_THAT(Verdict({"jobs", "--state", "SUCCEEDED", "--model", "tiny"}).out,
              HasSubstr(t.job_id));

  CommandResult get = Verdict({"get", t.job_id});
  ASSERT_EQ(get.exit_code, kExitOk) << Show(get);
  EXPECT_THAT(get.out, AllOf(HasSubstr("state:      SUCCEEDED"), HasSubstr("model:      tiny:1"),
                             HasSubstr("base:       preset encoder-tiny"),
                             HasSubstr("progress:   step 10/10"), HasSubstr("eval:       loss ")));

  CommandResult json = Verdict({"--output", "json", "get", t.job_id});
  ASSERT_EQ(json.exit_code, kExitOk) << Show(json);
  const Json job = Json::parse(json.out);
  EXPECT_EQ(job["id"], t.job_id);
  EXPECT_EQ(job["state"], "JOB_STATE_SUCCEEDED");
  EXPECT_EQ(job["resultModel"]["name"], "tiny");
  EXPECT_EQ(job["resultModel"]["version"], "1");  // int64 is a string in proto3 JSON
  EXPECT_EQ(job["spec"]["hyperparameters"]["maxSteps"], "10");
  EXPECT_EQ(job["spec"]["tokenizer"]["train"]["vocabSize"], 400);

  CommandResult list = Verdict({"jobs", "--output", "json", "--limit", "1"});
  ASSERT_EQ(list.exit_code, kExitOk) << Show(list);
  EXPECT_EQ(Json::parse(list.out)["jobs"].size(), 1u);
}

TEST_F(CliTest, WatchReplaysAFinishedJobInLinesAndJson) {
  const Trained& t = TinyModel();
  ASSERT_EQ(t.submit.exit_code, kExitOk);
  CommandResult r = Verdict({"watch", t.job_id});
  ASSERT_EQ(r.exit_code, kExitOk) << Show(r);
  EXPECT_THAT(r.out, AllOf(HasSubstr("job " + t.job_id + " QUEUED: submitted"),
                           HasSubstr("step 10/10"), HasSubstr("SUCCEEDED in ")));

  CommandResult from = Verdict({"watch", t.job_id, "--from-step", "6"});
  ASSERT_EQ(from.exit_code, kExitOk) << Show(from);
  EXPECT_THAT(from.out, AllOf(Not(HasSubstr("step 5/10")), HasSubstr("step 10/10")));

  CommandResult json = Verdict({"watch", t.job_id, "--output", "json"});
  ASSERT_EQ(json.exit_code, kExitOk) << Show(json);
  std::vector<Json> events;
  for (absl::string_view line : absl::StrSplit(json.out, '\n', absl::SkipEmpty())) {
    events.push_back(Json::parse(line));
  }
  ASSERT_GE(events.size(), 5u);
  int64_t previous = 0;
  for (const Json& e : events) {
    int64_t sequence = 0;
    ASSERT_TRUE(absl::SimpleAtoi(e["sequence"].get<std::string>(), &sequence));
    EXPECT_GT(sequence, previous);
    previous = sequence;
  }
  EXPECT_EQ(events.front()["stateChange"]["toState"], "JOB_STATE_QUEUED");
  EXPECT_EQ(events.back()["stateChange"]["toState"], "JOB_STATE_SUCCEEDED");
}

TEST_F(CliTest, UnknownJobsAreNotFoundWithTheServersMessage) {
  for (const char* command : {"get", "watch", "cancel"}) {
    CommandResult r = Verdict({command, "job-does-not-exist"});
    EXPECT_EQ(r.exit_code, kExitError) << Show(r);
    EXPECT_THAT(r.err, AllOf(::testing::StartsWith("verdict: NOT_FOUND: "),
                             HasSubstr("job-does-not-exist")))
        << Show(r);
    ExpectCleanFailure(r);
  }
}

TEST_F(CliTest, CancelStopsARunningJobAndWatchExitsFive) {
  CommandResult upload = Verdict({"upload", SyntheticData(), "--name", "for-cancel"});
  ASSERT_EQ(upload.exit_code, kExitOk) << Show(upload);
  const std::string dataset(absl::StripAsciiWhitespace(upload.out));
  CommandResult submit =
      Verdict({"submit", "--dataset", dataset, "--preset", "encoder-tiny", "--vocab-size", "400",
               "--max-steps", "100000", "--name", "never-finished"});
  ASSERT_EQ(submit.exit_code, kExitOk) << Show(submit);
  const std::string job(absl::StripAsciiWhitespace(submit.out));
  CommandResult cancel = Verdict({"cancel", job, "--reason", "test over"});
  ASSERT_EQ(cancel.exit_code, kExitOk) << Show(cancel);
  EXPECT_THAT(cancel.out, ::testing::MatchesRegex("job " + job + " CANCELL(ING|ED)\n"));

  CommandResult watch = Verdict({"watch", job}, "", {}, 120);
  EXPECT_EQ(watch.exit_code, kExitJobCancelled) << Show(watch);
  EXPECT_THAT(watch.out, AllOf(HasSubstr("test over"), HasSubstr("job " + job + " CANCELLED")));

  // Finished jobs cannot be cancelled.
  const Trained& t = TinyModel();
  CommandResult again = Verdict({"cancel", t.job_id});
  EXPECT_EQ(again.exit_code, kExitError) << Show(again);
  EXPECT_THAT(again.err, HasSubstr("verdict: FAILED_PRECONDITION: "));
}

TEST_F(CliTest, UploadChecksTheFileAndDatasetsListsIt) {
  CommandResult r = Verdict({"upload", SyntheticData(), "--name", "listed-one"});
  ASSERT_EQ(r.exit_code, kExitOk) << Show(r);
  const std::string id(absl::StripAsciiWhitespace(r.out));
  EXPECT_THAT(id, ::testing::StartsWith("ds-"));
  EXPECT_THAT(r.err, HasSubstr("2000 pairs"));

  // The real hh-rlhf sample, gzip and all.
  CommandResult gz =
      Verdict({"--output", "json", "upload", TestDataPath("hh-rlhf/harmless-base/test.jsonl.gz")});
  ASSERT_EQ(gz.exit_code, kExitOk) << Show(gz);
  const Json dataset = Json::parse(gz.out);
  EXPECT_EQ(dataset["gzip"], true);
  EXPECT_EQ(dataset["name"], "test.jsonl.gz");
  EXPECT_GT(std::stoll(dataset["pairs"].get<std::string>()), 2000);

  CommandResult list = Verdict({"datasets"});
  ASSERT_EQ(list.exit_code, kExitOk) << Show(list);
  EXPECT_THAT(list.out, AllOf(HasSubstr(id), HasSubstr("listed-one"), HasSubstr("2000")));

  const std::string broken = Scratch("broken.jsonl");
  WriteFile(broken, "{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\nnot json\n");
  CommandResult bad = Verdict({"upload", broken});
  EXPECT_EQ(bad.exit_code, kExitError) << Show(bad);
  EXPECT_THAT(bad.err, AllOf(HasSubstr("INVALID_ARGUMENT"), HasSubstr("line 2")));

  CommandResult skipped = Verdict({"upload", broken, "--skip-invalid"});
  EXPECT_EQ(skipped.exit_code, kExitOk) << Show(skipped);
  EXPECT_THAT(skipped.err, HasSubstr("1 invalid lines"));

  CommandResult missing = Verdict({"upload", Scratch("no-such-file.jsonl")});
  EXPECT_EQ(missing.exit_code, kExitError) << Show(missing);
  EXPECT_THAT(missing.err, HasSubstr("no-such-file.jsonl: No such file"));
  ExpectCleanFailure(missing);
}

std::string MalformedData() { return TestDataPath("preference/malformed/mixed-problems.jsonl"); }

// The ids of every uploaded dataset.
std::vector<std::string> DatasetIds(const CommandResult& listed) {
  std::vector<std::string> ids;
  for (const auto& dataset : Json::parse(listed.out).value("datasets", Json::array())) {
    ids.push_back(dataset["id"]);
  }
  return ids;
}

void ExpectEveryProblemWithItsLine(const std::string& text) {
  EXPECT_THAT(text, AllOf(HasSubstr("5 invalid lines:"),
                          HasSubstr("  line 3: missing \"rejected\""),
                          HasSubstr("  line 5: invalid JSON: "),
                          HasSubstr("  line 8: \"chosen\" must be a string"),
                          HasSubstr("  line 11: \"margin\" must be a number"),
                          HasSubstr("  line 13: expected a JSON object")));
}

TEST_F(CliTest, DatasetsInspectListsEveryProblemOfALocalFileWithItsLine) {
  CommandResult before = Verdict({"--output", "json", "datasets", "--limit", "0"});
  ASSERT_EQ(before.exit_code, kExitOk) << Show(before);

  CommandResult r = Verdict({"datasets", "inspect", MalformedData()});
  EXPECT_EQ(r.exit_code, kExitError) << Show(r);
  EXPECT_THAT(r.out, HasSubstr("JSON Lines, 6 pairs (explicit prompt 6), 13 lines (1 blank, "
                               "1 identical pair dropped)"));
  ExpectEveryProblemWithItsLine(r.out);
  ExpectCleanFailure(r);

  CommandResult capped =
      Verdict({"--output", "json", "datasets", "inspect", MalformedData(), "--max-invalid", "2"});
  EXPECT_EQ(capped.exit_code, kExitError) << Show(capped);
  const Json report = Json::parse(capped.out);
  EXPECT_EQ(report["invalidLines"], "5");
  ASSERT_EQ(report["invalid"].size(), 2u);
  EXPECT_EQ(report["invalid"][1]["line"], "5");

  const std::string sharegpt = TestDataPath("preference/llama-factory-sharegpt/hh-helpful-40.json");
  CommandResult clean = Verdict({"datasets", "inspect", sharegpt});
  EXPECT_EQ(clean.exit_code, kExitOk) << Show(clean);
  EXPECT_THAT(clean.out, AllOf(HasSubstr("JSON array, 40 pairs (sharegpt 40)"),
                               HasSubstr("no invalid lines")));

  // Token lengths need the server's tokenizer: a local file with --model is a usage error.
  CommandResult model = Verdict({"datasets", "inspect", MalformedData(), "--model", "tiny"});
  EXPECT_EQ(model.exit_code, kExitUsage) << Show(model);
  EXPECT_THAT(model.err, HasSubstr("verdict upload"));

  // Nothing was uploaded.
  CommandResult after = Verdict({"--output", "json", "datasets", "--limit", "0"});
  EXPECT_EQ(DatasetIds(after), DatasetIds(before));
}

TEST_F(CliTest, DatasetsInspectAnUploadedDatasetWithAModelsTokenLengths) {
  const Trained& t = TinyModel();
  ASSERT_EQ(t.submit.exit_code, kExitOk) << Show(t.submit);
  CommandResult uploaded = Verdict({"upload", MalformedData(), "--skip-invalid"});
  ASSERT_EQ(uploaded.exit_code, kExitOk) << Show(uploaded);
  const std::string id(absl::StripAsciiWhitespace(uploaded.out));

  CommandResult r = Verdict({"datasets", "inspect", id});
  EXPECT_EQ(r.exit_code, kExitError) << Show(r);
  EXPECT_THAT(r.out, HasSubstr("dataset " + id + ": JSON Lines, 6 pairs"));
  ExpectEveryProblemWithItsLine(r.out);

  CommandResult tokens =
      Verdict({"datasets", "inspect", id, "--model", "tiny", "--max-length", "16"});
  EXPECT_EQ(tokens.exit_code, kExitError) << Show(tokens);
  EXPECT_THAT(tokens.out, AllOf(HasSubstr("tokens (model tiny version 1): min "),
                                HasSubstr("\n  <= "), HasSubstr("over max_length 16: ")));
  CommandResult json =
      Verdict({"--output", "json", "datasets", "inspect", id, "--model", "tiny:1"});
  ASSERT_EQ(json.exit_code, kExitError) << Show(json);
  const Json lengths = Json::parse(json.out)["lengths"];
  EXPECT_EQ(lengths["model"], "tiny");
  int64_t in_bars = 0;
  for (const auto& bar : lengths["histogram"]) {
    in_bars += std::stoll(bar.value("pairs", std::string("0")));  // proto JSON omits zeros
  }
  EXPECT_EQ(in_bars, 6);
  EXPECT_GT(std::stoll(lengths["maxLength"].get<std::string>()), 0);  // the model's own

  CommandResult unknown = Verdict({"datasets", "inspect", "ds-00000000deadbeef"});
  EXPECT_EQ(unknown.exit_code, kExitError) << Show(unknown);
  EXPECT_THAT(unknown.err, HasSubstr("verdict: NOT_FOUND: "));
  CommandResult no_model = Verdict({"datasets", "inspect", id, "--model", "nobody"});
  EXPECT_EQ(no_model.exit_code, kExitError) << Show(no_model);
  EXPECT_THAT(no_model.err, HasSubstr("verdict: NOT_FOUND: "));
  CommandResult not_a_file = Verdict({"datasets", "inspect", Scratch("no-such.jsonl")});
  EXPECT_EQ(not_a_file.exit_code, kExitError) << Show(not_a_file);
  EXPECT_THAT(not_a_file.err, HasSubstr("no such file"));
}

TEST_F(CliTest, DatasetsDeleteRemovesADatasetAndAnUnknownIdIsNotFound) {
  CommandResult uploaded = Verdict({"upload", SyntheticData(), "--name", "to-delete"});
  ASSERT_EQ(uploaded.exit_code, kExitOk) << Show(uploaded);
  const std::string id(absl::StripAsciiWhitespace(uploaded.out));
  CommandResult deleted = Verdict({"datasets", "delete", id});
  EXPECT_EQ(deleted.exit_code, kExitOk) << Show(deleted);
  EXPECT_THAT(deleted.err, HasSubstr("deleted dataset " + id));
  CommandResult listed = Verdict({"--output", "json", "datasets", "list", "--limit", "0"});
  ASSERT_EQ(listed.exit_code, kExitOk) << Show(listed);
  EXPECT_THAT(DatasetIds(listed), Not(::testing::Contains(id)));
  CommandResult again = Verdict({"datasets", "delete", id});
  EXPECT_EQ(again.exit_code, kExitError) << Show(again);
  EXPECT_THAT(again.err, HasSubstr("verdict: NOT_FOUND: "));
  ExpectCleanFailure(again);
}

TEST_F(CliTest, SubmitValidateOnlyChecksALocalFileWithoutUploadingIt) {
  CommandResult before = Verdict({"--output", "json", "datasets", "--limit", "0"});
  ASSERT_EQ(before.exit_code, kExitOk) << Show(before);

  CommandResult bad = Verdict({"submit", "--train", MalformedData(), "--validate-only"});
  EXPECT_EQ(bad.exit_code, kExitError) << Show(bad);
  ExpectEveryProblemWithItsLine(bad.err);
  EXPECT_THAT(bad.err, HasSubstr("a job would fail at line 3"));
  // With --skip-invalid the same file would train (on its 6 valid pairs).
  CommandResult skipping =
      Verdict({"submit", "--train", MalformedData(), "--skip-invalid", "--validate-only"});
  EXPECT_EQ(skipping.exit_code, kExitOk) << Show(skipping);

  CommandResult good = Verdict({"--output", "json", "submit", "--train", SyntheticData(),
                                "--eval-file", MalformedData(), "--validate-only"});
  EXPECT_EQ(good.exit_code, kExitError) << Show(good);  // the eval file is the bad one
  std::vector<std::string> reports = absl::StrSplit(good.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(reports.size(), 2u) << Show(good);
  EXPECT_EQ(Json::parse(reports[0])["pairs"], "2000");
  EXPECT_EQ(Json::parse(reports[1])["invalidLines"], "5");

  CommandResult after = Verdict({"--output", "json", "datasets", "--limit", "0"});
  EXPECT_EQ(DatasetIds(after), DatasetIds(before));
}

TEST_F(CliTest, SubmitTrainsOnALlamaFactoryShareGptFile) {
  // LLaMA-Factory ships preference data as a JSON array of ShareGPT records.
  const std::string file = TestDataPath("preference/llama-factory-sharegpt/hh-helpful-40.json");
  CommandResult r =
      Verdict({"submit", "--train", file, "--data-format", "sharegpt", "--preset", "encoder-tiny",
               "--vocab-size", "500", "--max-steps", "3", "--batch-size", "4", "--eval-fraction",
               "0.1", "--name", "llama-factory", "--watch", "--no-progress"});
  ASSERT_EQ(r.exit_code, kExitOk) << Show(r) << "\nserver log:\n" << server().log();
  EXPECT_THAT(r.err,
              AllOf(HasSubstr("uploaded " + file + " as dataset ds-"), HasSubstr("(40 pairs")));
  EXPECT_THAT(r.out, AllOf(HasSubstr("RUNNING -> SUCCEEDED"), HasSubstr("model llama-factory")));
  const std::string job(absl::StripAsciiWhitespace(r.out.substr(0, r.out.find('\n'))));
  CommandResult get = Verdict({"--output", "json", "get", job});
  ASSERT_EQ(get.exit_code, kExitOk) << Show(get);
  EXPECT_EQ(Json::parse(get.out)["spec"]["dataOptions"]["format"], "DATA_FORMAT_SHAREGPT");

  CommandResult bad = Verdict({"submit", "--train", file, "--data-format", "csv"});
  EXPECT_EQ(bad.exit_code, kExitUsage) << Show(bad);
  EXPECT_THAT(bad.err, HasSubstr("--data-format: expected one of auto, jsonl, json, sharegpt"));
}

TEST_F(CliTest, AFileThatIsNotPreferenceDataIsNamedWithWhatIsAccepted) {
  const std::string questions = Scratch("questions.jsonl");
  WriteFile(questions, "{\"question\": \"2+2?\", \"answer\": \"4\"}\n");
  const std::string numbers = Scratch("numbers.json");
  WriteFile(numbers, "[1, 2, 3]\n");
  const std::string csv = Scratch("pairs.csv");
  WriteFile(csv, "prompt,chosen,rejected\nq,a,b\n");
  const struct {
    std::string file, found;
  } cases[] = {
      {questions, "a JSON object with keys \"question\", \"answer\""},
      {numbers, "a JSON number (element 1 of the array)"},
      {csv, "invalid JSON"},
  };
  for (const auto& c : cases) {
    for (const std::vector<std::string>& command :
         {std::vector<std::string>{"submit", "--train", c.file, "--preset", "encoder-tiny"},
          std::vector<std::string>{"upload", c.file}}) {
      CommandResult r = Verdict(command);
      EXPECT_EQ(r.exit_code, kExitError) << Show(r);
      ExpectCleanFailure(r);
      EXPECT_THAT(r.err,
                  AllOf(HasSubstr(c.file + ": line 1: not preference data: found " + c.found),
                        HasSubstr("Accepted: JSON Lines (one record per line) or a JSON array "
                                  "of records, plain or gzip"),
                        HasSubstr("(explicit prompt)"), HasSubstr("(conversational)"),
                        HasSubstr("(LLaMA-Factory ShareGPT)")))
          << Show(r);
    }
  }
}

TEST_F(CliTest, ScoreOneItemPrintsItsScore) {
  ASSERT_EQ(TinyModel().submit.exit_code, kExitOk);
  const double a = ScoreOne("tiny", "\n\nHuman: What is two plus two?\n\nAssistant:", " Four.");
  const double b = ScoreOne("tiny:1", "\n\nHuman: What is two plus two?\n\nAssistant:", " Four.");
  EXPECT_NEAR(a, b, 1e-5);
  CommandResult json =
      Verdict({"--output", "json", "score", "--model", "tiny:latest", "--response", " Four."});
  ASSERT_EQ(json.exit_code, kExitOk) << Show(json);
  const Json response = Json::parse(json.out);
  EXPECT_EQ(response["scores"].size(), 1u);
  EXPECT_EQ(response["model"]["version"], "1");

  CommandResult unknown = Verdict({"score", "--model", "no-such-model", "--response", "x"});
  EXPECT_EQ(unknown.exit_code, kExitError) << Show(unknown);
  EXPECT_THAT(unknown.err, HasSubstr("verdict: NOT_FOUND: "));
}

TEST_F(CliTest, ScoreJsonLinesKeepsOrderAndKeysAcrossParallelBatches) {
  ASSERT_EQ(TinyModel().submit.exit_code, kExitOk);
  // 150 lines mixing the layouts, scored 16 items per request, 3 requests in flight.
  std::string input;
  for (int i = 0; i < 150; ++i) {
    const std::string prompt =
        absl::StrCat("\n\nHuman: Tell me fact number ", i, ".\n\nAssistant:");
    switch (i % 3) {
      case 0:
        absl::StrAppend(
            &input,
            Json{{"id", i}, {"prompt", prompt}, {"response", absl::StrCat(" Fact ", i, ".")}}
                .dump(),
            "\n");
        break;
      case 1:
        absl::StrAppend(&input,
                        Json{{"id", i},
                             {"messages",
                              {{{"role", "user"}, {"content", "Hi"}},
                               {{"role", "assistant"}, {"content", absl::StrCat("Hello ", i)}}}}}
                            .dump(),
                        "\n");
        break;
      default:
        absl::StrAppend(
            &input,
            Json{{"id", i}, {"prompt", prompt}, {"chosen", " Sure."}, {"rejected", " No."}}.dump(),
            "\n");
    }
  }
  const std::string in_path = Scratch("pairs.jsonl"), out_path = Scratch("scored.jsonl");
  WriteFile(in_path, input);
  CommandResult r = Verdict({"score", "--model", "tiny", "--input", in_path, "--output-file",
                             out_path, "--batch-size", "16", "--parallel", "3"});
  ASSERT_EQ(r.exit_code, kExitOk) << Show(r);
  EXPECT_THAT(r.err, AllOf(HasSubstr("scored 150 lines with tiny:1"), HasSubstr("pairs: 50,")));
  const std::vector<std::string> lines = ReadLines(out_path);
  ASSERT_EQ(lines.size(), 150u);
  for (int i = 0; i < 150; ++i) {
    const Json line = Json::parse(lines[i]);
    EXPECT_EQ(line["id"], i);
    if (i % 3 == 2) {
      EXPECT_TRUE(line["chosen_score"].is_number() && line["rejected_score"].is_number())
          << lines[i];
    } else {
      EXPECT_TRUE(line["score"].is_number()) << lines[i];
    }
  }
  // The same item scores the same in a batch as alone.
  const Json first = Json::parse(lines[0]);
  EXPECT_NEAR(
      first["score"].get<double>(),
      ScoreOne("tiny", first["prompt"].get<std::string>(), first["response"].get<std::string>()),
      1e-4);
  // Keys keep their order; the score comes last.
  EXPECT_THAT(lines[0], ::testing::StartsWith("{\"id\":0,\"prompt\":"));

  // stdin to stdout gives the same lines.
  CommandResult piped = Verdict({"score", "--model", "tiny"}, input);
  ASSERT_EQ(piped.exit_code, kExitOk) << Show(piped);
  std::vector<std::string> piped_lines = absl::StrSplit(piped.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(piped_lines.size(), 150u);
  for (int i = 0; i < 150; i += 7) {
    const Json a = Json::parse(lines[i]), b = Json::parse(piped_lines[i]);
    for (const char* key : {"score", "chosen_score", "rejected_score"}) {
      if (a.contains(key)) EXPECT_NEAR(a[key].get<double>(), b[key].get<double>(), 1e-4);
    }
  }
}

TEST_F(CliTest, ScoreSplitsHhRlhfTranscriptsAsTrainingDoes) {
  ASSERT_EQ(TinyModel().submit.exit_code, kExitOk);
  const std::string chosen = "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?";
  const std::string rejected = "\n\nHuman: Hi there\n\nAssistant: Go away.";
  CommandResult r = Verdict({"score", "--model", "tiny"},
                            Json{{"chosen", chosen}, {"rejected", rejected}}.dump() + "\n");
  ASSERT_EQ(r.exit_code, kExitOk) << Show(r);
  const Json line = Json::parse(r.out);
  EXPECT_NEAR(line["chosen_score"].get<double>(),
              ScoreOne("tiny", "\n\nHuman: Hi there\n\nAssistant:", " Hello! How can I help?"),
              1e-4);
  EXPECT_NEAR(line["rejected_score"].get<double>(),
              ScoreOne("tiny", "\n\nHuman: Hi there\n\nAssistant:", " Go away."), 1e-4);
}

TEST_F(CliTest, ScoreNamesTheBadInputLine) {
  const std::string path = Scratch("bad-input.jsonl");
  WriteFile(path, "{\"prompt\": \"p\", \"response\": \"r\"}\n{\"prompt\": \"p\"}\n");
  CommandResult r = Verdict({"score", "--model", "tiny", "--input", path});
  EXPECT_EQ(r.exit_code, kExitError) << Show(r);
  EXPECT_THAT(r.err, HasSubstr(path + ":2: expected \"response\""));
  ExpectCleanFailure(r);
}

// A Qwen3ForSequenceClassification directory as the hub ships one: bfloat16 weights (random,
// seeded: there are no pretrained ones here), Qwen3's real tokenizer.json and
// tokenizer_config.json (whose chat template names the format). The vocabulary is Qwen3's
// (151936 rows), the rest as small as a Qwen3 can be.
void WriteTinyQwen3Directory(const std::string& dir) {
  std::filesystem::create_directories(dir);
  constexpr int kVocab = 151936, kHidden = 16, kIntermediate = 32, kHeads = 2, kKvHeads = 1,
                kHeadDim = 8;
  const Json config = {{"architectures", {"Qwen3ForSequenceClassification"}},
                       {"model_type", "qwen3"},
                       {"vocab_size", kVocab},
                       {"hidden_size", kHidden},
                       {"intermediate_size", kIntermediate},
                       {"num_hidden_layers", 1},
                       {"num_attention_heads", kHeads},
                       {"num_key_value_heads", kKvHeads},
                       {"head_dim", kHeadDim},
                       {"max_position_embeddings", 4096},
                       {"rms_norm_eps", 1e-6},
                       {"rope_theta", 1000000.0},
                       {"tie_word_embeddings", false},
                       {"hidden_act", "silu"},
                       {"pad_token_id", 151643},
                       {"num_labels", 1},
                       {"torch_dtype", "bfloat16"}};
  WriteFile(dir + "/config.json", config.dump(2));
  const std::vector<std::pair<std::string, std::vector<int64_t>>> tensors = {
      {"model.embed_tokens.weight", {kVocab, kHidden}},
      {"model.layers.0.input_layernorm.weight", {kHidden}},
      {"model.layers.0.self_attn.q_proj.weight", {kHeads * kHeadDim, kHidden}},
      {"model.layers.0.self_attn.k_proj.weight", {kKvHeads * kHeadDim, kHidden}},
      {"model.layers.0.self_attn.v_proj.weight", {kKvHeads * kHeadDim, kHidden}},
      {"model.layers.0.self_attn.o_proj.weight", {kHidden, kHeads * kHeadDim}},
      {"model.layers.0.self_attn.q_norm.weight", {kHeadDim}},
      {"model.layers.0.self_attn.k_norm.weight", {kHeadDim}},
      {"model.layers.0.post_attention_layernorm.weight", {kHidden}},
      {"model.layers.0.mlp.gate_proj.weight", {kIntermediate, kHidden}},
      {"model.layers.0.mlp.up_proj.weight", {kIntermediate, kHidden}},
      {"model.layers.0.mlp.down_proj.weight", {kHidden, kIntermediate}},
      {"model.norm.weight", {kHidden}},
      {"score.weight", {1, kHidden}}};
  std::mt19937 random(7);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  Json header = Json::object();
  std::string data;
  for (const auto& [name, shape] : tensors) {
    int64_t count = 1;
    for (int64_t d : shape) count *= d;
    const bool norm = name.find("norm") != std::string::npos;
    const size_t begin = data.size();
    for (int64_t i = 0; i < count; ++i) {
      const float value = norm ? 1.0f : normal(random);
      uint32_t bits;
      std::memcpy(&bits, &value, sizeof bits);
      const uint16_t bf16 = static_cast<uint16_t>(bits >> 16);  // truncation is a bf16 value too
      data.append(reinterpret_cast<const char*>(&bf16), sizeof bf16);
    }
    header[name] = {{"dtype", "BF16"}, {"shape", shape}, {"data_offsets", {begin, data.size()}}};
  }
  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');
  const uint64_t header_size = header_text.size();
  std::string file(reinterpret_cast<const char*>(&header_size), sizeof header_size);
  file += header_text + data;
  WriteFile(dir + "/model.safetensors", file);
  for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
    std::filesystem::copy_file(TestDataPath(std::string("tokenizers/qwen3/") + name),
                               dir + "/" + name);
  }
}

// The model families people bring: a Qwen3-layout directory with tokenizer.json imports with
// TRL's input rule and the chat format its template names, and scores a conversation. The
// chat rule builds the same input from a plain prompt and response, so a second import of the
// same weights under it gives the same score.
TEST_F(CliTest, ImportsAQwen3DirectoryAndScoresAConversation) {
  WriteTinyQwen3Directory(server().model_dir() + "/qwen3-rm");
  CommandResult imported = Verdict({"import", "qwen3-rm", "qwen3rm"});
  ASSERT_EQ(imported.exit_code, kExitOk) << Show(imported);
  EXPECT_THAT(imported.out, HasSubstr("imported qwen3rm version 1 (latest)"));
  CommandResult as_chat = Verdict({"import", "qwen3-rm", "qwen3chat", "--input-rule", "chat"});
  ASSERT_EQ(as_chat.exit_code, kExitOk) << Show(as_chat);
  CommandResult listed = Verdict({"models"});
  EXPECT_THAT(listed.out, AllOf(HasSubstr("concat/qwen3"), HasSubstr("chat/qwen3")));
  CommandResult json = Verdict({"--output", "json", "models", "qwen3rm"});
  ASSERT_EQ(json.exit_code, kExitOk) << Show(json);
  const Json model = Json::parse(json.out)["models"][0];
  EXPECT_EQ(model["modelType"], "qwen3");
  EXPECT_EQ(model["chatFormat"], "CHAT_FORMAT_QWEN3");
  EXPECT_EQ(model["inputRule"], "INPUT_RULE_CONCAT");

  const std::string question = "Write a haiku about rain.";
  const std::string haiku = "Soft rain on the roof\nthe gutter hums an old tune\nstreetlights blur";
  const Json conversation = {{"messages",
                              {{{"role", "user"}, {"content", question}},
                               {{"role", "assistant"}, {"content", haiku}}}}};
  CommandResult scored = Verdict({"score", "--model", "qwen3rm"}, conversation.dump() + "\n");
  ASSERT_EQ(scored.exit_code, kExitOk) << Show(scored);
  const double conversation_score = Json::parse(scored.out)["score"].get<double>();
  EXPECT_TRUE(std::isfinite(conversation_score));
  EXPECT_NEAR(ScoreOne("qwen3chat", question, haiku), conversation_score, 1e-5);
  // Under concat the same strings as plain text are other tokens (no template, an EOS).
  EXPECT_GT(std::abs(ScoreOne("qwen3rm", question, haiku) - conversation_score), 1e-6);
  // An empty response is scored too (a policy may generate nothing).
  CommandResult empty =
      Verdict({"score", "--model", "qwen3rm", "--prompt", question, "--response", ""});
  EXPECT_EQ(empty.exit_code, kExitOk) << Show(empty);
}

TEST_F(CliTest, ImportAndAliasRegisterAndMoveVersions) {
  const Trained& t = TinyModel();
  ASSERT_EQ(t.submit.exit_code, kExitOk);
  // Export the trained version's directory into --model_dir and import it under a new name.
  CommandResult models = Verdict({"--output", "json", "models", "tiny"});
  ASSERT_EQ(models.exit_code, kExitOk) << Show(models);
  const std::string storage = Json::parse(models.out)["models"][0]["storagePath"];
  std::filesystem::copy(server().state_dir() + "/" + storage, server().model_dir() + "/exported",
                        std::filesystem::copy_options::recursive);

  CommandResult imported = Verdict({"import", "exported", "copied", "--alias", "prod"});
  ASSERT_EQ(imported.exit_code, kExitOk) << Show(imported);
  EXPECT_THAT(imported.out, HasSubstr("imported copied version 1 (latest, prod)"));
  CommandResult list = Verdict({"models"});
  EXPECT_THAT(list.out, AllOf(HasSubstr("copied"), HasSubstr("import exported"),
                              HasSubstr("job " + t.job_id)));
  // The copy scores exactly as the original.
  EXPECT_NEAR(ScoreOne("copied:prod", "", " Hello."), ScoreOne("tiny:1", "", " Hello."), 1e-5);

  CommandResult second = Verdict({"import", "exported", "copied"});
  ASSERT_EQ(second.exit_code, kExitOk) << Show(second);
  CommandResult alias = Verdict({"alias", "copied", "2", "prod"});
  ASSERT_EQ(alias.exit_code, kExitOk) << Show(alias);
  EXPECT_EQ(alias.out, "copied version 2 (latest, prod)\n");
  CommandResult removed = Verdict({"alias", "--delete", "copied", "prod"});
  ASSERT_EQ(removed.exit_code, kExitOk) << Show(removed);
  CommandResult gone = Verdict({"score", "--model", "copied:prod", "--response", "x"});
  EXPECT_EQ(gone.exit_code, kExitError);
  EXPECT_THAT(gone.err, HasSubstr("verdict: NOT_FOUND: "));

  // Version 2 is `latest`, so only version 1 can go; its directory goes with it.
  CommandResult kept = Verdict({"models", "--delete", "copied", "2"});
  EXPECT_EQ(kept.exit_code, kExitError) << Show(kept);
  EXPECT_THAT(kept.err, HasSubstr("verdict: FAILED_PRECONDITION: "));
  CommandResult deleted = Verdict({"models", "--delete", "copied", "1"});
  ASSERT_EQ(deleted.exit_code, kExitOk) << Show(deleted);
  EXPECT_EQ(deleted.out, "deleted copied version 1\n");
  CommandResult left = Verdict({"--output", "json", "models", "copied"});
  ASSERT_EQ(left.exit_code, kExitOk) << Show(left);
  EXPECT_EQ(Json::parse(left.out)["models"].size(), 1u);
  EXPECT_EQ(Json::parse(left.out)["models"][0]["version"], "2");

  CommandResult missing = Verdict({"import", "not-there", "copied"});
  EXPECT_EQ(missing.exit_code, kExitError) << Show(missing);
  EXPECT_THAT(missing.err, HasSubstr("verdict: NOT_FOUND: "));
  CommandResult bad_alias = Verdict({"alias", "copied", "1", "latest"});
  EXPECT_EQ(bad_alias.exit_code, kExitError) << Show(bad_alias);
  EXPECT_THAT(bad_alias.err, HasSubstr("verdict: INVALID_ARGUMENT: "));
}

TEST_F(CliTest, ExportWritesADirectoryThatImportsBackAndScoresTheSame) {
  WriteTinyQwen3Directory(server().model_dir() + "/export-source");
  CommandResult imported = Verdict({"import", "export-source", "exportme"});
  ASSERT_EQ(imported.exit_code, kExitOk) << Show(imported);
  const std::string dir = server().model_dir() + "/exported-qwen3";
  CommandResult exported = Verdict({"export", "exportme:1", dir});
  ASSERT_EQ(exported.exit_code, kExitOk) << Show(exported);
  EXPECT_THAT(exported.out, HasSubstr("exported exportme version 1 to " + dir + " ("));
  EXPECT_TRUE(std::filesystem::is_regular_file(dir + "/config.json"));
  // The temporary directory next to DIR was renamed into place, not left behind.
  for (const auto& entry : std::filesystem::directory_iterator(server().model_dir())) {
    EXPECT_THAT(entry.path().filename().string(), Not(HasSubstr(".export-")));
  }

  CommandResult refused = Verdict({"export", "exportme", dir});
  EXPECT_EQ(refused.exit_code, kExitError) << Show(refused);
  EXPECT_THAT(refused.err, HasSubstr("is not empty; pass --force"));
  WriteFile(dir + "/stale.txt", "from before");
  CommandResult forced = Verdict({"export", "--force", "exportme:latest", dir});
  ASSERT_EQ(forced.exit_code, kExitOk) << Show(forced);
  EXPECT_FALSE(std::filesystem::exists(dir + "/stale.txt"));

  // The export loads back and scores exactly as the registered version.
  CommandResult reimported = Verdict({"import", "exported-qwen3", "reimported"});
  ASSERT_EQ(reimported.exit_code, kExitOk) << Show(reimported);
  for (const auto& [prompt, response] : std::vector<std::pair<std::string, std::string>>{
           {"Write a haiku about rain.", "Soft rain on the roof"}, {"", " Hello."}}) {
    EXPECT_EQ(ScoreOne("reimported:1", prompt, response), ScoreOne("exportme:1", prompt, response));
  }

  const std::string missing_dir = Scratch("never-written");
  CommandResult missing = Verdict({"export", "no-such-model", missing_dir});
  EXPECT_EQ(missing.exit_code, kExitError) << Show(missing);
  EXPECT_THAT(missing.err, HasSubstr("verdict: NOT_FOUND: "));
  EXPECT_FALSE(std::filesystem::exists(missing_dir));
}

TEST_F(CliTest, EvalWatchesToItsResultWhichModelsShowsAndTheAliasGateReads) {
  const Trained& t = TinyModel();
  ASSERT_EQ(t.submit.exit_code, kExitOk);
  CommandResult eval = Verdict({"eval", "tiny:latest", "--data",
                                TestDataPath("hh-rlhf/helpful-base/test.jsonl.gz"),
                                "--max-pairs", "50", "--watch", "--no-progress"});
  ASSERT_EQ(eval.exit_code, kExitOk) << Show(eval);
  EXPECT_THAT(eval.out, AllOf(HasSubstr("SUCCEEDED"), HasSubstr("tiny version 1 on dataset "),
                              HasSubstr("(50 pairs"), HasSubstr("|MARGIN|")));
  const std::string marker = "as dataset ";
  const size_t at = eval.err.find(marker);
  ASSERT_NE(at, std::string::npos) << Show(eval);
  const std::string dataset =
      eval.err.substr(at + marker.size(), eval.err.find(' ', at + marker.size()) - at - marker.size());

  CommandResult json = Verdict({"--output", "json", "models", "tiny"});
  ASSERT_EQ(json.exit_code, kExitOk) << Show(json);
  const Json evaluation = Json::parse(json.out)["models"][0]["evaluations"][0];
  EXPECT_EQ(evaluation["datasetId"], dataset);
  EXPECT_EQ(evaluation["pairs"], "50");  // int64 in the proto JSON mapping
  const double accuracy = evaluation.value("accuracy", 0.0);
  CommandResult listed = Verdict({"models", "tiny"});
  char shown[32];
  std::snprintf(shown, sizeof(shown), "%.4f ", accuracy);
  EXPECT_THAT(listed.out, AllOf(HasSubstr("EVAL"), HasSubstr(shown + dataset)));

  CommandResult refused = Verdict({"alias", "tiny", "1", "evalgate", "--require-accuracy",
                                   absl::StrCat(std::min(1.0, accuracy + 0.01)), "--eval-dataset",
                                   dataset});
  EXPECT_EQ(refused.exit_code, kExitError) << Show(refused);
  EXPECT_THAT(refused.err, AllOf(HasSubstr("FAILED_PRECONDITION"), HasSubstr("below require_accuracy")));
  CommandResult allowed = Verdict({"alias", "tiny", "1", "evalgate", "--require-accuracy",
                                   absl::StrCat(std::max(0.001, accuracy - 0.01)), "--eval-dataset",
                                   dataset});
  EXPECT_EQ(allowed.exit_code, kExitOk) << Show(allowed);
  CommandResult no_data = Verdict({"eval", "tiny"});
  EXPECT_EQ(no_data.exit_code, kExitUsage) << Show(no_data);
}

TEST_F(CliTest, HealthReportsEachService) {
  CommandResult r = Verdict({"health"});
  ASSERT_EQ(r.exit_code, kExitOk) << Show(r);
  EXPECT_THAT(r.out, AllOf(::testing::ContainsRegex("\\(server\\) +SERVING"),
                           ::testing::ContainsRegex("verdict.v1.TrainingService +SERVING")));
  ASSERT_EQ(TinyModel().submit.exit_code, kExitOk);
  ScoreOne("tiny", "", "load it");  // the scoring service serves once a model is loaded
  CommandResult scoring =
      Verdict({"--output", "json", "health", "--service", "verdict.v1.ScoringService"});
  EXPECT_EQ(scoring.exit_code, kExitOk) << Show(scoring);
  EXPECT_EQ(Json::parse(scoring.out)["verdict.v1.ScoringService"], "SERVING");
  CommandResult unknown = Verdict({"health", "--service", "no.such.Service"});
  EXPECT_EQ(unknown.exit_code, kExitError) << Show(unknown);
  EXPECT_THAT(unknown.out, HasSubstr("SERVICE_UNKNOWN"));
}

// `verdict submit --world-size 2` trains with two verdict-train ranks under the server:
// `watch` shows one stream of steps, the same as the single-process job with the same global
// batch, and the two registered models score alike (the weights are compared to 1e-5 in
// tests/server/distributed_training_test.cc).
TEST_F(CliTest, SubmitWithWorldSizeTwoTrainsTheModelOneProcessTrains) {
  std::filesystem::copy_file(SyntheticData(), server().data_dir() + "/synthetic.jsonl",
                             std::filesystem::copy_options::overwrite_existing);
  // DataParallelTest's settings (tests/core/train/data_parallel_worker.cc says why).
  const std::string yaml = Scratch("data-parallel.yaml");
  WriteFile(yaml,
            "hyperparameters: {adam_epsilon: 1e-6, center_rewards_coefficient: 0.01}\n"
            "data_options: {max_train_pairs: 200}\n");
  auto train = [&](int world_size) {
    return Verdict({"submit", "--file", yaml, "--data-path", "synthetic.jsonl", "--preset",
                    "encoder-tiny", "--vocab-size", "400", "--max-steps", "6", "--logging-steps",
                    "1", "--lr", "1e-3", "--max-length", "64", "--eval-max-pairs", "16",
                    "--batch-size", std::to_string(16 / world_size), "--world-size",
                    std::to_string(world_size), "--name", absl::StrCat("ranks", world_size),
                    "--watch", "--no-progress"});
  };
  const CommandResult one = train(1);
  ASSERT_EQ(one.exit_code, kExitOk) << Show(one) << "\nserver log:\n" << server().log();
  const CommandResult two = train(2);
  ASSERT_EQ(two.exit_code, kExitOk) << Show(two) << "\nserver log:\n" << server().log();
  EXPECT_THAT(two.out, AllOf(HasSubstr("QUEUED -> RUNNING"), HasSubstr("RUNNING -> SUCCEEDED"),
                             HasSubstr("model ranks2 version 1")));
  // One stream: each step once, with the single process's loss (printed to 4 decimals).
  auto step_lines = [](const std::string& out) {
    std::vector<std::string> lines;
    for (absl::string_view line : absl::StrSplit(out, '\n')) {
      if (absl::StartsWith(line, "step ")) lines.emplace_back(line.substr(0, line.find("  acc")));
    }
    return lines;
  };
  const std::vector<std::string> steps = step_lines(two.out);
  ASSERT_EQ(steps.size(), 6u) << two.out;
  for (int i = 0; i < 6; ++i) EXPECT_THAT(steps[i], ::testing::StartsWith(absl::StrCat("step ", i + 1, "/6")));
  EXPECT_EQ(steps, step_lines(one.out));
  for (const char* response : {"Sure, here it is.", "I cannot help with that."}) {
    EXPECT_NEAR(ScoreOne("ranks2", "How do I boil an egg?", response),
                ScoreOne("ranks1", "How do I boil an egg?", response), 1e-4);
  }
}

TEST_F(CliTest, SubmitReadsYamlAndJsonJobFilesWithFlagsOverriding) {
  std::filesystem::copy_file(SyntheticData(), server().data_dir() + "/synthetic.jsonl",
                             std::filesystem::copy_options::overwrite_existing);
  const std::string yaml = Scratch("job.yaml");
  WriteFile(yaml,
            "# a job file\n"
            "output_model_name: 2024-model   # digits first: must stay a string\n"
            "preset: encoder-tiny\n"
            "tokenizer: {train: {vocab_size: 400, model_type: bpe}}\n"
            "train_data: {path: synthetic.jsonl}\n"
            "hyperparameters:\n"
            "  learningRate: 3e-4\n"
            "  max_steps: 5\n"
            "  truncation: drop\n"
            "  group_by_length: no\n"
            "logging_steps: 1\n");
  CommandResult r = Verdict({"--output", "json", "submit", "--file", yaml, "--max-steps", "7",
                             "--seed", "9", "--prefix-sharing=false", "--validate-only"});
  ASSERT_EQ(r.exit_code, kExitOk) << Show(r);
  const Json spec = Json::parse(r.out)["spec"];
  EXPECT_EQ(spec["outputModelName"], "2024-model");
  EXPECT_EQ(spec["preset"], "encoder-tiny");
  EXPECT_EQ(spec["tokenizer"]["train"]["modelType"], "SENTENCE_PIECE_MODEL_TYPE_BPE");
  EXPECT_EQ(spec["hyperparameters"]["learningRate"], 3e-4);
  EXPECT_EQ(spec["hyperparameters"]["maxSteps"], "7");  // the flag wins
  EXPECT_EQ(spec["hyperparameters"]["seed"], "9");
  EXPECT_EQ(spec["hyperparameters"]["truncation"], "TRUNCATION_POLICY_DROP");
  EXPECT_EQ(spec["hyperparameters"]["groupByLength"], false);
  EXPECT_EQ(spec["hyperparameters"]["prefixSharing"], false);

  const std::string json = Scratch("job.json");
  WriteFile(json, R"({"spec": {"outputModelName": "from-json", "preset": "encoder-tiny",
                      "trainData": {"path": "synthetic.jsonl"}}, "validateOnly": true})");
  CommandResult j = Verdict({"--output", "json", "submit", "--file", json});
  ASSERT_EQ(j.exit_code, kExitOk) << Show(j);
  EXPECT_EQ(Json::parse(j.out)["spec"]["outputModelName"], "from-json");
  EXPECT_EQ(Json::parse(j.out)["spec"]["hyperparameters"]["prefixSharing"], true);  // default
  EXPECT_EQ(Json::parse(j.out)["id"], nullptr);  // validate_only creates nothing

  WriteFile(yaml, "hyperparameters:\n  lerning_rate: 0.1\n");
  CommandResult typo = Verdict({"submit", "--file", yaml});
  EXPECT_EQ(typo.exit_code, kExitError) << Show(typo);
  EXPECT_THAT(typo.err, HasSubstr("job.yaml: hyperparameters.lerning_rate: no such field in "
                                  "verdict.v1.Hyperparameters"));

  // The server's validation names the field.
  CommandResult invalid = Verdict({"submit", "--data-path", "synthetic.jsonl", "--lr", "-1"});
  EXPECT_EQ(invalid.exit_code, kExitError) << Show(invalid);
  EXPECT_THAT(invalid.err,
              HasSubstr("verdict: INVALID_ARGUMENT: spec.hyperparameters.learning_rate"));
}

TEST_F(CliTest, SubmitWithARequestIdIsIdempotent) {
  std::filesystem::copy_file(SyntheticData(), server().data_dir() + "/idempotent.jsonl",
                             std::filesystem::copy_options::overwrite_existing);
  const std::vector<std::string> submit = {
      "submit",       "--data-path",  "idempotent.jsonl", "--preset", "encoder-tiny",
      "--vocab-size", "400",          "--max-steps",      "1",        "--name",
      "idempotent",   "--request-id", "run-2024-11-29.a"};
  CommandResult first = Verdict(submit);
  ASSERT_EQ(first.exit_code, kExitOk) << Show(first);
  CommandResult again = Verdict(submit);
  ASSERT_EQ(again.exit_code, kExitOk) << Show(again);
  EXPECT_EQ(again.out, first.out);  // the same job id
  std::vector<std::string> changed = submit;
  changed[8] = "2";  // --max-steps
  CommandResult conflict = Verdict(changed);
  EXPECT_EQ(conflict.exit_code, kExitError) << Show(conflict);
  EXPECT_THAT(conflict.err, AllOf(HasSubstr("verdict: ALREADY_EXISTS: "),
                                  HasSubstr(std::string(absl::StripAsciiWhitespace(first.out)))));
}

TEST(CliAuthTest, TheTokenIsSentAsABearerHeader) {
  ScratchDir dir;
  WriteFile(dir.Path("token"), "s3cret\n");
  ServerProcess server(dir.Path("server"), 0, {"--token_file=" + dir.Path("token")});
  ASSERT_FALSE(server.address().empty());
  const std::vector<std::string> jobs = {VERDICT_CLI_PATH, "--server", server.address(), "jobs"};
  CommandResult none = RunCommand(jobs);
  EXPECT_EQ(none.exit_code, kExitError) << Show(none);
  EXPECT_THAT(none.err, AllOf(HasSubstr("verdict: UNAUTHENTICATED: "), HasSubstr("--token")));
  std::vector<std::string> with_flag = jobs;
  with_flag.insert(with_flag.end(), {"--token", "s3cret"});
  EXPECT_EQ(RunCommand(with_flag).exit_code, kExitOk);
  EXPECT_EQ(RunCommand(jobs, "", {"VERDICT_TOKEN=s3cret"}).exit_code, kExitOk);
  EXPECT_EQ(RunCommand(jobs, "", {"VERDICT_TOKEN=wrong"}).exit_code, kExitError);
}

TEST(CliTlsTest, TlsConnectsWithTheGivenRootCertificate) {
  ScratchDir dir;
  // A self-signed certificate (Debian's openssl tool) for 127.0.0.1 and "verdict.test".
  CommandResult cert =
      RunCommand({"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                  "-keyout", dir.Path("key.pem"), "-out", dir.Path("cert.pem"), "-subj",
                  "/CN=verdict.test", "-addext", "subjectAltName=IP:127.0.0.1,DNS:verdict.test"});
  ASSERT_EQ(cert.exit_code, 0) << Show(cert);
  ServerProcess server(dir.Path("server"), 0,
                       {"--tls_cert=" + dir.Path("cert.pem"), "--tls_key=" + dir.Path("key.pem")});
  ASSERT_FALSE(server.address().empty());
  auto jobs = [&](std::vector<std::string> flags) {
    std::vector<std::string> argv = {VERDICT_CLI_PATH, "--server", server.address(), "jobs"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    return RunCommand(argv, "", {}, 30);
  };
  CommandResult ok = jobs({"--tls", "--ca", dir.Path("cert.pem")});
  EXPECT_EQ(ok.exit_code, kExitOk) << Show(ok);
  EXPECT_EQ(ok.out, "no jobs\n");
  CommandResult renamed =
      jobs({"--tls", "--ca", dir.Path("cert.pem"), "--tls-server-name", "verdict.test"});
  EXPECT_EQ(renamed.exit_code, kExitOk) << Show(renamed);
  // Plain text to a TLS port, and TLS without the right roots, do not get through.
  EXPECT_EQ(jobs({}).exit_code, kExitUnreachable);
  EXPECT_EQ(jobs({"--tls"}).exit_code, kExitUnreachable);
  CommandResult no_ca = jobs({"--tls", "--ca", dir.Path("missing.pem")});
  EXPECT_EQ(no_ca.exit_code, kExitError) << Show(no_ca);
  EXPECT_THAT(no_ca.err, HasSubstr("--ca: "));
  CommandResult ca_alone = jobs({"--ca", dir.Path("cert.pem")});
  EXPECT_EQ(ca_alone.exit_code, kExitUsage) << Show(ca_alone);
}

// --tls-cert/--tls-key: the client certificate a server started with --tls_client_ca requires.
TEST(CliTlsTest, MutualTlsSendsTheClientCertificate) {
  ScratchDir dir;
  auto self_signed = [&](const std::string& name, const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048",
                                     "-nodes", "-days", "1", "-keyout", dir.Path(name + ".key"),
                                     "-out", dir.Path(name + ".pem")};
    argv.insert(argv.end(), extra.begin(), extra.end());
    CommandResult made = RunCommand(argv);
    ASSERT_EQ(made.exit_code, 0) << Show(made);
  };
  self_signed("server", {"-subj", "/CN=verdict.test", "-addext", "subjectAltName=IP:127.0.0.1"});
  // Self-signed: the client certificate is its own CA (--tls_client_ca).
  self_signed("client", {"-subj", "/CN=cli-client"});
  WriteFile(dir.Path("tokens"), "admin ops cli-admin-token-1\n");
  ServerProcess server(dir.Path("server"), 0,
                       {"--tls_cert=" + dir.Path("server.pem"),
                        "--tls_key=" + dir.Path("server.key"),
                        "--tls_client_ca=" + dir.Path("client.pem"),
                        "--token_file=" + dir.Path("tokens")});
  ASSERT_FALSE(server.address().empty());
  auto jobs = [&](std::vector<std::string> flags) {
    std::vector<std::string> argv = {VERDICT_CLI_PATH, "--server", server.address(), "--tls",
                                     "--ca", dir.Path("server.pem"), "--token",
                                     "cli-admin-token-1", "jobs"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    return RunCommand(argv, "", {}, 30);
  };
  CommandResult ok = jobs({"--tls-cert", dir.Path("client.pem"), "--tls-key", dir.Path("client.key")});
  EXPECT_EQ(ok.exit_code, kExitOk) << Show(ok);
  EXPECT_EQ(ok.out, "no jobs\n");
  // Without a client certificate the handshake fails.
  EXPECT_EQ(jobs({}).exit_code, kExitUnreachable);
  // A certificate without its key is a usage error, as is an unreadable one.
  EXPECT_EQ(jobs({"--tls-cert", dir.Path("client.pem")}).exit_code, kExitUsage);
  CommandResult missing =
      jobs({"--tls-cert", dir.Path("missing.pem"), "--tls-key", dir.Path("client.key")});
  EXPECT_EQ(missing.exit_code, kExitError) << Show(missing);
  EXPECT_THAT(missing.err, HasSubstr("--tls-cert: "));
}

TEST(CliWatchTest, WatchSurvivesAServerRestartAndResumes) {
  ScratchDir dir;
  auto server = std::make_unique<ServerProcess>(dir.Path("server"));
  ASSERT_FALSE(server->address().empty());
  const std::string address = server->address();
  const int port = server->port();
  CommandResult submit =
      RunCommand({VERDICT_CLI_PATH, "--server", address, "submit", "--train", SyntheticData(),
                  "--preset", "encoder-tiny", "--vocab-size", "400", "--max-steps", "80",
                  "--save-steps", "20", "--logging-steps", "10", "--name", "restarted"});
  ASSERT_EQ(submit.exit_code, kExitOk) << Show(submit);
  const std::string job(absl::StripAsciiWhitespace(submit.out));

  const std::string watch_log = dir.Path("watch.log");
  BackgroundProcess watch({VERDICT_CLI_PATH, "--server", address, "watch", job}, watch_log);
  auto watched = [&] {
    std::ifstream in(watch_log);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  };
  // Restart the server once training is under way; the job resumes from its checkpoint.
  for (int i = 0; i < 600 && watched().find("step 30/80") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_THAT(watched(), HasSubstr("step 30/80")) << watched() << server->log();
  EXPECT_EQ(server->Stop(), 0) << server->log();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  server = std::make_unique<ServerProcess>(dir.Path("server"), port);
  ASSERT_EQ(server->address(), address);

  const int exit_code = watch.Wait(180);
  const std::string out = watched();
  EXPECT_EQ(exit_code, kExitOk) << out << server->log();
  EXPECT_THAT(out, AllOf(HasSubstr("connection lost ("), HasSubstr("reconnecting in"),
                         HasSubstr("step 80/80"), HasSubstr("job " + job + " SUCCEEDED")));
}

}  // namespace
}  // namespace verdict::testing
