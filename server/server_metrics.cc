#include "server/server_metrics.h"

#include <dlfcn.h>
#include <pthread.h>

#include <algorithm>
#include <exception>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace verdict {
namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;
using prometheus::Registry;

Family<Counter>& AddCounter(Registry& registry, const std::string& name, const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry);
}

Family<Gauge>& AddGauge(Registry& registry, const std::string& name, const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry);
}

Family<Histogram>& AddHistogram(Registry& registry, const std::string& name,
                                const std::string& help) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(registry);
}

std::string MethodLabel(absl::string_view method) {
  // A full gRPC path ("/verdict.v1.ScoringService/ScoreBatch") keeps only its last part, so
  // interceptors (full path) and handlers (bare name) produce the same series.
  const size_t slash = method.rfind('/');
  if (slash != absl::string_view::npos) method.remove_prefix(slash + 1);
  return method.empty() ? "unknown" : std::string(method);
}

std::string StateLabel(absl::string_view state) {
  std::string label = absl::AsciiStrToLower(state);
  absl::string_view view = label;
  if (absl::ConsumePrefix(&view, "job_state_")) label = std::string(view);
  return label.empty() ? "unspecified" : label;
}

double Seconds(absl::Duration duration) { return absl::ToDoubleSeconds(duration); }

std::vector<double> PowersOfTwo(int first_exponent, int last_exponent) {
  std::vector<double> buckets;
  for (int e = first_exponent; e <= last_exponent; ++e) {
    buckets.push_back(static_cast<double>(int64_t{1} << e));
  }
  return buckets;
}

}  // namespace

absl::string_view ScoringRejectionLabel(ScoringRejection reason) {
  switch (reason) {
    case ScoringRejection::kQueueFull:
      return "queue_full";
    case ScoringRejection::kDeadlineExceeded:
      return "deadline_exceeded";
    case ScoringRejection::kCancelled:
      return "cancelled";
    case ScoringRejection::kInvalid:
      return "invalid";
    case ScoringRejection::kForwardFailed:
      return "forward_failed";
    case ScoringRejection::kShuttingDown:
      return "shutting_down";
    case ScoringRejection::kModelNotFound:
      return "model_not_found";
    case ScoringRejection::kLoadFailed:
      return "load_failed";
    case ScoringRejection::kUnauthenticated:
      return "unauthenticated";
  }
  return "unknown";
}

const std::vector<double>& ServerMetrics::LatencyBuckets() {
  static const auto* const kBuckets = new std::vector<double>{
      0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
      0.1,     0.25,   0.5,     1,      2.5,   5,      10,    30,   60};
  return *kBuckets;
}

const std::vector<double>& ServerMetrics::BatchItemsBuckets() {
  static const auto* const kBuckets = new std::vector<double>(PowersOfTwo(0, 10));
  return *kBuckets;
}

const std::vector<double>& ServerMetrics::BatchTokensBuckets() {
  static const auto* const kBuckets = new std::vector<double>(PowersOfTwo(6, 18));
  return *kBuckets;
}

const std::vector<double>& ServerMetrics::CheckpointBuckets() {
  static const auto* const kBuckets = new std::vector<double>{
      0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};
  return *kBuckets;
}

const std::vector<double>& ServerMetrics::JobDurationBuckets() {
  static const auto* const kBuckets = new std::vector<double>{
      1, 5, 10, 30, 60, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800};
  return *kBuckets;
}

