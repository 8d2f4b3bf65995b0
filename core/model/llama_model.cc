// The decoder reward model, laid out exactly as Hugging Face's LlamaForSequenceClassification
// (and Mistral-, Qwen2-, Qwen3ForSequenceClassification, which share its layout) so that
// parameter names match their state dicts. One implementation; the families differ only in
// ModelConfig switches: q/k/v and o biases, MLP biases, per-head q/k norms (Qwen3), RoPE
// frequency scaling (Llama 3, linear) and a sliding attention window (Mistral).
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <tuple>
#include <vector>

#include "core/model/activation_checkpoint.h"
#include "core/model/lora_linear.h"
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
    RECORD_USER_SCOPE("llama.norm");
    auto x32 = x.to(torch::kFloat32);
    auto normed = x32 * torch::rsqrt(x32.pow(2).mean(-1, /*keepdim=*/true) + eps);
    return weight * normed.to(x.scalar_type());
  }
  double eps;
  torch::Tensor weight;
};
TORCH_MODULE(RMSNorm);

// RoPE in rotate-half form, x * cos + rotate_half(x) * sin with rotate_half([x1, x2]) =
// [-x2, x1], computed as x * cos + [x2, x1] * signed_sin where signed_sin = [-sin, sin]
// (RopeTables): the same products, one flip where a negation and a concatenation were.
torch::Tensor Rotate(const torch::Tensor& x, const torch::Tensor& cos,
                     const torch::Tensor& signed_sin) {
  std::vector<int64_t> halves = x.sizes().vec();
  const int64_t head_dim = halves.back();
  halves.back() = 2;
  halves.push_back(head_dim / 2);
  auto swapped = x.view(halves).flip({-2}).view(x.sizes());
  return torch::addcmul(x * cos, swapped, signed_sin);
}

// The rotary tables one forward uses, [positions, 1, head_dim] (broadcast over heads): cos and
// signed sin for keys, and the queries' own, scaled by 1 / sqrt(head_dim) so that the
// attention scores need no division.
struct Rope {
  torch::Tensor cos, sin, query_cos, query_sin;

  Rope Narrow(int64_t length) const {
    return {cos.narrow(0, 0, length), sin.narrow(0, 0, length), query_cos.narrow(0, 0, length),
            query_sin.narrow(0, 0, length)};
  }
  Rope Select(const torch::Tensor& positions) const {
    return {cos.index_select(0, positions), sin.index_select(0, positions),
            query_cos.index_select(0, positions), query_sin.index_select(0, positions)};
  }
};

// The backbone's projections, which may carry LoRA adapters (lora_linear.h).
LoraLinear MakeLinear(int64_t in, int64_t out, bool bias) { return LoraLinear(in, out, bias); }

// `layers` applied to x in one matmul (their weights and biases concatenated per call, so that
// gradients still reach each layer's own Hugging Face parameters), split back into one output
// per layer. Adapters' terms are added to the fused output (zeros for a layer without one),
// so the outputs keep one memory layout with or without adapters: kernels whose rounding
// depends on the layout (silu's vectorised loop and its scalar tail) then give bit-identical
// results for a fresh adapter, whose term is 0.
std::vector<torch::Tensor> FusedLinear(const torch::Tensor& x,
                                       const std::vector<LoraLinearImpl*>& layers) {
  std::vector<torch::Tensor> weights, biases;
  std::vector<int64_t> sizes;
  bool adapters = false;
  for (LoraLinearImpl* layer : layers) {
    weights.push_back(layer->weight);
    if (layer->bias.defined()) biases.push_back(layer->bias);
    sizes.push_back(layer->out_features);
    adapters = adapters || layer->has_adapter();
  }
  auto fused = torch::nn::functional::linear(
      x, torch::cat(weights),
      biases.size() == layers.size() ? torch::cat(biases) : torch::Tensor());
  if (adapters) {
    std::vector<torch::Tensor> terms;
    for (LoraLinearImpl* layer : layers) {
      if (layer->has_adapter()) {
        terms.push_back(layer->AdapterDelta(x).to(fused.scalar_type()));
      } else {
        std::vector<int64_t> shape = fused.sizes().vec();
        shape.back() = layer->out_features;
        terms.push_back(torch::zeros(shape, fused.options()));
      }
    }
    fused = fused + torch::cat(terms, -1);
  }
  return fused.split_with_sizes(sizes, -1);
}

