#include "server/spec_conversion.h"

#include <cmath>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/model/model_config.h"
#include "core/model/reward_model.h"
#include "core/util/status_macros.h"
#include "server/path_resolver.h"
#include "server/validation.h"

namespace verdict::server {
namespace {

namespace fs = std::filesystem;

constexpr char kDefaultModelName[] = "reward-model";
constexpr char kDefaultPreset[] = "encoder-small";
constexpr int32_t kDefaultVocabSize = 8000;
constexpr int32_t kDefaultMaxLength = 1024;

absl::Status RangeError(absl::string_view field, absl::string_view range, double value) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": must be in ", range, ", got ", value));
}

// lo < value <= hi (open below) or lo <= value <= hi.
absl::Status CheckDouble(absl::string_view field, double value, double lo, double hi,
                         bool open_below, bool open_above = false) {
  const bool below_ok = open_below ? value > lo : value >= lo;
  const bool above_ok = open_above ? value < hi : value <= hi;
  if (!std::isfinite(value) || !below_ok || !above_ok) {
    return RangeError(field,
                      absl::StrCat(open_below ? "(" : "[", lo, ", ", hi, open_above ? ")" : "]"),
                      value);
  }
  return absl::OkStatus();
}

// The architecture the spec's base implies, for the tokenizer and max_length rules.
absl::StatusOr<ModelConfig> BaseConfig(const ServerConfig& server, const SpecResolvers& resolvers,
                                       v1::TrainingJobSpec* spec) {
  switch (spec->base_case()) {
    case v1::TrainingJobSpec::kBaseModel: {
      ASSIGN_OR_RETURN(std::string dir,
                       ResolveUnderRoot(server.model_dir, spec->base_model(), "spec.base_model"));
      auto config = LoadModelConfig((fs::path(dir) / "config.json").string());
      if (!config.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("spec.base_model: ", config.status().message()));
      }
      return config;
    }
    case v1::TrainingJobSpec::kRegisteredModel: {
      RETURN_IF_ERROR(ValidateModelRef("spec.registered_model", spec->registered_model()));
      ASSIGN_OR_RETURN(auto resolved, resolvers.registered_model(spec->registered_model()));
      // Pin the version so the job never changes model if an alias moves.
      spec->mutable_registered_model()->set_version(resolved.second);
      return LoadModelConfig((fs::path(resolved.first) / "config.json").string());
    }
    case v1::TrainingJobSpec::kPreset:
    case v1::TrainingJobSpec::BASE_NOT_SET:
      break;
  }
  if (spec->base_case() == v1::TrainingJobSpec::BASE_NOT_SET) spec->set_preset(kDefaultPreset);
  auto config = PresetModelConfig(spec->preset(), kDefaultVocabSize, 0);
  if (!config.ok()) return absl::InvalidArgumentError(absl::StrCat("spec.preset: ", config.status().message()));
  return config;
}

absl::Status NormalizeDatasetRef(const ServerConfig& server, const SpecResolvers& resolvers,
                                 absl::string_view field, const v1::DatasetRef& ref) {
  switch (ref.source_case()) {
    case v1::DatasetRef::kDatasetId:
      RETURN_IF_ERROR(ValidateId(absl::StrCat(field, ".dataset_id"), ref.dataset_id()));
      return resolvers.dataset_file(ref.dataset_id()).status();
    case v1::DatasetRef::kPath:
      return ResolveUnderRoot(server.data_dir, ref.path(), absl::StrCat(field, ".path")).status();
    case v1::DatasetRef::SOURCE_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat(field, ": set dataset_id or path"));
}

absl::StatusOr<std::string> DatasetFile(const ServerConfig& server, const SpecResolvers& resolvers,
                                        absl::string_view field, const v1::DatasetRef& ref) {
  if (ref.source_case() == v1::DatasetRef::kDatasetId) return resolvers.dataset_file(ref.dataset_id());
  return ResolveUnderRoot(server.data_dir, ref.path(), absl::StrCat(field, ".path"));
}

