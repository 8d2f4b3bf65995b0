#include "client/output.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <ctime>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace verdict::client {

std::string StatusCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    default:
      return absl::StrCat("CODE_", static_cast<int>(code));
  }
}

absl::Status FromGrpc(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

int ReportRpcError(const grpc::Status& status, absl::string_view server, std::ostream& err) {
  return ReportRpcError(FromGrpc(status), server, err);
}

int ReportRpcError(const absl::Status& status, absl::string_view server, std::ostream& err) {
  const auto code = static_cast<grpc::StatusCode>(status.code());
  err << "verdict: " << StatusCodeName(code) << ": " << status.message() << "\n";
  switch (code) {
    case grpc::StatusCode::UNAVAILABLE:
      // Not for a server that answered "draining": it is running, just going away.
      if (absl::StrContains(status.message(), "connect") ||
          absl::StrContains(status.message(), "DNS") ||
          absl::StrContains(status.message(), "Socket closed")) {
        err << "verdict: is verdictd running at " << server
            << "? (set --server or VERDICT_SERVER)\n";
      }
      return kExitUnreachable;
    case grpc::StatusCode::UNAUTHENTICATED:
      err << "verdict: pass the server's token with --token or VERDICT_TOKEN\n";
      return kExitError;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      err << "verdict: no answer within --timeout from " << server << "\n";
      return kExitError;
    default:
      return kExitError;
  }
}

int ReportLocalError(const absl::Status& status, std::ostream& err) {
  err << "verdict: " << status.message() << "\n";
  return kExitError;
}

std::string ToJson(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  // Cannot fail for messages of our own pool (no Any fields).
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

std::string FormatSeconds(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  if (seconds < 1) return absl::StrCat(static_cast<int>(std::lround(seconds * 1000)), "ms");
  if (seconds < 60) return absl::StrFormat("%.1fs", seconds);
  const int64_t total = std::llround(seconds);
  const int64_t hours = total / 3600, minutes = (total % 3600) / 60, secs = total % 60;
  if (hours > 0) return absl::StrFormat("%dh%02dm%02ds", hours, minutes, secs);
  return absl::StrFormat("%dm%02ds", minutes, secs);
}

std::string FormatDuration(const google::protobuf::Duration& duration) {
  return FormatSeconds(static_cast<double>(duration.seconds()) + duration.nanos() * 1e-9);
}

std::string FormatTimestamp(const google::protobuf::Timestamp& time) {
  if (time.seconds() == 0 && time.nanos() == 0) return "-";
  const std::time_t seconds = static_cast<std::time_t>(time.seconds());
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%d %H:%M:%S", &utc);
  return text;
}

std::string FormatBytes(int64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  const char* const units[] = {"KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes) / 1024;
  int unit = 0;
  while (value >= 1024 && unit < 3) {
    value /= 1024;
    ++unit;
  }
  return absl::StrFormat("%.1f %s", value, units[unit]);
}

std::string EnumName(const google::protobuf::EnumDescriptor* type, int value) {
  const google::protobuf::EnumValueDescriptor* descriptor = type->FindValueByNumber(value);
  if (descriptor == nullptr) return absl::StrCat(value);
  std::string name = descriptor->name();
  // Our enums prefix every value with the type's name in UPPER_SNAKE_CASE.
  if (const size_t cut = name.find('_'); cut != std::string::npos) {
    std::string upper_type;
    for (char c : type->name()) {
      if (std::isupper(static_cast<unsigned char>(c)) && !upper_type.empty()) upper_type += '_';
      upper_type += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    if (absl::StartsWith(name, upper_type + "_")) return name.substr(upper_type.size() + 1);
  }
  return name;
}

std::string JobStateName(verdict::v1::JobState state) {
  return EnumName(verdict::v1::JobState_descriptor(), state);
}

std::string PhaseName(verdict::v1::TrainingPhase phase) {
  return EnumName(verdict::v1::TrainingPhase_descriptor(), phase);
}

TextTable::TextTable(std::vector<std::string> header) { rows_.push_back(std::move(header)); }

void TextTable::AddRow(std::vector<std::string> row) { rows_.push_back(std::move(row)); }

std::string TextTable::Render() const {
  std::vector<size_t> widths;
  for (const auto& row : rows_) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string text;
  for (const auto& row : rows_) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      absl::StrAppend(&line, row[i]);
      if (i + 1 < row.size()) line.append(widths[i] - row[i].size() + 2, ' ');
    }
    absl::StrAppend(&text, line, "\n");
  }
  return text;
}

}  // namespace verdict::client
