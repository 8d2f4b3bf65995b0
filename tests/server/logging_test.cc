#include "server/logging.h"

#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace verdict {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

// 2026-11-29T14:00:00.123Z
const absl::Time kTime = absl::FromUnixMillis(1795960800123);

LoggerOptions Options(LogFormat format, LogLevel min_level = LogLevel::kDebug) {
  LoggerOptions options;
  options.format = format;
  options.min_level = min_level;
  options.clock = [] { return kTime; };
  return options;
}

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

TEST(LoggerTest, WritesTextEventsAsOneLineWithTimestampLevelNameAndFields) {
  std::ostringstream out;
  Logger logger(Options(LogFormat::kText), out);
  logger.Info("job.started").With("job_id", "abc").With("step", 3);
  EXPECT_EQ(out.str(), "2026-11-29T14:00:00.123Z INFO job.started job_id=abc step=3\n");
}

TEST(LoggerTest, QuotesAndEscapesTextValuesThatNeedIt) {
  std::ostringstream out;
  Logger logger(Options(LogFormat::kText), out);
  logger.Warning("x")
      .With("spaces", "two words")
      .With("empty", "")
      .With("quote", "say \"hi\"")
      .With("equals", "a=b")
      .With("newline", "line1\nline2\\")
      .With("control", std::string("a\x01"
                                   "b"))
      .With("utf8", "naïve")
      .With("path", "/var/lib/verdict");
  EXPECT_EQ(out.str(),
            "2026-11-29T14:00:00.123Z WARNING x spaces=\"two words\" empty=\"\" "
            "quote=\"say \\\"hi\\\"\" equals=\"a=b\" newline=\"line1\\nline2\\\\\" "
            "control=\"a\\x01b\" utf8=naïve path=/var/lib/verdict\n");
}

TEST(LoggerTest, WritesTypedValuesInText) {
  std::ostringstream out;
  Logger logger(Options(LogFormat::kText), out);
  const uint64_t big = std::numeric_limits<uint64_t>::max();
  logger.Error("job.failed")
      .With("loss", 0.693147)
      .With("ok", false)
      .With("count", int64_t{-5})
      .With("bytes", big)
      .With("error", absl::NotFoundError("no job x"));
  EXPECT_EQ(out.str(),
            "2026-11-29T14:00:00.123Z ERROR job.failed loss=0.693147 ok=false count=-5 "
            "bytes=18446744073709551615 error=\"NOT_FOUND: no job x\"\n");
}

TEST(LoggerTest, WritesOneJsonObjectPerLineWithTypedFields) {
  std::ostringstream out;
  Logger logger(Options(LogFormat::kJson), out);
  logger.Info("job.started")
      .With("job_id", "abc")
      .With("step", 3)
      .With("loss", 0.25)
      .With("resumed", true)
      .With("note", "two words \"quoted\"\n")
      .With("nan", std::nan(""))
      .With("level", "shadowed");
  logger.Debug("second");

  const std::vector<std::string> lines = Lines(out.str());
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].find('\n'), std::string::npos);
  const auto event = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(event["ts"], "2026-11-29T14:00:00.123Z");
  EXPECT_EQ(event["level"], "INFO");
  EXPECT_EQ(event["event"], "job.started");
  EXPECT_EQ(event["job_id"], "abc");
  EXPECT_EQ(event["step"], 3);
  EXPECT_TRUE(event["step"].is_number_integer());
  EXPECT_EQ(event["loss"], 0.25);
  EXPECT_EQ(event["resumed"], true);
  EXPECT_EQ(event["note"], "two words \"quoted\"\n");
  EXPECT_TRUE(event["nan"].is_null());
  EXPECT_EQ(event["_level"], "shadowed");
  // Fields keep the order they were added in, after the fixed keys.
  EXPECT_EQ(
      lines[0].rfind(
          R"({"ts":"2026-11-29T14:00:00.123Z","level":"INFO","event":"job.started","job_id":"abc",)",
          0),
      0u);
  EXPECT_EQ(nlohmann::json::parse(lines[1])["level"], "DEBUG");
}

