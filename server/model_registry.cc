#include "server/model_registry.h"

#include <algorithm>
#include <filesystem>
#include <random>

#include <torch/cuda.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/model/model_config.h"
#include "core/model/reward_model.h"
#include "core/tokenize/tokenizer.h"
#include "core/util/status_macros.h"
#include "server/logging.h"
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
    default:
      return ScoringRejection::kInvalid;
  }
}

ScoringSettings SettingsOf(const v1::Model& model) {
  ScoringSettings settings;
  settings.max_length = model.max_length();
  settings.truncation = model.truncation() == v1::TRUNCATION_POLICY_DROP ? TruncationPolicy::kDrop
                                                                          : TruncationPolicy::kTruncate;
  switch (model.chat_format()) {
    case v1::CHAT_FORMAT_CHATML:
      settings.chat_format = ChatFormat::kChatML;
      break;
    case v1::CHAT_FORMAT_LLAMA2:
      settings.chat_format = ChatFormat::kLlama2;
      break;
    default:
      settings.chat_format = ChatFormat::kHhRlhf;
  }
  if (model.has_reward_stats() && model.reward_stats().std() > 0) {
    settings.reward_stats = RewardStats{model.reward_stats().mean(), model.reward_stats().std()};
  }
  return settings;
}

std::string NewImportId() {
  static std::mutex mutex;
  static std::mt19937_64 rng(std::random_device{}());
  std::lock_guard<std::mutex> lock(mutex);
  return absl::StrFormat("import-%016x", rng());
}

}  // namespace

ModelRegistry::ModelRegistry(const ServerConfig& config, Dependencies dependencies)
    : config_(config), deps_(std::move(dependencies)) {}

ModelRegistry::~ModelRegistry() = default;

std::string ModelRegistry::StoragePath(const v1::Model& model) const {
  return (fs::path(config_.state_dir) / model.storage_path()).string();
}

absl::StatusOr<std::shared_ptr<LoadedModel>> ModelRegistry::LoadVersion(const v1::Model& model,
                                                                         const std::string& device) {
  const std::string dir = StoragePath(model);
  // A device this server lacks is the caller's problem (FAILED_PRECONDITION); any other
  // failure to load files the import checked means they were damaged since (DATA_LOSS).
  ASSIGN_OR_RETURN(const c10::Device parsed, ParseDevice(device));
  if (parsed.is_cuda()) {
    const int64_t count = torch::cuda::is_available() ? static_cast<int64_t>(torch::cuda::device_count()) : 0;
    if (count == 0 || (parsed.has_index() && parsed.index() >= count)) {
      return absl::FailedPreconditionError(absl::StrCat("device \"", device, "\": this server has ", count,
                                                        " CUDA device", count == 1 ? "" : "s"));
    }
  }
  ModelOptions options;
  options.device = device;
  auto reward_model = LoadRewardModel(dir, options);
  if (!reward_model.ok()) {
    if (absl::IsFailedPrecondition(reward_model.status())) return reward_model.status();
    return absl::DataLossError(absl::StrCat("model ", model.name(), " version ", model.version(),
                                            " cannot be loaded: ", reward_model.status().message()));
  }
  int64_t parameters = 0;
  for (const auto& [name, tensor] : (*reward_model)->StateDict()) parameters += tensor.numel();
  auto tokenizer = LoadTokenizerFromDirectory(dir);
  if (!tokenizer.ok()) {
    return absl::DataLossError(absl::StrCat("model ", model.name(), " version ", model.version(),
                                            ": ", tokenizer.status().message()));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<ScoringModel> scoring,
                   ScoringModel::Create(std::move(*reward_model), std::move(*tokenizer), SettingsOf(model)));
  auto loaded = std::make_shared<LoadedModel>();
  loaded->info = model;
  loaded->info.set_loaded(true);
  loaded->info.set_parameter_count(parameters);
  loaded->info.set_device(device);
  loaded->label = absl::StrCat(model.name(), ":", model.version());
  DynamicBatcherObserver observer;
  if (deps_.metrics != nullptr) {
    ServerMetrics* metrics = deps_.metrics;
    const std::string label = loaded->label;
    observer.on_batch = [metrics, label](const BatchStats& stats) {
      metrics->RecordScoringBatch(label, stats.items, stats.padded_tokens, stats.compute_time);
    };
    observer.on_request = [metrics, label](absl::Duration queue_time) {
      metrics->RecordScoringQueueWait(label, queue_time);
    };
    observer.on_rejection = [metrics, label](RejectionReason reason) {
      metrics->RecordScoringRejected(label, ToMetricReason(reason));
    };
  }
  DynamicBatcher::Options batcher_options;
  batcher_options.max_batch_tokens = config_.max_batch_tokens;
  batcher_options.max_batch_items = config_.max_batch_items;
  batcher_options.max_queue_delay = config_.max_queue_delay;
  batcher_options.max_queue_items = config_.max_queued_items;
  ASSIGN_OR_RETURN(loaded->batcher, DynamicBatcher::Create(scoring, batcher_options, std::move(observer)));
  return loaded;
}

