#include "core/train/training_config.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/data/chat_format.h"
#include "core/model/model_config.h"
#include "core/model/reward_model.h"
#include "core/tokenize/pair_encoding.h"
#include "core/train/lr_schedule.h"
#include "core/util/status_macros.h"
#include "nlohmann/json.hpp"

namespace verdict {
namespace {

absl::Status FieldError(absl::string_view field, absl::string_view rule, double value) {
  return absl::InvalidArgumentError(absl::StrCat(field, " must be ", rule, ", got ", value));
}

absl::Status CheckPositive(absl::string_view field, double value) {
  if (!(value > 0) || !std::isfinite(value)) return FieldError(field, "> 0 and finite", value);
  return absl::OkStatus();
}

absl::Status CheckNonNegative(absl::string_view field, double value) {
  if (!(value >= 0) || !std::isfinite(value)) return FieldError(field, ">= 0 and finite", value);
  return absl::OkStatus();
}

absl::Status CheckFraction(absl::string_view field, double value, bool allow_one) {
  const bool ok = value >= 0 && (allow_one ? value <= 1 : value < 1);
  if (!ok) return FieldError(field, allow_one ? "in [0, 1]" : "in [0, 1)", value);
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateTrainingConfig(const TrainingConfig& c) {
  if (c.train_path.empty()) return absl::InvalidArgumentError("train_path must be set");
  if (c.run_dir.empty()) return absl::InvalidArgumentError("run_dir must be set");
  if (c.output_dir.empty()) return absl::InvalidArgumentError("output_dir must be set");
  if (c.base_model_dir.empty()) {
    bool known = false;
    for (const std::string& name : PresetNames()) known = known || name == c.preset;
    if (!known) {
      return absl::InvalidArgumentError(absl::StrCat("preset \"", c.preset, "\" is unknown"));
    }
  }
  RETURN_IF_ERROR(ParseDevice(c.device).status());
  RETURN_IF_ERROR(ParseDtype(c.dtype).status());
  if (c.base_model_dir.empty() && c.tokenizer_path.empty() &&
      (c.vocab_size < 64 || c.vocab_size > 1000000)) {
    return FieldError("vocab_size", "in [64, 1000000]", static_cast<double>(c.vocab_size));
  }
  RETURN_IF_ERROR(CheckFraction("eval_fraction", c.eval_fraction, /*allow_one=*/false));
  RETURN_IF_ERROR(ParseChatFormat(c.chat_format).status());
  RETURN_IF_ERROR(CheckPositive("learning_rate", c.learning_rate));
  RETURN_IF_ERROR(CheckNonNegative("weight_decay", c.weight_decay));
  RETURN_IF_ERROR(CheckFraction("adam_beta1", c.adam_beta1, false));
  RETURN_IF_ERROR(CheckFraction("adam_beta2", c.adam_beta2, false));
  RETURN_IF_ERROR(CheckPositive("adam_epsilon", c.adam_epsilon));
  RETURN_IF_ERROR(ParseLrScheduleKind(c.lr_scheduler).status());
  RETURN_IF_ERROR(CheckNonNegative("warmup_steps", static_cast<double>(c.warmup_steps)));
  RETURN_IF_ERROR(CheckFraction("warmup_ratio", c.warmup_ratio, true));
  if (c.batch_size < 1 || c.batch_size > 65536) {
    return FieldError("batch_size", "in [1, 65536]", static_cast<double>(c.batch_size));
  }
  if (c.gradient_accumulation_steps < 1 || c.gradient_accumulation_steps > 65536) {
    return FieldError("gradient_accumulation_steps", "in [1, 65536]",
                      static_cast<double>(c.gradient_accumulation_steps));
  }
  RETURN_IF_ERROR(CheckNonNegative("max_grad_norm", c.max_grad_norm));
  if (c.max_steps <= 0 && !(c.num_epochs > 0 && c.num_epochs <= 10000)) {
    return FieldError("num_epochs", "in (0, 10000] when max_steps is 0", c.num_epochs);
  }
  if (c.tokenizer_type != "unigram" && c.tokenizer_type != "bpe") {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer_type must be unigram or bpe, got \"",
                                                   c.tokenizer_type, "\""));
  }
  RETURN_IF_ERROR(CheckNonNegative("max_train_pairs", static_cast<double>(c.max_train_pairs)));
  RETURN_IF_ERROR(CheckNonNegative("max_eval_pairs", static_cast<double>(c.max_eval_pairs)));
  if (c.eval_batch_size < 0 || c.eval_batch_size > 65536) {
    return FieldError("eval_batch_size", "in [0, 65536]", static_cast<double>(c.eval_batch_size));
  }
  RETURN_IF_ERROR(CheckNonNegative("max_steps", static_cast<double>(c.max_steps)));
  if (c.max_length < 8 || c.max_length > 1 << 20) {
    return FieldError("max_length", "in [8, 1048576]", static_cast<double>(c.max_length));
  }
  RETURN_IF_ERROR(ParseTruncationPolicy(c.truncation).status());
  RETURN_IF_ERROR(CheckNonNegative("center_rewards_coefficient", c.center_rewards_coefficient));
  if (c.max_batch_tokens != 0 && c.max_batch_tokens < 2 * c.max_length) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_batch_tokens must be 0 or at least 2 * max_length (", 2 * c.max_length, "), got ",
        c.max_batch_tokens));
  }
  if (c.logging_steps < 1) return FieldError("logging_steps", ">= 1", static_cast<double>(c.logging_steps));
  RETURN_IF_ERROR(CheckNonNegative("eval_steps", static_cast<double>(c.eval_steps)));
  RETURN_IF_ERROR(CheckNonNegative("save_steps", static_cast<double>(c.save_steps)));
  if (c.save_total_limit < 1) {
    return FieldError("save_total_limit", ">= 1", static_cast<double>(c.save_total_limit));
  }
  return absl::OkStatus();
}

