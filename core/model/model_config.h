// ModelConfig: the architecture of a reward model, read from and written to a Hugging Face
// config.json.
//
// Two layouts are understood: DistilBERT ("model_type": "distilbert": dim, n_layers, n_heads,
// hidden_dim, ...) and Llama ("model_type": "llama": hidden_size, num_hidden_layers,
// num_attention_heads, num_key_value_heads, intermediate_size, rope_theta, ...). Parsing
// errors name the offending field. Plain value type; thread-compatible.
#ifndef VERDICT_CORE_MODEL_MODEL_CONFIG_H_
#define VERDICT_CORE_MODEL_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "core/tokenize/pair_encoding.h"

namespace verdict {

struct ModelConfig {
  ModelFamily family = ModelFamily::kEncoder;
  std::string model_type;                 // "distilbert" or "llama"
  std::vector<std::string> architectures;  // as found in config.json
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;        // distilbert: dim
  int64_t num_layers = 0;         // distilbert: n_layers
  int64_t num_heads = 0;          // distilbert: n_heads
  int64_t num_kv_heads = 0;       // llama: num_key_value_heads (defaults to num_heads)
  int64_t head_dim = 0;           // llama: head_dim (defaults to hidden_size / num_heads)
  int64_t intermediate_size = 0;  // distilbert: hidden_dim
  int64_t max_position_embeddings = 0;
  double norm_eps = 0;            // distilbert: 1e-12 (fixed); llama: rms_norm_eps
  double rope_theta = 10000.0;    // llama only
  double initializer_range = 0.02;
  std::string hidden_act;         // distilbert: activation ("gelu"); llama: "silu"
  int64_t pad_token_id = 0;
  int64_t bos_token_id = -1;
  int64_t eos_token_id = -1;
  bool tie_word_embeddings = false;
  bool sinusoidal_pos_embds = false;  // distilbert; only false is supported
};

// Parses config.json text. Rejects unknown model types, missing or mistyped fields, and
// sizes that do not divide (hidden_size % num_heads, num_heads % num_kv_heads).
absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text);
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path);

// config.json text for the sequence-classification (num_labels = 1) form of `config`, as
// AutoModelForSequenceClassification.from_pretrained expects it.
std::string SerializeModelConfig(const ModelConfig& config);

// Architectures for from-scratch training: "encoder-tiny", "encoder-small", "encoder-base",
// "decoder-tiny", "decoder-small". `vocab_size` comes from the tokenizer.
absl::StatusOr<ModelConfig> PresetModelConfig(absl::string_view preset, int64_t vocab_size,
                                              int64_t pad_token_id);
std::vector<std::string> PresetNames();

}  // namespace verdict

#endif  // VERDICT_CORE_MODEL_MODEL_CONFIG_H_