absl::Status NormalizeHyperparameters(const ModelConfig& base, v1::Hyperparameters* h) {
  const std::string p = "spec.hyperparameters.";
  if (!h->has_learning_rate()) h->set_learning_rate(1e-4);
  RETURN_IF_ERROR(CheckDouble(p + "learning_rate", h->learning_rate(), 0, 1, true));
  RETURN_IF_ERROR(CheckDouble(p + "weight_decay", h->weight_decay(), 0, 1, false));
  if (!h->has_adam_beta1()) h->set_adam_beta1(0.9);
  RETURN_IF_ERROR(CheckDouble(p + "adam_beta1", h->adam_beta1(), 0, 1, false, true));
  if (!h->has_adam_beta2()) h->set_adam_beta2(0.999);
  RETURN_IF_ERROR(CheckDouble(p + "adam_beta2", h->adam_beta2(), 0, 1, false, true));
  if (!h->has_adam_epsilon()) h->set_adam_epsilon(1e-8);
  RETURN_IF_ERROR(CheckDouble(p + "adam_epsilon", h->adam_epsilon(), 0, 1, true));
  if (h->warmup_case() == v1::Hyperparameters::WARMUP_NOT_SET) h->set_warmup_steps(0);
  if (h->has_warmup_steps()) {
    RETURN_IF_ERROR(ValidateRange(p + "warmup_steps", h->warmup_steps(), 0, int64_t{1} << 40));
  } else {
    RETURN_IF_ERROR(CheckDouble(p + "warmup_ratio", h->warmup_ratio(), 0, 1, false));
  }
  if (h->lr_scheduler() == v1::LR_SCHEDULER_UNSPECIFIED) h->set_lr_scheduler(v1::LR_SCHEDULER_LINEAR);
  if (!v1::LrScheduler_IsValid(h->lr_scheduler())) {
    return absl::InvalidArgumentError(absl::StrCat(p, "lr_scheduler: unknown value ", h->lr_scheduler()));
  }
  if (!h->has_per_device_train_batch_size()) h->set_per_device_train_batch_size(8);
  RETURN_IF_ERROR(ValidateRange(p + "per_device_train_batch_size", h->per_device_train_batch_size(), 1, 4096));
  if (h->per_device_eval_batch_size() == 0) h->set_per_device_eval_batch_size(h->per_device_train_batch_size());
  RETURN_IF_ERROR(ValidateRange(p + "per_device_eval_batch_size", h->per_device_eval_batch_size(), 1, 4096));
  if (!h->has_gradient_accumulation_steps()) h->set_gradient_accumulation_steps(1);
  RETURN_IF_ERROR(ValidateRange(p + "gradient_accumulation_steps", h->gradient_accumulation_steps(), 1, 1024));
  if (!h->has_max_grad_norm()) h->set_max_grad_norm(1.0);
  RETURN_IF_ERROR(CheckDouble(p + "max_grad_norm", h->max_grad_norm(), 0, 1e6, false));
  if (!h->has_num_epochs()) h->set_num_epochs(1);
  RETURN_IF_ERROR(CheckDouble(p + "num_epochs", h->num_epochs(), 0, 1000, true));
  RETURN_IF_ERROR(ValidateRange(p + "max_steps", h->max_steps(), 0, int64_t{1} << 40));
  if (!h->has_seed()) h->set_seed(42);
  // Encoders have learned positions: max_length cannot exceed them.
  const int64_t limit = base.family == ModelFamily::kEncoder ? base.max_position_embeddings
                                                              : int64_t{1} << 20;
  if (!h->has_max_length()) h->set_max_length(static_cast<int32_t>(std::min<int64_t>(kDefaultMaxLength, limit)));
  if (h->max_length() < 8 || h->max_length() > limit) {
    return absl::InvalidArgumentError(absl::StrCat(p, "max_length: must be in [8, ", limit,
                                                   "] (the model's position limit), got ", h->max_length()));
  }
  if (h->truncation() == v1::TRUNCATION_POLICY_UNSPECIFIED) h->set_truncation(v1::TRUNCATION_POLICY_TRUNCATE);
  if (!v1::TruncationPolicy_IsValid(h->truncation())) {
    return absl::InvalidArgumentError(absl::StrCat(p, "truncation: unknown value ", h->truncation()));
  }
  RETURN_IF_ERROR(CheckDouble(p + "center_rewards_coefficient", h->center_rewards_coefficient(), 0, 1e3, false));
  if (h->max_batch_tokens() != 0 && h->max_batch_tokens() < 2 * int64_t{h->max_length()}) {
    return absl::InvalidArgumentError(absl::StrCat(p, "max_batch_tokens: must be 0 or at least 2 * max_length (",
                                                   2 * h->max_length(), "), got ", h->max_batch_tokens()));
  }
  if (!h->has_group_by_length()) h->set_group_by_length(true);
  return absl::OkStatus();
}

}  // namespace

