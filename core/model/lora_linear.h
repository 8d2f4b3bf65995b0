// LoraLinear: a linear layer (Hugging Face's nn.Linear: parameters "weight" [out, in] and, when
// asked, "bias" [out]) that can carry a LoRA adapter (Hu et al. 2021, PEFT's layout): two
// more parameters, "lora_A.weight" [rank, in] and "lora_B.weight" [out, rank], and
//   y = x W^T + b + (alpha / rank) * (x A^T) B^T.
// B starts at zero, so a fresh adapter leaves the layer's output unchanged. Both architectures
// build their attention and MLP projections from it; reward heads stay torch::nn::Linear.
//
// Internal to core/model (core/model/lora.h is the interface); includes LibTorch, so only
// core/model's .cc files include it. Thread safety: a LibTorch module (forward under inference
// mode from several threads; adding an adapter, like training, from one).
#ifndef VERDICT_CORE_MODEL_LORA_LINEAR_H_
#define VERDICT_CORE_MODEL_LORA_LINEAR_H_

#include <torch/torch.h>

namespace verdict {

struct LoraLinearImpl : torch::nn::Module {
  // Parameters left uninitialised: the model initialises or loads them.
  LoraLinearImpl(int64_t in_features, int64_t out_features, bool with_bias)
      : in_features(in_features), out_features(out_features) {
    weight = register_parameter("weight", torch::empty({out_features, in_features}));
    if (with_bias) bias = register_parameter("bias", torch::empty({out_features}));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor y = torch::nn::functional::linear(x, weight, bias);
    if (!has_adapter()) return y;
    return y + AdapterDelta(x);
  }

  // The adapter's term (alpha / rank) * (x A^T) B^T, for callers that compute x W^T + b
  // themselves (the decoder's fused q/k/v and gate/up projections). Only with an adapter.
  torch::Tensor AdapterDelta(const torch::Tensor& x) { return scale * lora_B(lora_A(x)); }

  // Adds an adapter of `rank` (> 0) scaled by alpha / rank: A drawn as PEFT draws it
  // (kaiming_uniform with a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in))), B zero. On the
  // layer's device and dtype. At most once.
  void AddAdapter(int64_t rank, double alpha, at::Generator& generator) {
    TORCH_CHECK(!has_adapter(), "the layer has an adapter already");
    const auto options = weight.options();
    lora_A = register_module(
        "lora_A", torch::nn::Linear(torch::nn::LinearOptions(in_features, rank).bias(false)));
    lora_B = register_module(
        "lora_B", torch::nn::Linear(torch::nn::LinearOptions(rank, out_features).bias(false)));
    torch::NoGradGuard no_grad;
    const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
    lora_A->weight.set_data(
        torch::empty({rank, in_features}, torch::kFloat32).uniform_(-bound, bound, generator)
            .to(options));
    lora_B->weight.set_data(torch::zeros({out_features, rank}, options));
    scale = alpha / static_cast<double>(rank);
  }

  bool has_adapter() const { return !lora_A.is_empty(); }

  int64_t in_features, out_features;
  torch::Tensor weight, bias;
  torch::nn::Linear lora_A{nullptr}, lora_B{nullptr};
  double scale = 0;
};
TORCH_MODULE(LoraLinear);

}  // namespace verdict

#endif  // VERDICT_CORE_MODEL_LORA_LINEAR_H_