// RoPE inverse frequencies `rope_theta^(-2i/head_dim)`, rescaled as config.rope_scaling says
// (transformers' _compute_llama3_parameters / _compute_linear_scaling_rope_parameters).
// Computed in double, returned as float32, the dtype Hugging Face keeps them in.
torch::Tensor InverseFrequencies(const ModelConfig& c) {
  const ModelConfig::RopeScaling& r = c.rope_scaling;
  std::vector<float> out;
  for (int64_t i = 0; i < c.head_dim; i += 2) {
    double inv_freq = std::pow(c.rope_theta, -static_cast<double>(i) / c.head_dim);
    if (r.type == "linear") {
      inv_freq /= r.factor;
    } else if (r.type == "llama3") {
      const double old = static_cast<double>(r.original_max_position_embeddings);
      const double low_wavelen = old / r.low_freq_factor;
      const double high_wavelen = old / r.high_freq_factor;
      const double wavelen = 2 * M_PI / inv_freq;
      if (wavelen > low_wavelen) {
        inv_freq /= r.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth =
            (old / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
        inv_freq = (1 - smooth) * inv_freq / r.factor + smooth * inv_freq;
      }
    }
    out.push_back(static_cast<float>(inv_freq));
  }
  return torch::tensor(out, torch::kFloat32);
}

// Rope tables for positions 0..n-1, built once per (device, dtype) and grown (doubling) when a
// longer sequence comes; each position's values do not depend on n, so a forward gets the
// numbers it would have computed itself. Thread-safe (forwards run on several threads).
class RopeTables {
 public:
  RopeTables(torch::Tensor inv_freq, int64_t head_dim)
      : inv_freq_(std::move(inv_freq)), head_dim_(head_dim) {}

  Rope Get(int64_t length, const c10::Device& device, c10::ScalarType dtype) {
    std::lock_guard<std::mutex> lock(mu_);
    Rope& rope = tables_[{device.str(), dtype}];
    const int64_t have = rope.cos.defined() ? rope.cos.size(0) : 0;
    if (have < length) rope = Build(std::max<int64_t>(length, 2 * have), device, dtype);
    return rope.Narrow(length);
  }

 private:
  Rope Build(int64_t length, const c10::Device& device, c10::ScalarType dtype) const {
    // Ordinary tensors even when the first forward runs under inference mode: training
    // saves them for the backward pass.
    c10::InferenceMode not_inference(false);
    // Angles in float32, then cos and sin in the activations' dtype, as Hugging Face does.
    auto float_options = torch::TensorOptions().dtype(torch::kFloat32).device(device);
    auto freqs =
        torch::arange(length, float_options).unsqueeze(1) * inv_freq_.to(device).unsqueeze(0);
    auto angles = torch::cat({freqs, freqs}, -1);
    auto cos = angles.cos().to(dtype);
    auto sin = angles.sin().to(dtype);
    auto signed_sin = torch::cat({-sin.narrow(1, 0, head_dim_ / 2),
                                  sin.narrow(1, head_dim_ / 2, head_dim_ / 2)},
                                 1);
    const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));
    return {cos.unsqueeze(1), signed_sin.unsqueeze(1), (cos * scale).unsqueeze(1),
            (signed_sin * scale).unsqueeze(1)};
  }

  const torch::Tensor inv_freq_;  // float32, CPU
  const int64_t head_dim_;
  std::mutex mu_;
  std::map<std::pair<std::string, c10::ScalarType>, Rope> tables_;
};

// Where each group of ForwardShared's packed tokens lies, and the masks its attention needs
// (built once per forward, shared by the layers).
struct SharedLayout {
  struct Group {
    int64_t offset = 0;  // of the group's first token in the packed ids
    int64_t prefix_length = 0;
    std::vector<int64_t> continuation_lengths;
  };
  std::vector<Group> groups;
  int64_t sliding_window = 0;
  // [queries, keys] masks (true: hidden), by (queries, keys, shift); the layers reuse them.
  mutable std::map<std::tuple<int64_t, int64_t, int64_t>, torch::Tensor> masks;

