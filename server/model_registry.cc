#include "server/model_registry.h"

#include <algorithm>
#include <filesystem>
#include <random>

#include <torch/cuda.h>

#ifdef VERDICT_HAVE_CUDA_ALLOCATOR
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "core/model/model_config.h"
#include "core/model/reward_model.h"
#include "core/tokenize/tokenizer.h"
#include "core/util/crash_point.h"
#include "core/util/status_macros.h"
#include "server/logging.h"
#include "server/path_resolver.h"
#include "server/proto_conversion.h"
#include "server/proto_time.h"
#include "server/server_metrics.h"

namespace verdict::server {
namespace {

namespace fs = std::filesystem;

ScoringRejection ToMetricReason(RejectionReason reason) {
  switch (reason) {
    case RejectionReason::kQueueFull:
      return ScoringRejection::kQueueFull;
    case RejectionReason::kDeadlineExceeded:
      return ScoringRejection::kDeadlineExceeded;
    case RejectionReason::kCancelled:
      return ScoringRejection::kCancelled;
    case RejectionReason::kShuttingDown:
      return ScoringRejection::kShuttingDown;
    case RejectionReason::kForwardFailed:
      return ScoringRejection::kForwardFailed;
    case RejectionReason::kInvalid:
      break;
  }
  return ScoringRejection::kInvalid;
}

std::string NewImportId() {
  static std::mutex mutex;
  static std::mt19937_64 rng(std::random_device{}());
  std::lock_guard<std::mutex> lock(mutex);
  return absl::StrFormat("import-%016x", rng());
}

}  // namespace

// verdict_scoring_queue_depth and verdict_scoring_queue_capacity of one model name, the depth
// summed over the name's loaded versions (see the header). Every write of the name's two
// series goes through `mutex_`, which also orders the reports: a Submit's report reads the
// batcher's count under it, so a later batch's report cannot be overtaken by an older read.
class ScoringQueueGauges {
 public:
  ScoringQueueGauges(ServerMetrics& metrics, std::string name)
      : metrics_(metrics), name_(std::move(name)) {}

  // A loaded version joins, with its queue's capacity and nothing queued yet.
  void Add(int64_t id, int64_t capacity) {
    absl::MutexLock lock(&mutex_);
    depth_by_version_[id] = 0;
    metrics_.SetScoringQueueCapacity(name_, capacity);
    PublishLocked();
  }
  // The version's queue holds `queued` sequences. Ignored once the version left.
  void Set(int64_t id, int64_t queued) {
    absl::MutexLock lock(&mutex_);
    auto it = depth_by_version_.find(id);
    if (it == depth_by_version_.end()) return;
    it->second = queued;
    PublishLocked();
  }
  // Set() with the batcher's count now, read under the lock.
  void Refresh(int64_t id, const DynamicBatcher& batcher) {
    absl::MutexLock lock(&mutex_);
    auto it = depth_by_version_.find(id);
    if (it == depth_by_version_.end()) return;
    it->second = batcher.queued_sequences();
    PublishLocked();
  }
  // The version was unloaded (or replaced): its queue no longer counts, whatever its batcher
  // still reports while requests in flight finish on it.
  void Remove(int64_t id) {
    absl::MutexLock lock(&mutex_);
    if (depth_by_version_.erase(id) > 0) PublishLocked();
  }

 private:
  void PublishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    int64_t total = 0;
    for (const auto& [id, depth] : depth_by_version_) total += depth;
    metrics_.SetScoringQueueDepth(name_, total);
  }

  ServerMetrics& metrics_;
  const std::string name_;
  absl::Mutex mutex_;
  std::map<int64_t, int64_t> depth_by_version_ ABSL_GUARDED_BY(mutex_);
};

namespace {

void LeaveQueueGauges(const LoadedModel& model) {
  if (model.queue_gauges != nullptr) model.queue_gauges->Remove(model.queue_gauge_id);
}

}  // namespace

