#include "server/proto_conversion.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "core/model/model_config.h"
#include "core/model/model_directory.h"
#include "core/model/reward_model.h"
#include "core/util/status_macros.h"
#include "server/path_resolver.h"
#include "server/proto_time.h"
#include "server/validation.h"

namespace verdict::server {
namespace {

namespace fs = std::filesystem;

absl::Status UnknownEnum(absl::string_view field, int value) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": unknown value ", value));
}

constexpr char kDefaultModelName[] = "reward-model";
// The most data-parallel ranks verdictd launches on its own node (spec.world_size).
constexpr int64_t kMaxLocalWorldSize = 64;

// Where each core TrainingConfig field lives in a TrainingJobSpec: core's validation errors
// start with the field's name ("learning_rate: must be ..."), and the client wants the proto
// path ("spec.hyperparameters.learning_rate: must be ..."). The one table of that mapping.
constexpr std::pair<absl::string_view, absl::string_view> kProtoPaths[] = {
    {"base_model_dir", "spec.base_model"},
    {"preset", "spec.preset"},
    {"device", "spec.device"},
    {"dtype", "spec.dtype"},
    {"tokenizer_path", "spec.tokenizer.path"},
    {"vocab_size", "spec.tokenizer.train.vocab_size"},
    {"tokenizer_type", "spec.tokenizer.train.model_type"},
    {"train_path", "spec.train_data"},
    {"eval_path", "spec.eval.dataset"},
    {"eval_fraction", "spec.eval.eval_fraction"},
    {"split_seed", "spec.eval.split_seed"},
    {"max_eval_pairs", "spec.eval.max_pairs"},
    {"max_train_pairs", "spec.data_options.max_train_pairs"},
    {"chat_format", "spec.data_options.chat_format"},
    {"data_format", "spec.data_options.format"},
    {"input_rule", "spec.data_options.input_rule"},
    {"skip_invalid", "spec.data_options.skip_invalid"},
    {"learning_rate", "spec.hyperparameters.learning_rate"},
    {"weight_decay", "spec.hyperparameters.weight_decay"},
    {"adam_beta1", "spec.hyperparameters.adam_beta1"},
    {"adam_beta2", "spec.hyperparameters.adam_beta2"},
    {"adam_epsilon", "spec.hyperparameters.adam_epsilon"},
    {"lr_scheduler", "spec.hyperparameters.lr_scheduler"},
    {"warmup_steps", "spec.hyperparameters.warmup_steps"},
    {"warmup_ratio", "spec.hyperparameters.warmup_ratio"},
    {"min_lr_ratio", "spec.hyperparameters.min_lr_ratio"},
    {"batch_size", "spec.hyperparameters.per_device_train_batch_size"},
    {"eval_batch_size", "spec.hyperparameters.per_device_eval_batch_size"},
    {"gradient_accumulation_steps", "spec.hyperparameters.gradient_accumulation_steps"},
    {"max_grad_norm", "spec.hyperparameters.max_grad_norm"},
    {"num_epochs", "spec.hyperparameters.num_epochs"},
    {"max_steps", "spec.hyperparameters.max_steps"},
    {"seed", "spec.hyperparameters.seed"},
    {"max_length", "spec.hyperparameters.max_length"},
    {"truncation", "spec.hyperparameters.truncation"},
    {"center_rewards_coefficient", "spec.hyperparameters.center_rewards_coefficient"},
    {"max_batch_tokens", "spec.hyperparameters.max_batch_tokens"},
    {"group_by_length", "spec.hyperparameters.group_by_length"},
    {"prefix_sharing", "spec.hyperparameters.prefix_sharing"},
    {"gradient_checkpointing", "spec.hyperparameters.gradient_checkpointing"},
    {"lora_rank", "spec.hyperparameters.lora_rank"},
    {"lora_alpha", "spec.hyperparameters.lora_alpha"},
    {"lora_target_modules", "spec.hyperparameters.lora_target_modules"},
    {"logging_steps", "spec.logging_steps"},
    {"eval_steps", "spec.eval_steps"},
    {"save_steps", "spec.save_steps"},
    {"save_total_limit", "spec.save_total_limit"},
    {"world_size", "spec.world_size"},
};

