// Fuzzes what SubmitTrainingJob does with a client's TrainingJobSpec before anything runs
// (server/proto_conversion + validation): NormalizeTrainingJobSpec, then ToTrainingConfig of a
// spec it accepted. The input is a binary TrainingJobSpec, or its text format (the seeds in
// corpus/training_job_spec_fuzzer are text, to stay readable). Paths resolve against
// tests/data the way the server's tests configure it; every dataset id resolves to the
// synthetic dataset, every registered model is unknown.
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/text_format.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "server/proto_conversion.h"

namespace {

using verdict::server::ServerConfig;
using verdict::server::SpecResolvers;

const ServerConfig& Server() {
  static const auto* const server = [] {
    auto* config = new ServerConfig;
    config->state_dir = VERDICT_TESTDATA_DIR;
    config->data_dir = VERDICT_TESTDATA_DIR "/synthetic";
    config->model_dir = VERDICT_TESTDATA_DIR "/golden";
    return config;
  }();
  return *server;
}

const SpecResolvers& Resolvers() {
  static const auto* const resolvers = [] {
    auto* r = new SpecResolvers;
    r->dataset_file = [](const std::string&) -> absl::StatusOr<std::string> {
      return std::string(VERDICT_TESTDATA_DIR "/synthetic/helpful-concise.jsonl");
    };
    r->registered_model =
        [](const verdict::v1::ModelRef&) -> absl::StatusOr<std::pair<std::string, int64_t>> {
      return absl::NotFoundError("no registered models");
    };
    return r;
  }();
  return *resolvers;
}

}  // namespace

// Protobuf logs every parse error of a malformed input to stderr (a 90 s run wrote 785,000
// lines, most of its time); the parse result is all the harness needs.
extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  verdict::v1::TrainingJobSpec spec;
  if (!spec.ParseFromArray(data, static_cast<int>(size))) {
    google::protobuf::TextFormat::Parser parser;
    parser.AllowPartialMessage(true);
    google::protobuf::io::ArrayInputStream stream(data, static_cast<int>(size));
    spec.Clear();
    if (!parser.Parse(&stream, &spec)) return 0;
  }
  if (!verdict::server::NormalizeTrainingJobSpec(Server(), Resolvers(), &spec).ok()) return 0;
  (void)verdict::server::ToTrainingConfig(Server(), Resolvers(), spec, "/nonexistent/run",
                                          "/nonexistent/out");
  return 0;
}
