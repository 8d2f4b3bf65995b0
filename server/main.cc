// verdictd: flags -> ServerConfig -> RunServer. With no flags it serves on localhost:50051
// (metrics on :9464) and keeps everything under ./verdict-data (--state_dir), which it locks.
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/ascii.h"
#include "core/util/build_info.h"
#include "core/util/file_util.h"
#include "server/auth.h"
#include "server/server.h"

ABSL_FLAG(std::string, host, "127.0.0.1", "Address to listen on (0.0.0.0 for every interface).");
ABSL_FLAG(int, port, 50051, "gRPC port (0 picks a free one).");
ABSL_FLAG(int, metrics_port, 9464, "Prometheus /metrics port; -1 disables it.");
ABSL_FLAG(int, http_port, -1,
          "HTTP/JSON scoring port (POST /get_reward as OpenRLHF calls it, POST /v1/score); "
          "-1 (default) off, 0 picks a free one.");
ABSL_FLAG(std::string, http_host, "",
          "Address HTTP scoring listens on (default: --host). Plain HTTP: with --tls_cert it must "
          "be loopback (put a TLS proxy in front).");
ABSL_FLAG(int, http_threads, 32, "HTTP scoring requests in flight at once.");
ABSL_FLAG(std::string, http_model, "",
          "Model /get_reward scores with when the URL has no ?model=: name, name:version or "
          "name:alias.");
ABSL_FLAG(std::string, metrics_address, "",
          "Address /metrics binds (empty: the same as --host; 127.0.0.1 keeps it local while "
          "gRPC listens on every interface).");
ABSL_FLAG(std::string, metrics_basic_auth_file, "",
          "File of `user sha256:<hex>` lines (printf %s \"$PASSWORD\" | sha256sum); set: "
          "/metrics requires HTTP basic auth.");
ABSL_FLAG(std::string, state_dir, "./verdict-data", "Job store, checkpoints, datasets and trained models.");
ABSL_FLAG(std::string, data_dir, "", "Root of dataset paths named in requests (empty: <state_dir>/data).");
ABSL_FLAG(std::string, model_dir, "", "Root of model paths named in requests (empty: <state_dir>/models-in).");
ABSL_FLAG(int, max_concurrent_jobs, 1, "Training jobs run at once.");
ABSL_FLAG(std::string, train_worker_binary, "",
          "verdict-train, run once per rank of a job with world_size > 1 (empty: the one beside "
          "verdictd).");
ABSL_FLAG(int, max_queued_jobs, 64, "Queued training jobs before submits get RESOURCE_EXHAUSTED.");
ABSL_FLAG(std::string, default_device, "cpu", "Device for jobs and models that name none (cpu, cuda, cuda:N).");
ABSL_FLAG(int64_t, max_message_bytes, 64 << 20, "Largest gRPC message accepted or sent.");
ABSL_FLAG(int64_t, max_dataset_bytes, int64_t{1} << 30, "Largest dataset upload.");
ABSL_FLAG(int64_t, max_items_per_request, 1024, "Items per ScoreBatch request.");
ABSL_FLAG(int64_t, max_item_bytes, 256 << 10, "Text bytes per ScoreBatch item.");
ABSL_FLAG(int64_t, max_batch_tokens, 2048,
          "Tokens one scoring forward pass computes: real tokens for encoders (packed), for "
          "decoders a shared prompt once plus its completions, padding included where rows are "
          "padded (CPU default; raise it on a GPU, e.g. 32768).");
ABSL_FLAG(int64_t, max_batch_items, 256, "Sequences per scoring forward pass.");
ABSL_FLAG(double, max_queue_delay_ms, 2.0, "How long a scoring request may wait for others to batch with.");
ABSL_FLAG(int64_t, max_queued_items, 4096, "Sequences waiting per model before RESOURCE_EXHAUSTED.");
ABSL_FLAG(bool, prefix_sharing, true,
          "Decoders: score the completions of one prompt with the prompt computed once.");
ABSL_FLAG(int, scoring_threads, 0,
          "LibTorch intra-op threads of scoring forwards (0: LibTorch's default, one per core).");
ABSL_FLAG(int, threads, 0, "Deprecated name of --scoring_threads.");
ABSL_FLAG(int, training_threads, 0,
          "LibTorch intra-op threads of each training job (0: LibTorch's default).");
ABSL_FLAG(int, blas_threads, 0,
          "OpenBLAS threads, process-wide (0: OPENBLAS_NUM_THREADS, else one per core).");
ABSL_FLAG(int, training_nice, 0,
          "Scheduling priority (nice, 0-19) of training jobs' threads: when training and scoring "
          "both want the cores, scoring runs first (0: equal priority).");
ABSL_FLAG(double, training_yield_ms, 0,
          "Before each micro-batch a training job waits up to this long while scoring requests "
          "are in flight (0: never).");
ABSL_FLAG(std::string, scoring_quantization, "none",
          "int8: encoders loaded on the CPU score with int8 linear layers (faster; see "
          "bench/RESULTS.md for the agreement with float32). none: float32.");