// A core error "field: problem" as "proto.path: problem"; other errors unchanged.
absl::Status WithProtoPath(const absl::Status& status) {
  if (status.ok()) return status;
  const absl::string_view message = status.message();
  const size_t colon = message.find(": ");
  if (colon == absl::string_view::npos) return status;
  for (const auto& [field, path] : kProtoPaths) {
    if (message.substr(0, colon) == field) {
      return absl::Status(status.code(), absl::StrCat(path, message.substr(colon)));
    }
  }
  return status;
}

// The settings a normalized spec describes, as core's config: every field but the paths,
// which ToTrainingConfig resolves. The one mapping of spec settings onto TrainingConfig.
// Errors name core fields (see WithProtoPath).
absl::StatusOr<TrainingConfig> SettingsOf(const v1::TrainingJobSpec& spec) {
  TrainingConfig c;
  if (spec.has_preset()) c.preset = spec.preset();
  if (spec.tokenizer().has_train()) {
    c.vocab_size = spec.tokenizer().train().vocab_size();
    ASSIGN_OR_RETURN(c.tokenizer_type, ToCore(spec.tokenizer().train().model_type()));
  }
  if (spec.eval().has_eval_fraction()) c.eval_fraction = spec.eval().eval_fraction();
  c.split_seed = spec.eval().split_seed();
  c.max_eval_pairs = spec.eval().max_pairs();
  c.max_train_pairs = spec.data_options().max_train_pairs();
  c.skip_invalid = spec.data_options().skip_invalid();
  ASSIGN_OR_RETURN(c.chat_format, ToCore(spec.data_options().chat_format()));
  ASSIGN_OR_RETURN(c.data_format, ToCore(spec.data_options().format()));
  ASSIGN_OR_RETURN(c.input_rule, ToCore(spec.data_options().input_rule()));
  const v1::Hyperparameters& h = spec.hyperparameters();
  c.learning_rate = h.learning_rate();
  c.weight_decay = h.weight_decay();
  c.adam_beta1 = h.adam_beta1();
  c.adam_beta2 = h.adam_beta2();
  c.adam_epsilon = h.adam_epsilon();
  c.warmup_steps = h.has_warmup_steps() ? h.warmup_steps() : 0;
  c.warmup_ratio = h.has_warmup_ratio() ? h.warmup_ratio() : 0;
  ASSIGN_OR_RETURN(c.lr_scheduler, ToCore(h.lr_scheduler()));
  c.min_lr_ratio = h.min_lr_ratio();
  c.batch_size = h.per_device_train_batch_size();
  c.eval_batch_size = h.per_device_eval_batch_size();
  c.gradient_accumulation_steps = h.gradient_accumulation_steps();
  c.max_grad_norm = h.max_grad_norm();
  c.num_epochs = h.num_epochs();
  c.max_steps = h.max_steps();
  c.seed = h.seed();
  c.max_length = h.max_length();
  ASSIGN_OR_RETURN(c.truncation, ToCore(h.truncation()));
  c.center_rewards_coefficient = h.center_rewards_coefficient();
  c.max_batch_tokens = h.max_batch_tokens();
  c.group_by_length = h.group_by_length();
  c.prefix_sharing = h.prefix_sharing();
  c.gradient_checkpointing = h.gradient_checkpointing();
  c.lora_rank = h.lora_rank();
  c.lora_alpha = h.lora_alpha();
  c.lora_target_modules.assign(h.lora_target_modules().begin(), h.lora_target_modules().end());
  c.logging_steps = spec.logging_steps();
  c.eval_steps = spec.eval_steps();
  c.save_steps = spec.save_steps();
  c.save_total_limit = spec.save_total_limit();
  c.world_size = spec.has_world_size() ? spec.world_size() : 1;
  absl::StatusOr<Device> device = ParseDeviceName(spec.device());
  if (!device.ok()) return absl::InvalidArgumentError(absl::StrCat("device: ", device.status().message()));
  c.device = *device;
  ASSIGN_OR_RETURN(c.dtype, ToCore(spec.dtype()));
  return c;
}

