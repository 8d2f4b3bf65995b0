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

absl::StatusOr<EncodingSettings> ReadEncodingSettings(const std::string& dir) {
  EncodingSettings settings;
  const std::string path = ModelFilePath(dir, kTrainingArgsFile);
  if (!fs::exists(path)) return settings;
  ASSIGN_OR_RETURN(nlohmann::json args, ReadJsonObject(path));
  auto field_error = [&](absl::string_view key, absl::string_view want) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": \"", key, "\" must be ", want));
  };
  if (auto it = args.find("max_length"); it != args.end()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0) {
      return field_error("max_length", "an integer >= 0");
    }
    settings.max_length = it->get<int64_t>();
  }
  if (auto it = args.find("truncation"); it != args.end()) {
    if (!it->is_string()) return field_error("truncation", "a string");
    absl::StatusOr<TruncationPolicy> policy = ParseTruncationPolicy(it->get<std::string>());
    if (!policy.ok()) return field_error("truncation", policy.status().message());
    settings.truncation = *policy;
  }
  if (auto it = args.find("chat_format"); it != args.end()) {
    if (!it->is_string()) return field_error("chat_format", "a string");
    absl::StatusOr<ChatFormat> format = ParseChatFormat(it->get<std::string>());
    if (!format.ok()) return field_error("chat_format", format.status().message());
    settings.chat_format = *format;
  }
  return settings;
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