ABSL_FLAG(std::vector<std::string>, preload_models, {}, "Models to load at start: name or name:version or name:alias.");
ABSL_FLAG(double, drain_grace_seconds, 30, "On SIGTERM, how long in-flight RPCs may take.");
ABSL_FLAG(std::string, token_file, "",
          "Callers clients authenticate as: `role name token` lines (role score, train or admin; "
          "the token plain or sha256:<hex>), or one bare token (an admin). Re-read on SIGHUP. "
          "Unset: no auth; an empty file, a placeholder such as changeme or a malformed line is "
          "refused.");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain; with --tls_key, serve TLS.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key.");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM roots for client certificates; set (with --tls_cert): mutual TLS, every client "
          "must present a certificate they sign.");
ABSL_FLAG(std::string, role, "all",
          "all (one process does everything), control (job store, training, model registry, "
          "datasets) or scoring (a stateless replica serving ScoreBatch for the models the "
          "control plane names).");
ABSL_FLAG(std::string, control_plane, "",
          "--role=scoring: the control plane's gRPC target, e.g. dns:///verdict-control:50051 "
          "(required).");
ABSL_FLAG(std::string, control_plane_token_file, "",
          "--role=scoring: file holding the bearer token sent to the control plane (a score "
          "role token suffices).");
ABSL_FLAG(std::vector<std::string>, serve_models, {},
          "--role=scoring: NAME:ALIAS,... the replica preloads and follows (empty: every alias "
          "the control plane has).");
ABSL_FLAG(std::string, log_format, "text", "text or json.");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warning or error.");

int main(int argc, char** argv) {
  verdict::SetUpProgramUsage("verdictd",
                             "trains reward models and serves their scores over gRPC.\n"
                             "Usage: verdictd [--flag=value ...]",
                             "server/main.cc");
  absl::ParseCommandLine(argc, argv);
  verdict::server::ServerConfig config;
  config.host = absl::GetFlag(FLAGS_host);
  config.port = absl::GetFlag(FLAGS_port);
  config.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  config.http_port = absl::GetFlag(FLAGS_http_port);
  config.http_host = absl::GetFlag(FLAGS_http_host);
  config.http_threads = absl::GetFlag(FLAGS_http_threads);
  config.http_model = absl::GetFlag(FLAGS_http_model);
  config.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  config.metrics_basic_auth_file = absl::GetFlag(FLAGS_metrics_basic_auth_file);
  config.state_dir = absl::GetFlag(FLAGS_state_dir);
  config.data_dir = absl::GetFlag(FLAGS_data_dir);
  config.model_dir = absl::GetFlag(FLAGS_model_dir);
  config.max_concurrent_jobs = absl::GetFlag(FLAGS_max_concurrent_jobs);
  config.max_queued_jobs = absl::GetFlag(FLAGS_max_queued_jobs);
  config.train_worker_binary = absl::GetFlag(FLAGS_train_worker_binary);
  config.default_device = absl::GetFlag(FLAGS_default_device);
  config.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  config.max_dataset_bytes = absl::GetFlag(FLAGS_max_dataset_bytes);
  config.max_items_per_request = absl::GetFlag(FLAGS_max_items_per_request);
  config.max_item_bytes = absl::GetFlag(FLAGS_max_item_bytes);
  config.max_batch_tokens = absl::GetFlag(FLAGS_max_batch_tokens);
  config.max_batch_items = absl::GetFlag(FLAGS_max_batch_items);
  config.max_queue_delay = absl::Microseconds(absl::GetFlag(FLAGS_max_queue_delay_ms) * 1000);
  config.max_queued_items = absl::GetFlag(FLAGS_max_queued_items);
  config.scoring_threads = absl::GetFlag(FLAGS_scoring_threads) > 0
                               ? absl::GetFlag(FLAGS_scoring_threads)
                               : absl::GetFlag(FLAGS_threads);
  config.training_threads = absl::GetFlag(FLAGS_training_threads);
  config.blas_threads = absl::GetFlag(FLAGS_blas_threads);
  config.training_nice = absl::GetFlag(FLAGS_training_nice);
  config.training_yield = absl::Microseconds(absl::GetFlag(FLAGS_training_yield_ms) * 1000);
  config.scoring_quantization = absl::GetFlag(FLAGS_scoring_quantization);
  config.prefix_sharing = absl::GetFlag(FLAGS_prefix_sharing);
  config.preload_models = absl::GetFlag(FLAGS_preload_models);
  config.drain_grace = absl::Seconds(absl::GetFlag(FLAGS_drain_grace_seconds));
  config.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  config.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  config.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  config.log_format = absl::GetFlag(FLAGS_log_format);
  config.log_level = absl::GetFlag(FLAGS_log_level);
  config.role = absl::GetFlag(FLAGS_role);
  config.control_plane = absl::GetFlag(FLAGS_control_plane);
  config.control_plane_token_file = absl::GetFlag(FLAGS_control_plane_token_file);
  config.serve_models = absl::GetFlag(FLAGS_serve_models);
  config.token_file = absl::GetFlag(FLAGS_token_file);
  if (!config.token_file.empty()) {
    // Checked here too, for its own exit status: an empty file would turn authentication off
    // without a word.
    auto tokens = verdict::server::ReadTokenFile(config.token_file);
    if (!tokens.ok()) {
      std::cerr << "verdictd: " << tokens.status().message() << "\n";
      return 2;
    }
  }
  absl::Status status = verdict::server::RunServer(config);
  if (!status.ok()) {
    std::cerr << "verdictd: " << status.message() << "\n";
    return 1;
  }
  return 0;
}