  // Query i sits at position i + shift of keys 0..key_count-1: it may not see a later key,
  // nor (with a sliding window) one `sliding_window` or more positions back.
  const torch::Tensor& HiddenKeys(int64_t queries, int64_t key_count, int64_t shift,
                                  const c10::Device& device) const {
    torch::Tensor& mask = masks[{queries, key_count, shift}];
    if (!mask.defined()) {
      auto options = torch::TensorOptions().dtype(torch::kLong).device(device);
      auto query_position = torch::arange(shift, shift + queries, options).view({queries, 1});
      auto key_position = torch::arange(key_count, options).view({1, key_count});
      mask = key_position > query_position;
      if (sliding_window > 0) {
        mask = mask.logical_or(query_position - key_position >= sliding_window);
      }
    }
    return mask;
  }
};

struct AttentionImpl : torch::nn::Module {
  explicit AttentionImpl(const ModelConfig& c)
      : num_heads(c.num_heads), num_kv_heads(c.num_kv_heads), head_dim(c.head_dim) {
    q_proj = register_module("q_proj", MakeLinear(c.hidden_size, num_heads * head_dim, c.qkv_bias));
    k_proj =
        register_module("k_proj", MakeLinear(c.hidden_size, num_kv_heads * head_dim, c.qkv_bias));
    v_proj =
        register_module("v_proj", MakeLinear(c.hidden_size, num_kv_heads * head_dim, c.qkv_bias));
    o_proj = register_module("o_proj", MakeLinear(num_heads * head_dim, c.hidden_size, c.o_bias));
    if (c.qk_norm) {
      q_norm = register_module("q_norm", RMSNorm(head_dim, c.norm_eps));
      k_norm = register_module("k_norm", RMSNorm(head_dim, c.norm_eps));
    }
  }

  // q, k, v projections ([..., heads × head_dim] each) in one matmul.
  std::vector<torch::Tensor> ProjectQkv(const torch::Tensor& x) {
    return FusedLinear(x, {q_proj.get(), k_proj.get(), v_proj.get()});
  }

  // rope: [seq, 1, head_dim] tables; hidden_mask: [batch, 1, seq, seq], true where a query
  // may not see a key. Grouped-query heads read their key-value head by reshaping the queries
  // to [batch, kv_heads, group × seq, head_dim], so keys and values are never repeated.
  torch::Tensor forward(const torch::Tensor& x, const Rope& rope,
                        const torch::Tensor& hidden_mask) {
    RECORD_USER_SCOPE("llama.attention");
    const int64_t batch = x.size(0), seq = x.size(1), group = num_heads / num_kv_heads;
    torch::Tensor q, k, v, context;
    {
      RECORD_USER_SCOPE("llama.attention.qkv_proj");
      std::vector<torch::Tensor> qkv = ProjectQkv(x);
      q = qkv[0].view({batch, seq, num_heads, head_dim});
      k = qkv[1].view({batch, seq, num_kv_heads, head_dim});
      v = qkv[2].view({batch, seq, num_kv_heads, head_dim});
      // Qwen3: each head's query and key normalised over head_dim, before the rotation.
      if (q_norm) {
        q = q_norm(q);
        k = k_norm(k);
      }
    }
    {
      RECORD_USER_SCOPE("llama.attention.rotary");
      q = Rotate(q, rope.query_cos, rope.query_sin);  // scaled by 1 / sqrt(head_dim)
      k = Rotate(k, rope.cos, rope.sin);
    }
    {
      RECORD_USER_SCOPE("llama.attention.core");
      // [batch, seq, kv, group, d] -> [batch, kv, group × seq, d]; query head h is
      // kv * group + g, reading key-value head h / group as Hugging Face's repeat_kv does.
      auto queries = q.view({batch, seq, num_kv_heads, group, head_dim})
                         .permute({0, 2, 3, 1, 4})
                         .reshape({batch, num_kv_heads, group * seq, head_dim});
      auto scores = torch::matmul(queries, k.permute({0, 2, 3, 1}));  // [b, kv, g × seq, seq]
      if (scores.scalar_type() != torch::kFloat32) scores = scores.to(torch::kFloat32);
      // The mask repeated for each query head of a group, [batch, 1, group × seq, seq], so the
      // fill is in place on the scores themselves: in place on a view of them, the backward
      // pass would copy the whole gradient of the scores (CopySlices).
      const torch::Tensor hidden =
          group == 1 ? hidden_mask
                     : hidden_mask.unsqueeze(1)
                           .expand({batch, 1, group, seq, seq})
                           .reshape({batch, 1, group * seq, seq});
      scores.masked_fill_(hidden, -std::numeric_limits<float>::infinity());
      auto weights = torch::softmax(scores, -1).to(v.scalar_type());
      context = torch::matmul(weights, v.transpose(1, 2))  // [b, kv, g × seq, d]
                    .view({batch, num_kv_heads, group, seq, head_dim})
                    .permute({0, 3, 1, 2, 4})
                    .reshape({batch, seq, num_heads * head_dim});
    }
    {
      RECORD_USER_SCOPE("llama.attention.o_proj");
      return o_proj(context);
    }
  }

