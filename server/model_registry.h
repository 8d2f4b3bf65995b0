// ModelRegistry: the serving side of the model registry. Versions and aliases live in the
// JobStore; this class holds the versions that are loaded, each as a ScoringModel with its own
// DynamicBatcher, and loads a version on first use.
//
// Loading never runs on the caller's thread. AcquireAsync() hands back a loaded version at
// once (the callback runs before it returns) or queues the callback behind the version's load,
// which runs on the registry's own loader thread (started by the constructor, joined by the
// destructor); the callback then runs on that thread when the load is done. A gRPC handler
// therefore never blocks on a load: its continuation waits as a queued callback, not as a
// blocked thread. Concurrent requests for one version share one load. Import's check that a
// directory loads runs on the loader thread too (ImportAsync). The blocking forms (Acquire,
// Import) are for start-up (--preload_models) and tests, never for a gRPC handler or the
// loader thread itself.
//
// Loaded versions are shared (std::shared_ptr): a request keeps the version it resolved to
// until its scores are back, so moving an alias, loading another version or unloading one never
// fails or stalls a request in flight; an unloaded version goes away when its last request is
// done.
//
// Metrics. The scoring series (verdict_scoring_{queue,compute}_seconds, _batch_{items,tokens},
// _items_total, _rejected_total) carry {model, version}, so that a hot swap shows; a
// version's series are removed when its last loaded copy goes away (unloaded and its last
// request done), which bounds them by the versions loaded. The queue gauges carry the model
// NAME only: verdict_scoring_queue_depth{model} is the sum of the queues of the name's loaded
// versions, and verdict_scoring_queue_capacity{model} the capacity of one queue
// (--max_queued_items, the same for every version), so the saturation alert errs early rather
// than late when two versions are busy. An unloaded version leaves the depth; a name with no
// version loaded reads 0 (its capacity stays: it is configuration, not a stale reading).
// The loader thread also samples verdict_device_memory_bytes{device} every few seconds where
// CUDA is in use (the caching allocator's reserved bytes per initialised device); a CPU-only
// server exports no such series.
//
// Thread safety: all methods may be called from any thread, except the blocking Acquire and
// Import, which must not run on the loader thread (inside an AcquireAsync/ImportAsync
// callback): they would wait for themselves.
//
// Lock order. `mutex_` guards the slots, the load queue and the series tokens; it is held only
// to move entries in or out, never across a load, a JobStore call, a callback, a batcher call
// or a metrics call, so LoadedCount, DrainAll and Decorate never wait for a load. The other
// locks the registry meets are each taken alone, after `mutex_` is released:
//   ScoringQueueGauges::mutex_  ->  DynamicBatcher's queue lock (Refresh reads the batcher's
//                                   count under the gauges' lock; nothing is taken inside that)
// The batcher's owner thread calls the gauges (Set) without holding its own lock.
#ifndef VERDICT_SERVER_MODEL_REGISTRY_H_
#define VERDICT_SERVER_MODEL_REGISTRY_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
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
class VersionSeries;       // removes one version's scoring series when dropped; model_registry.cc