// The scoring series of one version, {model, version}. Every loaded copy of the version (its
// batcher's observer) holds the token; the registry keeps a weak reference so that a version
// loaded again while an old copy still finishes requests shares it. When the last copy goes,
// the series go: their number stays bounded by the versions loaded.
class VersionSeries {
 public:
  VersionSeries(ServerMetrics& metrics, std::string name, std::string version)
      : metrics_(metrics), name_(std::move(name)), version_(std::move(version)) {}
  ~VersionSeries() { metrics_.RemoveScoringVersion(name_, version_); }
  VersionSeries(const VersionSeries&) = delete;
  VersionSeries& operator=(const VersionSeries&) = delete;

  const std::string& name() const { return name_; }
  const std::string& version() const { return version_; }

 private:
  ServerMetrics& metrics_;
  const std::string name_;
  const std::string version_;
};

void LoadedModel::ReportQueueDepth() const {
  if (queue_gauges != nullptr && batcher != nullptr) queue_gauges->Refresh(queue_gauge_id, *batcher);
}

ModelRegistry::ModelRegistry(const ServerConfig& config, Dependencies dependencies)
    : config_(config), deps_(std::move(dependencies)) {
  loader_ = std::thread([this] { LoaderLoop(); });
}

ModelRegistry::~ModelRegistry() {
  {
    absl::MutexLock lock(&mutex_);
    stopping_ = true;
    draining_ = true;
  }
  loader_.join();
}

std::string ModelRegistry::StoragePath(const v1::Model& model) const {
  return (fs::path(config_.state_dir) / model.storage_path()).string();
}

void ModelRegistry::Enqueue(Task task) { tasks_.push_back(std::move(task)); }

void ModelRegistry::LoaderLoop() {
  const bool sample_memory = deps_.metrics != nullptr && torch::cuda::is_available();
  for (;;) {
    Task task;
    bool cancelled = false;
    {
      absl::MutexLock lock(&mutex_);
      mutex_.AwaitWithTimeout(absl::Condition(this, &ModelRegistry::HasTaskOrStopping),
                              kDeviceMemoryInterval);
      if (!tasks_.empty()) {
        task = std::move(tasks_.front());
        tasks_.pop_front();
        cancelled = draining_;
      } else if (stopping_) {
        return;
      }
    }
    if (task) task(cancelled);
    if (sample_memory) SampleDeviceMemory();
  }
}

void ModelRegistry::SampleDeviceMemory() {
#ifdef VERDICT_HAVE_CUDA_ALLOCATOR
  const int count = static_cast<int>(torch::cuda::device_count());
  for (int device = 0; device < count; ++device) {
    try {
      // Throws for a device whose allocator was never initialised: CUDA is not in use there
      // (yet), and it gets no series.
      const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device);
      const auto aggregate =
          static_cast<size_t>(c10::cuda::CUDACachingAllocator::StatType::AGGREGATE);
      deps_.metrics->SetDeviceMemoryBytes(absl::StrCat("cuda:", device),
                                          stats.reserved_bytes[aggregate].current);
    } catch (const c10::Error&) {
    }
  }
#endif
}