absl::StatusOr<std::shared_ptr<LoadedModel>> ModelRegistry::Acquire(const v1::ModelRef& ref,
                                                                    const std::string& device) {
  ASSIGN_OR_RETURN(v1::Model model, deps_.store->GetModel(ref));
  const std::string target = device.empty() ? config_.default_device : device;
  std::shared_ptr<Slot> slot;
  {
    absl::MutexLock lock(&mutex_);
    auto& entry = slots_[Key(model.name(), model.version())];
    if (entry == nullptr) entry = std::make_shared<Slot>();
    slot = entry;
  }
  bool loaded_now = false;
  std::shared_ptr<LoadedModel> result;
  {
    absl::MutexLock lock(&slot->mutex);
    const bool wrong_device = !device.empty() && slot->loaded && slot->loaded->info.device() != target;
    if (slot->loaded == nullptr || wrong_device) {
      ASSIGN_OR_RETURN(slot->loaded, LoadVersion(model, target));
      loaded_now = true;
    }
    result = slot->loaded;
  }
  if (loaded_now) {
    // Here rather than in LoadVersion, which Import also uses to check a directory.
    if (deps_.metrics != nullptr) {
      deps_.metrics->SetModelLoaded(model.name(), absl::StrCat(model.version()), true);
    }
    if (deps_.logger != nullptr) {
      deps_.logger->Info("model.loaded").With("model", result->label).With("device", target);
    }
    ReportLoaded();
  }
  return result;
}

absl::StatusOr<v1::Model> ModelRegistry::Unload(const v1::ModelRef& ref) {
  ASSIGN_OR_RETURN(v1::Model model, deps_.store->GetModel(ref));
  std::shared_ptr<Slot> slot;
  {
    absl::MutexLock lock(&mutex_);
    auto it = slots_.find(Key(model.name(), model.version()));
    if (it != slots_.end()) {
      slot = it->second;
      slots_.erase(it);
    }
  }
  if (slot != nullptr) {
    absl::MutexLock lock(&slot->mutex);
    slot->loaded.reset();  // requests in flight still hold it
  }
  if (deps_.metrics != nullptr) deps_.metrics->SetModelLoaded(model.name(), absl::StrCat(model.version()), false);
  ReportLoaded();
  return model;
}