  // The same attention over a shared-prefix layout: x is [total, hidden], rope's tables
  // [total, 1, head_dim] at each token's own position. A prompt attends causally to itself; a
  // continuation to its prompt and causally to itself, which in keys [prompt; continuation]
  // is the causal mask shifted by the prompt's length. Grouped-query heads read their
  // key-value head by reshaping the queries ([kv_heads, group × tokens, head_dim]) rather
  // than copying keys and values per query head.
  torch::Tensor forward_shared(const torch::Tensor& x, const Rope& rope,
                               const SharedLayout& layout) {
    const int64_t total = x.size(0), group = num_heads / num_kv_heads;
    std::vector<torch::Tensor> qkv = ProjectQkv(x);
    auto q = qkv[0].view({total, num_heads, head_dim});
    auto k = qkv[1].view({total, num_kv_heads, head_dim});
    auto v = qkv[2].view({total, num_kv_heads, head_dim}).transpose(0, 1);
    if (q_norm) {
      q = q_norm(q);
      k = k_norm(k);
    }
    // Queries scaled by 1 / sqrt(head_dim) through their tables.
    q = Rotate(q, rope.query_cos, rope.query_sin).transpose(0, 1).contiguous();  // [heads, total, d]
    k = Rotate(k, rope.cos, rope.sin).transpose(0, 1);                           // [kv, total, d]
    // Queries [offset, offset + length) against `keys`, `values` ([kv, keys, d]), of which
    // key j is hidden from query i when j > i + shift (or outside the sliding window).
    auto attend = [&](int64_t offset, int64_t length, const torch::Tensor& keys,
                      const torch::Tensor& values, int64_t shift) {
      const int64_t key_count = keys.size(1);
      auto queries = q.narrow(1, offset, length).reshape({num_kv_heads, group * length, head_dim});
      auto scores = torch::matmul(queries, keys.transpose(-1, -2))
                        .view({num_kv_heads, group, length, key_count})
                        .to(torch::kFloat32)
                        .masked_fill(layout.HiddenKeys(length, key_count, shift, x.device()),
                                     -std::numeric_limits<float>::infinity());
      auto weights = torch::softmax(scores, -1).to(values.scalar_type());
      auto context = torch::matmul(weights.view({num_kv_heads, group * length, key_count}), values);
      // [kv, group × length, d] → [length, heads × d]
      return context.view({num_heads, length, head_dim}).transpose(0, 1).reshape({length, -1});
    };
    std::vector<torch::Tensor> pieces;
    for (const SharedLayout::Group& g : layout.groups) {
      torch::Tensor prompt_k, prompt_v;
      if (g.prefix_length > 0) {
        prompt_k = k.narrow(1, g.offset, g.prefix_length);
        prompt_v = v.narrow(1, g.offset, g.prefix_length);
        pieces.push_back(attend(g.offset, g.prefix_length, prompt_k, prompt_v, 0));
      }
      int64_t offset = g.offset + g.prefix_length;
      for (int64_t length : g.continuation_lengths) {
        auto own_k = k.narrow(1, offset, length), own_v = v.narrow(1, offset, length);
        if (g.prefix_length > 0) {
          own_k = torch::cat({prompt_k, own_k}, 1);
          own_v = torch::cat({prompt_v, own_v}, 1);
        }
        pieces.push_back(attend(offset, length, own_k, own_v, g.prefix_length));
        offset += length;
      }
    }
    return o_proj(torch::cat(pieces, 0));
  }

  int64_t num_heads, num_kv_heads, head_dim;
  LoraLinear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  RMSNorm q_norm{nullptr}, k_norm{nullptr};
};
TORCH_MODULE(Attention);

