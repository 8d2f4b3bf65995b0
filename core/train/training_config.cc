#include "core/train/training_config.h"

#include <cmath>
#include <functional>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/model/model_config.h"
#include "core/util/status_macros.h"
#include "nlohmann/json.hpp"

namespace verdict {
namespace {

absl::Status FieldError(absl::string_view field, absl::string_view rule, double value) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": must be ", rule, ", got ", value));
}

// lo <= value <= hi for integers.
absl::Status CheckInt(absl::string_view field, int64_t value, int64_t lo, int64_t hi) {
  if (value < lo || value > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": must be in [", lo, ", ", hi, "], got ", value));
  }
  return absl::OkStatus();
}

// A finite value in [lo, hi], either end open when asked.
absl::Status CheckDouble(absl::string_view field, double value, double lo, double hi,
                         bool open_below, bool open_above = false) {
  const bool below_ok = open_below ? value > lo : value >= lo;
  const bool above_ok = open_above ? value < hi : value <= hi;
  if (!std::isfinite(value) || !below_ok || !above_ok) {
    return FieldError(
        field, absl::StrCat("in ", open_below ? "(" : "[", lo, ", ", hi, open_above ? ")" : "]"),
        value);
  }
  return absl::OkStatus();
}

constexpr int64_t kMaxCount = int64_t{1} << 40;  // pairs, warm-up steps: "any" sane count

}  // namespace

absl::StatusOr<SentencePieceModelType> ParseTokenizerType(absl::string_view name) {
  if (name == "unigram") return SentencePieceModelType::kUnigram;
  if (name == "bpe") return SentencePieceModelType::kBpe;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown tokenizer type \"", name, "\" (want unigram or bpe)"));
}

absl::string_view TokenizerTypeName(SentencePieceModelType type) {
  return type == SentencePieceModelType::kBpe ? "bpe" : "unigram";
}

