#include "core/model/lora.h"

#include <torch/torch.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/model/lora_linear.h"
#include "core/model/reward_model.h"
#include "core/model/transformer_modules.h"

namespace verdict {
namespace {

// The short name of a module path ("model.layers.0.self_attn.q_proj" -> "q_proj").
absl::string_view ShortName(absl::string_view path) {
  const size_t dot = path.rfind('.');
  return dot == absl::string_view::npos ? path : path.substr(dot + 1);
}

}  // namespace

bool IsLoraParameterName(absl::string_view name) {
  return absl::StrContains(name, ".lora_A.") || absl::StrContains(name, ".lora_B.");
}

absl::Status AddLoraAdapters(RewardModel& model, const LoraOptions& options,
                             at::Generator& generator) {
  if (options.rank < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("lora_rank: must be at least 1 to add adapters, got ", options.rank));
  }
  const std::vector<std::string> known = LoraModuleNames(model.config().family);
  const std::vector<std::string> targets =
      options.target_modules.empty() ? known : options.target_modules;
  for (const std::string& target : targets) {
    if (std::find(known.begin(), known.end(), target) == known.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "lora_target_modules: \"", target, "\" is not a linear layer of this ",
          model.config().family == ModelFamily::kEncoder ? "encoder" : "decoder", " (",
          absl::StrJoin(known, ", "), ")"));
    }
  }
  if (!LoraAdapterTensors(model).empty()) {
    return absl::FailedPreconditionError("the model has LoRA adapters already");
  }
  for (const auto& item : model.module().named_modules()) {
    auto* linear = item.value()->as<LoraLinear>();
    if (linear == nullptr) continue;
    const absl::string_view name = ShortName(item.key());
    if (std::find(targets.begin(), targets.end(), name) != targets.end()) {
      linear->AddAdapter(options.rank, options.alpha, generator);
    }
  }
  for (auto& [name, parameter] : model.StateDict()) {
    parameter.requires_grad_(IsRewardHeadParameter(model.config(), name));
  }
  return absl::OkStatus();
}

TensorMap LoraAdapterTensors(RewardModel& model) {
  TensorMap out;
  for (const auto& item : model.module().named_parameters()) {
    if (IsLoraParameterName(item.key())) out.emplace(item.key(), item.value());
  }
  return out;
}

TensorMap MergedStateDict(RewardModel& model) {
  TensorMap out = model.StateDict();
  torch::NoGradGuard no_grad;
  for (const auto& item : model.module().named_modules()) {
    auto* linear = item.value()->as<LoraLinear>();
    if (linear == nullptr || !linear->has_adapter()) continue;
    // In float32 whatever the model's dtype: the rounding happens once, when saved.
    const torch::Tensor a = linear->lora_A->weight.to(torch::kFloat32);
    const torch::Tensor b = linear->lora_B->weight.to(torch::kFloat32);
    out[item.key() + ".weight"] =
        linear->weight.to(torch::kFloat32) + linear->scale * torch::matmul(b, a);
  }
  return out;
}

}  // namespace verdict