absl::Status NormalizeTrainingJobSpec(const ServerConfig& server, const SpecResolvers& resolvers,
                                      v1::TrainingJobSpec* spec) {
  if (spec->output_model_name().empty()) spec->set_output_model_name(kDefaultModelName);
  RETURN_IF_ERROR(ValidateModelName("spec.output_model_name", spec->output_model_name()));
  ASSIGN_OR_RETURN(ModelConfig base, BaseConfig(server, resolvers, spec));

  // Tokenizer: a base model brings its own; a preset trains one unless given a file.
  v1::TokenizerSpec* tokenizer = spec->mutable_tokenizer();
  if (spec->has_base_model() || spec->has_registered_model()) {
    if (tokenizer->source_case() != v1::TokenizerSpec::SOURCE_NOT_SET) {
      return absl::InvalidArgumentError(
          "spec.tokenizer: must be unset when training from a model, whose embeddings belong to "
          "its own tokenizer");
    }
    spec->clear_tokenizer();
  } else if (tokenizer->has_path()) {
    const std::string& path = tokenizer->path();
    if (!absl::EndsWith(path, ".model") && fs::path(path).filename() != "vocab.txt") {
      return absl::InvalidArgumentError(absl::StrCat(
          "spec.tokenizer.path: must name a SentencePiece \".model\" file or a \"vocab.txt\", got \"", path, "\""));
    }
    RETURN_IF_ERROR(ResolveUnderRoot(server.model_dir, path, "spec.tokenizer.path").status());
  } else {
    v1::SentencePieceTraining* train = tokenizer->mutable_train();
    if (!train->has_vocab_size()) train->set_vocab_size(kDefaultVocabSize);
    RETURN_IF_ERROR(ValidateRange("spec.tokenizer.train.vocab_size", train->vocab_size(), 256, 131072));
    if (train->model_type() == v1::SENTENCE_PIECE_MODEL_TYPE_UNSPECIFIED) {
      train->set_model_type(v1::SENTENCE_PIECE_MODEL_TYPE_UNIGRAM);
    }
    if (!v1::SentencePieceModelType_IsValid(train->model_type())) {
      return absl::InvalidArgumentError("spec.tokenizer.train.model_type: unknown value");
    }
  }

  if (!spec->has_train_data()) return absl::InvalidArgumentError("spec.train_data: must be set");
  RETURN_IF_ERROR(NormalizeDatasetRef(server, resolvers, "spec.train_data", spec->train_data()));

  v1::EvalSpec* eval = spec->mutable_eval();
  if (eval->source_case() == v1::EvalSpec::SOURCE_NOT_SET) eval->set_eval_fraction(0.05);
  if (eval->has_eval_fraction()) {
    RETURN_IF_ERROR(CheckDouble("spec.eval.eval_fraction", eval->eval_fraction(), 0, 0.5, false));
  } else {
    RETURN_IF_ERROR(NormalizeDatasetRef(server, resolvers, "spec.eval.dataset", eval->dataset()));
  }
  RETURN_IF_ERROR(ValidateRange("spec.eval.max_pairs", eval->max_pairs(), 0, int64_t{1} << 40));

  v1::DataOptions* data = spec->mutable_data_options();
  if (data->chat_format() == v1::CHAT_FORMAT_UNSPECIFIED) data->set_chat_format(v1::CHAT_FORMAT_HH);
  if (!v1::ChatFormat_IsValid(data->chat_format())) {
    return absl::InvalidArgumentError("spec.data_options.chat_format: unknown value");
  }
  RETURN_IF_ERROR(ValidateRange("spec.data_options.max_train_pairs", data->max_train_pairs(), 0, int64_t{1} << 40));

  RETURN_IF_ERROR(NormalizeHyperparameters(base, spec->mutable_hyperparameters()));
  if (!eval->has_split_seed()) eval->set_split_seed(spec->hyperparameters().seed());

  if (!spec->has_logging_steps()) spec->set_logging_steps(10);
  RETURN_IF_ERROR(ValidateRange("spec.logging_steps", spec->logging_steps(), 1, 1000000));
  RETURN_IF_ERROR(ValidateRange("spec.eval_steps", spec->eval_steps(), 0, 1000000000));
  if (!spec->has_save_steps()) spec->set_save_steps(500);
  RETURN_IF_ERROR(ValidateRange("spec.save_steps", spec->save_steps(), 0, 1000000000));
  if (!spec->has_save_total_limit()) spec->set_save_total_limit(2);
  RETURN_IF_ERROR(ValidateRange("spec.save_total_limit", spec->save_total_limit(), 1, 100));
  if (spec->device().empty()) spec->set_device(server.default_device);
  if (auto device = ParseDevice(spec->device()); !device.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("spec.device: ", device.status().message()));
  }
  if (spec->dtype() == v1::DTYPE_UNSPECIFIED) spec->set_dtype(v1::DTYPE_FLOAT32);
  if (spec->dtype() == v1::DTYPE_FLOAT16) {
    return absl::InvalidArgumentError(
        "spec.dtype: FLOAT16 training is not supported (it needs loss scaling); use BFLOAT16");
  }
  if (!v1::Dtype_IsValid(spec->dtype())) return absl::InvalidArgumentError("spec.dtype: unknown value");
  RETURN_IF_ERROR(ValidateRange("spec.priority", spec->priority(), -100, 100));
  return absl::OkStatus();
}