absl::Status ValidateTrainingSettings(const TrainingConfig& c) {
  if (c.base_model_dir.empty()) {
    bool known = false;
    for (const std::string& name : PresetNames()) known = known || name == c.preset;
    if (!known) {
      return absl::InvalidArgumentError(absl::StrCat("preset: \"", c.preset, "\" is unknown"));
    }
  }
  if (c.dtype == Dtype::kFloat16) {
    return absl::InvalidArgumentError(
        "dtype: float16 training is not supported (it needs loss scaling); use bfloat16");
  }
  RETURN_IF_ERROR(CheckInt("vocab_size", c.vocab_size, 256, 131072));
  RETURN_IF_ERROR(CheckDouble("eval_fraction", c.eval_fraction, 0, 0.5, false));
  RETURN_IF_ERROR(CheckInt("max_train_pairs", c.max_train_pairs, 0, kMaxCount));
  RETURN_IF_ERROR(CheckInt("max_eval_pairs", c.max_eval_pairs, 0, kMaxCount));
  RETURN_IF_ERROR(CheckDouble("learning_rate", c.learning_rate, 0, 1, true));
  RETURN_IF_ERROR(CheckDouble("weight_decay", c.weight_decay, 0, 1, false));
  RETURN_IF_ERROR(CheckDouble("adam_beta1", c.adam_beta1, 0, 1, false, true));
  RETURN_IF_ERROR(CheckDouble("adam_beta2", c.adam_beta2, 0, 1, false, true));
  RETURN_IF_ERROR(CheckDouble("adam_epsilon", c.adam_epsilon, 0, 1, true));
  RETURN_IF_ERROR(CheckInt("warmup_steps", c.warmup_steps, 0, kMaxCount));
  RETURN_IF_ERROR(CheckDouble("warmup_ratio", c.warmup_ratio, 0, 1, false));
  RETURN_IF_ERROR(CheckDouble("min_lr_ratio", c.min_lr_ratio, 0, 1, false));
  RETURN_IF_ERROR(CheckInt("batch_size", c.batch_size, 1, 4096));
  RETURN_IF_ERROR(CheckInt("eval_batch_size", c.eval_batch_size, 0, 4096));
  RETURN_IF_ERROR(CheckInt("gradient_accumulation_steps", c.gradient_accumulation_steps, 1, 1024));
  RETURN_IF_ERROR(CheckDouble("max_grad_norm", c.max_grad_norm, 0, 1e6, false));
  RETURN_IF_ERROR(CheckDouble("num_epochs", c.num_epochs, 0, 1000, true));
  RETURN_IF_ERROR(CheckInt("max_steps", c.max_steps, 0, 1000000000));
  RETURN_IF_ERROR(CheckInt("max_length", c.max_length, 8, int64_t{1} << 20));
  RETURN_IF_ERROR(CheckDouble("center_rewards_coefficient", c.center_rewards_coefficient, 0, 100,
                              false));
  // A budget below one pair's 2 * max_length is allowed: an over-budget pair forms a batch of
  // its own (batching.h), as the proto documents.
  if (c.max_batch_tokens != 0) {
    RETURN_IF_ERROR(CheckInt("max_batch_tokens", c.max_batch_tokens, 16, 1000000000));
  }
  RETURN_IF_ERROR(CheckInt("lora_rank", c.lora_rank, 0, 1024));
  RETURN_IF_ERROR(CheckDouble("lora_alpha", c.lora_alpha, 0, 10000, true));
  if (!c.lora_target_modules.empty() && c.lora_rank == 0) {
    return absl::InvalidArgumentError("lora_target_modules: set, but lora_rank is 0 (LoRA off)");
  }
  for (const std::string& name : c.lora_target_modules) {
    bool known = false;
    for (ModelFamily family : {ModelFamily::kDecoder, ModelFamily::kEncoder}) {
      for (const std::string& layer : LoraModuleNames(family)) known = known || layer == name;
    }
    if (!known) {
      return absl::InvalidArgumentError(absl::StrCat(
          "lora_target_modules: \"", name.substr(0, 64),
          "\" is not a linear layer of a backbone (decoders: ",
          absl::StrJoin(LoraModuleNames(ModelFamily::kDecoder), ", "), "; encoders: ",
          absl::StrJoin(LoraModuleNames(ModelFamily::kEncoder), ", "), ")"));
    }
  }
  RETURN_IF_ERROR(CheckInt("world_size", c.world_size, 1, 1024));
  RETURN_IF_ERROR(CheckInt("distributed_timeout_seconds", c.distributed_timeout_seconds, 1, 86400));
  if (c.world_size > 1 && c.device.is_cuda()) {
    return absl::InvalidArgumentError(
        "world_size: more than one rank needs device cpu (Gloo); NCCL is not built in");
  }
  RETURN_IF_ERROR(CheckInt("logging_steps", c.logging_steps, 1, 1000000));
  RETURN_IF_ERROR(CheckInt("eval_steps", c.eval_steps, 0, 1000000));
  RETURN_IF_ERROR(CheckInt("save_steps", c.save_steps, 0, 1000000));
  RETURN_IF_ERROR(CheckInt("save_total_limit", c.save_total_limit, 1, 100));
  return absl::OkStatus();
}

absl::Status ValidateTrainingConfig(const TrainingConfig& c) {
  if (c.train_path.empty()) return absl::InvalidArgumentError("train_path: must be set");
  if (c.run_dir.empty()) return absl::InvalidArgumentError("run_dir: must be set");
  if (c.output_dir.empty()) return absl::InvalidArgumentError("output_dir: must be set");
  return ValidateTrainingSettings(c);
}

EncodingSettings EncodingOf(const TrainingConfig& config) {
  EncodingSettings encoding;
  encoding.input_rule = config.input_rule;
  encoding.max_length = config.max_length;
  encoding.truncation = config.truncation;
  encoding.chat_format = config.chat_format;
  return encoding;
}

