#include "bench/bench_server.h"

#include <thread>

#include "absl/strings/str_cat.h"

namespace verdict::bench {

server::ServerConfig BenchServerConfig(const std::string& state_dir, const std::string& data_dir,
                                       const std::string& model_dir, bool metrics) {
  server::ServerConfig config;
  config.host = "127.0.0.1";
  config.port = 0;
  config.metrics_port = metrics ? 0 : -1;
  config.state_dir = state_dir;
  config.data_dir = data_dir;
  config.model_dir = model_dir;
  config.log_level = "warning";
  config.drain_grace = absl::Seconds(5);
  return config;
}

std::shared_ptr<grpc::Channel> NewChannel(int port, bool own_connection) {
  grpc::ChannelArguments args;
  if (own_connection) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxReceiveMessageSize(64 << 20);
  return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                   grpc::InsecureChannelCredentials(), args);
}

absl::Status FromGrpc(const grpc::Status& status, absl::string_view what) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(what, ": ", status.error_message()));
}

absl::StatusOr<v1::Job> WaitForJob(v1::TrainingService::Stub& stub, const std::string& job_id,
                                   absl::Duration timeout) {
  const absl::Time give_up = absl::Now() + timeout;
  while (absl::Now() < give_up) {
    grpc::ClientContext context;
    v1::GetJobRequest request;
    request.set_job_id(job_id);
    v1::Job job;
    const grpc::Status status = stub.GetJob(&context, request, &job);
    if (!status.ok()) return FromGrpc(status, "GetJob");
    switch (job.state()) {
      case v1::JOB_STATE_SUCCEEDED:
        return job;
      case v1::JOB_STATE_FAILED:
      case v1::JOB_STATE_CANCELLED:
        return absl::AbortedError(absl::StrCat("job ", job_id, " ended ",
                                               v1::JobState_Name(job.state()), ": ",
                                               job.error_message()));
      default:
        break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return absl::DeadlineExceededError(absl::StrCat("job ", job_id, " still running"));
}

absl::StatusOr<std::vector<v1::MetricsEvent>> ReadAllEvents(v1::TrainingService::Stub& stub,
                                                            const std::string& job_id) {
  grpc::ClientContext context;
  v1::StreamMetricsRequest request;
  request.set_job_id(job_id);
  request.set_no_follow(true);
  auto reader = stub.StreamMetrics(&context, request);
  std::vector<v1::MetricsEvent> events;
  v1::MetricsEvent event;
  while (reader->Read(&event)) events.push_back(event);
  const grpc::Status status = reader->Finish();
  if (!status.ok()) return FromGrpc(status, "StreamMetrics");
  return events;
}

JobThroughput ThroughputOf(const std::vector<v1::MetricsEvent>& events) {
  JobThroughput out;
  int64_t tokens = 0;
  double seconds = 0;
  bool first = true;
  for (const v1::MetricsEvent& event : events) {
    if (!event.has_train()) continue;
    ++out.steps_logged;
    if (first) {
      first = false;
      continue;
    }
    const v1::TrainStepMetrics& m = event.train();
    if (m.pairs_per_second() <= 0) continue;
    out.pairs += m.pairs();
    tokens += m.tokens();
    seconds += m.pairs() / m.pairs_per_second();
  }
  if (seconds > 0) {
    out.pairs_per_second = out.pairs / seconds;
    out.tokens_per_second = tokens / seconds;
  }
  return out;
}

}  // namespace verdict::bench
