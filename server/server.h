// VerdictServer: verdictd assembled. Start() opens the job store, builds the services on the
// gRPC callback API (plus grpc.health.v1 and server reflection), starts the job workers and
// the Prometheus /metrics endpoint, and preloads models. Shutdown() drains: health goes
// NOT_SERVING, new work is refused, the running job checkpoints and returns to QUEUED, queued
// scoring requests finish, and in-flight RPCs get up to drain_grace.
//
// Roles (ServerConfig::role, --role): "all" (the default) and "control" run everything above
// (a control plane may score too; a deployment sends its scoring traffic to the replicas).
// "scoring" is a replica with no store of its own: no SQLite, no job workers, no datasets. It
// mirrors the registry of the control plane (--control_plane) in memory (ReplicaModelStore),
// downloads and verifies the versions its aliases name into <state_dir>/model-cache, loads
// them and moves the alias only then (ModelFollower), and serves ScoreBatch, HTTP scoring and
// the ModelService reads from them. TrainingService and DatasetService calls answer
// UNIMPLEMENTED and registry changes FAILED_PRECONDITION, both naming the role.
//
// Health: "" (the whole server) is SERVING while it runs; "verdict.v1.ScoringService", in
// every role, only while a model version is loaded -- so a replica that lost its control plane
// stays SERVING with what it has, and one that never loaded anything is NOT_SERVING (the
// readiness probe to use). A replica reports no status for the services it does not serve.
// Every service NOT_SERVING while draining.
//
// Thread safety: Start() and Shutdown() from one controlling thread; the rest is gRPC's.
// RunServer() is what main() calls: it starts the server and blocks until SIGTERM or SIGINT;
// SIGHUP in the meantime reloads the token file.
#ifndef VERDICT_SERVER_SERVER_H_
#define VERDICT_SERVER_SERVER_H_

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/server_config.h"

namespace verdict::server {

class VerdictServer {
 public:
  static absl::StatusOr<std::unique_ptr<VerdictServer>> Start(const ServerConfig& config);
  ~VerdictServer();

  int port() const;
  int metrics_port() const;  // -1 when disabled
  int http_port() const;     // -1 when disabled

  void Shutdown();

  // Re-reads --token_file (what SIGHUP does): the new tokens apply to calls checked from now
  // on. On an error (unreadable or invalid file) the previous tokens stay, and the error is
  // logged ("auth.reload_failed") and returned. FAILED_PRECONDITION without a token file.
  absl::Status ReloadTokens();

  struct Parts;

 private:
  explicit VerdictServer(std::unique_ptr<Parts> parts);
  std::unique_ptr<Parts> parts_;
};

// Blocks SIGTERM/SIGINT/SIGHUP, starts the server, reloads tokens on each SIGHUP, waits for
// SIGTERM or SIGINT, shuts down. Returns the
// start-up error, if any.
absl::Status RunServer(const ServerConfig& config);

}  // namespace verdict::server

#endif  // VERDICT_SERVER_SERVER_H_
