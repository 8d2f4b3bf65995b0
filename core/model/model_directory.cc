#include "core/model/model_directory.h"

#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "core/model/reward_model.h"
#include "core/util/file_util.h"
#include "core/util/status_macros.h"
#include "nlohmann/json.hpp"

namespace verdict {
namespace {

namespace fs = std::filesystem;

absl::StatusOr<nlohmann::json> ReadJsonObject(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  return json;
}

}  // namespace

std::string ModelFilePath(const std::string& dir, absl::string_view file) {
  return (fs::path(dir) / std::string(file)).string();
}

absl::StatusOr<ModelConfig> ReadModelDirectoryConfig(const std::string& dir) {
  return LoadModelConfig(ModelFilePath(dir, kModelConfigFile));
}

bool HasTrainingArgs(const std::string& dir) {
  return fs::exists(ModelFilePath(dir, kTrainingArgsFile));
}

InputEncoding InputEncodingOf(const ModelConfig& config, const EncodingSettings& settings) {
  InputEncoding encoding;
  encoding.rule = settings.input_rule;
  encoding.encoder = config.family == ModelFamily::kEncoder;
  encoding.chat_format = settings.chat_format;
  encoding.max_length = EffectiveMaxLength(config, settings.max_length);
  encoding.truncation = settings.truncation;
  return encoding;
}

absl::StatusOr<EncodingSettings> ReadEncodingSettings(const std::string& dir) {
  EncodingSettings settings;
  std::string path = ModelFilePath(dir, kEncodingFile);
  if (!fs::exists(path)) {
    path = ModelFilePath(dir, kTrainingArgsFile);
    if (!fs::exists(path)) {
      settings.chat_format = ImpliedChatFormat(dir).value_or(ChatFormat::kHhRlhf);
      return settings;
    }
    settings.input_rule = InputRule::kPair;
  }
  ASSIGN_OR_RETURN(nlohmann::json args, ReadJsonObject(path));
  auto field_error = [&](absl::string_view key, absl::string_view want) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": \"", key, "\" must be ", want));
  };
  // A named setting: a string `parse` accepts.
  auto read_name = [&](absl::string_view key, auto parse, auto* out) -> absl::Status {
    auto it = args.find(std::string(key));
    if (it == args.end()) return absl::OkStatus();
    if (!it->is_string()) return field_error(key, "a string");
    auto parsed = parse(it->template get<std::string>());
    if (!parsed.ok()) return field_error(key, parsed.status().message());
    *out = *parsed;
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(read_name("input_rule", &ParseInputRule, &settings.input_rule));
  RETURN_IF_ERROR(read_name("truncation", &ParseTruncationPolicy, &settings.truncation));
  RETURN_IF_ERROR(read_name("chat_format", &ParseChatFormat, &settings.chat_format));
  if (auto it = args.find("max_length"); it != args.end()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0) {
      return field_error("max_length", "an integer >= 0");
    }
    settings.max_length = it->get<int64_t>();
  }
  return settings;
}

bool HasEncodingRecord(const std::string& dir) {
  return fs::exists(ModelFilePath(dir, kEncodingFile)) || HasTrainingArgs(dir);
}

absl::StatusOr<ChatFormat> ImpliedChatFormat(const std::string& dir) {
  if (HasEncodingRecord(dir)) {
    ASSIGN_OR_RETURN(EncodingSettings recorded, ReadEncodingSettings(dir));
    return recorded.chat_format;
  }
  absl::StatusOr<ChatFormat> format = ChooseChatFormat(dir, "");
  if (absl::IsNotFound(format.status())) return ChatFormat::kHhRlhf;
  return format;
}

absl::Status WriteEncodingSettings(const std::string& dir, const EncodingSettings& settings) {
  const nlohmann::json json = {
      {"input_rule", std::string(InputRuleName(settings.input_rule))},
      {"chat_format", std::string(ChatFormatName(settings.chat_format))},
      {"max_length", settings.max_length},
      {"truncation", std::string(TruncationPolicyName(settings.truncation))}};
  return WriteFileAtomically(ModelFilePath(dir, kEncodingFile), json.dump(2) + "\n");
}

absl::StatusOr<std::optional<RewardStats>> ReadRewardStats(const std::string& dir) {
  const std::string path = ModelFilePath(dir, kRewardStatsFile);
  if (!fs::exists(path)) return std::optional<RewardStats>();
  ASSIGN_OR_RETURN(nlohmann::json json, ReadJsonObject(path));
  auto mean = json.find("mean");
  auto std = json.find("std");
  if (mean == json.end() || std == json.end() || !mean->is_number() || !std->is_number()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": \"mean\" and \"std\" must be numbers"));
  }
  RewardStats stats;
  stats.mean = mean->get<double>();
  stats.std = std->get<double>();
  if (!std::isfinite(stats.mean) || !std::isfinite(stats.std) || !(stats.std > 0)) {
    return std::optional<RewardStats>();
  }
  if (auto it = json.find("pairs"); it != json.end() && it->is_number_integer()) {
    stats.pairs = it->get<int64_t>();
  }
  if (auto it = json.find("eval_accuracy"); it != json.end() && it->is_number()) {
    stats.eval_accuracy = it->get<double>();
  }
  if (auto it = json.find("eval_loss"); it != json.end() && it->is_number()) {
    stats.eval_loss = it->get<double>();
  }
  return std::optional<RewardStats>(stats);
}

absl::Status WriteModelDirectory(const std::string& dir, RewardModel& model,
                                 const Tokenizer& tokenizer, const ModelDirectoryExtras& extras) {
  const fs::path output(dir);
  const fs::path staging = output.string() + ".tmp";
  std::error_code ignored;
  fs::remove_all(staging, ignored);
  RETURN_IF_ERROR(SaveRewardModel(model, staging.string()));
  RETURN_IF_ERROR(tokenizer.SaveToDirectory(staging.string()));
  const RewardStats& s = extras.reward_stats;
  const nlohmann::json stats = {{"mean", s.mean},
                                {"std", s.std},
                                {"pairs", s.pairs},
                                {"eval_accuracy", s.eval_accuracy},
                                {"eval_loss", s.eval_loss}};
  RETURN_IF_ERROR(WriteFileAtomically((staging / kRewardStatsFile).string(), stats.dump(2)));
  RETURN_IF_ERROR(WriteEncodingSettings(staging.string(), extras.encoding));
  RETURN_IF_ERROR(
      WriteFileAtomically((staging / kTrainingArgsFile).string(), extras.training_args_json));
  fs::remove_all(output, ignored);
  std::error_code error;
  fs::rename(staging, output, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot move the model into ", output.string(), ": ", error.message()));
  }
  return absl::OkStatus();
}

}  // namespace verdict