absl::StatusOr<std::shared_ptr<LoadedModel>> ModelRegistry::LoadVersion(const v1::Model& model,
                                                                        const std::string& device,
                                                                        bool serving) {
  const std::string dir = StoragePath(model);
  ASSIGN_OR_RETURN(ScoringSettings settings, ScoringSettingsOf(model));
  settings.share_prefixes = config_.prefix_sharing;
  // A device this server lacks is the caller's problem (FAILED_PRECONDITION); any other
  // failure to load files the import checked means they were damaged since (DATA_LOSS).
  ASSIGN_OR_RETURN(const Device parsed, ParseDeviceName(device));
  RETURN_IF_ERROR(CheckDeviceAvailable(parsed));
  ModelOptions options;
  options.device = device;
  auto reward_model = LoadRewardModel(dir, options);
  if (!reward_model.ok()) {
    if (absl::IsFailedPrecondition(reward_model.status())) return reward_model.status();
    return absl::DataLossError(absl::StrCat("model ", model.name(), " version ", model.version(),
                                            " cannot be loaded: ", reward_model.status().message()));
  }
  if (config_.scoring_quantization == "int8" && !parsed.is_cuda() &&
      (*reward_model)->config().family == ModelFamily::kEncoder) {
    ModelOptions int8 = options;
    int8.int8_linear = true;
    RETURN_IF_ERROR(QuantizeLinearsForCpuScoring(**reward_model, int8));
  }
  int64_t parameters = 0;
  for (const auto& [name, tensor] : (*reward_model)->StateDict()) parameters += tensor.numel();
  auto tokenizer = LoadTokenizerFromDirectory(dir);
  if (!tokenizer.ok()) {
    return absl::DataLossError(absl::StrCat("model ", model.name(), " version ", model.version(),
                                            ": ", tokenizer.status().message()));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<ScoringModel> scoring,
                   ScoringModel::Create(std::move(*reward_model), std::move(*tokenizer), settings));
  auto loaded = std::make_shared<LoadedModel>();
  loaded->info = model;
  loaded->info.set_loaded(true);
  loaded->info.set_parameter_count(parameters);
  loaded->info.set_device(device);
  loaded->label = absl::StrCat(model.name(), ":", model.version());
  DynamicBatcherObserver observer;
  const int64_t gauge_id = next_queue_gauge_id_++;
  std::shared_ptr<ScoringQueueGauges> queue_gauges;
  if (serving && deps_.metrics != nullptr) {
    ServerMetrics* metrics = deps_.metrics;
    const Key key(model.name(), model.version());
    std::shared_ptr<VersionSeries> series;
    {
      absl::MutexLock lock(&mutex_);
      auto& gauges = queue_gauges_[model.name()];
      if (gauges == nullptr) gauges = std::make_shared<ScoringQueueGauges>(*metrics, model.name());
      queue_gauges = gauges;
      series = series_[key].lock();
      if (series == nullptr) {
        series =
            std::make_shared<VersionSeries>(*metrics, model.name(), absl::StrCat(model.version()));
        series_[key] = series;
      }
    }
    // The observer owns the token: the series live as long as the batcher reports to them.
    observer.on_batch = [metrics, series, queue_gauges, gauge_id](const BatchStats& stats) {
      metrics->RecordScoringBatch(series->name(), series->version(), stats.items,
                                  stats.computed_tokens, stats.compute_time, stats.ok);
      queue_gauges->Set(gauge_id, stats.queued_sequences);
    };
    observer.on_rows_dropped = [queue_gauges, gauge_id](int64_t queued_sequences) {
      queue_gauges->Set(gauge_id, queued_sequences);
    };
    observer.on_request = [metrics, series](absl::Duration queue_time) {
      metrics->RecordScoringQueueWait(series->name(), series->version(), queue_time);
    };
    observer.on_rejection = [metrics, series](RejectionReason reason) {
      metrics->RecordScoringRejected(series->name(), series->version(), ToMetricReason(reason));
    };
  }
  DynamicBatcher::Options batcher_options;
  batcher_options.max_batch_tokens = config_.max_batch_tokens;
  batcher_options.max_batch_items = config_.max_batch_items;
  batcher_options.max_queue_delay = config_.max_queue_delay;
  batcher_options.max_queue_items = config_.max_queued_items;
  ASSIGN_OR_RETURN(loaded->batcher, DynamicBatcher::Create(scoring, batcher_options, std::move(observer)));
  if (queue_gauges != nullptr) {
    queue_gauges->Add(gauge_id, batcher_options.max_queue_items);
    loaded->queue_gauges = std::move(queue_gauges);
    loaded->queue_gauge_id = gauge_id;
  }
  return loaded;
}

