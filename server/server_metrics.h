// ServerMetrics: every Prometheus series verdictd exports, behind plain C++ methods.
//
// The server builds one ServerMetrics on the registry it exposes (see StartMetricsExposer) and
// hands it to the RPC layer, the scoring batcher, the job workers and the model registry; each
// calls the methods for what it sees. Names follow the Prometheus conventions: a `verdict_`
// prefix, base units (`_seconds`, `_bytes`), `_total` counters. deploy/grafana/verdict.json and
// deploy/prometheus/alerts.yaml query these names, and tests/deploy checks that every name
// they use is one this class exports.
//
// Label values that the server passes in are normalised here, so that dashboards see one
// spelling whatever the caller had at hand:
//   - RPC methods: the bare method name; "/verdict.v1.ScoringService/ScoreBatch" and
//     "ScoreBatch" both become method="ScoreBatch".
//   - status codes: absl::StatusCode's canonical names ("OK", "INVALID_ARGUMENT", ...), the
//     same numbers as grpc::StatusCode, so `static_cast<absl::StatusCode>(s.error_code())`.
//   - job states: lower case without the enum prefix; "JOB_STATE_FAILED" and "failed" both
//     become state="failed".
//
// Thread safety: every method may be called from any thread at any time (prometheus-cpp's
// families and metrics are internally synchronised; this class adds no state of its own).
// The registry must outlive this object.
//
// Example:
//   auto registry = std::make_shared<prometheus::Registry>();
//   ServerMetrics metrics(*registry, {"0.1.0", "abc123", "cpu"});  // version, commit, device
//   ASSIGN_OR_RETURN(auto exposer, StartMetricsExposer("0.0.0.0", 9464, registry));
//   metrics.RecordRpc("ScoreBatch", absl::StatusCode::kOk, absl::Milliseconds(3));
#ifndef VERDICT_SERVER_SERVER_METRICS_H_
#define VERDICT_SERVER_SERVER_METRICS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace verdict {

// Why the scoring path turned a request away without scoring it (the `reason` label of
// verdict_scoring_rejected_total).
enum class ScoringRejection {
  kQueueFull,         // RESOURCE_EXHAUSTED: the queue already held its capacity of sequences.
  kDeadlineExceeded,  // the deadline passed while the request was queued.
  kCancelled,         // the client went away while the request was queued.
  kInvalid,           // INVALID_ARGUMENT / FAILED_PRECONDITION from validating the request
                      // (bad model reference, too many items, bad item, too long under DROP).
  kForwardFailed,     // the forward pass it was in failed (e.g. CUDA out of memory).
  kShuttingDown,      // UNAVAILABLE: the server or the version's batcher is draining.
  kModelNotFound,     // NOT_FOUND: no such model, version or alias.
  kLoadFailed,        // the version could not be loaded (DATA_LOSS, a missing device, ...).
  kUnauthenticated,   // UNAUTHENTICATED: a missing or wrong bearer token.
};

// The label value for `reason`: "queue_full", "deadline_exceeded", "cancelled", "invalid",
// "forward_failed", "shutting_down", "model_not_found", "load_failed", "unauthenticated".
absl::string_view ScoringRejectionLabel(ScoringRejection reason);

// What one logged training step reports for a job (the per-job gauges).
struct TrainingStepMetrics {
  int64_t step = 0;
  double epoch = 0;  // fractional: 1.5 is halfway through the second epoch
  double loss = 0;
  double accuracy = 0;
  double pairs_per_second = 0;
  double tokens_per_second = 0;
};

class ServerMetrics {
 public:
  // verdict_build_info's labels.
  struct BuildInfo {
    std::string version;  // the project version, e.g. "0.1.0"
    std::string commit;   // the git commit the binary was built from ("unknown" if not known)
    std::string device;   // the default device, e.g. "cpu" or "cuda:0"
  };

