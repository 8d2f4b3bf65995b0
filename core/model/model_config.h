// ModelConfig: the architecture of a reward model, read from and written to a Hugging Face
// config.json.
//
// Two layouts are understood: DistilBERT ("model_type": "distilbert": dim, n_layers, n_heads,
// hidden_dim, ...) and the Llama decoder ("model_type" "llama", "mistral", "qwen2" or "qwen3":
// hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads, head_dim,
// intermediate_size, rope_theta, rope_scaling, ...). The decoder types are one architecture
// with switches (DESIGN.md): qwen2 adds q/k/v biases, qwen3 per-head q/k RMSNorm, mistral a
// sliding attention window; llama may scale RoPE (llama3, linear) and carry biases.
//
// Parsing follows Hugging Face: the sizes that fix weight shapes (vocab_size, hidden size,
// layers, heads, intermediate size, max_position_embeddings) are required; other fields take
// the defaults of HF's DistilBertConfig / LlamaConfig when absent. Errors:
//   InvalidArgument  malformed JSON, unknown model_type, a missing or mistyped field
//                    ("config.json: field \"n_heads\" must be an integer, got string"),
//                    sizes that do not divide or ids outside the vocabulary;
//   Unimplemented    valid Hugging Face settings this project does not implement, named:
//                    sinusoidal_pos_embds; a rope_scaling type other than llama3 / linear
//                    (dynamic, yarn, longrope, ...); a Qwen sliding window
//                    (use_sliding_window true, a layer_types entry other than
//                    "full_attention"); an activation other than silu for decoders.
// Keys this project has no use for (dropouts, use_cache, torch_dtype, ...) are ignored.
//
// Plain value type; thread-compatible.
#ifndef VERDICT_CORE_MODEL_MODEL_CONFIG_H_
#define VERDICT_CORE_MODEL_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace verdict {

// Encoders (DistilBERT layout) pool the first token and have learned positions; decoders
// (Llama layout) pool the last real token and have rotary positions.
enum class ModelFamily { kEncoder, kDecoder };

struct ModelConfig {
  ModelFamily family = ModelFamily::kEncoder;
  std::string model_type;                  // "distilbert" or "llama"
  std::vector<std::string> architectures;  // as found in config.json
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;        // distilbert: dim
  int64_t num_layers = 0;         // distilbert: n_layers
  int64_t num_heads = 0;          // distilbert: n_heads
  int64_t num_kv_heads = 0;       // llama: num_key_value_heads (defaults to num_heads)
  int64_t head_dim = 0;  // decoders: head_dim (default hidden_size / num_heads; qwen3: 128)
  int64_t intermediate_size = 0;  // distilbert: hidden_dim
  int64_t max_position_embeddings = 0;
  double norm_eps = 0;          // distilbert: 1e-12 (fixed); llama: rms_norm_eps
  double rope_theta = 10000.0;  // llama only
  double initializer_range = 0.02;
  std::string hidden_act;  // distilbert: activation ("gelu"); llama: "silu"
  // -1 for null. Absent: distilbert pad 0, bos/eos -1; llama pad -1, bos 1, eos 2 (the HF
  // defaults). A Llama without a pad id pools on the attention mask; HF's
  // LlamaForSequenceClassification then cannot batch. An eos_token_id list (Llama 3 style)
  // keeps its first id.
  int64_t pad_token_id = 0;
  int64_t bos_token_id = -1;
  int64_t eos_token_id = -1;
  bool tie_word_embeddings = false;
  bool sinusoidal_pos_embds = false;  // distilbert; only false is supported

  // Decoder switches (model_type llama, mistral, qwen2, qwen3). Defaults are plain Llama 2.
  // RoPE frequency scaling ("rope_scaling" in transformers 4.x, "rope_parameters" in 5.x).
  // `type` is "" (none), "llama3" or "linear"; the other fields are those types' parameters.
  struct RopeScaling {
    std::string type;
    double factor = 1.0;
    double low_freq_factor = 1.0;                  // llama3
    double high_freq_factor = 4.0;                 // llama3
    int64_t original_max_position_embeddings = 0;  // llama3
  };
  RopeScaling rope_scaling;
  bool qkv_bias = false;   // q/k/v projections have biases (llama/qwen3 attention_bias; qwen2)
  bool o_bias = false;     // o_proj has a bias (llama/qwen3 attention_bias; never qwen2)
  bool mlp_bias = false;   // llama mlp_bias: gate/up/down projections have biases
  bool qk_norm = false;    // qwen3: RMSNorm over each head's query and key before RoPE
  // mistral: a query sees only the `sliding_window` most recent keys (itself included);
  // -1 for none.
  int64_t sliding_window = -1;
};

// Parses config.json text. Rejects unknown model types, missing or mistyped fields, and
// sizes that do not divide (hidden_size % num_heads, num_heads % num_kv_heads). Messages
// start with "config.json: ".
absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text);
// Reads and parses the file; messages start with `path`. NotFound when it does not exist.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path);

// config.json text for the sequence-classification (num_labels = 1) form of `config`, as
// AutoModelForSequenceClassification.from_pretrained expects it: HF field names of the
// family, "architectures" <Type>ForSequenceClassification for the model_type (regardless of
// `config.architectures`), id2label {"0": "LABEL_0"}, float32, HF's default dropouts, and the
// family's own keys (head_dim, rope_scaling, attention_bias, sliding_window, ...).
// ParseModelConfig of the result gives `config` back, architectures aside, with one
// exception: a decoder without a pad id (-1) is written with "pad_token_id" 0, the id the
// trainer and scorer pad with when the tokenizer has none, because Hugging Face's classifier
// refuses batches of more than one row without a pad id. (The end-of-sequence id would be
// wrong: SentencePiece pair framing ends every sequence with it, and HF pools at the last
// token that is not the pad id.)
std::string SerializeModelConfig(const ModelConfig& config);

// Architectures for from-scratch training: "encoder-tiny", "encoder-small", "encoder-base",
// "decoder-tiny", "decoder-small". `vocab_size` and `pad_token_id` come from the tokenizer
// (decoders accept -1: no pad id); set bos/eos ids from it too (they stay -1 here). An
// unknown name is InvalidArgument listing the presets.
//
//   preset          hidden  layers  heads (kv)  ffn   positions
//   encoder-tiny        64       2   4          256   512
//   encoder-small      256       4   4         1024   512
//   encoder-base       768       6  12         3072   512   (distilbert-base)
//   decoder-tiny        64       2   4 (2)      172  1024
//   decoder-small      256       4   8 (4)      688  1024
absl::StatusOr<ModelConfig> PresetModelConfig(absl::string_view preset, int64_t vocab_size,
                                              int64_t pad_token_id);
std::vector<std::string> PresetNames();

// The linear layers of a family's backbone that may take LoRA adapters (core/model/lora.h), by
// their short names: decoders q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj;
// encoders q_lin, k_lin, v_lin, out_lin, lin1, lin2.
std::vector<std::string> LoraModuleNames(ModelFamily family);

// The one max-length rule. MaxSequenceLength: the longest sequence a forward accepts:
// max_position_embeddings for encoders (learned positions end there), 0 (no limit) for
// decoders, whose rotary positions have no table. EffectiveMaxLength: the max_length that
// encoding applies for a requested one (0: none), clamped to MaxSequenceLength.
int64_t MaxSequenceLength(const ModelConfig& config);
int64_t EffectiveMaxLength(const ModelConfig& config, int64_t requested);

}  // namespace verdict

#endif  // VERDICT_CORE_MODEL_MODEL_CONFIG_H_