ServerMetrics::ServerMetrics(Registry& registry, const BuildInfo& build_info, absl::Time start_time)
    : rpc_requests_(AddCounter(registry, "verdict_rpc_requests_total",
                               "Finished RPCs by method and final status code.")),
      rpc_duration_(AddHistogram(registry, "verdict_rpc_duration_seconds",
                                 "RPC time from arrival to final status, by method.")),
      scoring_queue_depth_(AddGauge(registry, "verdict_scoring_queue_depth",
                                    "Sequences (items) waiting in the model's scoring queue.")),
      scoring_queue_capacity_(
          AddGauge(registry, "verdict_scoring_queue_capacity",
                   "Sequences the model's scoring queue holds; beyond it requests are "
                   "rejected with RESOURCE_EXHAUSTED.")),
      scoring_queue_seconds_(AddHistogram(registry, "verdict_scoring_queue_seconds",
                                          "Time a scoring request waited for its batch.")),
      scoring_compute_seconds_(AddHistogram(registry, "verdict_scoring_compute_seconds",
                                            "Forward pass time of one scoring batch.")),
      scoring_batch_items_(
          AddHistogram(registry, "verdict_scoring_batch_items", "Items per scoring batch.")),
      scoring_batch_tokens_(
          AddHistogram(registry, "verdict_scoring_batch_tokens",
                       "Tokens a scoring batch's forward computes (padding included, a shared "
                       "prompt once).")),
      scoring_items_(AddCounter(registry, "verdict_scoring_items_total",
                                "Items scored, by model and version.")),
      scoring_rejected_(AddCounter(
          registry, "verdict_scoring_rejected_total",
          "Scoring requests turned away without a score, by model, version and reason.")),
      models_loaded_(AddGauge(registry, "verdict_models_loaded",
                              "1 while a model version is loaded for scoring, else 0.")),
      jobs_(AddGauge(registry, "verdict_jobs", "Training jobs in each state.")),
      training_step_(AddGauge(registry, "verdict_training_step",
                              "Last logged optimizer step of a training job.")),
      training_epoch_(AddGauge(registry, "verdict_training_epoch",
                               "Fractional epoch of a training job's last logged step.")),
      training_loss_(AddGauge(registry, "verdict_training_loss",
                              "Training loss at a job's last logged step.")),
      training_accuracy_(AddGauge(registry, "verdict_training_accuracy",
                                  "Training pair accuracy at a job's last logged step.")),
      training_eval_accuracy_(AddGauge(registry, "verdict_training_eval_accuracy",
                                       "Pair accuracy of a job's last evaluation.")),
      training_pairs_per_second_(AddGauge(registry, "verdict_training_pairs_per_second",
                                          "Training throughput in preference pairs/s.")),
      training_tokens_per_second_(AddGauge(registry, "verdict_training_tokens_per_second",
                                           "Training throughput in tokens/s.")),
      checkpoint_duration_(AddHistogram(registry, "verdict_checkpoint_duration_seconds",
                                        "Time to write one training checkpoint.")),
      job_duration_(AddHistogram(registry, "verdict_job_duration_seconds",
                                 "Submit-to-finish time of jobs, by terminal state.")),
      build_info_(AddGauge(registry, "verdict_build_info",
                           "Always 1; the labels say which build is running.")),
      start_time_(AddGauge(registry, "verdict_start_time_seconds",
                           "Server start time in seconds since the Unix epoch.")),
      device_memory_(AddGauge(registry, "verdict_device_memory_bytes",
                              "Memory held by the device allocator.")) {
  build_info_
      .Add({{"version", build_info.version},
            {"commit", build_info.commit},
            {"device", build_info.device}})
      .Set(1);
  start_time_.Add({}).Set(absl::ToDoubleSeconds(start_time - absl::UnixEpoch()));
  // Every state starts at an explicit 0, so that increase() and delta() in alerts see the
  // first failed job as a change, not as a series appearing out of nowhere.
  for (const char* state :
       {"queued", "running", "cancelling", "succeeded", "failed", "cancelled"}) {
    jobs_.Add({{"state", state}});
  }
  for (const char* state : {"succeeded", "failed", "cancelled"}) {
    job_duration_.Add({{"state", state}}, JobDurationBuckets());
  }
}

void ServerMetrics::RecordRpc(absl::string_view method, absl::StatusCode code,
                              absl::Duration duration) {
  std::string method_label = MethodLabel(method);
  rpc_requests_.Add({{"method", method_label}, {"code", absl::StatusCodeToString(code)}})
      .Increment();
  rpc_duration_.Add({{"method", std::move(method_label)}}, LatencyBuckets())
      .Observe(Seconds(duration));
}

