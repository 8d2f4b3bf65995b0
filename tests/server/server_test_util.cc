#include "tests/server/server_test_util.h"

#include <openssl/evp.h>

#include <grpcpp/generic/generic_stub.h>

#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/util/status_macros.h"
#include "gtest/gtest.h"
#include "tests/testing/loopback_http.h"

namespace verdict::testing {

namespace fs = std::filesystem;

server::ServerConfig TestServerConfig(const fs::path& root) {
  server::ServerConfig config;
  config.host = "127.0.0.1";
  config.port = 0;
  config.metrics_port = -1;
  config.state_dir = (root / "state").string();
  config.data_dir = (root / "data").string();
  config.model_dir = (root / "models").string();
  config.log_level = "warning";
  config.drain_grace = absl::Seconds(10);
  return config;
}

std::string LoopbackAddress(int port) { return absl::StrCat("127.0.0.1:", port); }

Clients::Clients(const std::string& address, const grpc::ChannelArguments& arguments)
    : channel(grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), arguments)),
      training(v1::TrainingService::NewStub(channel)),
      datasets(v1::DatasetService::NewStub(channel)),
      models(v1::ModelService::NewStub(channel)),
      scoring(v1::ScoringService::NewStub(channel)) {}

std::unique_ptr<grpc::ClientContext> NewContext(absl::Duration timeout, const std::string& token) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
  return context;
}

std::string ReadFileOrDie(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ADD_FAILURE() << "cannot read " << path;
    return "";
  }
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

std::string FirstLines(const std::string& path, int lines) {
  std::ifstream in(path);
  std::string result, line;
  for (int i = 0; i < lines && std::getline(in, line); ++i) absl::StrAppend(&result, line, "\n");
  return result;
}

std::string Sha256Hex(const std::string& bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(), nullptr);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(digest), length));
}

grpc::Status UploadBytes(v1::DatasetService::Stub& stub, const std::string& bytes,
                         const v1::UploadDatasetMetadata& metadata, size_t chunk_bytes,
                         v1::Dataset* dataset) {
  auto context = NewContext();
  std::unique_ptr<grpc::ClientWriter<v1::UploadDatasetRequest>> writer =
      stub.UploadDataset(context.get(), dataset);
  v1::UploadDatasetRequest request;
  *request.mutable_metadata() = metadata;
  bool open = writer->Write(request);
  for (size_t offset = 0; open && offset < bytes.size(); offset += chunk_bytes) {
    request.set_chunk(bytes.substr(offset, chunk_bytes));
    open = writer->Write(request);
  }
  writer->WritesDone();
  return writer->Finish();
}

grpc::Status UploadWithChecks(v1::DatasetService::Stub& stub, const std::string& bytes,
                              const std::string& name, v1::Dataset* dataset) {
  v1::UploadDatasetMetadata metadata;
  metadata.set_name(name);
  metadata.set_expected_size_bytes(static_cast<int64_t>(bytes.size()));
  metadata.set_sha256(Sha256Hex(bytes));
  return UploadBytes(stub, bytes, metadata, 64 << 10, dataset);
}

v1::TrainingJobSpec TinyJobSpec(const std::string& dataset_id, int64_t max_steps) {
  v1::TrainingJobSpec spec;
  spec.set_output_model_name("tiny");
  spec.set_preset("encoder-tiny");
  spec.mutable_tokenizer()->mutable_train()->set_vocab_size(400);
  spec.mutable_train_data()->set_dataset_id(dataset_id);
  spec.mutable_eval()->set_eval_fraction(0.05);
  spec.mutable_eval()->set_max_pairs(32);
  v1::Hyperparameters* h = spec.mutable_hyperparameters();
  h->set_per_device_train_batch_size(8);
  h->set_max_steps(max_steps);
  h->set_learning_rate(1e-3);
  h->set_max_length(128);
  spec.set_logging_steps(1);
  spec.set_save_steps(0);
  return spec;
}

bool IsTerminal(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}

