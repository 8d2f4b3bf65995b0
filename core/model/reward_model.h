// RewardModel: a transformer with a scalar head that scores token sequences.
//
// Two families share this interface:
//   - encoder, DistilBERT layout (DistilBertForSequenceClassification): pooled at the first
//     token, `classifier(ReLU(pre_classifier(h0)))`;
//   - decoder, Llama layout (Llama-, Mistral-, Qwen2-, Qwen3ForSequenceClassification):
//     `score` applied at the last token that is not pad_token_id (Hugging Face's rule),
//     among those with attention_mask 1.
// Parameters carry Hugging Face state-dict names ("distilbert.embeddings.word_embeddings.weight",
// "model.layers.0.self_attn.q_proj.weight", "score.weight", ...), so weights load from and
// save to Hugging Face directories without renaming.
//
// Thread safety: Forward() under inference mode may run on several threads at once; training
// (parameter updates) must not overlap with any other call.
//
// Example:
//   ASSIGN_OR_RETURN(auto model, LoadRewardModel("/models/golden", ModelOptions{}));
//   at::Tensor rewards = model->Forward(input_ids, attention_mask);  // [batch]
#ifndef VERDICT_CORE_MODEL_REWARD_MODEL_H_
#define VERDICT_CORE_MODEL_REWARD_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/model/device.h"
#include "core/model/lora.h"
#include "core/model/model_config.h"
#include "core/model/safetensors.h"

namespace torch::nn {
class Module;
}  // namespace torch::nn

namespace verdict {

// Where the model lives and in which precision.
struct ModelOptions {
  std::string device = "cpu";  // "cpu", "cuda", "cuda:N" (ParseDeviceName)
  // The dtype of the parameters. float16 needs CUDA: on the CPU, LibTorch has no float16
  // kernels for the model's layers, so it is refused (InvalidArgument) at creation and load.
  // Training keeps float32 parameters and runs bfloat16 under autocast (trainer.h).
  Dtype dtype = Dtype::kFloat32;
  uint64_t seed = 0;  // initialises from-scratch parameters and fresh heads
  // CPU scoring only (ScoringModel::Load): the linear layers of ForwardPacked() run with int8
  // weights (per output channel) and int8 activations quantized per call (oneDNN's dynamic
  // quantized linear); Forward() and training stay float32. Encoders only; InvalidArgument
  // for a decoder, a device other than the CPU or a dtype other than float32.
  bool int8_linear = false;
  // Training only: each transformer block's activations are recomputed in the backward pass
  // instead of kept from the forward (RewardModel::set_gradient_checkpointing).
  bool gradient_checkpointing = false;
  // Training only: LoRA adapters on the backbone's linear layers, everything but the adapters
  // and the reward head frozen (core/model/lora.h). rank 0: none.
  LoraOptions lora;
};

// One prompt and the continuations that follow it, for RewardModel::ForwardShared(): the
// sequences prompt + continuation_i, with the prompt laid out once.
struct SharedPrefixGroup {
  int64_t prefix_length = 0;                  // >= 0; 0: each continuation stands alone
  std::vector<int64_t> continuation_lengths;  // each > 0; at least one
};

class RewardModel {
 public:
  virtual ~RewardModel() = default;

  // input_ids, attention_mask: [batch, seq] int64, right padded (mask 1 = real token).
  // Returns [batch] float32 rewards on the model's device.
  virtual at::Tensor Forward(const at::Tensor& input_ids, const at::Tensor& attention_mask) = 0;

  // The last hidden state [batch, seq, hidden] (after the final norm for decoders), in the
  // model's dtype. Positions where attention_mask is 0 hold unspecified values.
  virtual at::Tensor HiddenStates(const at::Tensor& input_ids,
                                  const at::Tensor& attention_mask) = 0;

  // True when the architecture has ForwardPacked(), whose cost follows the real tokens (no
  // padding; attention per sequence, so no [batch, heads, seq, seq] tensor): its callers need
  // neither pad nor group sequences by length.
  virtual bool packs_sequences() const { return false; }
  // Rewards [rows] float32 for sequences laid back to back without padding: `packed_ids` is
  // [total] int64 (any device), `lengths` their lengths (each > 0, summing to total). For
  // scoring, under inference mode only. Equal (to float rounding) to Forward() on the same
  // sequences right-padded, in the same order. Only where packs_sequences(); the default
  // throws c10::Error.
  virtual at::Tensor ForwardPacked(const at::Tensor& packed_ids,
                                   const std::vector<int64_t>& lengths);
  // ModelOptions::int8_linear on a loaded model: quantizes the weights of the linear layers
  // ForwardPacked() uses (the reward head stays float32). Before the model is shared between
  // threads; not reversible. Unimplemented where the architecture has no packed forward.
  virtual absl::Status QuantizeLinearsToInt8() {
    return absl::UnimplementedError("int8 linear layers need a packed forward (encoders)");
  }