void ModelRegistry::AcquireAsync(const v1::ModelRef& ref, const std::string& device,
                                 AcquireDone done) {
  absl::StatusOr<v1::Model> model = deps_.store->GetModel(ref);
  if (!model.ok()) {
    done(model.status());
    return;
  }
  const std::string target = device.empty() ? config_.default_device : device;
  std::shared_ptr<LoadedModel> ready;
  absl::Status refused;
  {
    absl::MutexLock lock(&mutex_);
    Slot& slot = slots_[Key(model->name(), model->version())];
    if (draining_) {
      refused = absl::UnavailableError("the server is shutting down");
    } else if (slot.loaded != nullptr && (device.empty() || slot.loaded->info.device() == target)) {
      ready = slot.loaded;
    } else if (slot.loading) {
      if (device.empty() || slot.loading_device == target) {
        slot.unload_when_loaded = false;  // asked for again after an Unload
        slot.waiters.push_back({device, std::move(done)});
        return;
      }
      refused = absl::UnavailableError(
          absl::StrCat("model ", model->name(), " version ", model->version(), " is loading on ",
                       slot.loading_device, "; retry once it is loaded"));
    } else {
      slot.loading = true;
      slot.loading_device = target;
      slot.waiters.push_back({device, std::move(done)});
      Enqueue([this, loading = *model, target](bool cancelled) {
        RunLoad(loading, target, cancelled);
      });
      return;
    }
    if (!refused.ok() && slot.loaded == nullptr && !slot.loading) {
      slots_.erase(Key(model->name(), model->version()));
    }
  }
  if (!refused.ok()) {
    done(refused);
    return;
  }
  done(std::move(ready));
}

void ModelRegistry::RunLoad(const v1::Model& model, const std::string& device, bool cancelled) {
  const Key key(model.name(), model.version());
  absl::StatusOr<std::shared_ptr<LoadedModel>> result =
      absl::UnavailableError("the server is shutting down");
  if (!cancelled) result = LoadVersion(model, device, /*serving=*/true);
  const std::shared_ptr<LoadedModel> fresh = result.ok() ? *result : nullptr;
  std::vector<Waiter> waiters;
  std::shared_ptr<LoadedModel> replaced;
  bool installed = false;
  {
    absl::MutexLock lock(&mutex_);
    auto it = slots_.find(key);
    if (it != slots_.end() && it->second.loading) {
      Slot& slot = it->second;
      waiters = std::move(slot.waiters);
      slot.waiters.clear();
      slot.loading = false;
      slot.loading_device.clear();
      if (result.ok() && !draining_ && !slot.unload_when_loaded) {
        replaced = std::move(slot.loaded);  // the copy on another device, if any
        slot.loaded = *result;
        installed = true;
      } else if (slot.loaded == nullptr || slot.unload_when_loaded) {
        slots_.erase(it);
      }
    }
    // While draining nobody is served any more; unloaded while loading, the waiters are
    // served by the copy, which is then dropped.
    if (result.ok() && draining_) result = absl::UnavailableError("the server is shutting down");
  }
  if (fresh != nullptr && !installed) LeaveQueueGauges(*fresh);
  if (replaced != nullptr) LeaveQueueGauges(*replaced);
  if (installed) {
    if (deps_.metrics != nullptr) {
      deps_.metrics->SetModelLoaded(model.name(), absl::StrCat(model.version()), true);
    }
    if (deps_.logger != nullptr) {
      deps_.logger->Info("model.loaded").With("model", (*result)->label).With("device", device);
    }
    ReportLoaded();
  } else if (!result.ok() && deps_.logger != nullptr && !cancelled) {
    deps_.logger->Warning("model.load_failed")
        .With("model", absl::StrCat(model.name(), ":", model.version()))
        .With("error", result.status().ToString());
  }
  for (Waiter& waiter : waiters) waiter.done(result);
}

absl::StatusOr<std::shared_ptr<LoadedModel>> ModelRegistry::Acquire(const v1::ModelRef& ref,
                                                                    const std::string& device) {
  absl::Notification done;
  absl::StatusOr<std::shared_ptr<LoadedModel>> result;
  AcquireAsync(ref, device, [&](absl::StatusOr<std::shared_ptr<LoadedModel>> r) {
    result = std::move(r);
    done.Notify();
  });
  done.WaitForNotification();
  return result;
}

