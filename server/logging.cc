#include "server/logging.h"

#include <cmath>
#include <iostream>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace verdict {
namespace {

std::string FormatTimestamp(absl::Time time) {
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E3SZ", time, absl::UTCTimeZone());
}

bool NeedsQuotes(absl::string_view value) {
  if (value.empty()) return true;
  for (const char c : value) {
    const auto byte = static_cast<unsigned char>(c);
    // Bytes >= 0x80 are UTF-8 and stay readable as they are.
    if (byte <= 0x20 || byte == 0x7f || c == '"' || c == '=') return true;
  }
  return false;
}

void AppendTextValue(absl::string_view value, std::string* out) {
  if (!NeedsQuotes(value)) {
    absl::StrAppend(out, value);
    return;
  }
  out->push_back('"');
  for (const char c : value) {
    const auto byte = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (byte < 0x20 || byte == 0x7f) {
          absl::StrAppendFormat(out, "\\x%02x", byte);
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

std::string TextOf(const LogValue& value) {
  struct Visitor {
    std::string operator()(const std::string& v) const { return v; }
    std::string operator()(int64_t v) const { return absl::StrCat(v); }
    std::string operator()(uint64_t v) const { return absl::StrCat(v); }
    std::string operator()(double v) const { return absl::StrCat(v); }
    std::string operator()(bool v) const { return v ? "true" : "false"; }
  };
  return std::visit(Visitor{}, value);
}

nlohmann::ordered_json JsonOf(const LogValue& value) {
  struct Visitor {
    nlohmann::ordered_json operator()(const std::string& v) const { return v; }
    nlohmann::ordered_json operator()(int64_t v) const { return v; }
    nlohmann::ordered_json operator()(uint64_t v) const { return v; }
    nlohmann::ordered_json operator()(double v) const {
      if (!std::isfinite(v)) return nullptr;
      return v;
    }
    nlohmann::ordered_json operator()(bool v) const { return v; }
  };
  return std::visit(Visitor{}, value);
}

bool IsReservedKey(absl::string_view key) {
  return key == "ts" || key == "level" || key == "event";
}

}  // namespace

absl::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "DEBUG";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kWarning:
      return "WARNING";
    case LogLevel::kError:
      return "ERROR";
  }
  return "UNKNOWN";
}

absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "debug") return LogLevel::kDebug;
  if (lower == "info") return LogLevel::kInfo;
  if (lower == "warning" || lower == "warn") return LogLevel::kWarning;
  if (lower == "error") return LogLevel::kError;
  return absl::InvalidArgumentError(
      absl::StrCat("log level \"", text, "\" is not one of debug, info, warning, error"));
}

absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "text") return LogFormat::kText;
  if (lower == "json") return LogFormat::kJson;
  return absl::InvalidArgumentError(
      absl::StrCat("log format \"", text, "\" is not one of text, json"));
}

Logger::Logger(LoggerOptions options) : Logger(std::move(options), std::cerr) {}

Logger::Logger(LoggerOptions options, std::ostream& out)
    : options_(std::move(options)), out_(&out) {}

LogEvent Logger::Event(LogLevel level, absl::string_view name) {
  return LogEvent(Enabled(level) ? this : nullptr, level, name);
}
LogEvent Logger::Debug(absl::string_view name) { return Event(LogLevel::kDebug, name); }
LogEvent Logger::Info(absl::string_view name) { return Event(LogLevel::kInfo, name); }
LogEvent Logger::Warning(absl::string_view name) { return Event(LogLevel::kWarning, name); }
LogEvent Logger::Error(absl::string_view name) { return Event(LogLevel::kError, name); }

void Logger::Write(LogLevel level, absl::string_view name, const std::vector<LogField>& fields) {
  if (!Enabled(level)) return;
  std::string line = Format(options_.clock(), level, name, fields);
  line.push_back('\n');
  absl::MutexLock lock(&mutex_);
  out_->write(line.data(), static_cast<std::streamsize>(line.size()));
  out_->flush();
}

std::string Logger::Format(absl::Time time, LogLevel level, absl::string_view name,
                           const std::vector<LogField>& fields) const {
  if (options_.format == LogFormat::kJson) {
    nlohmann::ordered_json object;
    object["ts"] = FormatTimestamp(time);
    object["level"] = std::string(LogLevelName(level));
    object["event"] = std::string(name);
    for (const LogField& field : fields) {
      object[IsReservedKey(field.key) ? "_" + field.key : field.key] = JsonOf(field.value);
    }
    // Invalid UTF-8 in a value (text from a client, say) becomes U+FFFD instead of throwing.
    return object.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  }
  std::string line = absl::StrCat(FormatTimestamp(time), " ", LogLevelName(level), " ", name);
  for (const LogField& field : fields) {
    absl::StrAppend(&line, " ", IsReservedKey(field.key) ? "_" : "", field.key, "=");
    AppendTextValue(TextOf(field.value), &line);
  }
  return line;
}

LogEvent::LogEvent(Logger* logger, LogLevel level, absl::string_view name)
    : logger_(logger), level_(level), name_(logger != nullptr ? std::string(name) : "") {}

LogEvent::~LogEvent() {
  if (logger_ != nullptr) logger_->Write(level_, name_, fields_);
}

LogEvent& LogEvent::Add(absl::string_view key, LogValue value) {
  if (logger_ != nullptr) fields_.push_back({std::string(key), std::move(value)});
  return *this;
}

LogEvent& LogEvent::With(absl::string_view key, absl::string_view value) {
  if (logger_ == nullptr) return *this;  // skip the copy for disabled events
  return Add(key, LogValue(std::string(value)));
}
LogEvent& LogEvent::With(absl::string_view key, const std::string& value) {
  if (logger_ == nullptr) return *this;
  return Add(key, LogValue(value));
}
LogEvent& LogEvent::With(absl::string_view key, const char* value) {
  return With(key, absl::string_view(value == nullptr ? "" : value));
}
LogEvent& LogEvent::With(absl::string_view key, bool value) { return Add(key, LogValue(value)); }
LogEvent& LogEvent::With(absl::string_view key, double value) { return Add(key, LogValue(value)); }
LogEvent& LogEvent::With(absl::string_view key, const absl::Status& status) {
  if (logger_ == nullptr) return *this;
  return Add(key, LogValue(status.ToString()));
}

}  // namespace verdict
