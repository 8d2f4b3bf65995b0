// DistilBERT reward model, laid out exactly as Hugging Face's
// DistilBertForSequenceClassification so that parameter names match its state dict.
#include <ATen/native/quantized/PackedParams.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cmath>
#include <unordered_map>
#include <numeric>
#include <vector>

#include "core/model/activation_checkpoint.h"
#include "core/model/lora_linear.h"
#include "core/model/module_reward_model.h"
#include "core/model/transformer_modules.h"

namespace verdict {
namespace {

// Hugging Face fixes DistilBERT's LayerNorm epsilon in the architecture, not in config.json.
constexpr double kLayerNormEps = 1e-12;

torch::nn::LayerNorm MakeLayerNorm(int64_t dim) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(kLayerNormEps));
}

struct EmbeddingsImpl : torch::nn::Module {
  explicit EmbeddingsImpl(const ModelConfig& c) {
    auto word_options = torch::nn::EmbeddingOptions(c.vocab_size, c.hidden_size);
    if (c.pad_token_id >= 0 && c.pad_token_id < c.vocab_size) {
      word_options.padding_idx(c.pad_token_id);
    }
    word_embeddings = register_module("word_embeddings", torch::nn::Embedding(word_options));
    position_embeddings = register_module(
        "position_embeddings", torch::nn::Embedding(c.max_position_embeddings, c.hidden_size));
    LayerNorm = register_module("LayerNorm", MakeLayerNorm(c.hidden_size));
  }

  torch::Tensor forward(const torch::Tensor& input_ids) {
    auto positions = torch::arange(input_ids.size(1), input_ids.options());
    return LayerNorm(word_embeddings(input_ids) + position_embeddings(positions).unsqueeze(0));
  }

  torch::nn::Embedding word_embeddings{nullptr}, position_embeddings{nullptr};
  torch::nn::LayerNorm LayerNorm{nullptr};
};
TORCH_MODULE(Embeddings);

struct MultiHeadSelfAttentionImpl : torch::nn::Module {
  explicit MultiHeadSelfAttentionImpl(const ModelConfig& c)
      : num_heads(c.num_heads), head_dim(c.hidden_size / c.num_heads) {
    q_lin = register_module("q_lin", LoraLinear(c.hidden_size, c.hidden_size, true));
    k_lin = register_module("k_lin", LoraLinear(c.hidden_size, c.hidden_size, true));
    v_lin = register_module("v_lin", LoraLinear(c.hidden_size, c.hidden_size, true));
    out_lin = register_module("out_lin", LoraLinear(c.hidden_size, c.hidden_size, true));
  }

  // key_mask: [batch, 1, 1, seq], true where the key is padding.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& key_mask) {
    const int64_t batch = x.size(0), seq = x.size(1);
    auto split_heads = [&](const torch::Tensor& t) {
      return t.view({batch, seq, num_heads, head_dim}).transpose(1, 2);
    };
    auto q = split_heads(q_lin(x)) / std::sqrt(static_cast<double>(head_dim));
    auto k = split_heads(k_lin(x));
    auto v = split_heads(v_lin(x));
    auto scores = torch::matmul(q, k.transpose(-1, -2));
    scores = scores.masked_fill(key_mask, -std::numeric_limits<float>::infinity());
    auto weights = torch::softmax(scores, -1);
    auto context = torch::matmul(weights, v).transpose(1, 2).reshape({batch, seq, -1});
    return out_lin(context);
  }

  int64_t num_heads, head_dim;
  LoraLinear q_lin{nullptr}, k_lin{nullptr}, v_lin{nullptr}, out_lin{nullptr};
};
TORCH_MODULE(MultiHeadSelfAttention);

struct FeedForwardImpl : torch::nn::Module {
  explicit FeedForwardImpl(const ModelConfig& c) {
    lin1 = register_module("lin1", LoraLinear(c.hidden_size, c.intermediate_size, true));
    lin2 = register_module("lin2", LoraLinear(c.intermediate_size, c.hidden_size, true));
  }
  torch::Tensor forward(const torch::Tensor& x) { return lin2(torch::gelu(lin1(x))); }
  LoraLinear lin1{nullptr}, lin2{nullptr};
};
TORCH_MODULE(FeedForward);

struct TransformerBlockImpl : torch::nn::Module {
  explicit TransformerBlockImpl(const ModelConfig& c) {
    attention = register_module("attention", MultiHeadSelfAttention(c));
    sa_layer_norm = register_module("sa_layer_norm", MakeLayerNorm(c.hidden_size));
    ffn = register_module("ffn", FeedForward(c));
    output_layer_norm = register_module("output_layer_norm", MakeLayerNorm(c.hidden_size));
  }
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& key_mask) {
    auto h = sa_layer_norm(x + attention(x, key_mask));
    return output_layer_norm(h + ffn(h));
  }
  MultiHeadSelfAttention attention{nullptr};
  torch::nn::LayerNorm sa_layer_norm{nullptr}, output_layer_norm{nullptr};
  FeedForward ffn{nullptr};
};
TORCH_MODULE(TransformerBlock);