// One loaded version.
struct LoadedModel {
  v1::Model info;  // as stored, with loaded/device set
  std::string label;  // "name:version", for logs and error messages
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
    // Called with the number of loaded versions whenever it changes (for health). Called
    // without any registry lock held.
    std::function<void(int)> on_loaded_count;
  };

  // Called exactly once with the loaded version or why there is none.
  using AcquireDone = std::function<void(absl::StatusOr<std::shared_ptr<LoadedModel>>)>;
  using ImportDone = std::function<void(absl::StatusOr<v1::Model>)>;

  // How often the loader thread samples device memory while idle.
  static constexpr absl::Duration kDeviceMemoryInterval = absl::Seconds(5);

  // Starts the loader thread.
  ModelRegistry(const ServerConfig& config, Dependencies dependencies);
  // Fails the loads not yet started (their callbacks get UNAVAILABLE), lets the one in
  // progress finish (its callbacks get UNAVAILABLE too) and joins the loader thread.
  ~ModelRegistry();

  ModelRegistry(const ModelRegistry&) = delete;
  ModelRegistry& operator=(const ModelRegistry&) = delete;

  // The loaded version `ref` names, loading it on `device` (empty: the server default, or
  // wherever it is loaded already) if needed. `done` runs before AcquireAsync returns when the
  // version is loaded (or the reference cannot be resolved), else on the loader thread once
  // the load is done. Errors: NOT_FOUND for an unknown model; DATA_LOSS when its files cannot
  // be loaded; FAILED_PRECONDITION for a device this server lacks; UNAVAILABLE while the
  // server drains, or when the version is loading on another device (retry).
  // The reference is resolved in the JobStore on the calling thread (a SQLite read, no lock).
  void AcquireAsync(const v1::ModelRef& ref, const std::string& device, AcquireDone done);
  // AcquireAsync, waiting for the result. Start-up and tests only (see the header comment).
  absl::StatusOr<std::shared_ptr<LoadedModel>> Acquire(const v1::ModelRef& ref,
                                                       const std::string& device = "");

  // Forgets the loaded version (requests in flight finish on it). A load of it in progress
  // still serves the requests waiting for it, and is then dropped. Returns its info.
  absl::StatusOr<v1::Model> Unload(const v1::ModelRef& ref);

  // Validates the Hugging Face directory `source_dir` (request.path resolved) by loading it,
  // copies it into the server's state with the encoding settings it is registered with
  // (encoding.json), and registers it as the next version of request.name. The alias is the
  // caller's. Blocking: see the header comment.
  absl::StatusOr<v1::Model> Import(const v1::ImportModelRequest& request,
                                   const std::string& source_dir);
  // Import on the loader thread; `done` runs there (or with UNAVAILABLE at shutdown).
  void ImportAsync(v1::ImportModelRequest request, std::string source_dir, ImportDone done);

  // Sets `loaded` and `device` on a stored model message. Never waits for a load.
  void Decorate(v1::Model& model);

  // The directory holding a stored version's files.
  std::string StoragePath(const v1::Model& model) const;

  // Drains every loaded batcher (SIGTERM): queued requests are scored, new ones refused.
  // Loads not started are failed; a load in progress is not waited for (its callbacks get
  // UNAVAILABLE when it ends). Afterwards AcquireAsync answers UNAVAILABLE.
  void DrainAll();

  // Loaded versions now; never waits for a load.
  int LoadedCount();

  // The metrics the registry reports to (null without); for the scoring handler's own counts.
  ServerMetrics* metrics() const { return deps_.metrics; }

 private:
  using Key = std::pair<std::string, int64_t>;
  struct Waiter {
    std::string device;  // as asked: empty takes whatever loads
    AcquireDone done;
  };
  struct Slot {
    std::shared_ptr<LoadedModel> loaded;  // null until a load finished
    bool loading = false;
    std::string loading_device;
    bool unload_when_loaded = false;  // Unload came while loading
    std::vector<Waiter> waiters;      // while loading
  };
  // A unit of work for the loader thread; `cancelled` when it is dropped unrun (shutdown).
  using Task = std::function<void(bool cancelled)>;

  void LoaderLoop();
  bool HasTaskOrStopping() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    return stopping_ || !tasks_.empty();
  }
  void Enqueue(Task task) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // The loader's half of AcquireAsync: loads `model` on `device` and hands it to the waiters.
  void RunLoad(const v1::Model& model, const std::string& device, bool cancelled);
  // Loads `model` on `device` with its own batcher. With `serving`, the batcher reports to the
  // scoring metrics and joins the name's queue gauges; without (the import's check that a
  // directory loads), it shows up in no metric.
  absl::StatusOr<std::shared_ptr<LoadedModel>> LoadVersion(const v1::Model& model,
                                                           const std::string& device, bool serving);
  void SampleDeviceMemory();
  void ReportLoaded();

  const ServerConfig config_;
  Dependencies deps_;
  mutable absl::Mutex mutex_;
  std::map<Key, Slot> slots_ ABSL_GUARDED_BY(mutex_);
  // By model name; kept for the server's life (names are few).
  std::map<std::string, std::shared_ptr<ScoringQueueGauges>> queue_gauges_ ABSL_GUARDED_BY(mutex_);
  // The live series token of each version (shared by its loaded copies, see VersionSeries).
  std::map<Key, std::weak_ptr<VersionSeries>> series_ ABSL_GUARDED_BY(mutex_);
  std::deque<Task> tasks_ ABSL_GUARDED_BY(mutex_);
  bool draining_ ABSL_GUARDED_BY(mutex_) = false;
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
  std::atomic<int64_t> next_queue_gauge_id_{1};
  std::thread loader_;  // last: started once everything above exists
};

}  // namespace verdict::server

#endif  // VERDICT_SERVER_MODEL_REGISTRY_H_