struct MlpImpl : torch::nn::Module {
  explicit MlpImpl(const ModelConfig& c) {
    const bool bias = c.mlp_bias;
    gate_proj = register_module("gate_proj", MakeLinear(c.hidden_size, c.intermediate_size, bias));
    up_proj = register_module("up_proj", MakeLinear(c.hidden_size, c.intermediate_size, bias));
    down_proj = register_module("down_proj", MakeLinear(c.intermediate_size, c.hidden_size, bias));
  }
  // gate_proj and up_proj in one matmul (FusedLinear).
  torch::Tensor forward(const torch::Tensor& x) {
    RECORD_USER_SCOPE("llama.mlp");
    std::vector<torch::Tensor> gate_up = FusedLinear(x, {gate_proj.get(), up_proj.get()});
    return down_proj(torch::silu(gate_up[0]) * gate_up[1]);
  }
  LoraLinear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
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
  torch::Tensor forward(torch::Tensor x, const Rope& rope, const torch::Tensor& hidden_mask) {
    x = x + self_attn(input_layernorm(x), rope, hidden_mask);
    return x + mlp(post_attention_layernorm(x));
  }
  torch::Tensor forward_shared(torch::Tensor x, const Rope& rope, const SharedLayout& layout) {
    x = x + self_attn->forward_shared(input_layernorm(x), rope, layout);
    return x + mlp(post_attention_layernorm(x));
  }
  Attention self_attn{nullptr};
  Mlp mlp{nullptr};
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(DecoderLayer);

struct LlamaImpl : torch::nn::Module {
  explicit LlamaImpl(const ModelConfig& c)
      : rope_tables(std::make_shared<RopeTables>(InverseFrequencies(c), c.head_dim)),
        sliding_window(c.sliding_window) {
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
    Rope rope;
    torch::Tensor hidden_mask;
    {
      RECORD_USER_SCOPE("llama.rope_tables");
      rope = rope_tables->Get(seq, x.device(), x.scalar_type());
    }
    {
      RECORD_USER_SCOPE("llama.mask");
      // A key is hidden from a query if it lies in the future or is padding.
      const auto bool_options = torch::TensorOptions().dtype(torch::kBool).device(x.device());
      auto future = torch::ones({seq, seq}, bool_options).triu(1);
      // Mistral's window: query t sees keys t - window + 1 .. t.
      if (sliding_window > 0) {
        auto position =
            torch::arange(seq, torch::TensorOptions().dtype(torch::kLong).device(x.device()));
        future = future.logical_or(position.view({seq, 1}) - position.view({1, seq}) >=
                                   sliding_window);
      }
      auto padding = (attention_mask == 0).view({attention_mask.size(0), 1, 1, seq});
      hidden_mask = future.view({1, 1, seq, seq}).logical_or(padding);
    }
    for (const auto& layer : *layers) {
      DecoderLayerImpl* block = layer->as<DecoderLayer>();
      if (recompute()) {
        auto run = [block, rope, hidden_mask](const torch::Tensor& h) {
          return block->forward(h, rope, hidden_mask);
        };
        x = CheckpointedForward(run, x, block->parameters());
      } else {
        x = block->forward(x, rope, hidden_mask);
      }
    }
    return norm(x);
  }

  // [total, hidden] final hidden states of a shared-prefix layout, `position_ids` [total] on
  // the model's device, all below `position_limit`.
  torch::Tensor forward_shared(const torch::Tensor& packed_ids, const torch::Tensor& position_ids,
                               int64_t position_limit, const SharedLayout& layout) {
    auto x = embed_tokens(packed_ids);
    const Rope rope =
        rope_tables->Get(position_limit, x.device(), x.scalar_type()).Select(position_ids);
    // The recomputation runs after ForwardShared returns: it gets its own copy of the layout.
    std::shared_ptr<const SharedLayout> kept;
    if (recompute()) kept = std::make_shared<const SharedLayout>(layout);
    for (const auto& layer : *layers) {
      DecoderLayerImpl* block = layer->as<DecoderLayer>();
      if (kept) {
        auto run = [block, rope, kept](const torch::Tensor& h) {
          return block->forward_shared(h, rope, *kept);
        };
        x = CheckpointedForward(run, x, block->parameters());
      } else {
        x = block->forward_shared(x, rope, layout);
      }
    }
    return norm(x);
  }

  // Whether this forward recomputes its blocks in the backward pass (gradient checkpointing).
  bool recompute() const {
    return checkpoint_layers && is_training() && torch::GradMode::is_enabled();
  }

  // Not parameters or buffers: built per device and dtype as forwards ask for them.
  std::shared_ptr<RopeTables> rope_tables;
  int64_t sliding_window;
  bool checkpoint_layers = false;  // RewardModel::set_gradient_checkpointing
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