// The architecture the spec's base implies, for the tokenizer and max_length rules, and the
// base model's directory (empty for a preset).
absl::StatusOr<ModelConfig> BaseConfig(const ServerConfig& server, const SpecResolvers& resolvers,
                                       v1::TrainingJobSpec* spec, std::string* base_dir) {
  switch (spec->base_case()) {
    case v1::TrainingJobSpec::kBaseModel: {
      ASSIGN_OR_RETURN(std::string dir,
                       ResolveUnderRoot(server.model_dir, spec->base_model(), "spec.base_model"));
      // The trainer reads every file of it: none may lead outside --model_dir.
      RETURN_IF_ERROR(
          ListTreeUnderRoot(server.model_dir, spec->base_model(), "spec.base_model").status());
      *base_dir = dir;
      auto config = ReadModelDirectoryConfig(dir);
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
      *base_dir = resolved.first;
      return ReadModelDirectoryConfig(resolved.first);
    }
    case v1::TrainingJobSpec::kPreset:
    case v1::TrainingJobSpec::BASE_NOT_SET:
      break;
  }
  if (spec->base_case() == v1::TrainingJobSpec::BASE_NOT_SET) spec->set_preset(TrainingConfig().preset);
  // The vocabulary size does not change what the rules here read (family, positions).
  auto config = PresetModelConfig(spec->preset(), TrainingConfig().vocab_size, 0);
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
      return ResolveFileUnderRoot(server.data_dir, ref.path(), absl::StrCat(field, ".path"))
          .status();
    case v1::DatasetRef::SOURCE_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat(field, ": set dataset_id or path"));
}

absl::StatusOr<std::string> DatasetFile(const ServerConfig& server, const SpecResolvers& resolvers,
                                        absl::string_view field, const v1::DatasetRef& ref) {
  if (ref.source_case() == v1::DatasetRef::kDatasetId) return resolvers.dataset_file(ref.dataset_id());
  return ResolveFileUnderRoot(server.data_dir, ref.path(), absl::StrCat(field, ".path"));
}