  // True when the architecture has ForwardShared() (decoders: a token sees only what comes
  // before it, so a prompt's hidden states do not depend on what follows it).
  virtual bool shares_prefixes() const { return false; }
  // Rewards [continuations] float32, one per continuation in `groups` order, for sequences
  // that share prompts: `packed_ids` ([total] int64, any device) holds, group after group, the
  // prompt's tokens then each continuation's, back to back, no padding. Each continuation
  // attends to its prompt and to itself (causally) only, its positions go on from the
  // prompt's end, and it is pooled as Forward() pools prompt + continuation alone, so each
  // reward equals (to float rounding) Forward() of that full sequence, while the prompt's
  // compute (forward and backward) is done once per group. Differentiable: training may
  // call it. Only where shares_prefixes(); the default throws c10::Error, as do lengths that
  // do not sum to the ids.
  virtual at::Tensor ForwardShared(const at::Tensor& packed_ids,
                                   const std::vector<SharedPrefixGroup>& groups);

  // Gradient (activation) checkpointing: while the module is in train() mode and grad mode is
  // on, Forward() and ForwardShared() keep only each transformer block's input and recompute
  // the block in the backward pass: one more forward per block for activation memory that no
  // longer grows with the block's intermediates. Values and gradients are those of the plain
  // forward. Off by default; scoring is unaffected.
  virtual void set_gradient_checkpointing(bool enabled) = 0;

  virtual const ModelConfig& config() const = 0;

  // The underlying LibTorch module: parameters for the optimizer, train()/eval().
  virtual torch::nn::Module& module() = 0;

  // Parameters under their Hugging Face names (shared storage, not copies); LoRA adapters,
  // which have no place in a Hugging Face checkpoint, are left out (LoraAdapterTensors).
  virtual TensorMap StateDict() const = 0;
};

// ParseDeviceName as a c10::Device; ToTorch maps the parsed values.
absl::StatusOr<c10::Device> ParseDevice(const std::string& device);
c10::Device ToTorchDevice(const Device& device);
// OK for the CPU and for a CUDA device this process has; FailedPrecondition otherwise
// ("device \"cuda:3\": this machine has 1 CUDA device").
absl::Status CheckDeviceAvailable(const Device& device);
c10::ScalarType ToScalarType(Dtype dtype);

// model.Forward() with LibTorch's errors as a Status (ResourceExhausted for out of memory,
// Internal otherwise), for callers that must never let a c10::Error escape.
absl::StatusOr<at::Tensor> ForwardRewards(RewardModel& model, const at::Tensor& input_ids,
                                          const at::Tensor& attention_mask);

// A freshly initialised model (Hugging Face's init: normal(0, initializer_range) weights, zero
// biases, unit norms), seeded by options.seed.
absl::StatusOr<std::unique_ptr<RewardModel>> CreateRewardModel(const ModelConfig& config,
                                                               const ModelOptions& options);

// Loads a Hugging Face model directory (config.json + model.safetensors or sharded index).
// A reward checkpoint (…ForSequenceClassification) loads whole. A base checkpoint
// (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, LlamaModel, ...,
// DistilBertModel, DistilBertForMaskedLM) loads its backbone,
// ignores its language-model head, and gets a freshly initialised reward head. Missing or
// unexpected tensors and shape mismatches fail with the tensor's name.
absl::StatusOr<std::unique_ptr<RewardModel>> LoadRewardModel(const std::string& dir,
                                                             const ModelOptions& options);

// Writes config.json and model.safetensors (always float32, whatever the model trains in) so
// that AutoModelForSequenceClassification.from_pretrained(dir) loads the model; LoRA adapters
// are merged into the weights (MergedStateDict). Creates `dir`.
absl::Status SaveRewardModel(RewardModel& model, const std::string& dir);

}  // namespace verdict

#endif  // VERDICT_CORE_MODEL_REWARD_MODEL_H_