absl::StatusOr<v1::Model> ModelRegistry::Unload(const v1::ModelRef& ref) {
  ASSIGN_OR_RETURN(v1::Model model, deps_.store->GetModel(ref));
  std::shared_ptr<LoadedModel> unloaded;
  {
    absl::MutexLock lock(&mutex_);
    auto it = slots_.find(Key(model.name(), model.version()));
    if (it != slots_.end()) {
      unloaded = std::move(it->second.loaded);
      if (it->second.loading) {
        // The load in progress still serves the requests waiting for it, then is dropped.
        it->second.unload_when_loaded = true;
      } else {
        slots_.erase(it);
      }
    }
  }
  if (unloaded != nullptr) LeaveQueueGauges(*unloaded);  // requests in flight still hold it
  if (deps_.metrics != nullptr) deps_.metrics->SetModelLoaded(model.name(), absl::StrCat(model.version()), false);
  ReportLoaded();
  return model;
}

absl::StatusOr<v1::Model> ModelRegistry::Import(const v1::ImportModelRequest& request,
                                                const std::string& source_dir) {
  // Every file of the directory, at any depth, before any is read: a link inside it to a file
  // outside --model_dir would otherwise be read here and copied into the registry.
  ASSIGN_OR_RETURN(const std::vector<TreeFile> files,
                   ListTreeUnderRoot(config_.model_dir, request.path(), "path"));
  ASSIGN_OR_RETURN(ModelConfig model_config, ReadModelDirectoryConfig(source_dir));
  // A language model or bare backbone would load with a freshly initialised head, i.e. score
  // noise: it must be trained into a reward model first.
  if (!model_config.architectures.empty() &&
      std::none_of(model_config.architectures.begin(), model_config.architectures.end(),
                   [](const std::string& a) { return absl::EndsWith(a, "ForSequenceClassification"); })) {
    return absl::FailedPreconditionError(absl::StrCat(
        "path: config.json architectures is ", model_config.architectures.front(),
        ", a checkpoint without a reward head; train it first, naming it as a job's base_model"));
  }
  // A directory that records its encoding (one a verdict job wrote) keeps it for what the
  // request leaves unset, so that the import scores as the training job's evaluation did.
  ASSIGN_OR_RETURN(ScoringSettings saved, ReadScoringSettings(source_dir));
  const bool recorded = HasEncodingRecord(source_dir);
  // What neither the request nor the directory says takes core's training defaults.
  const TrainingConfig defaults;
  EncodingSettings encoding;
  if (request.input_rule() != v1::INPUT_RULE_UNSPECIFIED) {
    ASSIGN_OR_RETURN(encoding.input_rule, ToCore(request.input_rule()));
  } else {
    encoding.input_rule = recorded ? saved.input_rule : defaults.input_rule;
  }
  if (request.truncation() != v1::TRUNCATION_POLICY_UNSPECIFIED) {
    ASSIGN_OR_RETURN(encoding.truncation, ToCore(request.truncation()));
  } else {
    encoding.truncation = recorded ? saved.truncation : defaults.truncation;
  }
  if (request.chat_format() != v1::CHAT_FORMAT_UNSPECIFIED) {
    ASSIGN_OR_RETURN(encoding.chat_format, ToCore(request.chat_format()));
  } else if (recorded) {
    encoding.chat_format = saved.chat_format;
  } else {
    absl::StatusOr<ChatFormat> implied = ImpliedChatFormat(source_dir);
    if (!implied.ok()) {
      // The message names the server's path; the client knows the directory by request.path.
      return absl::InvalidArgumentError(absl::StrCat(
          "chat_format: ",
          absl::StrReplaceAll(implied.status().message(), {{source_dir, request.path()}}),
          "; name the chat format (hh when only plain text is scored)"));
    }
    encoding.chat_format = *implied;
  }
  encoding.max_length = request.max_length();
  if (encoding.max_length == 0 && recorded) encoding.max_length = saved.max_length;
  if (encoding.max_length == 0) {
    encoding.max_length = EffectiveMaxLength(model_config, defaults.max_length);
  }
  const int64_t positions = MaxSequenceLength(model_config);
  if (encoding.max_length < 8 || (positions > 0 && encoding.max_length > positions)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_length: must be in [8, ", positions > 0 ? positions : int64_t{1} << 20, "], got ",
        encoding.max_length));
  }
  // Copy first, then validate the copy by loading it: what is registered is what was checked.
  const std::string storage = (fs::path("models") / request.name() / NewImportId()).string();
  const fs::path target = fs::path(config_.state_dir) / storage;
  std::error_code error;
  // A failed import leaves nothing behind: not its copy, and not models/<name>/ when the copy
  // created it (fs::remove leaves a directory that holds another version's files).
  const bool created_name_dir = !fs::exists(target.parent_path(), error);
  auto cleanup = [&] {
    fs::remove_all(target, error);
    if (created_name_dir) fs::remove(target.parent_path(), error);
  };
  // The files listed above, by their checked paths: a link is copied as the file it names
  // (a Hugging Face snapshot's links into its blobs), never as a link.
  fs::create_directories(target, error);
  for (const TreeFile& file : files) {
    if (error) break;
    const fs::path to = target / file.relative;
    fs::create_directories(to.parent_path(), error);
    if (!error) fs::copy_file(file.resolved, to, error);
  }
  if (error) {
    const std::string message = error.message();
    cleanup();
    return absl::InternalError(
        absl::StrCat("path: cannot copy \"", request.path(), "\": ", message));
  }
  CrashPoint("import_copied");  // the copy is written, no version names it yet
  // The copy records how it is scored, as a trained model's directory does.
  if (absl::Status written = WriteEncodingSettings(target.string(), encoding); !written.ok()) {
    cleanup();
    return written;
  }

  v1::Model model;
  model.set_name(request.name());
  DescribeArchitecture(model_config, &model);
  DescribeEncoding(encoding, &model);
  model.set_import_path(request.path());
  if (saved.reward_stats.has_value()) {
    model.mutable_reward_stats()->set_mean(saved.reward_stats->mean);
    model.mutable_reward_stats()->set_std(saved.reward_stats->std);
  }
  model.set_storage_path(storage);
  SetTimestamp(absl::Now(), model.mutable_create_time());
  int64_t size = 0;
  for (const auto& entry : fs::recursive_directory_iterator(target)) {
    if (entry.is_regular_file()) size += static_cast<int64_t>(entry.file_size());
  }
  model.set_size_bytes(size);
  auto check = LoadVersion(model, "cpu", /*serving=*/false);
  if (!check.ok()) {
    cleanup();
    return absl::InvalidArgumentError(absl::StrCat("path: not a loadable reward model: ", check.status().message()));
  }
  model.set_parameter_count((*check)->info.parameter_count());
  auto stored = deps_.store->AddModelVersion(model);
  if (!stored.ok()) cleanup();
  return stored;
}

