// Llama reward model, laid out exactly as Hugging Face's LlamaForSequenceClassification so that
// parameter names match its state dict.
#include <cmath>

#include "core/model/module_reward_model.h"
#include "core/model/transformer_modules.h"

namespace verdict {
namespace {

struct RMSNormImpl : torch::nn::Module {
  RMSNormImpl(int64_t dim, double eps) : eps(eps) {
    weight = register_parameter("weight", torch::ones({dim}));
  }
  // Normalises in float32 whatever the parameter dtype, as Hugging Face does.
  torch::Tensor forward(const torch::Tensor& x) {
    auto x32 = x.to(torch::kFloat32);
    auto normed = x32 * torch::rsqrt(x32.pow(2).mean(-1, /*keepdim=*/true) + eps);
    return weight * normed.to(x.scalar_type());
  }
  double eps;
  torch::Tensor weight;
};
TORCH_MODULE(RMSNorm);

torch::Tensor RotateHalf(const torch::Tensor& x) {
  auto halves = x.chunk(2, -1);
  return torch::cat({-halves[1], halves[0]}, -1);
}

struct AttentionImpl : torch::nn::Module {
  explicit AttentionImpl(const ModelConfig& c)
      : num_heads(c.num_heads), num_kv_heads(c.num_kv_heads), head_dim(c.head_dim) {
    auto linear = [&](int64_t in, int64_t out) {
      return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
    };
    q_proj = register_module("q_proj", linear(c.hidden_size, num_heads * head_dim));
    k_proj = register_module("k_proj", linear(c.hidden_size, num_kv_heads * head_dim));
    v_proj = register_module("v_proj", linear(c.hidden_size, num_kv_heads * head_dim));
    o_proj = register_module("o_proj", linear(num_heads * head_dim, c.hidden_size));
  }

  // cos, sin: [seq, head_dim]; hidden_mask: [batch, 1, seq, seq], true where a query may not
  // see a key.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& hidden_mask) {
    const int64_t batch = x.size(0), seq = x.size(1);
    auto q = q_proj(x).view({batch, seq, num_heads, head_dim}).transpose(1, 2);
    auto k = k_proj(x).view({batch, seq, num_kv_heads, head_dim}).transpose(1, 2);
    auto v = v_proj(x).view({batch, seq, num_kv_heads, head_dim}).transpose(1, 2);
    q = q * cos + RotateHalf(q) * sin;
    k = k * cos + RotateHalf(k) * sin;
    if (num_kv_heads != num_heads) {
      // Query head h reads key-value head h / (num_heads / num_kv_heads).
      const int64_t group = num_heads / num_kv_heads;
      k = k.repeat_interleave(group, 1);
      v = v.repeat_interleave(group, 1);
    }
    auto scores = torch::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(head_dim));
    scores = scores.to(torch::kFloat32).masked_fill(hidden_mask, -std::numeric_limits<float>::infinity());
    auto weights = torch::softmax(scores, -1).to(v.scalar_type());
    auto context = torch::matmul(weights, v).transpose(1, 2).reshape({batch, seq, -1});
    return o_proj(context);
  }

  int64_t num_heads, num_kv_heads, head_dim;
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
};
TORCH_MODULE(Attention);

struct MlpImpl : torch::nn::Module {
  explicit MlpImpl(const ModelConfig& c) {
    auto linear = [&](int64_t in, int64_t out) {
      return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
    };
    gate_proj = register_module("gate_proj", linear(c.hidden_size, c.intermediate_size));
    up_proj = register_module("up_proj", linear(c.hidden_size, c.intermediate_size));
    down_proj = register_module("down_proj", linear(c.intermediate_size, c.hidden_size));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return down_proj(torch::silu(gate_proj(x)) * up_proj(x));
  }
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(Mlp);

struct DecoderLayerImpl : torch::nn::Module {
  explicit DecoderLayerImpl(const ModelConfig& c) {
    self_attn = register_module("self_attn", Attention(c));
    mlp = register_module("mlp", Mlp(c));
    input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.norm_eps));
    post_attention_layernorm =
        register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.norm_eps));
  }
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& hidden_mask) {
    x = x + self_attn(input_layernorm(x), cos, sin, hidden_mask);
    return x + mlp(post_attention_layernorm(x));
  }
  Attention self_attn{nullptr};
  Mlp mlp{nullptr};
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(DecoderLayer);

