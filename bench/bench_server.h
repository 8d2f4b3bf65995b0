// Helpers for the benchmarks that drive a real, in-process verdictd over loopback gRPC:
// starting the server on free ports, opening client channels (one TCP connection each when
// asked, as separate client processes would have), and following a training job to its end.
//
// Thread safety: every function may be called from any thread.
#ifndef VERDICT_BENCH_BENCH_SERVER_H_
#define VERDICT_BENCH_BENCH_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/server.h"
#include "server/server_config.h"
#include "verdict/v1/models.grpc.pb.h"
#include "verdict/v1/scoring.grpc.pb.h"
#include "verdict/v1/training.grpc.pb.h"

namespace verdict::bench {

// A server config for benchmarks: loopback, free ports (metrics on a free port when
// `metrics`, else off), state under `state_dir`, request paths under `data_dir` and
// `model_dir`, warnings and errors logged only.
server::ServerConfig BenchServerConfig(const std::string& state_dir, const std::string& data_dir,
                                       const std::string& model_dir, bool metrics);

// A channel to 127.0.0.1:`port`. With `own_connection` the channel gets its own TCP
// connection instead of sharing one with every other channel of the process.
std::shared_ptr<grpc::Channel> NewChannel(int port, bool own_connection);

// grpc::Status as absl::Status, prefixed with what was being done.
absl::Status FromGrpc(const grpc::Status& status, absl::string_view what);

// Polls GetJob until the job is terminal (or `timeout` passes: DeadlineExceeded). Returns the
// terminal job; a job that did not succeed is an error carrying its message.
absl::StatusOr<v1::Job> WaitForJob(v1::TrainingService::Stub& stub, const std::string& job_id,
                                   absl::Duration timeout);

// Every stored event of a job (StreamMetrics with no_follow).
absl::StatusOr<std::vector<v1::MetricsEvent>> ReadAllEvents(v1::TrainingService::Stub& stub,
                                                            const std::string& job_id);

// Throughput of a job's training steps from its TrainStepMetrics events, leaving out the
// first window (one-off allocation costs).
struct JobThroughput {
  int64_t steps_logged = 0;
  int64_t pairs = 0;
  double pairs_per_second = 0;
  double tokens_per_second = 0;
};
JobThroughput ThroughputOf(const std::vector<v1::MetricsEvent>& events);

}  // namespace verdict::bench

#endif  // VERDICT_BENCH_BENCH_SERVER_H_