struct TransformerImpl : torch::nn::Module {
  explicit TransformerImpl(const ModelConfig& c) {
    layer = register_module("layer", torch::nn::ModuleList());
    for (int64_t i = 0; i < c.num_layers; ++i) layer->push_back(TransformerBlock(c));
  }
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& key_mask) {
    const bool recompute = checkpoint_layers && is_training() && torch::GradMode::is_enabled();
    for (const auto& module : *layer) {
      TransformerBlockImpl* block = module->as<TransformerBlock>();
      if (recompute) {
        auto run = [block, key_mask](const torch::Tensor& h) {
          return block->forward(h, key_mask);
        };
        x = CheckpointedForward(run, x, block->parameters());
      } else {
        x = block->forward(x, key_mask);
      }
    }
    return x;
  }
  torch::nn::ModuleList layer{nullptr};
  bool checkpoint_layers = false;  // RewardModel::set_gradient_checkpointing
};
TORCH_MODULE(Transformer);

struct DistilBertImpl : torch::nn::Module {
  explicit DistilBertImpl(const ModelConfig& c) {
    embeddings = register_module("embeddings", Embeddings(c));
    transformer = register_module("transformer", Transformer(c));
  }
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask) {
    auto key_mask = (attention_mask == 0).view({attention_mask.size(0), 1, 1, -1});
    return transformer(embeddings(input_ids), key_mask);
  }
  Embeddings embeddings{nullptr};
  Transformer transformer{nullptr};
};
TORCH_MODULE(DistilBert);

// The root module: its children's names are the state-dict prefixes.
struct DistilBertRewardImpl : torch::nn::Module {
  explicit DistilBertRewardImpl(const ModelConfig& c) {
    distilbert = register_module("distilbert", DistilBert(c));
    pre_classifier = register_module("pre_classifier", torch::nn::Linear(c.hidden_size, c.hidden_size));
    classifier = register_module("classifier", torch::nn::Linear(c.hidden_size, 1));
  }
  DistilBert distilbert{nullptr};
  torch::nn::Linear pre_classifier{nullptr}, classifier{nullptr};
};
TORCH_MODULE(DistilBertReward);

class DistilBertRewardModel : public ModuleRewardModel<DistilBertReward> {
 public:
  using ModuleRewardModel::ModuleRewardModel;

  at::Tensor HiddenStates(const at::Tensor& input_ids, const at::Tensor& attention_mask) override {
    const auto device = net_->pre_classifier->weight.device();
    return net_->distilbert(input_ids.to(device), attention_mask.to(device));
  }

  at::Tensor Forward(const at::Tensor& input_ids, const at::Tensor& attention_mask) override {
    return Head(HiddenStates(input_ids, attention_mask).select(1, 0));
  }

  void set_gradient_checkpointing(bool enabled) override {
    net_->distilbert->transformer->checkpoint_layers = enabled;
  }

  bool packs_sequences() const override { return true; }

  // The padded forward's arithmetic on [total, hidden] rows: the linear layers, norms and
  // embeddings see only real tokens, and attention runs per sequence over its own keys, which
  // is what the padded forward's -inf mask computes (padded keys get weight exactly 0). Per
  // token cost thus stays flat in the number of sequences, where the padded forward's
  // [batch, heads, seq, seq] scores outgrow the caches.
  at::Tensor ForwardPacked(const at::Tensor& packed_ids,
                           const std::vector<int64_t>& lengths) override {
    const auto device = net_->pre_classifier->weight.device();
    const int64_t total = packed_ids.size(0);
    std::vector<int64_t> positions(total), firsts;
    firsts.reserve(lengths.size());
    int64_t offset = 0;
    for (int64_t length : lengths) {
      TORCH_CHECK(length > 0 && offset + length <= total, "packed lengths do not match the ids");
      std::iota(positions.begin() + offset, positions.begin() + offset + length, int64_t{0});
      firsts.push_back(offset);
      offset += length;
    }
    TORCH_CHECK(offset == total, "packed lengths do not sum to the ids");
    const at::Tensor position_ids = torch::tensor(positions, torch::kLong).to(device);
    const at::Tensor first_ids = torch::tensor(firsts, torch::kLong).to(device);
    auto& embeddings = *net_->distilbert->embeddings;
    at::Tensor x = embeddings.LayerNorm(embeddings.word_embeddings(packed_ids.to(device)) +
                                        embeddings.position_embeddings(position_ids));
    for (const auto& module : *net_->distilbert->transformer->layer) {
      auto& block = *module->as<TransformerBlock>();
      auto h = block.sa_layer_norm(x + PackedAttention(*block.attention, x, lengths));
      auto& ffn = *block.ffn;
      x = block.output_layer_norm(h + Linear(*ffn.lin2, torch::gelu(Linear(*ffn.lin1, h))));
    }
    return Head(x.index_select(0, first_ids));
  }