  // Bucket boundaries, exposed for the tests and for anyone reading a dashboard.
  // Latencies: 50 µs to 60 s, about three buckets per decade.
  static const std::vector<double>& LatencyBuckets();
  // Items per batch: 1, 2, 4, ..., 1024.
  static const std::vector<double>& BatchItemsBuckets();
  // Tokens per batch: 64, 128, ..., 262144.
  static const std::vector<double>& BatchTokensBuckets();
  // Checkpoint writes: 10 ms to 10 min.
  static const std::vector<double>& CheckpointBuckets();
  // Whole jobs: 1 s to 1 week.
  static const std::vector<double>& JobDurationBuckets();

  // Registers every family on `registry` and sets verdict_build_info and
  // verdict_start_time_seconds (to `start_time`, the process start in production).
  ServerMetrics(prometheus::Registry& registry, const BuildInfo& build_info,
                absl::Time start_time = absl::Now());

  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  // --- RPCs -----------------------------------------------------------------------------
  // One finished RPC (unary or streaming): verdict_rpc_requests_total{method, code} and
  // verdict_rpc_duration_seconds{method}. Call it once per RPC, from the reactor's OnDone or
  // wherever the final status is known. `method` may be the full gRPC path.
  void RecordRpc(absl::string_view method, absl::StatusCode code, absl::Duration duration);

  // --- Scoring ---------------------------------------------------------------------------
  // Labels: `model` is the model name and `version` its version number ("3"), so that a hot
  // swap shows; RemoveScoringVersion drops a version's series when it is unloaded, which
  // bounds them. The queue gauges carry `model` only (one capacity per name, see
  // server/model_registry.h). A request refused before its model resolved (a bad reference,
  // an unknown model, a missing token) counts under model="" version="": labels never take
  // values a client made up.
  //
  // Sequences (items) waiting in the model's scoring queue now: verdict_scoring_queue_depth.
  // Call whenever the batcher's queue changes size.
  void SetScoringQueueDepth(absl::string_view model, int64_t sequences);
  // The sequences the queue accepts before Submit refuses with RESOURCE_EXHAUSTED (the
  // batcher's max_queue_items): verdict_scoring_queue_capacity. The saturation alert divides
  // verdict_scoring_queue_depth by it. Call when the batcher is created.
  void SetScoringQueueCapacity(absl::string_view model, int64_t sequences);
  // How long one request waited in the queue before its batch ran
  // (verdict_scoring_queue_seconds). Call once per request when its batch starts.
  void RecordScoringQueueWait(absl::string_view model, absl::string_view version,
                              absl::Duration wait);
  // One batch that ran: its size (verdict_scoring_batch_items, _tokens), the forward pass
  // time (verdict_scoring_compute_seconds) and, when `ok`, verdict_scoring_items_total +=
  // items (a failed forward scored nothing; its requests count as rejected forward_failed).
  void RecordScoringBatch(absl::string_view model, absl::string_view version, int64_t items,
                          int64_t tokens, absl::Duration compute, bool ok = true);
  // Requests turned away: verdict_scoring_rejected_total{model, version, reason} += requests.
  void RecordScoringRejected(absl::string_view model, absl::string_view version,
                             ScoringRejection reason, int64_t requests = 1);
  // Drops every scoring series labelled {model, version} (the queue gauges, by name, stay).
  void RemoveScoringVersion(absl::string_view model, absl::string_view version);
  // verdict_models_loaded{model, version}: 1 while the version is in memory, 0 after unload.
  void SetModelLoaded(absl::string_view model, absl::string_view version, bool loaded);

