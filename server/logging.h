// Logger: structured, leveled event logs, one line per event.
//
// An event is a dotted name plus typed key/value fields, never a free-form sentence, so that
// logs can be grepped and machine-read in the same shape:
//
//   text (the default, for people):
//     2026-11-29T14:00:00.123Z INFO job.started job_id=abc step=3 note="two words"
//   json (for log collectors), one object per line:
//     {"ts":"2026-11-29T14:00:00.123Z","level":"INFO","event":"job.started","job_id":"abc",
//      "step":3,"note":"two words"}
//
// Text values are written bare when they hold only printable ASCII other than space, '"' and
// '=', or UTF-8 (bytes >= 0x80); otherwise (and when empty) they are double-quoted with
// \" \\ \n \r \t and \xHH escapes. JSON values keep their type (numbers, booleans, strings;
// non-finite numbers become null). Keys should be snake_case identifiers; a field key that
// would collide with "ts", "level" or "event" is written with a leading underscore ("_level").
//
// The Logger is an object the server builds once in main and passes to whatever logs (no
// global): tests give each component a Logger writing to a std::ostringstream.
//
// Thread safety: a Logger may be used from any number of threads; each event is formatted on
// the calling thread and written under a mutex with one write of a whole line, so lines never
// interleave. A LogEvent belongs to the thread that made it.
//
// Example:
//   Logger logger({LogFormat::kJson, LogLevel::kInfo});  // writes to std::cerr
//   logger.Info("job.started").With("job_id", id).With("step", 3);
//   logger.Error("job.failed").With("job_id", id).With("error", status);
// The event is written when the LogEvent temporary is destroyed, i.e. at the end of the
// statement. Events below the logger's level cost one comparison and are not formatted.
#ifndef VERDICT_SERVER_LOGGING_H_
#define VERDICT_SERVER_LOGGING_H_

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace verdict {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };
enum class LogFormat { kText, kJson };

// "DEBUG", "INFO", "WARNING", "ERROR".
absl::string_view LogLevelName(LogLevel level);
// Parses a --log_level flag: "debug", "info", "warning" (or "warn"), "error"; any case.
absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view text);
// Parses a --log_format flag: "text" or "json"; any case.
absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view text);

// One typed field value.
using LogValue = std::variant<std::string, int64_t, uint64_t, double, bool>;

struct LogField {
  std::string key;
  LogValue value;
};

struct LoggerOptions {
  LogFormat format = LogFormat::kText;
  LogLevel min_level = LogLevel::kInfo;
  // Where timestamps come from; tests pin it.
  std::function<absl::Time()> clock = [] { return absl::Now(); };
};

class LogEvent;

class Logger {
 public:
  // Writes to std::cerr.
  explicit Logger(LoggerOptions options);
  // Writes to `out`, which must outlive the logger.
  Logger(LoggerOptions options, std::ostream& out);

  Logger(const Logger&) = delete;
  Logger& operator=(const Logger&) = delete;

  bool Enabled(LogLevel level) const { return level >= options_.min_level; }

  // An event written when the returned object is destroyed; add fields with With().
  LogEvent Event(LogLevel level, absl::string_view name);
  LogEvent Debug(absl::string_view name);
  LogEvent Info(absl::string_view name);
  LogEvent Warning(absl::string_view name);
  LogEvent Error(absl::string_view name);

  // Writes one event now, if `level` is enabled.
  void Write(LogLevel level, absl::string_view name, const std::vector<LogField>& fields);

  // The line Write() would emit, without its trailing newline (exposed for tests).
  std::string Format(absl::Time time, LogLevel level, absl::string_view name,
                     const std::vector<LogField>& fields) const;

 private:
  const LoggerOptions options_;
  absl::Mutex mutex_;
  std::ostream* const out_ ABSL_PT_GUARDED_BY(mutex_);
};

// A pending event: fields are collected by With() and the line is written by the destructor.
// Made by Logger::Event and friends, used within one statement.
class LogEvent {
 public:
  // `logger` null means disabled: With() does nothing and nothing is written.
  LogEvent(Logger* logger, LogLevel level, absl::string_view name);
  ~LogEvent();

  LogEvent(const LogEvent&) = delete;
  LogEvent& operator=(const LogEvent&) = delete;

  LogEvent& With(absl::string_view key, absl::string_view value);
  LogEvent& With(absl::string_view key, const std::string& value);
  LogEvent& With(absl::string_view key, const char* value);
  LogEvent& With(absl::string_view key, bool value);
  LogEvent& With(absl::string_view key, double value);
  // A status is written as its code name and message ("NOT_FOUND: no job x"), "OK" if ok.
  LogEvent& With(absl::string_view key, const absl::Status& status);
  template <typename Int,
            std::enable_if_t<std::is_integral_v<Int> && !std::is_same_v<Int, bool>, int> = 0>
  LogEvent& With(absl::string_view key, Int value) {
    if constexpr (std::is_signed_v<Int>) {
      return Add(key, LogValue(static_cast<int64_t>(value)));
    } else {
      return Add(key, LogValue(static_cast<uint64_t>(value)));
    }
  }

 private:
  LogEvent& Add(absl::string_view key, LogValue value);

  Logger* const logger_;
  const LogLevel level_;
  std::string name_;
  std::vector<LogField> fields_;
};

}  // namespace verdict

#endif  // VERDICT_SERVER_LOGGING_H_
