// Connection: the gRPC channel to one verdictd and a stub per service, plus the options every
// subcommand shares (--server, --tls, --ca, --tls-cert, --tls-key, --token, --output,
// --timeout).
//
// --server is any gRPC target: "host:port", "dns:///scoring.ns.svc.cluster.local:50051" (for
// a Kubernetes headless Service: DNS names every scoring pod), or "ipv4:10.0.0.1:50051,
// 10.0.0.2:50051". The channel balances requests over every address the target resolves to
// (round_robin) and retries ScoreBatch, which is idempotent, on UNAVAILABLE and
// RESOURCE_EXHAUSTED with backoff, so a replica going away or shedding load costs no failed
// request (see kClientServiceConfig).
//
// A Connection is made once per command from GlobalOptions. Stubs and NewContext() may be used
// from several threads at once (gRPC stubs are thread-safe; each call gets its own context).
//
// Example:
//   ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, Connection::Create(options));
//   std::unique_ptr<grpc::ClientContext> ctx = conn->NewContext();
//   grpc::Status s = conn->training().GetJob(ctx.get(), request, &job);
#ifndef VERDICT_CLIENT_CONNECTION_H_
#define VERDICT_CLIENT_CONNECTION_H_

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/support/channel_arguments.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "client/flag_parser.h"
#include "verdict/v1/datasets.grpc.pb.h"
#include "verdict/v1/models.grpc.pb.h"
#include "verdict/v1/scoring.grpc.pb.h"
#include "verdict/v1/training.grpc.pb.h"

namespace verdict::client {

enum class OutputFormat { kText, kJson };

// The gRPC service config of every client channel (the CLI's; the Python client carries the
// same in verdict_client/_common.py): round_robin over the target's addresses, and retries of
// ScoreBatch only — the other methods start jobs, move aliases or stream, and are not
// idempotent or not safe to replay. Five attempts, backoff 0.1 s doubling to at most 2 s, on
// UNAVAILABLE, RESOURCE_EXHAUSTED and CANCELLED: a server shutting down cancels the calls it
// had accepted but not yet started (seen as CANCELLED here), and replaying a ScoreBatch is
// harmless; gRPC never retries a call the client cancelled itself or whose deadline passed.
inline constexpr char kClientServiceConfig[] = R"json({
  "loadBalancingConfig": [{"round_robin": {}}],
  "methodConfig": [{
    "name": [{"service": "verdict.v1.ScoringService", "method": "ScoreBatch"}],
    "retryPolicy": {
      "maxAttempts": 5,
      "initialBackoff": "0.1s",
      "maxBackoff": "2s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED", "CANCELLED"]
    }
  }]
})json";

// Channel arguments of every client channel: message size limits, a short reconnect backoff,
// and kClientServiceConfig. Exposed so that tests build the CLI's channel exactly.
grpc::ChannelArguments ClientChannelArguments();

// Options shared by every subcommand. Defaults come from the environment (VERDICT_SERVER,
// VERDICT_TOKEN) and are overridden by flags.
struct GlobalOptions {
  std::string server = "localhost:50051";
  bool tls = false;
  std::string ca_file;          // PEM roots for --tls; empty: the system's roots
  std::string tls_server_name;  // overrides the name checked in the server's certificate
  std::string tls_cert_file;    // client certificate (mutual TLS); with tls_key_file
  std::string tls_key_file;
  std::string token;            // sent as "authorization: Bearer <token>" when not empty
  std::string output = "text";  // "text" or "json"; see format()
  double timeout_seconds = 30;  // deadline of each unary RPC; 0: none

  // Reads VERDICT_SERVER and VERDICT_TOKEN.
  static GlobalOptions FromEnvironment();
  // Registers --server, --tls, --ca, --tls-server-name, --tls-cert, --tls-key, --token,
  // --output, --timeout.
  void AddFlags(FlagParser& flags);
  // INVALID_ARGUMENT naming the flag for a bad --output, a negative --timeout, or --tls-cert
  // without --tls-key (or either without --tls).
  absl::Status Validate() const;

  OutputFormat format() const {
    return output == "json" ? OutputFormat::kJson : OutputFormat::kText;
  }
};

class Connection {
 public:
  // Builds the channel (insecure, or TLS with --ca's roots and --tls-cert/--tls-key's client
  // certificate). Does not connect: the first RPC does. NOT_FOUND / INVALID_ARGUMENT if a file
  // cannot be read.
  static absl::StatusOr<std::unique_ptr<Connection>> Create(const GlobalOptions& options);

  // A context carrying the bearer token and, with `deadline`, --timeout as its deadline.
  // Streams that may run for long (watch, upload) pass deadline = false.
  std::unique_ptr<grpc::ClientContext> NewContext(bool deadline = true) const;

  verdict::v1::TrainingService::Stub& training() { return *training_; }
  verdict::v1::DatasetService::Stub& datasets() { return *datasets_; }
  verdict::v1::ModelService::Stub& models() { return *models_; }
  verdict::v1::ScoringService::Stub& scoring() { return *scoring_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  const GlobalOptions& options() const { return options_; }

 private:
  Connection(GlobalOptions options, std::shared_ptr<grpc::Channel> channel);

  GlobalOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<verdict::v1::TrainingService::Stub> training_;
  std::unique_ptr<verdict::v1::DatasetService::Stub> datasets_;
  std::unique_ptr<verdict::v1::ModelService::Stub> models_;
  std::unique_ptr<verdict::v1::ScoringService::Stub> scoring_;
};

}  // namespace verdict::client

#endif  // VERDICT_CLIENT_CONNECTION_H_