  // --- Training -------------------------------------------------------------------------
  // verdict_jobs{state}: the number of jobs in `state` now. Use it once at start-up (after
  // recovering jobs from the store) for every state; afterwards RecordJobStateChange. Every
  // state of JobState is exported from construction on, at 0.
  void SetJobCount(absl::string_view state, int64_t count);
  // One job moved from `from` to `to` (verdict_jobs{from} - 1, verdict_jobs{to} + 1). An
  // empty `from` means a new job.
  void RecordJobStateChange(absl::string_view from, absl::string_view to);
  // One logged step of a running job: verdict_training_{step,epoch,loss,accuracy,
  // pairs_per_second,tokens_per_second}{job_id}. The label is `job_id`, not `job`: Prometheus
  // owns `job` (the scrape job) and would rename ours to `exported_job`.
  void RecordTrainingStep(absl::string_view job_id, const TrainingStepMetrics& step);
  // One evaluation of a running job: verdict_training_eval_accuracy{job_id}.
  void RecordTrainingEval(absl::string_view job_id, double eval_accuracy);
  // One checkpoint write, from its start to the file on disk:
  // verdict_checkpoint_duration_seconds.
  void RecordCheckpoint(absl::Duration duration);
  // A job that started reached a terminal state after `duration` (start to finish; a job that
  // never started records nothing):
  // verdict_job_duration_seconds{state}. Its _count{state="failed"} is what the failed-job
  // alert watches; the three terminal states are exported from construction on, at 0.
  void RecordJobFinished(absl::string_view state, absl::Duration duration);
  // Drops the job's per-job series (step, epoch, loss, accuracy, eval accuracy, rates), so
  // finished jobs do not pile up as series forever. The job runner calls it when an attempt
  // ends (finished, or back in the queue at shutdown); the job's last values stay in the job
  // store (Job.progress).
  void RemoveJob(absl::string_view job_id);

  // --- Process ---------------------------------------------------------------------------
  // Memory the device allocator holds now (verdict_device_memory_bytes{device}), e.g.
  // "cuda:0": the CUDA caching allocator's reserved bytes, sampled every few seconds by the
  // model registry's loader thread once CUDA is in use. A CPU-only server has no such series.
  void SetDeviceMemoryBytes(absl::string_view device, int64_t bytes);

 private:
  prometheus::Family<prometheus::Counter>& rpc_requests_;
  prometheus::Family<prometheus::Histogram>& rpc_duration_;

  prometheus::Family<prometheus::Gauge>& scoring_queue_depth_;
  prometheus::Family<prometheus::Gauge>& scoring_queue_capacity_;
  prometheus::Family<prometheus::Histogram>& scoring_queue_seconds_;
  prometheus::Family<prometheus::Histogram>& scoring_compute_seconds_;
  prometheus::Family<prometheus::Histogram>& scoring_batch_items_;
  prometheus::Family<prometheus::Histogram>& scoring_batch_tokens_;
  prometheus::Family<prometheus::Counter>& scoring_items_;
  prometheus::Family<prometheus::Counter>& scoring_rejected_;
  prometheus::Family<prometheus::Gauge>& models_loaded_;

  prometheus::Family<prometheus::Gauge>& jobs_;
  prometheus::Family<prometheus::Gauge>& training_step_;
  prometheus::Family<prometheus::Gauge>& training_epoch_;
  prometheus::Family<prometheus::Gauge>& training_loss_;
  prometheus::Family<prometheus::Gauge>& training_accuracy_;
  prometheus::Family<prometheus::Gauge>& training_eval_accuracy_;
  prometheus::Family<prometheus::Gauge>& training_pairs_per_second_;
  prometheus::Family<prometheus::Gauge>& training_tokens_per_second_;
  prometheus::Family<prometheus::Histogram>& checkpoint_duration_;
  prometheus::Family<prometheus::Histogram>& job_duration_;

  prometheus::Family<prometheus::Gauge>& build_info_;
  prometheus::Family<prometheus::Gauge>& start_time_;
  prometheus::Family<prometheus::Gauge>& device_memory_;
};

// Starts prometheus-cpp's HTTP exposer on host:port serving `registry` at /metrics. Port 0
// picks a free port (read it back with exposer->GetListeningPorts()). prometheus-cpp reports a
// port in use (or a bad address) by throwing; this returns UNAVAILABLE naming the address
// instead. The exposer serves until it is destroyed; it holds only a weak reference to the
// registry, so keep the shared_ptr alive as long as the exposer. Destroying it takes up to
// 2 s (civetweb's poll interval); destroy it last when draining.
absl::StatusOr<std::unique_ptr<prometheus::Exposer>> StartMetricsExposer(
    absl::string_view host, int port, const std::shared_ptr<prometheus::Registry>& registry);

}  // namespace verdict

#endif  // VERDICT_SERVER_SERVER_METRICS_H_