absl::StatusOr<v1::Job> WaitForJob(v1::TrainingService::Stub& stub, const std::string& job_id,
                                   const std::function<bool(const v1::Job&)>& done,
                                   absl::Duration timeout) {
  const absl::Time give_up = absl::Now() + timeout;
  v1::Job job;
  while (true) {
    v1::GetJobRequest request;
    request.set_job_id(job_id);
    auto context = NewContext(absl::Seconds(10));
    grpc::Status status = stub.GetJob(context.get(), request, &job);
    if (!status.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                          absl::StrCat("GetJob: ", status.error_message()));
    }
    if (done(job)) return job;
    if (absl::Now() > give_up) {
      return absl::DeadlineExceededError(absl::StrCat("job ", job_id, " still ",
                                                      v1::JobState_Name(job.state()), " at step ",
                                                      job.progress().step(), ": ",
                                                      job.error_message()));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

absl::StatusOr<v1::Job> WaitForTerminal(v1::TrainingService::Stub& stub, const std::string& job_id,
                                        absl::Duration timeout) {
  return WaitForJob(stub, job_id, [](const v1::Job& job) { return IsTerminal(job.state()); },
                    timeout);
}

StreamResult ReadMetrics(v1::TrainingService::Stub& stub, const v1::StreamMetricsRequest& request,
                         absl::Duration timeout,
                         const std::function<bool(const v1::MetricsEvent&)>& on_event) {
  StreamResult result;
  auto context = NewContext(timeout);
  auto reader = stub.StreamMetrics(context.get(), request);
  v1::MetricsEvent event;
  while (reader->Read(&event)) {
    result.events.push_back(event);
    if (on_event && !on_event(event)) {
      context->TryCancel();
      while (reader->Read(&event)) {
      }
      break;
    }
  }
  result.status = reader->Finish();
  return result;
}

std::vector<v1::MetricsEvent> StoredEvents(v1::TrainingService::Stub& stub, const std::string& job_id) {
  v1::StreamMetricsRequest request;
  request.set_job_id(job_id);
  request.set_no_follow(true);
  StreamResult result = ReadMetrics(stub, request, absl::Seconds(30));
  EXPECT_TRUE(result.status.ok()) << result.status.error_message();
  return result.events;
}

namespace {

void AppendVarint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

}  // namespace

absl::StatusOr<int> CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                                const std::string& service) {
  // HealthCheckRequest { string service = 1; }: tag (1 << 3 | 2), length, bytes.
  std::string request_bytes;
  if (!service.empty()) {
    request_bytes.push_back(0x0a);
    AppendVarint(service.size(), &request_bytes);
    request_bytes += service;
  }
  grpc::Slice slice(request_bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  grpc::GenericStub stub(channel);
  auto context = NewContext(absl::Seconds(10));
  std::promise<grpc::Status> done;
  stub.UnaryCall(context.get(), "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                 &response, [&done](grpc::Status status) { done.set_value(std::move(status)); });
  grpc::Status status = done.get_future().get();
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
  }
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return absl::InternalError("cannot read the health response");
  std::string bytes;
  for (const grpc::Slice& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  // HealthCheckResponse { ServingStatus status = 1; }: tag (1 << 3 | 0), varint. Absent = 0.
  if (bytes.empty()) return 0;
  if (bytes.size() < 2 || bytes[0] != 0x08) {
    return absl::InternalError(absl::StrCat("unexpected health response bytes ",
                                            absl::BytesToHexString(bytes)));
  }
  return static_cast<int>(static_cast<unsigned char>(bytes[1]));
}

absl::StatusOr<std::string> ScrapeMetrics(int port) {
  ASSIGN_OR_RETURN(HttpResponse response, HttpGet(port, "/metrics"));
  if (response.status_code != 200) {
    return absl::InternalError(absl::StrCat("GET /metrics answered ", response.status_code));
  }
  return std::move(response.body);
}

double MetricSum(const std::string& exposition, const std::string& name,
                 const std::map<std::string, std::string>& labels) {
  double sum = 0;
  for (absl::string_view line : absl::StrSplit(exposition, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    if (!absl::ConsumePrefix(&line, name)) continue;
    if (line.empty() || (line[0] != '{' && line[0] != ' ')) continue;  // a longer name
    bool match = true;
    for (const auto& [key, value] : labels) {
      if (!absl::StrContains(line, absl::StrCat(key, "=\"", value, "\""))) match = false;
    }
    if (!match) continue;
    const size_t space = line.rfind(' ');
    double value = 0;
    if (space != absl::string_view::npos && absl::SimpleAtod(line.substr(space + 1), &value)) sum += value;
  }
  return sum;
}

void CopyTree(const fs::path& from, const fs::path& to) {
  fs::create_directories(to);
  fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
}

}  // namespace verdict::testing
