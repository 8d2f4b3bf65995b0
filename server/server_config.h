// ServerConfig: everything verdictd is configured with. main.cc fills it from flags; tests
// build one directly. Plain value type.
#ifndef VERDICT_SERVER_SERVER_CONFIG_H_
#define VERDICT_SERVER_SERVER_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace verdict::server {

struct ServerConfig {
  std::string host = "127.0.0.1";  // loopback unless told otherwise
  int port = 50051;                // 0 picks a free port (tests)
  int metrics_port = 9464;         // -1 disables the /metrics endpoint; 0 picks a free port
  // HTTP/JSON scoring (http_scoring.h): -1 (default) off; 0 picks a free port.
  int http_port = -1;
  // Where HTTP listens; empty: `host`. Plain HTTP only (Debian 12's civetweb cannot serve TLS
  // with OpenSSL 3), so with TLS on gRPC it must be a loopback address, behind a TLS proxy.
  std::string http_host;
  int http_threads = 32;   // HTTP requests in flight at once (civetweb workers)
  std::string http_model;  // what /get_reward scores with when the URL names no ?model=
  // SQLite job store, checkpoints, trained models. One verdictd at a time owns it (a flock on
  // <state_dir>/LOCK, held for the server's life).
  std::string state_dir = "./verdict-data";
  std::string data_dir;   // root of dataset paths in requests; empty: <state_dir>/data
  std::string model_dir;  // root of model paths in requests; empty: <state_dir>/models-in

  int max_concurrent_jobs = 1;
  // The verdict-train binary a data-parallel job (spec.world_size > 1) runs one process of per
  // rank (server/rank_group.h); empty: the one beside verdictd's own executable.
  std::string train_worker_binary;
  int max_queued_jobs = 64;
  // How long a finished job's per-job_id metric series (verdict_training_*) stay exported:
  // a few scrape intervals, so its last values are scraped, then removed so series do not
  // pile up. The values stay in the job store (Job.progress).
  absl::Duration job_series_retention = absl::Seconds(60);
  std::string default_device = "cpu";
  int64_t max_message_bytes = 64 << 20;
  int64_t max_dataset_bytes = int64_t{1} << 30;
  int64_t max_items_per_request = 1024;
  int64_t max_item_bytes = 256 << 10;

  // Scoring batcher, per loaded model.
  // Tokens a scoring forward computes (ScoringModel::ForwardTokens: padding included, a shared
  // prompt once); on CPU larger batches score fewer items/s (bench/RESULTS.md).
  int64_t max_batch_tokens = 2048;
  int64_t max_batch_items = 256;
  absl::Duration max_queue_delay = absl::Milliseconds(2);
  int64_t max_queued_items = 4096;

  // Thread budgets per role, so that scoring keeps its latency while a job trains on the same
  // CPU (core/score/thread_budget.h, README "Scoring next to training"). 0: the library's own
  // default (one thread per core for LibTorch; OPENBLAS_NUM_THREADS or one per core for BLAS).
  int scoring_threads = 0;   // LibTorch intra-op threads of scoring forwards
  int training_threads = 0;  // LibTorch intra-op threads of each training job's thread
  int blas_threads = 0;      // OpenBLAS threads, process-wide (one pool for every role)
  // Scheduling priority (nice, 0-19) of the threads that run training jobs: when training and
  // scoring both want the cores, the kernel runs scoring; idle cores still train. 0: equal.
  int training_nice = 0;
  // Before each micro-batch a training job waits while scoring requests are in flight, up to
  // this long (0: never waits).
  absl::Duration training_yield = absl::ZeroDuration();

  // "int8": encoders loaded on the CPU score with int8 linear layers (ModelOptions::int8_linear;
  // faster, with the pairwise agreement with float32 bench/RESULTS.md reports). "none": float32.
  // Decoders and GPU models stay as they are.
  std::string scoring_quantization = "none";
  // Decoders: the items of a batch that share a prompt are scored with the prompt computed
  // once (ScoringSettings::share_prefixes); scores are the same either way (1e-5).
  bool prefix_sharing = true;

  // Models ("name" or "name:version") loaded at start.
  std::vector<std::string> preload_models;

  // On SIGTERM: stop accepting, checkpoint the running job, finish in-flight RPCs within this.
  absl::Duration drain_grace = absl::Seconds(30);

  // Callers and their roles (server/auth.h): `role name token-or-sha256:<hex>` lines, or one
  // bare token (an admin). Re-read on SIGHUP. Empty: see api_token.
  std::string token_file;
  // Without token_file: one admin bearer token (tests, embedding); both empty = no
  // authentication.
  std::string api_token;
  std::string tls_cert_file;  // both set: serve TLS
  std::string tls_key_file;
  // PEM roots client certificates must chain to; set (with TLS): every client must present a
  // verified certificate, and its identity is logged on audited calls.
  std::string tls_client_ca_file;

  // /metrics: the address it binds (empty: the same as `host`) and HTTP basic auth
  // (`user sha256:<hex>` lines; empty: none). No TLS: Debian 12's civetweb (under
  // prometheus-cpp's Exposer) crashes on the first HTTPS request with OpenSSL 3; put a
  // TLS-terminating proxy in front, or keep it on loopback.
  std::string metrics_address;
  std::string metrics_basic_auth_file;

  // ---- Scaling out: roles (server.h) ------------------------------------------------------
  // "all" (one process does everything), "control" (job store, training, registry, datasets;
  // it may still score) or "scoring" (a replica with no store of its own that serves ScoreBatch
  // for the models the control plane names, model_follower.h).
  std::string role = "all";
  // Scoring role only: the control plane's gRPC target (e.g. dns:///verdict-control:50051),
  // required; a file holding the bearer token sent to it (optional); the aliases served,
  // "name:alias" each (empty: every alias the control plane has).
  std::string control_plane;
  std::string control_plane_token_file;
  std::vector<std::string> serve_models;

  std::string log_format = "text";  // text | json
  std::string log_level = "info";
};

}  // namespace verdict::server

#endif  // VERDICT_SERVER_SERVER_CONFIG_H_