absl::StatusOr<TrainingConfig> ToTrainingConfig(const ServerConfig& server,
                                                const SpecResolvers& resolvers,
                                                const v1::TrainingJobSpec& spec,
                                                const std::string& run_dir,
                                                const std::string& output_dir) {
  TrainingConfig c;
  switch (spec.base_case()) {
    case v1::TrainingJobSpec::kBaseModel: {
      ASSIGN_OR_RETURN(c.base_model_dir, ResolveUnderRoot(server.model_dir, spec.base_model(), "spec.base_model"));
      break;
    }
    case v1::TrainingJobSpec::kRegisteredModel: {
      ASSIGN_OR_RETURN(auto resolved, resolvers.registered_model(spec.registered_model()));
      c.base_model_dir = resolved.first;
      break;
    }
    default:
      c.preset = spec.preset();
  }
  if (spec.tokenizer().has_path()) {
    ASSIGN_OR_RETURN(c.tokenizer_path,
                     ResolveUnderRoot(server.model_dir, spec.tokenizer().path(), "spec.tokenizer.path"));
  } else if (spec.tokenizer().has_train()) {
    c.vocab_size = spec.tokenizer().train().vocab_size();
    c.tokenizer_type =
        spec.tokenizer().train().model_type() == v1::SENTENCE_PIECE_MODEL_TYPE_BPE ? "bpe" : "unigram";
  }
  ASSIGN_OR_RETURN(c.train_path, DatasetFile(server, resolvers, "spec.train_data", spec.train_data()));
  if (spec.eval().has_dataset()) {
    ASSIGN_OR_RETURN(c.eval_path, DatasetFile(server, resolvers, "spec.eval.dataset", spec.eval().dataset()));
    c.eval_fraction = 0;
  } else {
    c.eval_fraction = spec.eval().eval_fraction();
  }
  c.split_seed = spec.eval().split_seed();
  c.max_eval_pairs = spec.eval().max_pairs();
  c.max_train_pairs = spec.data_options().max_train_pairs();
  c.skip_invalid = spec.data_options().skip_invalid();
  switch (spec.data_options().chat_format()) {
    case v1::CHAT_FORMAT_CHATML:
      c.chat_format = "chatml";
      break;
    case v1::CHAT_FORMAT_LLAMA2:
      c.chat_format = "llama2";
      break;
    default:
      c.chat_format = "hh-rlhf";
  }
  const v1::Hyperparameters& h = spec.hyperparameters();
  c.learning_rate = h.learning_rate();
  c.weight_decay = h.weight_decay();
  c.adam_beta1 = h.adam_beta1();
  c.adam_beta2 = h.adam_beta2();
  c.adam_epsilon = h.adam_epsilon();
  c.warmup_steps = h.has_warmup_steps() ? h.warmup_steps() : 0;
  c.warmup_ratio = h.has_warmup_ratio() ? h.warmup_ratio() : 0;
  c.lr_scheduler = h.lr_scheduler() == v1::LR_SCHEDULER_COSINE     ? "cosine"
                   : h.lr_scheduler() == v1::LR_SCHEDULER_CONSTANT ? "constant"
                                                                   : "linear";
  c.batch_size = h.per_device_train_batch_size();
  c.eval_batch_size = h.per_device_eval_batch_size();
  c.gradient_accumulation_steps = h.gradient_accumulation_steps();
  c.max_grad_norm = h.max_grad_norm();
  c.num_epochs = h.num_epochs();
  c.max_steps = h.max_steps();
  c.seed = h.seed();
  c.max_length = h.max_length();
  c.truncation = h.truncation() == v1::TRUNCATION_POLICY_DROP ? "drop" : "truncate";
  c.center_rewards_coefficient = h.center_rewards_coefficient();
  c.max_batch_tokens = h.max_batch_tokens();
  c.group_by_length = h.group_by_length();
  c.logging_steps = spec.logging_steps();
  c.eval_steps = spec.eval_steps();
  c.save_steps = spec.save_steps();
  c.save_total_limit = spec.save_total_limit();
  c.device = spec.device();
  c.dtype = spec.dtype() == v1::DTYPE_BFLOAT16 ? "bfloat16" : "float32";
  c.run_dir = run_dir;
  c.output_dir = output_dir;
  RETURN_IF_ERROR(ValidateTrainingConfig(c));
  return c;
}

}  // namespace verdict::server