absl::StatusOr<v1::Model> ModelRegistry::Import(const std::string& name, const std::string& source_dir,
                                                const std::string& relative_path, int32_t max_length,
                                                v1::TruncationPolicy truncation,
                                                v1::ChatFormat chat_format) {
  ASSIGN_OR_RETURN(ModelConfig model_config, LoadModelConfig((fs::path(source_dir) / "config.json").string()));
  // A language model or bare backbone would load with a freshly initialised head, i.e. score
  // noise: it must be trained into a reward model first.
  if (!model_config.architectures.empty() &&
      std::none_of(model_config.architectures.begin(), model_config.architectures.end(),
                   [](const std::string& a) { return absl::EndsWith(a, "ForSequenceClassification"); })) {
    return absl::FailedPreconditionError(absl::StrCat(
        "path: config.json architectures is ", model_config.architectures.front(),
        ", a checkpoint without a reward head; train it first, naming it as a job's base_model"));
  }
  // A directory a verdict job wrote carries the settings it was trained with and its reward
  // statistics: requests that leave them unset keep them, so that the import scores as the
  // training job's evaluation did.
  ASSIGN_OR_RETURN(ScoringSettings saved, ReadScoringSettings(source_dir));
  const bool has_training_args = fs::exists(fs::path(source_dir) / "training_args.json");
  if (has_training_args) {
    if (max_length == 0 && saved.max_length > 0) max_length = static_cast<int32_t>(saved.max_length);
    if (truncation == v1::TRUNCATION_POLICY_UNSPECIFIED) {
      truncation = saved.truncation == TruncationPolicy::kDrop ? v1::TRUNCATION_POLICY_DROP
                                                               : v1::TRUNCATION_POLICY_TRUNCATE;
    }
    if (chat_format == v1::CHAT_FORMAT_UNSPECIFIED) {
      chat_format = saved.chat_format == ChatFormat::kChatML   ? v1::CHAT_FORMAT_CHATML
                    : saved.chat_format == ChatFormat::kLlama2 ? v1::CHAT_FORMAT_LLAMA2
                                                               : v1::CHAT_FORMAT_HH;
    }
  }
  const int64_t limit = model_config.family == ModelFamily::kEncoder ? model_config.max_position_embeddings
                                                                      : int64_t{1} << 20;
  if (max_length == 0) max_length = static_cast<int32_t>(std::min<int64_t>(1024, limit));
  if (max_length < 8 || max_length > limit) {
    return absl::InvalidArgumentError(absl::StrCat("max_length: must be in [8, ", limit, "], got ", max_length));
  }
  // Copy first, then validate the copy by loading it: what is registered is what was checked.
  const std::string storage = (fs::path("models") / name / NewImportId()).string();
  const fs::path target = fs::path(config_.state_dir) / storage;
  std::error_code error;
  fs::create_directories(target.parent_path(), error);
  fs::copy(source_dir, target, fs::copy_options::recursive, error);
  if (error) return absl::InternalError(absl::StrCat("cannot copy ", source_dir, ": ", error.message()));
  auto cleanup = [&] { fs::remove_all(target, error); };

  v1::Model model;
  model.set_name(name);
  model.set_family(model_config.family == ModelFamily::kEncoder ? v1::MODEL_FAMILY_ENCODER
                                                               : v1::MODEL_FAMILY_DECODER);
  model.set_model_type(model_config.model_type);
  model.set_vocab_size(model_config.vocab_size);
  model.set_max_position_embeddings(model_config.max_position_embeddings);
  model.set_max_length(max_length);
  model.set_truncation(truncation == v1::TRUNCATION_POLICY_UNSPECIFIED ? v1::TRUNCATION_POLICY_TRUNCATE : truncation);
  model.set_chat_format(chat_format == v1::CHAT_FORMAT_UNSPECIFIED ? v1::CHAT_FORMAT_HH : chat_format);
  model.set_import_path(relative_path);
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
  auto check = LoadVersion(model, "cpu");
  if (!check.ok()) {
    cleanup();
    return absl::InvalidArgumentError(absl::StrCat("path: not a loadable reward model: ", check.status().message()));
  }
  model.set_parameter_count((*check)->info.parameter_count());
  auto stored = deps_.store->AddModelVersion(model);
  if (!stored.ok()) cleanup();
  return stored;
}

void ModelRegistry::Decorate(v1::Model& model) {
  std::shared_ptr<Slot> slot;
  {
    absl::MutexLock lock(&mutex_);
    auto it = slots_.find(Key(model.name(), model.version()));
    if (it == slots_.end()) return;
    slot = it->second;
  }
  absl::MutexLock lock(&slot->mutex);
  if (slot->loaded != nullptr) {
    model.set_loaded(true);
    model.set_device(slot->loaded->info.device());
  }
}

void ModelRegistry::DrainAll() {
  std::vector<std::shared_ptr<LoadedModel>> loaded;
  {
    absl::MutexLock lock(&mutex_);
    for (auto& [key, slot] : slots_) {
      absl::MutexLock slot_lock(&slot->mutex);
      if (slot->loaded != nullptr) loaded.push_back(slot->loaded);
    }
  }
  for (auto& model : loaded) model->batcher->Drain();
}

int ModelRegistry::LoadedCount() {
  absl::MutexLock lock(&mutex_);
  int count = 0;
  for (auto& [key, slot] : slots_) {
    absl::MutexLock slot_lock(&slot->mutex);
    if (slot->loaded != nullptr) ++count;
  }
  return count;
}

void ModelRegistry::ReportLoaded() {
  if (deps_.on_loaded_count) deps_.on_loaded_count(LoadedCount());
}

}  // namespace verdict::server
