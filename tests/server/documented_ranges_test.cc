// The ranges training.proto documents are the ranges the server enforces: this test reads
// every "Range ..." of a TrainingJobSpec field from the .proto's comments and submits each
// bound (accepted) and the value just beyond it (refused with INVALID_ARGUMENT naming the
// field's proto path). A range changed on one side only fails here.
#include <cmath>
#include <fstream>
#include <optional>
#include <queue>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/proto_conversion.h"
#include "tests/testing/test_paths.h"

namespace verdict::server {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using ::testing::StartsWith;

struct DocumentedRange {
  std::string message;  // the message that declares the field
  std::string field;
  double low = 0, high = INFINITY;
  bool low_open = false, high_open = false;
  bool zero_too = false;  // "Range 0 or [a, b]"
  std::string text;       // as written, for failure messages
};

double ParseBound(const std::string& text) {
  if (const size_t caret = text.find('^'); caret != std::string::npos) {
    return std::pow(std::stod(text.substr(0, caret)), std::stod(text.substr(caret + 1)));
  }
  return std::stod(text);
}

// Every "Range ..." in a field's comment, with the message and field it documents.
std::vector<DocumentedRange> ReadDocumentedRanges(const std::string& proto_path) {
  std::ifstream in(proto_path);
  EXPECT_TRUE(in.good()) << proto_path;
  const std::regex message_open(R"(^\s*message\s+(\w+)\s*\{)");
  const std::regex block_open(R"(^\s*(oneof|enum)\s+\w+\s*\{)");
  const std::regex block_close(R"(^\s*\}\s*$)");
  const std::regex field(R"(^\s*(?:repeated\s+)?[\w.]+\s+(\w+)\s*=\s*\d+\s*;)");
  const std::regex interval(
      R"(Range\s+(0 or\s+)?([\[(])\s*(-?[\d.e^]+)\s*,\s*(-?[\d.e^]+)\s*([\])]))");
  const std::regex at_least(R"(Range\s+>=\s*(-?[\d.e^]+))");
  std::vector<std::string> messages;  // "" for oneof and enum blocks
  std::string comment;
  std::vector<DocumentedRange> ranges;
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (const size_t slashes = line.find("//");
        slashes != std::string::npos && line.find_first_not_of(" ") == slashes) {
      comment += " " + line.substr(slashes + 2);
      continue;
    }
    if (std::regex_search(line, m, message_open)) {
      messages.push_back(m[1]);
      comment.clear();
    } else if (std::regex_search(line, m, block_open)) {
      messages.push_back("");  // a oneof keeps the comment above it for its first field
    } else if (std::regex_search(line, block_close)) {
      if (!messages.empty()) messages.pop_back();
      comment.clear();
    } else if (std::regex_search(line, m, field)) {
      std::string owner;
      for (auto it = messages.rbegin(); it != messages.rend() && owner.empty(); ++it) owner = *it;
      DocumentedRange range;
      range.message = owner;
      range.field = m[1];
      std::smatch r;
      if (std::regex_search(comment, r, interval)) {
        range.zero_too = r[1].matched;
        range.low_open = r[2] == "(";
        range.low = ParseBound(r[3]);
        range.high = ParseBound(r[4]);
        range.high_open = r[5] == ")";
        range.text = r[0];
        ranges.push_back(range);
      } else if (std::regex_search(comment, r, at_least)) {
        range.low = ParseBound(r[1]);
        range.text = r[0];
        ranges.push_back(range);
      }
      comment.clear();
    } else if (line.find_first_not_of(" ") != std::string::npos) {
      comment.clear();
    }
  }
  return ranges;
}

// The path of message fields from TrainingJobSpec to a message of type `name`.
std::optional<std::vector<const FieldDescriptor*>> PathTo(const std::string& name) {
  std::queue<std::pair<const Descriptor*, std::vector<const FieldDescriptor*>>> queue;
  queue.push({v1::TrainingJobSpec::descriptor(), {}});
  while (!queue.empty()) {
    auto [type, path] = queue.front();
    queue.pop();
    if (type->name() == name) return path;
    for (int i = 0; i < type->field_count(); ++i) {
      const FieldDescriptor* f = type->field(i);
      if (f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE || f->is_repeated()) continue;
      if (f->message_type()->file() != type->file()) continue;  // Timestamp, ...
      auto next = path;
      next.push_back(f);
      queue.push({f->message_type(), next});
    }
  }
  return std::nullopt;
}

