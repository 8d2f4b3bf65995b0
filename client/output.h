// How `verdict` reports: exit codes, error lines, the JSON form of API messages, and the small
// formatting helpers (durations, sizes, times, enum names, tables) its text output uses.
//
// Stateless functions; safe from any thread.
#ifndef VERDICT_CLIENT_OUTPUT_H_
#define VERDICT_CLIENT_OUTPUT_H_

#include <google/protobuf/duration.pb.h>
#include <google/protobuf/message.h>
#include <google/protobuf/timestamp.pb.h>
#include <grpcpp/support/status.h>

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "verdict/v1/training.pb.h"

namespace verdict::client {

// Exit codes of every subcommand (also listed in `verdict --help`).
inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;         // the server refused the request, or a local error
inline constexpr int kExitUsage = 2;         // bad flags or arguments
inline constexpr int kExitUnreachable = 3;   // no server answered (UNAVAILABLE)
inline constexpr int kExitJobFailed = 4;     // a watched job ended FAILED
inline constexpr int kExitJobCancelled = 5;  // a watched job ended CANCELLED

// "NOT_FOUND", "UNAVAILABLE", ...
std::string StatusCodeName(grpc::StatusCode code);

// A gRPC status as an absl::Status with the same code and message (the numbers agree).
absl::Status FromGrpc(const grpc::Status& status);

// Prints "verdict: CODE: message" (with a hint for an unreachable server or a missing token)
// to `err` and returns the exit code for it. `server` is the address the call went to.
int ReportRpcError(const absl::Status& status, absl::string_view server, std::ostream& err);
int ReportRpcError(const grpc::Status& status, absl::string_view server, std::ostream& err);

// Prints "verdict: message" for a local error and returns kExitError.
int ReportLocalError(const absl::Status& status, std::ostream& err);

// The message in the proto3 JSON mapping, on one line.
std::string ToJson(const google::protobuf::Message& message);

// "850ms", "4.2s", "2m03s", "1h02m03s".
std::string FormatSeconds(double seconds);
std::string FormatDuration(const google::protobuf::Duration& duration);
// "2026-11-29 14:57:39" (UTC); "-" when unset.
std::string FormatTimestamp(const google::protobuf::Timestamp& time);
// "512 B", "1.5 KiB", "3.2 MiB", "1.0 GiB".
std::string FormatBytes(int64_t bytes);

// Enum value names without their type prefix: "RUNNING", "TRAINING", "ENCODER".
std::string JobStateName(verdict::v1::JobState state);
std::string PhaseName(verdict::v1::TrainingPhase phase);
std::string EnumName(const google::protobuf::EnumDescriptor* type, int value);

// Left-aligned columns separated by two spaces; the first row is the header.
class TextTable {
 public:
  explicit TextTable(std::vector<std::string> header);
  void AddRow(std::vector<std::string> row);
  std::string Render() const;
  size_t rows() const { return rows_.size() - 1; }

 private:
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace verdict::client

#endif  // VERDICT_CLIENT_OUTPUT_H_
