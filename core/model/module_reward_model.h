// ModuleRewardModel: the RewardModel plumbing both architectures share (configuration, the
// LibTorch module, Hugging Face-named parameters). Internal to core/model; includes LibTorch,
// so only the architectures' .cc files include it.
#ifndef VERDICT_CORE_MODEL_MODULE_REWARD_MODEL_H_
#define VERDICT_CORE_MODEL_MODULE_REWARD_MODEL_H_

#include <torch/torch.h>

#include "core/model/reward_model.h"

namespace verdict {

// `Net` is a TORCH_MODULE holder constructible from a ModelConfig; its children's names are the
// Hugging Face state-dict prefixes.
template <typename Net>
class ModuleRewardModel : public RewardModel {
 public:
  explicit ModuleRewardModel(const ModelConfig& config) : config_(config), net_(Net(config)) {}

  const ModelConfig& config() const override { return config_; }
  torch::nn::Module& module() override { return *net_; }
  TensorMap StateDict() const override {
    TensorMap out;
    for (const auto& item : net_->named_parameters()) {
      if (!IsLoraParameterName(item.key())) out.emplace(item.key(), item.value());
    }
    return out;
  }

 protected:
  const ModelConfig config_;
  Net net_;
};

}  // namespace verdict

#endif  // VERDICT_CORE_MODEL_MODULE_REWARD_MODEL_H_
