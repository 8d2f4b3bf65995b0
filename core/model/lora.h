// LoRA adapters for reward models (Hu et al. 2021; the recipe TRL uses with PEFT to train a
// reward model on a 7B-class base on one GPU): chosen linear layers of the backbone get
// low-rank adapters, every backbone weight is frozen, and the reward head (score, or
// pre_classifier + classifier) trains in full.
//
// A model with adapters keeps Hugging Face's names for its own parameters: StateDict() holds
// the base weights (frozen), LoraAdapterTensors() the adapters ("<layer>.lora_A.weight",
// "<layer>.lora_B.weight", PEFT's key suffixes). SaveRewardModel writes the adapters merged
// into the weights (W + alpha / rank * B A), a plain Hugging Face directory that needs no LoRA
// code to load or score.
//
// Dropout on the adapter input (PEFT's lora_dropout) is not offered: verdict's models have no
// dropout, which keeps resumed runs exact and gradient checkpointing's recomputation valid.
//
// Thread-compatible free functions: call them before the model is shared between threads.
#ifndef VERDICT_CORE_MODEL_LORA_H_
#define VERDICT_CORE_MODEL_LORA_H_

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Generator.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "core/model/model_config.h"
#include "core/model/safetensors.h"

namespace verdict {

class RewardModel;

struct LoraOptions {
  int64_t rank = 0;     // 0: no adapters
  double alpha = 16;    // the adapter's output is scaled by alpha / rank
  // Short names of the linear layers to adapt (LoraModuleNames in model_config.h); empty:
  // all of them.
  std::vector<std::string> target_modules;
};

// True for the name of an adapter parameter ("….lora_A.weight", "….lora_B.weight").
bool IsLoraParameterName(absl::string_view name);

// Adds an adapter of options.rank to every layer named in options.target_modules (A from
// `generator`, B zero: the model's outputs do not change), then freezes every parameter but the
// adapters and the reward head (requires_grad false). Once per model, before it moves to its
// device. INVALID_ARGUMENT naming the field ("lora_target_modules: ...") for a rank below 1 or a
// name the family does not have.
absl::Status AddLoraAdapters(RewardModel& model, const LoraOptions& options,
                             at::Generator& generator);

// The adapter parameters (shared storage), empty for a model without adapters.
TensorMap LoraAdapterTensors(RewardModel& model);

// StateDict() with each adapted weight replaced by its merged float32 value; the other tensors
// as they are (shared storage). StateDict() itself for a model without adapters.
TensorMap MergedStateDict(RewardModel& model);

}  // namespace verdict

#endif  // VERDICT_CORE_MODEL_LORA_H_