std::string TrainingConfigToJson(const TrainingConfig& c) {
  nlohmann::json j = {
      {"base_model_dir", c.base_model_dir},
      {"preset", c.base_model_dir.empty() ? c.preset : ""},
      {"device", c.device},
      {"dtype", c.dtype},
      {"tokenizer_path", c.tokenizer_path},
      {"vocab_size", c.vocab_size},
      {"tokenizer_type", c.tokenizer_type},
      {"train_path", c.train_path},
      {"eval_path", c.eval_path},
      {"eval_fraction", c.eval_fraction},
      {"split_seed", c.split_seed},
      {"max_train_pairs", c.max_train_pairs},
      {"max_eval_pairs", c.max_eval_pairs},
      {"chat_format", c.chat_format},
      {"skip_invalid", c.skip_invalid},
      {"learning_rate", c.learning_rate},
      {"weight_decay", c.weight_decay},
      {"adam_beta1", c.adam_beta1},
      {"adam_beta2", c.adam_beta2},
      {"adam_epsilon", c.adam_epsilon},
      {"lr_scheduler", c.lr_scheduler},
      {"warmup_steps", c.warmup_steps},
      {"warmup_ratio", c.warmup_ratio},
      {"batch_size", c.batch_size},
      {"eval_batch_size", c.eval_batch_size},
      {"gradient_accumulation_steps", c.gradient_accumulation_steps},
      {"max_grad_norm", c.max_grad_norm},
      {"num_epochs", c.num_epochs},
      {"max_steps", c.max_steps},
      {"seed", c.seed},
      {"max_length", c.max_length},
      {"truncation", c.truncation},
      {"center_rewards_coefficient", c.center_rewards_coefficient},
      {"max_batch_tokens", c.max_batch_tokens},
      {"group_by_length", c.group_by_length},
      {"logging_steps", c.logging_steps},
      {"eval_steps", c.eval_steps},
      {"save_steps", c.save_steps},
      {"save_total_limit", c.save_total_limit},
  };
  return j.dump(2);
}

}  // namespace verdict