 private:
  at::Tensor PackedAttention(MultiHeadSelfAttentionImpl& attention, const at::Tensor& x,
                             const std::vector<int64_t>& lengths) {
    const int64_t heads = attention.num_heads, head_dim = attention.head_dim;
    auto q = Linear(*attention.q_lin, x) / std::sqrt(static_cast<double>(head_dim));
    auto k = Linear(*attention.k_lin, x);
    auto v = Linear(*attention.v_lin, x);
    auto context = torch::empty_like(q);
    int64_t offset = 0;
    for (int64_t length : lengths) {
      auto split_heads = [&](const torch::Tensor& t) {
        return t.narrow(0, offset, length).view({length, heads, head_dim}).transpose(0, 1);
      };
      auto weights = torch::softmax(
          torch::matmul(split_heads(q), split_heads(k).transpose(-1, -2)), -1);
      split_heads(context).copy_(torch::matmul(weights, split_heads(v)));
      offset += length;
    }
    return Linear(*attention.out_lin, context);
  }

  // `linear`(x), with its int8 weights once QuantizeLinearsToInt8() packed them.
  at::Tensor Linear(LoraLinearImpl& linear, const at::Tensor& x) {
    auto packed = int8_.find(&linear);
    if (packed == int8_.end()) return linear.forward(x);
    return packed->second->apply_dynamic(x.contiguous(), /*reduce_range=*/false);
  }

 public:
  absl::Status QuantizeLinearsToInt8() override {
    if (!LoraAdapterTensors(*this).empty()) {
      return absl::FailedPreconditionError(
          "int8 linear layers need a model without LoRA adapters (load the merged export)");
    }
    // oneDNN is the engine whose int8 GEMM beats float32 on x86 (QNNPACK, the other one
    // Debian's LibTorch has, runs 2–4× slower than float32 there). The engine is chosen at
    // packing time; the packed weights keep it.
    const auto& engines = at::globalContext().supportedQEngines();
    if (std::find(engines.begin(), engines.end(), at::QEngine::ONEDNN) == engines.end()) {
      return absl::FailedPreconditionError("this LibTorch has no oneDNN quantized engine");
    }
    at::globalContext().setQEngine(at::QEngine::ONEDNN);
    auto prepack = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("quantized::linear_prepack", "")
                       .typed<c10::intrusive_ptr<LinearPackedParamsBase>(
                           at::Tensor, c10::optional<at::Tensor>)>();
    torch::NoGradGuard no_grad;
    auto pack = [&](LoraLinear& linear) {
      const at::Tensor weight = linear->weight.detach().contiguous();
      // Symmetric per output channel: each row's largest |w| maps to 127.
      const at::Tensor scales =
          (weight.abs().amax(1).clamp_min(1e-12) / 127.0).to(torch::kDouble);
      const at::Tensor zero_points = torch::zeros({weight.size(0)}, torch::kLong);
      const at::Tensor quantized =
          at::quantize_per_channel(weight, scales, zero_points, 0, at::kQInt8);
      int8_[linear.get()] = prepack.call(quantized, linear->bias.detach().contiguous());
    };
    for (const auto& module : *net_->distilbert->transformer->layer) {
      auto& block = *module->as<TransformerBlock>();
      pack(block.attention->q_lin);
      pack(block.attention->k_lin);
      pack(block.attention->v_lin);
      pack(block.attention->out_lin);
      pack(block.ffn->lin1);
      pack(block.ffn->lin2);
    }
    return absl::OkStatus();
  }

 private:
  std::unordered_map<const LoraLinearImpl*, c10::intrusive_ptr<LinearPackedParamsBase>>
      int8_;

  at::Tensor Head(const at::Tensor& first_token) {
    auto reward = net_->classifier(torch::relu(net_->pre_classifier(first_token)));
    return reward.squeeze(-1).to(torch::kFloat32);
  }
};

}  // namespace

std::unique_ptr<RewardModel> NewDistilBertRewardModel(const ModelConfig& config) {
  return std::make_unique<DistilBertRewardModel>(config);
}

}  // namespace verdict
