// Factories for the two reward-model architectures. Internal to core/model: callers use
// CreateRewardModel / LoadRewardModel in reward_model.h.
#ifndef VERDICT_CORE_MODEL_TRANSFORMER_MODULES_H_
#define VERDICT_CORE_MODEL_TRANSFORMER_MODULES_H_

#include <memory>

#include "core/model/model_config.h"
#include "core/model/reward_model.h"

namespace verdict {

// DistilBertForSequenceClassification (num_labels = 1), parameters in float32 on the CPU,
// left uninitialised: the caller initialises or loads them.
std::unique_ptr<RewardModel> NewDistilBertRewardModel(const ModelConfig& config);

// LlamaForSequenceClassification (num_labels = 1), likewise; also Mistral, Qwen2 and Qwen3
// (the same layout with the ModelConfig switches: biases, q/k norms, RoPE scaling, window).
std::unique_ptr<RewardModel> NewLlamaRewardModel(const ModelConfig& config);

// Names of the parameters of the reward head, which a base checkpoint lacks.
bool IsRewardHeadParameter(const ModelConfig& config, const std::string& name);

}  // namespace verdict

#endif  // VERDICT_CORE_MODEL_TRANSFORMER_MODULES_H_
