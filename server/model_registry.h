// ModelRegistry: the serving side of the model registry. Versions and aliases live in the
// JobStore; this class holds the versions that are loaded, each as a ScoringModel with its own
// DynamicBatcher, and loads a version on first use.
//
// Loaded versions are shared (std::shared_ptr): a request keeps the version it resolved to
// until its scores are back, so moving an alias, loading another version or unloading one never
// fails or stalls a request in flight; an unloaded version goes away when its last request is
// done.
//
// Metrics label every scoring series with the model NAME (as verdict_models_loaded does), not
// the version, to bound cardinality. Several versions of one name may be loaded at once (an
// alias moved on, a version asked for by number): verdict_scoring_queue_depth{model} is then
// the sum of their queues, and verdict_scoring_queue_capacity{model} the capacity of one queue
// (--max_queued_items, the same for every version), so the saturation alert errs early rather
// than late when two versions are busy. An unloaded version leaves the depth; a name with no
// version loaded reads 0 (its capacity stays: it is configuration, not a stale reading).
//
// Thread safety: all methods may be called from any thread. Loading a version happens once
// even when many requests ask for it at the same moment; the others wait for it.
#ifndef VERDICT_SERVER_MODEL_REGISTRY_H_
#define VERDICT_SERVER_MODEL_REGISTRY_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/score/dynamic_batcher.h"
#include "server/job_store.h"
#include "server/server_config.h"
#include "verdict/v1/models.pb.h"

namespace verdict {
class Logger;
class ServerMetrics;
}  // namespace verdict

namespace verdict::server {

class ScoringQueueGauges;  // one model name's queue gauges; model_registry.cc

// One loaded version.
struct LoadedModel {
  v1::Model info;  // as stored, with loaded/device set
  std::string label;  // "name:version", for logs and error messages (metrics use the name)
  std::unique_ptr<DynamicBatcher> batcher;

  // Publishes the batcher's queued sequences to verdict_scoring_queue_depth{model=name}: call
  // after each Submit() it accepted (the batcher itself reports what it takes out). A no-op
  // without metrics and once the version is unloaded.
  void ReportQueueDepth() const;

  // Null without metrics. Set by the registry; the id tells this version from the others.
  std::shared_ptr<ScoringQueueGauges> queue_gauges;
  int64_t queue_gauge_id = 0;
};

class ModelRegistry {
 public:
  struct Dependencies {
    JobStore* store = nullptr;
    ServerMetrics* metrics = nullptr;  // optional
    Logger* logger = nullptr;          // optional
    // Called with the number of loaded versions whenever it changes (for health).
    std::function<void(int)> on_loaded_count;
  };

  ModelRegistry(const ServerConfig& config, Dependencies dependencies);
  ~ModelRegistry();

  // The loaded version `ref` names, loading it on `device` (empty: the server default) if
  // needed. NOT_FOUND for an unknown model; DATA_LOSS when its files cannot be loaded.
  absl::StatusOr<std::shared_ptr<LoadedModel>> Acquire(const v1::ModelRef& ref,
                                                       const std::string& device = "");

  // Forgets the loaded version (requests in flight finish on it). Returns its info.
  absl::StatusOr<v1::Model> Unload(const v1::ModelRef& ref);

  // Validates the Hugging Face directory by loading it, copies it into the server's state
  // and registers it as the next version of `name`.
  absl::StatusOr<v1::Model> Import(const std::string& name, const std::string& source_dir,
                                   const std::string& relative_path, int32_t max_length,
                                   v1::TruncationPolicy truncation, v1::ChatFormat chat_format);

  // Sets `loaded` and `device` on a stored model message.
  void Decorate(v1::Model& model);

  // The directory holding a stored version's files.
  std::string StoragePath(const v1::Model& model) const;

  // Drains every batcher (SIGTERM): queued requests are scored, new ones refused.
  void DrainAll();

  int LoadedCount();

 private:
  using Key = std::pair<std::string, int64_t>;
  struct Slot {
    absl::Mutex mutex;  // held while loading
    std::shared_ptr<LoadedModel> loaded ABSL_GUARDED_BY(mutex);
  };

  // Loads `model` on `device` with its own batcher. With `queue_gauges` (serving), the
  // batcher reports to the scoring metrics and joins the name's queue gauges; without (the
  // import's check that a directory loads), it shows up in no metric.
  absl::StatusOr<std::shared_ptr<LoadedModel>> LoadVersion(
      const v1::Model& model, const std::string& device,
      std::shared_ptr<ScoringQueueGauges> queue_gauges);
  // The queue gauges of `name`, made on first use; null without metrics.
  std::shared_ptr<ScoringQueueGauges> QueueGaugesFor(const std::string& name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void ReportLoaded();

  const ServerConfig config_;
  Dependencies deps_;
  absl::Mutex mutex_;
  std::map<Key, std::shared_ptr<Slot>> slots_ ABSL_GUARDED_BY(mutex_);
  // By model name; kept for the server's life (names are few).
  std::map<std::string, std::shared_ptr<ScoringQueueGauges>> queue_gauges_ ABSL_GUARDED_BY(mutex_);
  std::atomic<int64_t> next_queue_gauge_id_{1};
};

}  // namespace verdict::server

#endif  // VERDICT_SERVER_MODEL_REGISTRY_H_