void ModelRegistry::ImportAsync(v1::ImportModelRequest request, std::string source_dir,
                                ImportDone done) {
  // While draining the loader runs it as cancelled: `done` never runs under the lock.
  absl::MutexLock lock(&mutex_);
  Enqueue([this, request = std::move(request), source_dir = std::move(source_dir),
           done = std::move(done)](bool cancelled) {
    if (cancelled) {
      done(absl::UnavailableError("the server is shutting down"));
      return;
    }
    done(Import(request, source_dir));
  });
}

void ModelRegistry::Decorate(v1::Model& model) {
  absl::MutexLock lock(&mutex_);
  auto it = slots_.find(Key(model.name(), model.version()));
  if (it != slots_.end() && it->second.loaded != nullptr) {
    model.set_loaded(true);
    model.set_device(it->second.loaded->info.device());
  }
}

void ModelRegistry::DrainAll() {
  std::vector<std::shared_ptr<LoadedModel>> loaded;
  {
    absl::MutexLock lock(&mutex_);
    draining_ = true;  // the loader now fails what is queued, and what is loading when done
    for (auto& [key, slot] : slots_) {
      if (slot.loaded != nullptr) loaded.push_back(slot.loaded);
    }
  }
  for (auto& model : loaded) model->batcher->Drain();
}

int ModelRegistry::LoadedCount() {
  absl::MutexLock lock(&mutex_);
  int count = 0;
  for (auto& [key, slot] : slots_) {
    if (slot.loaded != nullptr) ++count;
  }
  return count;
}

void ModelRegistry::ReportLoaded() {
  if (deps_.on_loaded_count) deps_.on_loaded_count(LoadedCount());
}

}  // namespace verdict::server
