// Helpers for the verdictd integration tests: a ServerConfig rooted in a scratch directory,
// stubs for every service on one channel, and the client-side chores the tests repeat
// (chunked dataset uploads, tiny training specs, waiting for a job, reading a metrics stream,
// grpc.health.v1 checks without generated health stubs, scraping /metrics).
//
// Everything talks to a real server through a real gRPC channel over loopback; nothing here
// reaches into the server's objects.
//
// Thread safety: free functions are thread-safe; a Clients bundle may be shared by threads
// (gRPC stubs are thread-safe).
#ifndef VERDICT_TESTS_SERVER_SERVER_TEST_UTIL_H_
#define VERDICT_TESTS_SERVER_SERVER_TEST_UTIL_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/server_config.h"
#include "verdict/v1/datasets.grpc.pb.h"
#include "verdict/v1/models.grpc.pb.h"
#include "verdict/v1/scoring.grpc.pb.h"
#include "verdict/v1/training.grpc.pb.h"

namespace verdict::testing {

// A config for an in-process server on 127.0.0.1 with a free port, no /metrics endpoint,
// quiet logs, and its state, data and model roots under `root` ("state", "data", "models").
server::ServerConfig TestServerConfig(const std::filesystem::path& root);

// "127.0.0.1:<port>".
std::string LoopbackAddress(int port);

// A channel to a server and a stub for each verdict service on it.
struct Clients {
  explicit Clients(const std::string& address,
                   const grpc::ChannelArguments& arguments = grpc::ChannelArguments());

  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::TrainingService::Stub> training;
  std::unique_ptr<v1::DatasetService::Stub> datasets;
  std::unique_ptr<v1::ModelService::Stub> models;
  std::unique_ptr<v1::ScoringService::Stub> scoring;
};

// A ClientContext with a deadline `timeout` from now (every test call has one, so that a
// server bug fails the test instead of hanging it) and, if non-empty, a bearer token.
std::unique_ptr<grpc::ClientContext> NewContext(absl::Duration timeout = absl::Seconds(60),
                                                const std::string& token = "");

// The bytes of a file; fails the calling test (ADD_FAILURE) and returns "" if unreadable.
std::string ReadFileOrDie(const std::string& path);
// The first `lines` lines of a text file, each with its newline.
std::string FirstLines(const std::string& path, int lines);
// SHA-256 of `bytes`, 64 lowercase hex digits.
std::string Sha256Hex(const std::string& bytes);

// Streams `bytes` to UploadDataset: the metadata, then chunks of at most `chunk_bytes`.
// `metadata` is sent as given (set sha256 / expected_size_bytes yourself to test them).
grpc::Status UploadBytes(v1::DatasetService::Stub& stub, const std::string& bytes,
                         const v1::UploadDatasetMetadata& metadata, size_t chunk_bytes,
                         v1::Dataset* dataset);
// Uploads `bytes` named `name` with a correct sha256 and expected size, 64 KiB chunks.
grpc::Status UploadWithChecks(v1::DatasetService::Stub& stub, const std::string& bytes,
                              const std::string& name, v1::Dataset* dataset);

// A small job: encoder-tiny from scratch, a 400-piece tokenizer trained on the data, batch 8,
// `max_steps` steps, every step logged, evaluation on 5% of the pairs (max 32) at the end,
// no checkpoints unless the test sets save_steps.
v1::TrainingJobSpec TinyJobSpec(const std::string& dataset_id, int64_t max_steps);

bool IsTerminal(v1::JobState state);

// Polls GetJob until `done(job)` holds; an error after `timeout`, naming the last state seen.
absl::StatusOr<v1::Job> WaitForJob(v1::TrainingService::Stub& stub, const std::string& job_id,
                                   const std::function<bool(const v1::Job&)>& done,
                                   absl::Duration timeout = absl::Seconds(90));
// Until the job is in a terminal state.
absl::StatusOr<v1::Job> WaitForTerminal(v1::TrainingService::Stub& stub, const std::string& job_id,
                                        absl::Duration timeout = absl::Seconds(90));

struct StreamResult {
  std::vector<v1::MetricsEvent> events;
  grpc::Status status;
};
// Reads a StreamMetrics stream to its end (or `timeout`). `on_event`, if set, sees each event
// as it arrives; returning false cancels the stream (status CANCELLED).
StreamResult ReadMetrics(v1::TrainingService::Stub& stub, const v1::StreamMetricsRequest& request,
                         absl::Duration timeout = absl::Seconds(90),
                         const std::function<bool(const v1::MetricsEvent&)>& on_event = nullptr);
// The whole stored log of a job (no_follow).
std::vector<v1::MetricsEvent> StoredEvents(v1::TrainingService::Stub& stub, const std::string& job_id);

// grpc.health.v1.Health/Check for `service` ("" for the whole server), called through a
// generic stub with the request encoded by hand (Debian ships no generated health stubs).
// Returns the ServingStatus number (1 SERVING, 2 NOT_SERVING, ...) or the call's error.
absl::StatusOr<int> CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                                const std::string& service);
inline constexpr int kServing = 1;
inline constexpr int kNotServing = 2;

// The body of GET http://127.0.0.1:<port>/metrics; an error unless it answers 200.
absl::StatusOr<std::string> ScrapeMetrics(int port);
// Sum of the samples of `name` in a Prometheus text exposition whose labels include every
// `labels` pair; 0 when there is none.
double MetricSum(const std::string& exposition, const std::string& name,
                 const std::map<std::string, std::string>& labels = {});

// Copies a directory tree (test fixtures into a server's --model_dir).
void CopyTree(const std::filesystem::path& from, const std::filesystem::path& to);

}  // namespace verdict::testing

#endif  // VERDICT_TESTS_SERVER_SERVER_TEST_UTIL_H_