void ServerMetrics::SetScoringQueueDepth(absl::string_view model, int64_t sequences) {
  scoring_queue_depth_.Add({{"model", std::string(model)}}).Set(static_cast<double>(sequences));
}

void ServerMetrics::SetScoringQueueCapacity(absl::string_view model, int64_t sequences) {
  scoring_queue_capacity_.Add({{"model", std::string(model)}})
      .Set(static_cast<double>(sequences));
}

void ServerMetrics::RecordScoringQueueWait(absl::string_view model, absl::string_view version,
                                           absl::Duration wait) {
  scoring_queue_seconds_
      .Add({{"model", std::string(model)}, {"version", std::string(version)}}, LatencyBuckets())
      .Observe(Seconds(wait));
}

void ServerMetrics::RecordScoringBatch(absl::string_view model, absl::string_view version,
                                       int64_t items, int64_t tokens, absl::Duration compute,
                                       bool ok) {
  const prometheus::Labels labels = {{"model", std::string(model)},
                                     {"version", std::string(version)}};
  scoring_batch_items_.Add(labels, BatchItemsBuckets()).Observe(static_cast<double>(items));
  scoring_batch_tokens_.Add(labels, BatchTokensBuckets()).Observe(static_cast<double>(tokens));
  scoring_compute_seconds_.Add(labels, LatencyBuckets()).Observe(Seconds(compute));
  prometheus::Counter& scored = scoring_items_.Add(labels);
  if (ok) scored.Increment(static_cast<double>(items));
}

void ServerMetrics::RecordScoringRejected(absl::string_view model, absl::string_view version,
                                          ScoringRejection reason, int64_t requests) {
  scoring_rejected_
      .Add({{"model", std::string(model)},
            {"version", std::string(version)},
            {"reason", std::string(ScoringRejectionLabel(reason))}})
      .Increment(static_cast<double>(requests));
}

namespace {

template <typename T>
void RemoveSeries(prometheus::Family<T>& family, const prometheus::Labels& labels) {
  // Has() then Add() finds the existing metric (Add makes none: it is there); a concurrent
  // writer may re-create the series afterwards, which only delays its removal.
  if (family.Has(labels)) family.Remove(&family.Add(labels));
}

template <typename T>
void RemoveSeries(prometheus::Family<T>& family, const prometheus::Labels& labels,
                  const std::vector<double>& buckets) {
  if (family.Has(labels)) family.Remove(&family.Add(labels, buckets));
}

}  // namespace

void ServerMetrics::RemoveScoringVersion(absl::string_view model, absl::string_view version) {
  const prometheus::Labels labels = {{"model", std::string(model)},
                                     {"version", std::string(version)}};
  RemoveSeries(scoring_queue_seconds_, labels, LatencyBuckets());
  RemoveSeries(scoring_compute_seconds_, labels, LatencyBuckets());
  RemoveSeries(scoring_batch_items_, labels, BatchItemsBuckets());
  RemoveSeries(scoring_batch_tokens_, labels, BatchTokensBuckets());
  RemoveSeries(scoring_items_, labels);
  for (ScoringRejection reason :
       {ScoringRejection::kQueueFull, ScoringRejection::kDeadlineExceeded,
        ScoringRejection::kCancelled, ScoringRejection::kInvalid, ScoringRejection::kForwardFailed,
        ScoringRejection::kShuttingDown, ScoringRejection::kModelNotFound,
        ScoringRejection::kLoadFailed, ScoringRejection::kUnauthenticated}) {
    prometheus::Labels with_reason = labels;
    with_reason["reason"] = std::string(ScoringRejectionLabel(reason));
    RemoveSeries(scoring_rejected_, with_reason);
  }
}

void ServerMetrics::SetModelLoaded(absl::string_view model, absl::string_view version,
                                   bool loaded) {
  models_loaded_.Add({{"model", std::string(model)}, {"version", std::string(version)}})
      .Set(loaded ? 1 : 0);
}

void ServerMetrics::SetJobCount(absl::string_view state, int64_t count) {
  jobs_.Add({{"state", StateLabel(state)}}).Set(static_cast<double>(count));
}