std::string TrainingConfigToJson(const TrainingConfig& c) {
  nlohmann::json j = {
      {"base_model_dir", c.base_model_dir},
      {"preset", c.base_model_dir.empty() ? c.preset : ""},
      {"device", DeviceName(c.device)},
      {"dtype", std::string(DtypeName(c.dtype))},
      {"tokenizer_path", c.tokenizer_path},
      {"vocab_size", c.vocab_size},
      {"tokenizer_type", std::string(TokenizerTypeName(c.tokenizer_type))},
      {"train_path", c.train_path},
      {"eval_path", c.eval_path},
      {"eval_fraction", c.eval_fraction},
      {"split_seed", c.split_seed},
      {"max_train_pairs", c.max_train_pairs},
      {"max_eval_pairs", c.max_eval_pairs},
      {"chat_format", std::string(ChatFormatName(c.chat_format))},
      {"data_format", std::string(DataFormatName(c.data_format))},
      {"input_rule", std::string(InputRuleName(c.input_rule))},
      {"skip_invalid", c.skip_invalid},
      {"learning_rate", c.learning_rate},
      {"weight_decay", c.weight_decay},
      {"adam_beta1", c.adam_beta1},
      {"adam_beta2", c.adam_beta2},
      {"adam_epsilon", c.adam_epsilon},
      {"lr_scheduler", std::string(LrScheduleKindName(c.lr_scheduler))},
      {"warmup_steps", c.warmup_steps},
      {"warmup_ratio", c.warmup_ratio},
      {"min_lr_ratio", c.min_lr_ratio},
      {"batch_size", c.batch_size},
      {"eval_batch_size", c.eval_batch_size},
      {"gradient_accumulation_steps", c.gradient_accumulation_steps},
      {"max_grad_norm", c.max_grad_norm},
      {"num_epochs", c.num_epochs},
      {"max_steps", c.max_steps},
      {"seed", c.seed},
      {"max_length", c.max_length},
      {"truncation", std::string(TruncationPolicyName(c.truncation))},
      {"center_rewards_coefficient", c.center_rewards_coefficient},
      {"max_batch_tokens", c.max_batch_tokens},
      {"group_by_length", c.group_by_length},
      {"prefix_sharing", c.prefix_sharing},
      {"gradient_checkpointing", c.gradient_checkpointing},
      {"lora_rank", c.lora_rank},
      {"lora_alpha", c.lora_alpha},
      {"lora_target_modules", c.lora_target_modules},
      {"logging_steps", c.logging_steps},
      {"eval_steps", c.eval_steps},
      {"save_steps", c.save_steps},
      {"save_total_limit", c.save_total_limit},
      {"world_size", c.world_size},
      {"distributed_timeout_seconds", c.distributed_timeout_seconds},
      {"overlap_allreduce", c.overlap_allreduce},
  };
  return j.dump(2);
}