  // Pools by Hugging Face's rule (GenericForSequenceClassification): the rightmost token that
  // is not pad_token_id, position 0 for a row without one. So a real token that shares the
  // pad id at the end of a row (Qwen and Llama 3 tokenizers often reuse an end-of-text token
  // as pad) is skipped here as in transformers and TRL, and a model trained here pools where
  // Hugging Face will pool it. Positions where attention_mask is 0 never count, so a batch
  // padded with some other id pools the same; without a pad id the mask alone decides
  // (transformers then takes the last position, which is the same for an unpadded row).
  at::Tensor Forward(const at::Tensor& input_ids, const at::Tensor& attention_mask) override {
    auto hidden = HiddenStates(input_ids, attention_mask);
    auto mask = attention_mask.to(hidden.device(), torch::kLong);
    const int64_t pad = config_.pad_token_id;
    if (pad >= 0) mask = mask * input_ids.to(hidden.device()).ne(pad).to(torch::kLong);
    auto positions = torch::arange(input_ids.size(1), mask.options());
    auto last = (mask * positions).amax(1);
    auto batch_index = torch::arange(input_ids.size(0), last.options());
    auto pooled = hidden.index({batch_index, last});
    return net_->score(pooled).squeeze(-1).to(torch::kFloat32);
  }

  void set_gradient_checkpointing(bool enabled) override {
    net_->model->checkpoint_layers = enabled;
  }

  bool shares_prefixes() const override { return true; }

  // Positions and pooling follow each full sequence prompt + continuation: positions go on
  // from the prompt's end, and the pooled token is Forward()'s (the rightmost that is not
  // pad_token_id, which may lie in the prompt; the sequence's first without one).
  at::Tensor ForwardShared(const at::Tensor& packed_ids,
                           const std::vector<SharedPrefixGroup>& groups) override {
    const auto device = net_->score->weight.device();
    const at::Tensor ids = packed_ids.to(torch::kCPU, torch::kLong).contiguous();
    const int64_t total = ids.numel();
    const int64_t* id = ids.data_ptr<int64_t>();
    const int64_t pad = config_.pad_token_id;
    SharedLayout layout;
    layout.sliding_window = config_.sliding_window;
    std::vector<int64_t> positions(total), pooled;
    int64_t offset = 0;
    for (const SharedPrefixGroup& group : groups) {
      const int64_t prompt = group.prefix_length;
      TORCH_CHECK(prompt >= 0 && !group.continuation_lengths.empty(),
                  "a shared-prefix group needs a prompt length >= 0 and a continuation");
      TORCH_CHECK(offset + prompt <= total, "shared-prefix lengths do not match the ids");
      layout.groups.push_back({offset, prompt, group.continuation_lengths});
      std::iota(positions.begin() + offset, positions.begin() + offset + prompt, int64_t{0});
      // The prompt's last token that is not padding, -1 for none.
      int64_t prompt_last = prompt - 1;
      while (prompt_last >= 0 && id[offset + prompt_last] == pad) --prompt_last;
      int64_t start = offset + prompt;
      for (int64_t length : group.continuation_lengths) {
        TORCH_CHECK(length > 0 && start + length <= total,
                    "shared-prefix lengths do not match the ids");
        std::iota(positions.begin() + start, positions.begin() + start + length, prompt);
        int64_t last = start + length - 1;
        while (last >= start && id[last] == pad) --last;
        if (last < start)
          last = prompt_last >= 0 ? offset + prompt_last : (prompt > 0 ? offset : start);
        pooled.push_back(last);
        start += length;
      }
      offset = start;
    }
    TORCH_CHECK(offset == total, "shared-prefix lengths do not sum to the ids");
    const at::Tensor position_ids = torch::tensor(positions, torch::kLong).to(device);
    const at::Tensor pooled_ids = torch::tensor(pooled, torch::kLong).to(device);
    const int64_t position_limit =
        positions.empty() ? 1 : *std::max_element(positions.begin(), positions.end()) + 1;
    auto hidden =
        net_->model->forward_shared(ids.to(device), position_ids, position_limit, layout);
    return net_->score(hidden.index_select(0, pooled_ids)).squeeze(-1).to(torch::kFloat32);
  }
};

}  // namespace

std::unique_ptr<RewardModel> NewLlamaRewardModel(const ModelConfig& config) {
  return std::make_unique<LlamaRewardModel>(config);
}

}  // namespace verdict