// Fills every unset hyper-parameter from TrainingConfig's defaults; the ranges are core's
// (checked in NormalizeTrainingJobSpec). What stays here is the server's own rule: max_length
// within the base model's positions and LoRA's layers within its family, which only the
// server knows before training.
absl::Status NormalizeHyperparameters(const ModelConfig& base, v1::Hyperparameters* h) {
  const TrainingConfig d;
  if (!h->has_learning_rate()) h->set_learning_rate(d.learning_rate);
  if (!h->has_adam_beta1()) h->set_adam_beta1(d.adam_beta1);
  if (!h->has_adam_beta2()) h->set_adam_beta2(d.adam_beta2);
  if (!h->has_adam_epsilon()) h->set_adam_epsilon(d.adam_epsilon);
  if (h->warmup_case() == v1::Hyperparameters::WARMUP_NOT_SET) h->set_warmup_steps(d.warmup_steps);
  if (h->lr_scheduler() == v1::LR_SCHEDULER_UNSPECIFIED) h->set_lr_scheduler(ToProto(d.lr_scheduler));
  if (!h->has_min_lr_ratio()) h->set_min_lr_ratio(d.min_lr_ratio);
  if (!h->has_per_device_train_batch_size()) {
    h->set_per_device_train_batch_size(static_cast<int32_t>(d.batch_size));
  }
  if (h->per_device_eval_batch_size() == 0) {
    h->set_per_device_eval_batch_size(h->per_device_train_batch_size());
  }
  if (!h->has_gradient_accumulation_steps()) {
    h->set_gradient_accumulation_steps(static_cast<int32_t>(d.gradient_accumulation_steps));
  }
  if (!h->has_max_grad_norm()) h->set_max_grad_norm(d.max_grad_norm);
  if (!h->has_num_epochs()) h->set_num_epochs(d.num_epochs);
  if (!h->has_seed()) h->set_seed(d.seed);
  // Encoders have learned positions: max_length cannot exceed them.
  if (!h->has_max_length()) {
    h->set_max_length(static_cast<int32_t>(EffectiveMaxLength(base, d.max_length)));
  }
  const int64_t positions = MaxSequenceLength(base);
  if (positions > 0 && (h->max_length() < 8 || h->max_length() > positions)) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.hyperparameters.max_length: must be in [8, ", positions,
                     "] (the model's position limit), got ", h->max_length()));
  }
  if (h->truncation() == v1::TRUNCATION_POLICY_UNSPECIFIED) h->set_truncation(ToProto(d.truncation));
  if (!h->has_group_by_length()) h->set_group_by_length(d.group_by_length);
  if (!h->has_prefix_sharing()) h->set_prefix_sharing(d.prefix_sharing);
  if (!h->has_lora_alpha()) h->set_lora_alpha(d.lora_alpha);
  // The base model's family decides which layers exist (core checks the union of both).
  const std::vector<std::string> layers = LoraModuleNames(base.family);
  for (const std::string& name : h->lora_target_modules()) {
    if (std::find(layers.begin(), layers.end(), name) == layers.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "spec.hyperparameters.lora_target_modules: ", QuoteForMessage(name),
          " is not a linear layer of the base model (", absl::StrJoin(layers, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

// ---- enums ----------------------------------------------------------------------------------

// Every enum is mapped by a table of (proto, core) rows: both directions read the same rows.
template <typename Proto, typename Core, size_t N>
absl::StatusOr<Core> CoreOf(const std::pair<Proto, Core> (&table)[N], Proto v,
                            absl::string_view field) {
  for (const auto& [proto, core] : table) {
    if (proto == v) return core;
  }
  return UnknownEnum(field, v);
}

// The table lists every core value, so the UNSPECIFIED (0) fallback is unreachable.
template <typename Proto, typename Core, size_t N>
Proto ProtoOf(const std::pair<Proto, Core> (&table)[N], Core v) {
  for (const auto& [proto, core] : table) {
    if (core == v) return proto;
  }
  return static_cast<Proto>(0);
}

constexpr std::pair<v1::ChatFormat, ChatFormat> kChatFormats[] = {
    {v1::CHAT_FORMAT_HH, ChatFormat::kHhRlhf},         {v1::CHAT_FORMAT_CHATML, ChatFormat::kChatML},
    {v1::CHAT_FORMAT_LLAMA2, ChatFormat::kLlama2},     {v1::CHAT_FORMAT_QWEN3, ChatFormat::kQwen3},
    {v1::CHAT_FORMAT_LLAMA3, ChatFormat::kLlama3},     {v1::CHAT_FORMAT_QWEN2, ChatFormat::kQwen2},
    {v1::CHAT_FORMAT_LLAMA3_1, ChatFormat::kLlama31},  {v1::CHAT_FORMAT_QWEN2_5, ChatFormat::kQwen25},
};
absl::StatusOr<ChatFormat> ToCore(v1::ChatFormat v) {
  return CoreOf(kChatFormats, v, "chat_format");
}
v1::ChatFormat ToProto(ChatFormat v) { return ProtoOf(kChatFormats, v); }

constexpr std::pair<v1::DataFormat, DataFormat> kDataFormats[] = {
    {v1::DATA_FORMAT_AUTO, DataFormat::kAuto},
    {v1::DATA_FORMAT_JSONL, DataFormat::kJsonl},
    {v1::DATA_FORMAT_JSON, DataFormat::kJson},
    {v1::DATA_FORMAT_SHAREGPT, DataFormat::kShareGpt},
};
absl::StatusOr<DataFormat> ToCore(v1::DataFormat v) {
  return CoreOf(kDataFormats, v, "data_format");
}
v1::DataFormat ToProto(DataFormat v) { return ProtoOf(kDataFormats, v); }

constexpr std::pair<v1::InputRule, InputRule> kInputRules[] = {
    {v1::INPUT_RULE_CONCAT, InputRule::kConcat},
    {v1::INPUT_RULE_PAIR, InputRule::kPair},
    {v1::INPUT_RULE_CHAT, InputRule::kChat},
};
absl::StatusOr<InputRule> ToCore(v1::InputRule v) { return CoreOf(kInputRules, v, "input_rule"); }
v1::InputRule ToProto(InputRule v) { return ProtoOf(kInputRules, v); }

constexpr std::pair<v1::LrScheduler, LrScheduleKind> kLrSchedulers[] = {
    {v1::LR_SCHEDULER_LINEAR, LrScheduleKind::kLinear},
    {v1::LR_SCHEDULER_COSINE, LrScheduleKind::kCosine},
    {v1::LR_SCHEDULER_CONSTANT, LrScheduleKind::kConstant},
};
absl::StatusOr<LrScheduleKind> ToCore(v1::LrScheduler v) {
  return CoreOf(kLrSchedulers, v, "lr_scheduler");
}
v1::LrScheduler ToProto(LrScheduleKind v) { return ProtoOf(kLrSchedulers, v); }

constexpr std::pair<v1::TruncationPolicy, TruncationPolicy> kTruncationPolicies[] = {
    {v1::TRUNCATION_POLICY_TRUNCATE, TruncationPolicy::kTruncate},
    {v1::TRUNCATION_POLICY_DROP, TruncationPolicy::kDrop},
};
absl::StatusOr<TruncationPolicy> ToCore(v1::TruncationPolicy v) {
  return CoreOf(kTruncationPolicies, v, "truncation");
}
v1::TruncationPolicy ToProto(TruncationPolicy v) { return ProtoOf(kTruncationPolicies, v); }

constexpr std::pair<v1::Dtype, Dtype> kDtypes[] = {
    {v1::DTYPE_FLOAT32, Dtype::kFloat32},
    {v1::DTYPE_BFLOAT16, Dtype::kBFloat16},
    {v1::DTYPE_FLOAT16, Dtype::kFloat16},
};
absl::StatusOr<Dtype> ToCore(v1::Dtype v) { return CoreOf(kDtypes, v, "dtype"); }
v1::Dtype ToProto(Dtype v) { return ProtoOf(kDtypes, v); }

constexpr std::pair<v1::SentencePieceModelType, SentencePieceModelType> kTokenizerTypes[] = {
    {v1::SENTENCE_PIECE_MODEL_TYPE_UNIGRAM, SentencePieceModelType::kUnigram},
    {v1::SENTENCE_PIECE_MODEL_TYPE_BPE, SentencePieceModelType::kBpe},
};
absl::StatusOr<SentencePieceModelType> ToCore(v1::SentencePieceModelType v) {
  return CoreOf(kTokenizerTypes, v, "tokenizer_type");
}
v1::SentencePieceModelType ToProto(SentencePieceModelType v) {
  return ProtoOf(kTokenizerTypes, v);
}

v1::ModelFamily ToProto(ModelFamily v) {
  return v == ModelFamily::kEncoder ? v1::MODEL_FAMILY_ENCODER : v1::MODEL_FAMILY_DECODER;
}

// ---- job states -----------------------------------------------------------------------------

std::string JobStateName(v1::JobState state) {
  std::string name = v1::JobState_Name(state);
  return name.substr(std::string("JOB_STATE_").size());
}

bool IsTerminal(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}

// ---- metrics --------------------------------------------------------------------------------

void ToProto(const TrainStepMetrics& m, v1::TrainStepMetrics* out) {
  out->set_loss(m.loss);
  out->set_accuracy(m.accuracy);
  out->set_margin(m.margin);
  out->set_reward_mean(m.reward_mean);
  out->set_reward_min(m.reward_min);
  out->set_reward_max(m.reward_max);
  out->set_chosen_reward_mean(m.chosen_reward_mean);
  out->set_rejected_reward_mean(m.rejected_reward_mean);
  out->set_learning_rate(m.learning_rate);
  out->set_grad_norm(m.grad_norm);
  out->set_pairs(m.pairs);
  out->set_tokens(m.tokens);
  out->set_pairs_per_second(m.pairs_per_second);
  out->set_tokens_per_second(m.tokens_per_second);
  out->set_padding_fraction(m.padding_fraction);
  out->set_epoch(m.epoch);
}

void ToProto(const EvalMetrics& m, v1::EvalMetrics* out) {
  out->set_loss(m.loss);
  out->set_accuracy(m.accuracy);
  out->set_margin(m.margin);
  out->set_reward_mean(m.reward_mean);
  out->set_reward_std(m.reward_std);
  out->set_pairs(m.pairs);
  SetDuration(absl::Seconds(m.seconds), out->mutable_duration());
}

// ---- models ---------------------------------------------------------------------------------

void DescribeArchitecture(const ModelConfig& config, v1::Model* model) {
  model->set_family(ToProto(config.family));
  model->set_model_type(config.model_type);
  model->set_vocab_size(config.vocab_size);
  model->set_max_position_embeddings(config.max_position_embeddings);
}

void DescribeEncoding(const EncodingSettings& settings, v1::Model* model) {
  model->set_max_length(static_cast<int32_t>(settings.max_length));
  model->set_truncation(ToProto(settings.truncation));
  model->set_chat_format(ToProto(settings.chat_format));
  model->set_input_rule(ToProto(settings.input_rule));
}

absl::StatusOr<ScoringSettings> ScoringSettingsOf(const v1::Model& model) {
  ScoringSettings settings;
  settings.max_length = model.max_length();
  ASSIGN_OR_RETURN(settings.truncation, ToCore(model.truncation()));
  ASSIGN_OR_RETURN(settings.chat_format, ToCore(model.chat_format()));
  // Versions registered before input rules existed were scored by what is now "pair".
  settings.input_rule = InputRule::kPair;
  if (model.input_rule() != v1::INPUT_RULE_UNSPECIFIED) {
    ASSIGN_OR_RETURN(settings.input_rule, ToCore(model.input_rule()));
  }
  if (model.has_reward_stats() && model.reward_stats().std() > 0) {
    settings.reward_stats = RewardStats{model.reward_stats().mean(), model.reward_stats().std()};
  }
  return settings;
}

// ---- training job specs ---------------------------------------------------------------------

absl::Status NormalizeEvaluationJobSpec(const ServerConfig& server, const SpecResolvers& resolvers,
                                        v1::EvaluationJobSpec* spec) {
  RETURN_IF_ERROR(ValidateModelRef("spec.model", spec->model()));
  RETURN_IF_ERROR(ValidateRange("spec.max_pairs", spec->max_pairs(), 0, 10'000'000));
  RETURN_IF_ERROR(ValidateRange("spec.batch_size", spec->batch_size(), 0, 1024));
  if (spec->data().source_case() == v1::DatasetRef::SOURCE_NOT_SET) {
    return absl::InvalidArgumentError("spec.data: set dataset_id or path");
  }
  if (absl::Status data = NormalizeDatasetRef(server, resolvers, "spec.data", spec->data());
      !data.ok()) {
    if (absl::StartsWith(data.message(), "spec.data")) return data;
    return absl::Status(data.code(), absl::StrCat("spec.data.dataset_id: ", data.message()));
  }
  absl::StatusOr<std::pair<std::string, int64_t>> resolved =
      resolvers.registered_model(spec->model());
  if (!resolved.ok()) {
    return absl::Status(resolved.status().code(),
                        absl::StrCat("spec.model: ", resolved.status().message()));
  }
  // Pin the version: the result belongs to it even if an alias moves while the job waits.
  spec->mutable_model()->set_version(resolved->second);
  if (spec->batch_size() == 0) spec->set_batch_size(16);
  return absl::OkStatus();
}

absl::StatusOr<std::string> EvaluationDataFile(const ServerConfig& server,
                                               const SpecResolvers& resolvers,
                                               const v1::EvaluationJobSpec& spec) {
  return DatasetFile(server, resolvers, "spec.data", spec.data());
}

absl::Status NormalizeTrainingJobSpec(const ServerConfig& server, const SpecResolvers& resolvers,
                                      v1::TrainingJobSpec* spec) {
  if (spec->output_model_name().empty()) spec->set_output_model_name(kDefaultModelName);
  RETURN_IF_ERROR(ValidateModelName("spec.output_model_name", spec->output_model_name()));
  std::string base_dir;
  ASSIGN_OR_RETURN(ModelConfig base, BaseConfig(server, resolvers, spec, &base_dir));
  const TrainingConfig defaults;

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
    RETURN_IF_ERROR(ResolveFileUnderRoot(server.model_dir, path, "spec.tokenizer.path").status());
  } else {
    v1::SentencePieceTraining* train = tokenizer->mutable_train();
    if (!train->has_vocab_size()) train->set_vocab_size(static_cast<int32_t>(defaults.vocab_size));
    if (train->model_type() == v1::SENTENCE_PIECE_MODEL_TYPE_UNSPECIFIED) {
      train->set_model_type(ToProto(defaults.tokenizer_type));
    }
  }

  if (!spec->has_train_data()) return absl::InvalidArgumentError("spec.train_data: must be set");
  RETURN_IF_ERROR(NormalizeDatasetRef(server, resolvers, "spec.train_data", spec->train_data()));

  v1::EvalSpec* eval = spec->mutable_eval();
  if (eval->source_case() == v1::EvalSpec::SOURCE_NOT_SET) eval->set_eval_fraction(defaults.eval_fraction);
  if (eval->has_dataset()) {
    RETURN_IF_ERROR(NormalizeDatasetRef(server, resolvers, "spec.eval.dataset", eval->dataset()));
  }

  v1::DataOptions* data = spec->mutable_data_options();
  if (data->chat_format() == v1::CHAT_FORMAT_UNSPECIFIED) {
    // A base model's own chat template, as TRL renders conversations with the tokenizer's.
    ChatFormat format = defaults.chat_format;
    if (!base_dir.empty()) {
      absl::StatusOr<ChatFormat> implied = ImpliedChatFormat(base_dir);
      if (!implied.ok()) {
        // The message names the server's path; the client knows the base by its own name.
        return absl::InvalidArgumentError(absl::StrCat(
            "spec.data_options.chat_format: ",
            absl::StrReplaceAll(implied.status().message(), {{base_dir, "the base model"}}),
            "; name the chat format (hh for plain-text data)"));
      }
      format = *implied;
    }
    data->set_chat_format(ToProto(format));
  }
  if (data->input_rule() == v1::INPUT_RULE_UNSPECIFIED) {
    data->set_input_rule(ToProto(defaults.input_rule));
  }
  if (data->format() == v1::DATA_FORMAT_UNSPECIFIED) {
    data->set_format(ToProto(defaults.data_format));
  }

  RETURN_IF_ERROR(NormalizeHyperparameters(base, spec->mutable_hyperparameters()));
  if (!eval->has_split_seed()) eval->set_split_seed(spec->hyperparameters().seed());

  if (!spec->has_logging_steps()) spec->set_logging_steps(static_cast<int32_t>(defaults.logging_steps));
  if (!spec->has_save_steps()) spec->set_save_steps(static_cast<int32_t>(defaults.save_steps));
  if (!spec->has_save_total_limit()) {
    spec->set_save_total_limit(static_cast<int32_t>(defaults.save_total_limit));
  }
  if (spec->device().empty()) spec->set_device(server.default_device);
  if (spec->dtype() == v1::DTYPE_UNSPECIFIED) spec->set_dtype(ToProto(defaults.dtype));
  RETURN_IF_ERROR(ValidateRange("spec.priority", spec->priority(), -100, 100));
  if (!spec->has_world_size()) spec->set_world_size(static_cast<int32_t>(defaults.world_size));
  // Core allows more ranks (launched elsewhere); verdictd starts them all on its own node.
  RETURN_IF_ERROR(ValidateRange("spec.world_size", spec->world_size(), 1, kMaxLocalWorldSize));

  // Every range and rule on the settings is core's.
  absl::StatusOr<TrainingConfig> settings = SettingsOf(*spec);
  if (!settings.ok()) return WithProtoPath(settings.status());
  RETURN_IF_ERROR(WithProtoPath(ValidateTrainingSettings(*settings)));
  // A device this server lacks is refused now, not when the job starts.
  if (absl::Status available = CheckDeviceAvailable(settings->device); !available.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("spec.device: ", available.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<TrainingConfig> ToTrainingConfig(const ServerConfig& server,
                                                const SpecResolvers& resolvers,
                                                const v1::TrainingJobSpec& spec,
                                                const std::string& run_dir,
                                                const std::string& output_dir) {
  absl::StatusOr<TrainingConfig> settings = SettingsOf(spec);
  if (!settings.ok()) return WithProtoPath(settings.status());
  TrainingConfig c = *std::move(settings);
  switch (spec.base_case()) {
    case v1::TrainingJobSpec::kBaseModel: {
      ASSIGN_OR_RETURN(c.base_model_dir, ResolveUnderRoot(server.model_dir, spec.base_model(), "spec.base_model"));
      RETURN_IF_ERROR(
          ListTreeUnderRoot(server.model_dir, spec.base_model(), "spec.base_model").status());
      break;
    }
    case v1::TrainingJobSpec::kRegisteredModel: {
      ASSIGN_OR_RETURN(auto resolved, resolvers.registered_model(spec.registered_model()));
      c.base_model_dir = resolved.first;
      break;
    }
    default:
      break;
  }
  if (spec.tokenizer().has_path()) {
    ASSIGN_OR_RETURN(
        c.tokenizer_path,
        ResolveFileUnderRoot(server.model_dir, spec.tokenizer().path(), "spec.tokenizer.path"));
  }
  ASSIGN_OR_RETURN(c.train_path, DatasetFile(server, resolvers, "spec.train_data", spec.train_data()));
  if (spec.eval().has_dataset()) {
    ASSIGN_OR_RETURN(c.eval_path, DatasetFile(server, resolvers, "spec.eval.dataset", spec.eval().dataset()));
    c.eval_fraction = 0;
  }
  c.run_dir = run_dir;
  c.output_dir = output_dir;
  RETURN_IF_ERROR(WithProtoPath(ValidateTrainingConfig(c)));
  return c;
}

}  // namespace verdict::server