struct LlamaImpl : torch::nn::Module {
  explicit LlamaImpl(const ModelConfig& c) : head_dim(c.head_dim), rope_theta(c.rope_theta) {
    auto embed_options = torch::nn::EmbeddingOptions(c.vocab_size, c.hidden_size);
    if (c.pad_token_id >= 0 && c.pad_token_id < c.vocab_size) {
      embed_options.padding_idx(c.pad_token_id);
    }
    embed_tokens = register_module("embed_tokens", torch::nn::Embedding(embed_options));
    layers = register_module("layers", torch::nn::ModuleList());
    for (int64_t i = 0; i < c.num_layers; ++i) layers->push_back(DecoderLayer(c));
    norm = register_module("norm", RMSNorm(c.hidden_size, c.norm_eps));
  }

  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask) {
    const int64_t seq = input_ids.size(1);
    auto x = embed_tokens(input_ids);
    // Rotary tables in float32 (then the activations' dtype), rotate-half form.
    auto float_options = torch::TensorOptions().dtype(torch::kFloat32).device(x.device());
    auto inv_freq = torch::pow(rope_theta, -torch::arange(0, head_dim, 2, float_options) / head_dim);
    auto freqs = torch::outer(torch::arange(seq, float_options), inv_freq);
    auto angles = torch::cat({freqs, freqs}, -1);
    auto cos = angles.cos().to(x.scalar_type()), sin = angles.sin().to(x.scalar_type());
    // A key is hidden from a query if it lies in the future or is padding.
    auto future = torch::ones({seq, seq}, torch::TensorOptions().dtype(torch::kBool).device(x.device()))
                      .triu(1);
    auto padding = (attention_mask == 0).view({attention_mask.size(0), 1, 1, seq});
    auto hidden_mask = future.view({1, 1, seq, seq}).logical_or(padding);
    for (const auto& layer : *layers) {
      x = layer->as<DecoderLayer>()->forward(x, cos, sin, hidden_mask);
    }
    return norm(x);
  }

  int64_t head_dim;
  double rope_theta;
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
};
TORCH_MODULE(Llama);

struct LlamaRewardImpl : torch::nn::Module {
  explicit LlamaRewardImpl(const ModelConfig& c) {
    model = register_module("model", Llama(c));
    score = register_module(
        "score", torch::nn::Linear(torch::nn::LinearOptions(c.hidden_size, 1).bias(false)));
  }
  Llama model{nullptr};
  torch::nn::Linear score{nullptr};
};
TORCH_MODULE(LlamaReward);

class LlamaRewardModel : public ModuleRewardModel<LlamaReward> {
 public:
  using ModuleRewardModel::ModuleRewardModel;

  at::Tensor HiddenStates(const at::Tensor& input_ids, const at::Tensor& attention_mask) override {
    const auto device = net_->score->weight.device();
    return net_->model(input_ids.to(device), attention_mask.to(device));
  }

  // Pools at the last position whose attention_mask is 1. For right-padded batches this is
  // Hugging Face's "token before the first pad" without mistaking a real token that shares
  // the pad id (Llama tokenizers often reuse </s> as pad) for padding.
  at::Tensor Forward(const at::Tensor& input_ids, const at::Tensor& attention_mask) override {
    auto hidden = HiddenStates(input_ids, attention_mask);
    auto mask = attention_mask.to(hidden.device(), torch::kLong);
    auto positions = torch::arange(input_ids.size(1), mask.options());
    auto last = (mask * positions).amax(1);
    auto batch_index = torch::arange(input_ids.size(0), last.options());
    auto pooled = hidden.index({batch_index, last});
    return net_->score(pooled).squeeze(-1).to(torch::kFloat32);
  }
};

}  // namespace

std::unique_ptr<RewardModel> NewLlamaRewardModel(const ModelConfig& config) {
  return std::make_unique<LlamaRewardModel>(config);
}

}  // namespace verdict