absl::StatusOr<TrainingConfig> TrainingConfigFromJson(absl::string_view json) {
  const nlohmann::json j = nlohmann::json::parse(json.begin(), json.end(), nullptr,
                                                 /*allow_exceptions=*/false);
  if (!j.is_object()) return absl::InvalidArgumentError("training config: not a JSON object");
  TrainingConfig c;
  // Each key's reader; a value of the wrong type fails the whole parse with the key's name.
  auto text = [](std::string& out) {
    return [&out](const nlohmann::json& v) {
      if (!v.is_string()) return false;
      out = v.get<std::string>();
      return true;
    };
  };
  auto integer = [](int64_t& out) {
    return [&out](const nlohmann::json& v) {
      if (!v.is_number_integer()) return false;
      out = v.get<int64_t>();
      return true;
    };
  };
  auto unsigned_integer = [](uint64_t& out) {
    return [&out](const nlohmann::json& v) {
      if (!v.is_number_unsigned()) return false;
      out = v.get<uint64_t>();
      return true;
    };
  };
  auto number = [](double& out) {
    return [&out](const nlohmann::json& v) {
      if (!v.is_number()) return false;
      out = v.get<double>();
      return true;
    };
  };
  auto texts = [](std::vector<std::string>& out) {
    return [&out](const nlohmann::json& v) {
      if (!v.is_array()) return false;
      out.clear();
      for (const auto& item : v) {
        if (!item.is_string()) return false;
        out.push_back(item.get<std::string>());
      }
      return true;
    };
  };
  auto boolean = [](bool& out) {
    return [&out](const nlohmann::json& v) {
      if (!v.is_boolean()) return false;
      out = v.get<bool>();
      return true;
    };
  };
  // An enum by name, through its Parse* function.
  auto named = [](auto& out, auto parse) {
    return [&out, parse](const nlohmann::json& v) {
      if (!v.is_string()) return false;
      auto parsed = parse(v.get<std::string>());
      if (!parsed.ok()) return false;
      out = *parsed;
      return true;
    };
  };
  std::string preset;
  const std::map<std::string, std::function<bool(const nlohmann::json&)>> readers = {
      {"base_model_dir", text(c.base_model_dir)},
      {"preset", text(preset)},
      {"device", named(c.device, &ParseDeviceName)},
      {"dtype", named(c.dtype, &ParseDtypeName)},
      {"tokenizer_path", text(c.tokenizer_path)},
      {"vocab_size", integer(c.vocab_size)},
      {"tokenizer_type", named(c.tokenizer_type, &ParseTokenizerType)},
      {"train_path", text(c.train_path)},
      {"eval_path", text(c.eval_path)},
      {"eval_fraction", number(c.eval_fraction)},
      {"split_seed", unsigned_integer(c.split_seed)},
      {"max_train_pairs", integer(c.max_train_pairs)},
      {"max_eval_pairs", integer(c.max_eval_pairs)},
      {"chat_format", named(c.chat_format, &ParseChatFormat)},
      {"data_format", named(c.data_format, &ParseDataFormat)},
      {"input_rule", named(c.input_rule, &ParseInputRule)},
      {"skip_invalid", boolean(c.skip_invalid)},
      {"learning_rate", number(c.learning_rate)},
      {"weight_decay", number(c.weight_decay)},
      {"adam_beta1", number(c.adam_beta1)},
      {"adam_beta2", number(c.adam_beta2)},
      {"adam_epsilon", number(c.adam_epsilon)},
      {"lr_scheduler", named(c.lr_scheduler, &ParseLrScheduleKind)},
      {"warmup_steps", integer(c.warmup_steps)},
      {"warmup_ratio", number(c.warmup_ratio)},
      {"min_lr_ratio", number(c.min_lr_ratio)},
      {"batch_size", integer(c.batch_size)},
      {"eval_batch_size", integer(c.eval_batch_size)},
      {"gradient_accumulation_steps", integer(c.gradient_accumulation_steps)},
      {"max_grad_norm", number(c.max_grad_norm)},
      {"num_epochs", number(c.num_epochs)},
      {"max_steps", integer(c.max_steps)},
      {"seed", unsigned_integer(c.seed)},
      {"max_length", integer(c.max_length)},
      {"truncation", named(c.truncation, &ParseTruncationPolicy)},
      {"center_rewards_coefficient", number(c.center_rewards_coefficient)},
      {"max_batch_tokens", integer(c.max_batch_tokens)},
      {"group_by_length", boolean(c.group_by_length)},
      {"prefix_sharing", boolean(c.prefix_sharing)},
      {"gradient_checkpointing", boolean(c.gradient_checkpointing)},
      {"lora_rank", integer(c.lora_rank)},
      {"lora_alpha", number(c.lora_alpha)},
      {"lora_target_modules", texts(c.lora_target_modules)},
      {"logging_steps", integer(c.logging_steps)},
      {"eval_steps", integer(c.eval_steps)},
      {"save_steps", integer(c.save_steps)},
      {"save_total_limit", integer(c.save_total_limit)},
      {"world_size", integer(c.world_size)},
      {"distributed_timeout_seconds", integer(c.distributed_timeout_seconds)},
      {"overlap_allreduce", boolean(c.overlap_allreduce)},
  };
  for (const auto& [key, value] : j.items()) {
    auto reader = readers.find(key);
    if (reader == readers.end()) {
      return absl::InvalidArgumentError(absl::StrCat("training config: unknown key \"", key, "\""));
    }
    if (!reader->second(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("training config: ", key, ": unexpected value ", value.dump()));
    }
  }
  // ToJson writes an empty preset beside a base model: the default stands.
  if (!preset.empty()) c.preset = preset;
  return c;
}

}  // namespace verdict