void ServerMetrics::RecordJobStateChange(absl::string_view from, absl::string_view to) {
  if (!from.empty()) jobs_.Add({{"state", StateLabel(from)}}).Decrement();
  jobs_.Add({{"state", StateLabel(to)}}).Increment();
}

void ServerMetrics::RecordTrainingStep(absl::string_view job_id, const TrainingStepMetrics& step) {
  const prometheus::Labels labels = {{"job_id", std::string(job_id)}};
  training_step_.Add(labels).Set(static_cast<double>(step.step));
  training_epoch_.Add(labels).Set(step.epoch);
  training_loss_.Add(labels).Set(step.loss);
  training_accuracy_.Add(labels).Set(step.accuracy);
  training_pairs_per_second_.Add(labels).Set(step.pairs_per_second);
  training_tokens_per_second_.Add(labels).Set(step.tokens_per_second);
}

void ServerMetrics::RecordTrainingEval(absl::string_view job_id, double eval_accuracy) {
  training_eval_accuracy_.Add({{"job_id", std::string(job_id)}}).Set(eval_accuracy);
}

void ServerMetrics::RecordCheckpoint(absl::Duration duration) {
  checkpoint_duration_.Add({}, CheckpointBuckets()).Observe(Seconds(duration));
}

void ServerMetrics::RecordJobFinished(absl::string_view state, absl::Duration duration) {
  job_duration_.Add({{"state", StateLabel(state)}}, JobDurationBuckets())
      .Observe(Seconds(duration));
}

void ServerMetrics::RemoveJob(absl::string_view job_id) {
  const prometheus::Labels labels = {{"job_id", std::string(job_id)}};
  for (Family<Gauge>* family :
       {&training_step_, &training_epoch_, &training_loss_, &training_accuracy_,
        &training_eval_accuracy_, &training_pairs_per_second_, &training_tokens_per_second_}) {
    // Has + Add + Remove is not atomic, but a job's series are only written by its own
    // worker, which has finished by the time anyone removes them.
    if (family->Has(labels)) family->Remove(&family->Add(labels));
  }
}

void ServerMetrics::SetDeviceMemoryBytes(absl::string_view device, int64_t bytes) {
  device_memory_.Add({{"device", std::string(device)}}).Set(static_cast<double>(bytes));
}

absl::StatusOr<std::unique_ptr<prometheus::Exposer>> StartMetricsExposer(
    absl::string_view host, int port, const std::shared_ptr<prometheus::Registry>& registry) {
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("metrics port ", port, " is out of range"));
  }
  if (registry == nullptr) return absl::InvalidArgumentError("metrics registry is null");
  // civetweb wants IPv6 literals in brackets: "[::]:9464".
  const std::string address = absl::StrContains(host, ':') && !absl::StartsWith(host, "[")
                                  ? absl::StrCat("[", host, "]:", port)
                                  : absl::StrCat(host, ":", port);
  try {
    auto exposer = std::make_unique<prometheus::Exposer>(address);
    exposer->RegisterCollectable(registry);
    return exposer;
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", address,
                                               " (port in use or address not local?): ", e.what()));
  }
}

}  // namespace verdict

// prometheus-cpp serves /metrics through civetweb, whose Debian build starts its threads with a
// fixed 100 KiB stack (pthread_attr_setstacksize(102400)). glibc carves a thread's static TLS
// out of its stack, and in a process holding LibTorch the static TLS of libopenblas and libglog
// alone is about 100 KiB: pthread_create then fails with EINVAL and the exposer cannot start
// ("Cannot create first worker thread"). Every thread's requested stack is raised to at least
// 1 MiB here; the executable exports this symbol (see server/CMakeLists.txt), so civetweb's
// call binds to it. Larger requests pass through unchanged.
extern "C" int pthread_attr_setstacksize(pthread_attr_t* attr, size_t size) {
  using Setter = int (*)(pthread_attr_t*, size_t);
  static const Setter real = reinterpret_cast<Setter>(dlsym(RTLD_NEXT, "pthread_attr_setstacksize"));
  constexpr size_t kMinimumStack = size_t{1} << 20;
  return real(attr, std::max(size, kMinimumStack));
}