TEST(LoggerTest, ReplacesInvalidUtf8InJsonInsteadOfThrowing) {
  std::ostringstream out;
  Logger logger(Options(LogFormat::kJson), out);
  logger.Info("upload").With("name", std::string("bad\xff"
                                                 "byte"));
  const auto event = nlohmann::json::parse(Lines(out.str()).at(0));
  EXPECT_EQ(event["name"],
            "bad\xEF\xBF\xBD"
            "byte");  // U+FFFD
}

TEST(LoggerTest, DropsEventsBelowTheMinimumLevel) {
  std::ostringstream out;
  Logger logger(Options(LogFormat::kText, LogLevel::kWarning), out);
  EXPECT_FALSE(logger.Enabled(LogLevel::kInfo));
  EXPECT_TRUE(logger.Enabled(LogLevel::kError));
  logger.Debug("a").With("k", 1);
  logger.Info("b").With("k", "v");
  EXPECT_THAT(out.str(), IsEmpty());
  logger.Warning("c");
  logger.Error("d");
  logger.Write(LogLevel::kInfo, "e", {{"k", LogValue(int64_t{1})}});
  logger.Write(LogLevel::kError, "f", {{"k", LogValue(int64_t{1})}});
  EXPECT_EQ(out.str(),
            "2026-11-29T14:00:00.123Z WARNING c\n2026-11-29T14:00:00.123Z ERROR d\n"
            "2026-11-29T14:00:00.123Z ERROR f k=1\n");
}

TEST(LoggerTest, KeepsLinesWholeUnderConcurrentWriters) {
  std::ostringstream out;
  Logger logger(Options(LogFormat::kJson), out);
  constexpr int kThreads = 8;
  constexpr int kEventsPerThread = 500;
  const std::string padding(200, 'x');
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEventsPerThread; ++i) {
        logger.Info("tick").With("thread", t).With("i", i).With("padding", padding);
      }
    });
  }
  for (auto& thread : threads) thread.join();

  const std::vector<std::string> lines = Lines(out.str());
  ASSERT_EQ(lines.size(), static_cast<size_t>(kThreads * kEventsPerThread));
  std::vector<int> next(kThreads, 0);
  for (const std::string& line : lines) {
    const auto event = nlohmann::json::parse(line);  // throws on a torn line
    const int t = event["thread"];
    EXPECT_EQ(event["i"], next[t]) << "events of one thread stay in order";
    next[t] = event["i"].get<int>() + 1;
    EXPECT_EQ(event["padding"], padding);
  }
}

TEST(LogFlagsTest, ParsesLevelsAndFormatsAndNamesTheBadValue) {
  EXPECT_EQ(*ParseLogLevel("debug"), LogLevel::kDebug);
  EXPECT_EQ(*ParseLogLevel("INFO"), LogLevel::kInfo);
  EXPECT_EQ(*ParseLogLevel("warn"), LogLevel::kWarning);
  EXPECT_EQ(*ParseLogLevel("Warning"), LogLevel::kWarning);
  EXPECT_EQ(*ParseLogLevel("error"), LogLevel::kError);
  EXPECT_EQ(*ParseLogFormat("text"), LogFormat::kText);
  EXPECT_EQ(*ParseLogFormat("JSON"), LogFormat::kJson);

  const auto bad_level = ParseLogLevel("verbose");
  ASSERT_FALSE(bad_level.ok());
  EXPECT_EQ(bad_level.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad_level.status().message()), HasSubstr("verbose"));
  EXPECT_FALSE(ParseLogFormat("xml").ok());
  EXPECT_EQ(LogLevelName(LogLevel::kWarning), "WARNING");
}

}  // namespace
}  // namespace verdict