ServerConfig TestServer() {
  ServerConfig server;
  server.state_dir = verdict::testing::TestDataPath("");
  server.data_dir = verdict::testing::TestDataPath("synthetic");
  server.model_dir = verdict::testing::TestDataPath("golden");
  return server;
}

SpecResolvers NoResolvers() {
  SpecResolvers resolvers;
  resolvers.dataset_file = [](const std::string& id) -> absl::StatusOr<std::string> {
    return absl::NotFoundError(id);
  };
  resolvers.registered_model =
      [](const v1::ModelRef&) -> absl::StatusOr<std::pair<std::string, int64_t>> {
    return absl::NotFoundError("no models");
  };
  return resolvers;
}

// Normalizes a minimal spec with the field set to `value`.
absl::Status SubmitWith(const std::vector<const FieldDescriptor*>& path,
                        const FieldDescriptor* field, double value) {
  v1::TrainingJobSpec spec;
  spec.mutable_train_data()->set_path("helpful-concise.jsonl");
  Message* message = &spec;
  for (const FieldDescriptor* step : path) {
    message = message->GetReflection()->MutableMessage(message, step);
  }
  const auto* reflection = message->GetReflection();
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      reflection->SetInt32(message, field, static_cast<int32_t>(value));
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      reflection->SetInt64(message, field, static_cast<int64_t>(value));
      break;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      reflection->SetDouble(message, field, value);
      break;
    default:
      ADD_FAILURE() << field->full_name() << " has a range but is not a number";
  }
  return NormalizeTrainingJobSpec(TestServer(), NoResolvers(), &spec);
}

TEST(DocumentedRangesTest, EveryDocumentedRangeIsTheEnforcedOne) {
  const std::vector<DocumentedRange> ranges =
      ReadDocumentedRanges(absl::StrCat(VERDICT_SOURCE_DIR, "/proto/verdict/v1/training.proto"));
  int checked = 0;
  for (const DocumentedRange& range : ranges) {
    const auto path = PathTo(range.message);
    if (!path) continue;  // not part of a TrainingJobSpec (e.g. StreamMetricsRequest)
    const Descriptor* type = path->empty() ? v1::TrainingJobSpec::descriptor()
                                           : path->back()->message_type();
    const FieldDescriptor* field = type->FindFieldByName(range.field);
    ASSERT_NE(field, nullptr) << range.message << "." << range.field;
    std::vector<std::string> names = {"spec"};
    for (const FieldDescriptor* step : *path) names.push_back(step->name());
    names.push_back(field->name());
    const std::string proto_path = absl::StrJoin(names, ".");
    SCOPED_TRACE(absl::StrCat(proto_path, ": ", range.text));
    const bool integral = field->cpp_type() != FieldDescriptor::CPPTYPE_DOUBLE;
    auto beyond = [&](double bound, double direction) {
      return integral ? bound + direction : bound + direction * std::max(1e-9, std::abs(bound) * 1e-6);
    };
    std::vector<double> accepted, refused;
    if (range.zero_too) accepted.push_back(0);
    if (range.low_open) {
      refused.push_back(range.low);
      accepted.push_back(beyond(range.low, +1));
    } else {
      accepted.push_back(range.low);
      refused.push_back(beyond(range.low, -1));
    }
    if (std::isfinite(range.high)) {
      if (range.high_open) {
        refused.push_back(range.high);
        accepted.push_back(beyond(range.high, -1));
      } else {
        accepted.push_back(range.high);
        refused.push_back(beyond(range.high, +1));
      }
    }
    for (double value : accepted) {
      absl::Status status = SubmitWith(*path, field, value);
      EXPECT_TRUE(status.ok()) << value << " refused: " << status;
    }
    for (double value : refused) {
      if (range.zero_too && value == 0) continue;
      absl::Status status = SubmitWith(*path, field, value);
      EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << value << " accepted";
      EXPECT_THAT(std::string(status.message()), StartsWith(proto_path + ": ")) << value;
    }
    ++checked;
  }
  // The parser found the ranges (a change of wording must not turn this test into nothing).
  EXPECT_GE(checked, 20);
}

}  // namespace
}  // namespace verdict::server
