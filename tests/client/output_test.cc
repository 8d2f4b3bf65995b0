#include "client/output.h"

#include <sstream>

#include "client/health_check.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict::client {
namespace {

using ::testing::HasSubstr;

TEST(OutputTest, FormatsDurationsSizesAndTimes) {
  EXPECT_EQ(FormatSeconds(0.25), "250ms");
  EXPECT_EQ(FormatSeconds(4.24), "4.2s");
  EXPECT_EQ(FormatSeconds(123), "2m03s");
  EXPECT_EQ(FormatSeconds(3723), "1h02m03s");
  EXPECT_EQ(FormatSeconds(-1), "?");
  EXPECT_EQ(FormatBytes(512), "512 B");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(int64_t{3} << 30), "3.0 GiB");
  google::protobuf::Timestamp t;
  EXPECT_EQ(FormatTimestamp(t), "-");
  t.set_seconds(1700000000);
  EXPECT_EQ(FormatTimestamp(t), "2023-11-14 22:13:20");
}

TEST(OutputTest, EnumNamesLoseTheirTypePrefix) {
  EXPECT_EQ(JobStateName(verdict::v1::JOB_STATE_CANCELLING), "CANCELLING");
  EXPECT_EQ(PhaseName(verdict::v1::TRAINING_PHASE_EVALUATING), "EVALUATING");
  EXPECT_EQ(EnumName(verdict::v1::LogLine::Level_descriptor(), verdict::v1::LogLine::LEVEL_ERROR),
            "ERROR");
  EXPECT_EQ(EnumName(verdict::v1::ChatFormat_descriptor(), 99), "99");
}

TEST(OutputTest, ErrorsPrintTheCodeAndMessageAndMapToExitCodes) {
  std::ostringstream err;
  EXPECT_EQ(
      ReportRpcError(grpc::Status(grpc::StatusCode::NOT_FOUND, "job job-9 not found"), "h:1", err),
      kExitError);
  EXPECT_EQ(err.str(), "verdict: NOT_FOUND: job job-9 not found\n");
  std::ostringstream down;
  EXPECT_EQ(
      ReportRpcError(grpc::Status(grpc::StatusCode::UNAVAILABLE, "failed to connect"), "h:1", down),
      kExitUnreachable);
  EXPECT_THAT(down.str(), HasSubstr("is verdictd running at h:1?"));
  std::ostringstream token;
  ReportRpcError(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "missing token"), "h:1", token);
  EXPECT_THAT(token.str(), HasSubstr("--token or VERDICT_TOKEN"));
}

TEST(OutputTest, TablesAlignTheirColumns) {
  TextTable table({"ID", "STATE"});
  table.AddRow({"job-long-id", "RUNNING"});
  table.AddRow({"j", "QUEUED"});
  EXPECT_EQ(table.Render(), "ID           STATE\njob-long-id  RUNNING\nj            QUEUED\n");
}

TEST(HealthCheckTest, EncodesTheRequestAndDecodesTheResponseByHand) {
  EXPECT_EQ(EncodeHealthCheckRequest(""), "");
  EXPECT_EQ(EncodeHealthCheckRequest("a.B"), std::string("\x0a\x03"
                                                         "a.B",
                                                         5));
  EXPECT_EQ(*DecodeHealthCheckResponse(std::string("\x08\x01", 2)), ServingStatus::kServing);
  EXPECT_EQ(*DecodeHealthCheckResponse(std::string("\x08\x02", 2)), ServingStatus::kNotServing);
  EXPECT_EQ(*DecodeHealthCheckResponse(""), ServingStatus::kUnknown);
  // Unknown fields are skipped, as any protobuf parser would.
  EXPECT_EQ(*DecodeHealthCheckResponse(std::string("\x12\x02hi\x08\x01", 6)),
            ServingStatus::kServing);
  EXPECT_FALSE(DecodeHealthCheckResponse(std::string("\x08", 1)).ok());
  EXPECT_EQ(ServingStatusName(ServingStatus::kServiceUnknown), "SERVICE_UNKNOWN");
}

}  // namespace
}  // namespace verdict::client
