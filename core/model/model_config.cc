#include "core/model/model_config.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/util/file_util.h"
#include "core/util/status_macros.h"

namespace verdict {
namespace {

using Json = nlohmann::json;

constexpr char kDistilBert[] = "distilbert";
constexpr char kLlama[] = "llama";
constexpr char kMistral[] = "mistral";
constexpr char kQwen2[] = "qwen2";
constexpr char kQwen3[] = "qwen3";
constexpr char kRopeLlama3[] = "llama3";
constexpr char kRopeLinear[] = "linear";
constexpr int64_t kQwen3DefaultHeadDim = 128;
constexpr char kDistilBertArchitecture[] = "DistilBertForSequenceClassification";
constexpr char kLlamaArchitecture[] = "LlamaForSequenceClassification";
constexpr char kMistralArchitecture[] = "MistralForSequenceClassification";
constexpr char kQwen2Architecture[] = "Qwen2ForSequenceClassification";
constexpr char kQwen3Architecture[] = "Qwen3ForSequenceClassification";
// Hugging Face fixes DistilBERT's LayerNorm epsilon in the modelling code, not in config.json.
constexpr double kDistilBertNormEps = 1e-12;
// LlamaConfig's defaults for fields a config.json may leave out.
constexpr double kLlamaDefaultRmsNormEps = 1e-6;
constexpr int64_t kLlamaDefaultBosTokenId = 1;
constexpr int64_t kLlamaDefaultEosTokenId = 2;

// The HF names of the fields that validation talks about, per family, so that an error
// names the key the user actually wrote.
struct FieldNames {
  const char* hidden;
  const char* layers;
  const char* heads;
  const char* intermediate;
};
constexpr FieldNames kDistilBertNames = {"dim", "n_layers", "n_heads", "hidden_dim"};
constexpr FieldNames kLlamaNames = {"hidden_size", "num_hidden_layers", "num_attention_heads",
                                    "intermediate_size"};

std::string Quoted(absl::string_view s) { return absl::StrCat("\"", s, "\""); }

// Typed access to the top-level fields of config.json; every error names the field.
class ConfigFields {
 public:
  ConfigFields(const Json& object, absl::string_view source) : object_(object), source_(source) {}

  absl::Status Error(absl::string_view message) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": ", message));
  }
  absl::Status Unsupported(absl::string_view message) const {
    return absl::UnimplementedError(absl::StrCat(source_, ": ", message));
  }

  bool Has(const char* name) const { return object_.contains(name); }
  bool IsNullOrAbsent(const char* name) const { return !Has(name) || object_[name].is_null(); }

  absl::StatusOr<int64_t> RequiredInt(const char* name) const {
    if (!Has(name)) return MissingError(name);
    return IntValue(name, object_[name]);
  }
  absl::StatusOr<int64_t> Int(const char* name, int64_t if_absent) const {
    if (!Has(name)) return if_absent;
    return IntValue(name, object_[name]);
  }
  // A token id: an integer, or null (-1). A list keeps its first id (Llama 3 lists several
  // end-of-sequence ids).
  absl::StatusOr<int64_t> TokenId(const char* name, int64_t if_absent) const {
    if (!Has(name)) return if_absent;
    const Json& value = object_[name];
    if (value.is_null()) return -1;
    if (value.is_array()) {
      if (value.empty()) return -1;
      return IntValue(name, value[0]);
    }
    return IntValue(name, value);
  }
  absl::StatusOr<double> Number(const char* name, double if_absent) const {
    if (!Has(name)) return if_absent;
    const Json& value = object_[name];
    if (!value.is_number()) return TypeError(name, "a number", value);
    return value.get<double>();
  }
  absl::StatusOr<bool> Bool(const char* name, bool if_absent) const {
    if (!Has(name)) return if_absent;
    const Json& value = object_[name];
    if (!value.is_boolean()) return TypeError(name, "a boolean", value);
    return value.get<bool>();
  }
  absl::StatusOr<std::string> RequiredString(const char* name) const {
    if (!Has(name)) return MissingError(name);
    return StringValue(name);
  }
  absl::StatusOr<std::string> String(const char* name, const std::string& if_absent) const {
    if (!Has(name)) return if_absent;
    return StringValue(name);
  }
  absl::StatusOr<std::vector<std::string>> StringList(const char* name) const {
    std::vector<std::string> out;
    if (IsNullOrAbsent(name)) return out;
    const Json& value = object_[name];
    if (!value.is_array()) return TypeError(name, "a list of strings", value);
    for (const Json& item : value) {
      if (!item.is_string()) return TypeError(name, "a list of strings", value);
      out.push_back(item.get<std::string>());
    }
    return out;
  }

 private:
  absl::Status MissingError(const char* name) const {
    return Error(absl::StrCat("missing required field ", Quoted(name)));
  }
  absl::Status TypeError(const char* name, absl::string_view expected, const Json& value) const {
    std::string got = value.type_name();
    // "number" alone would not say why 2.5 is no integer.
    if (value.is_number()) absl::StrAppend(&got, " ", value.dump());
    return Error(absl::StrCat("field ", Quoted(name), " must be ", expected, ", got ", got));
  }
  absl::StatusOr<int64_t> IntValue(const char* name, const Json& value) const {
    if (value.is_number_unsigned() &&
        value.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Error(absl::StrCat("field ", Quoted(name), " is too large: ", value.dump()));
    }
    if (!value.is_number_integer()) return TypeError(name, "an integer", value);
    return value.get<int64_t>();
  }
  absl::StatusOr<std::string> StringValue(const char* name) const {
    const Json& value = object_[name];
    if (!value.is_string()) return TypeError(name, "a string", value);
    return value.get<std::string>();
  }

  const Json& object_;
  absl::string_view source_;
};

// Checks that hold for a config from any source (parsed or preset).
absl::Status Validate(const ModelConfig& c, absl::string_view source) {
  auto error = [&](absl::string_view message) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", message));
  };
  const bool encoder = c.family == ModelFamily::kEncoder;
  const FieldNames& names = encoder ? kDistilBertNames : kLlamaNames;
  const std::pair<const char*, int64_t> sizes[] = {
      {"vocab_size", c.vocab_size},
      {names.hidden, c.hidden_size},
      {names.layers, c.num_layers},
      {names.heads, c.num_heads},
      {names.intermediate, c.intermediate_size},
      {"max_position_embeddings", c.max_position_embeddings},
  };
  for (const auto& [name, value] : sizes) {
    if (value <= 0) {
      return error(absl::StrCat("field ", Quoted(name), " must be positive, got ", value));
    }
  }
  if (encoder) {
    if (c.hidden_size % c.num_heads != 0) {
      return error(absl::StrCat("\"dim\" (", c.hidden_size, ") is not divisible by \"n_heads\" (",
                                c.num_heads, ")"));
    }
  } else {
    if (c.num_kv_heads <= 0) {
      return error(
          absl::StrCat("field \"num_key_value_heads\" must be positive, got ", c.num_kv_heads));
    }
    if (c.num_heads % c.num_kv_heads != 0) {
      return error(absl::StrCat("\"num_attention_heads\" (", c.num_heads,
                                ") is not divisible by \"num_key_value_heads\" (", c.num_kv_heads,
                                ")"));
    }
    if (c.head_dim <= 0 || c.head_dim % 2 != 0) {
      return error(
          absl::StrCat("field \"head_dim\" must be positive and even (rotary "
                       "embeddings rotate pairs), got ",
                       c.head_dim));
    }
  }
  if (!(c.norm_eps > 0)) {
    return error(absl::StrCat("field \"rms_norm_eps\" must be positive, got ", c.norm_eps));
  }
  if (c.pad_token_id < -1 || c.pad_token_id >= c.vocab_size) {
    return error(absl::StrCat("field \"pad_token_id\" (", c.pad_token_id,
                              ") is outside the vocabulary (vocab_size ", c.vocab_size, ")"));
  }
  return absl::OkStatus();
}

absl::Status ParseDistilBert(const ConfigFields& f, ModelConfig* c) {
  c->family = ModelFamily::kEncoder;
  ASSIGN_OR_RETURN(c->vocab_size, f.RequiredInt("vocab_size"));
  ASSIGN_OR_RETURN(c->hidden_size, f.RequiredInt("dim"));
  ASSIGN_OR_RETURN(c->num_layers, f.RequiredInt("n_layers"));
  ASSIGN_OR_RETURN(c->num_heads, f.RequiredInt("n_heads"));
  ASSIGN_OR_RETURN(c->intermediate_size, f.RequiredInt("hidden_dim"));
  ASSIGN_OR_RETURN(c->max_position_embeddings, f.RequiredInt("max_position_embeddings"));
  c->num_kv_heads = c->num_heads;
  c->head_dim = c->num_heads > 0 ? c->hidden_size / c->num_heads : 0;
  c->norm_eps = kDistilBertNormEps;
  ASSIGN_OR_RETURN(c->hidden_act, f.String("activation", "gelu"));
  if (c->hidden_act != "gelu") {
    return f.Unsupported(absl::StrCat("field \"activation\" is ", Quoted(c->hidden_act),
                                      "; only \"gelu\" is implemented"));
  }
  ASSIGN_OR_RETURN(c->sinusoidal_pos_embds, f.Bool("sinusoidal_pos_embds", false));
  if (c->sinusoidal_pos_embds) {
    return f.Unsupported(
        "field \"sinusoidal_pos_embds\" is true; only learned position embeddings are "
        "implemented");
  }
  ASSIGN_OR_RETURN(c->pad_token_id, f.TokenId("pad_token_id", 0));
  ASSIGN_OR_RETURN(c->bos_token_id, f.TokenId("bos_token_id", -1));
  ASSIGN_OR_RETURN(c->eos_token_id, f.TokenId("eos_token_id", -1));
  ASSIGN_OR_RETURN(c->initializer_range, f.Number("initializer_range", 0.02));
  // DistilBERT's masked-LM head always shares the word embeddings.
  ASSIGN_OR_RETURN(c->tie_word_embeddings, f.Bool("tie_word_embeddings", true));
  return absl::OkStatus();
}

// A rope_scaling (4.x) or rope_parameters (5.x) object. `source` names it in errors.
absl::Status ParseRopeScaling(const Json& object, const std::string& source, ModelConfig* c) {
  ConfigFields f(object, source);
  if (!object.is_object()) {
    return f.Error(absl::StrCat("must be an object, got ", object.type_name()));
  }
  // transformers reads "rope_type", falling back to the legacy "type".
  std::string type = "default";
  if (!f.IsNullOrAbsent("rope_type")) {
    ASSIGN_OR_RETURN(type, f.RequiredString("rope_type"));
  } else if (!f.IsNullOrAbsent("type")) {
    ASSIGN_OR_RETURN(type, f.RequiredString("type"));
  }
  ModelConfig::RopeScaling& r = c->rope_scaling;
  r = ModelConfig::RopeScaling{};
  if (type == "default") return absl::OkStatus();
  if (type != kRopeLlama3 && type != kRopeLinear) {
    // dynamic NTK recomputes the frequencies from the padded batch width, so a sequence's
    // reward would depend on what it is batched with; yarn, longrope, ... are not written.
    return f.Unsupported(absl::StrCat("rope type ", Quoted(type), " is not implemented (",
                                      "implemented: \"", kRopeLlama3, "\", \"", kRopeLinear,
                                      "\")"));
  }
  r.type = type;
  if (!f.Has("factor")) return f.Error("missing required field \"factor\"");
  ASSIGN_OR_RETURN(r.factor, f.Number("factor", 1.0));
  if (!(r.factor > 0)) {
    return f.Error(absl::StrCat("field \"factor\" must be positive, got ", r.factor));
  }
  if (type == kRopeLlama3) {
    for (const char* name : {"low_freq_factor", "high_freq_factor"}) {
      if (!f.Has(name)) return f.Error(absl::StrCat("missing required field ", Quoted(name)));
    }
    ASSIGN_OR_RETURN(r.low_freq_factor, f.Number("low_freq_factor", 1.0));
    ASSIGN_OR_RETURN(r.high_freq_factor, f.Number("high_freq_factor", 4.0));
    ASSIGN_OR_RETURN(r.original_max_position_embeddings,
                     f.RequiredInt("original_max_position_embeddings"));
    if (!(r.low_freq_factor > 0) || !(r.high_freq_factor > r.low_freq_factor)) {
      return f.Error(absl::StrCat("needs 0 < \"low_freq_factor\" < \"high_freq_factor\", got ",
                                  r.low_freq_factor, " and ", r.high_freq_factor));
    }
    if (r.original_max_position_embeddings <= 0) {
      return f.Error(absl::StrCat("field \"original_max_position_embeddings\" must be positive, got ",
                                  r.original_max_position_embeddings));
    }
  }
  return absl::OkStatus();
}

// Qwen2/Qwen3 sliding windows (use_sliding_window, layer_types) are refused by name; with
// use_sliding_window false, transformers ignores "sliding_window".
absl::Status RefuseQwenSlidingWindow(const ConfigFields& f) {
  ASSIGN_OR_RETURN(bool sliding, f.Bool("use_sliding_window", false));
  if (sliding) {
    return f.Unsupported(
        "field \"use_sliding_window\" is true; sliding-window attention is implemented for "
        "mistral only");
  }
  ASSIGN_OR_RETURN(std::vector<std::string> layer_types, f.StringList("layer_types"));
  for (const std::string& type : layer_types) {
    if (type != "full_attention") {
      return f.Unsupported(absl::StrCat("field \"layer_types\" has ", Quoted(type),
                                        "; only \"full_attention\" is implemented"));
    }
  }
  return absl::OkStatus();
}

// The decoder types: llama, mistral, qwen2, qwen3 (one architecture, see model_config.h).
absl::Status ParseLlama(const ConfigFields& f, const Json& json, absl::string_view source,
                        ModelConfig* c) {
  c->family = ModelFamily::kDecoder;
  const std::string& type = c->model_type;
  const bool is_qwen2 = type == kQwen2, is_qwen3 = type == kQwen3;
  const bool is_mistral = type == kMistral, is_llama = type == kLlama;
  ASSIGN_OR_RETURN(c->vocab_size, f.RequiredInt("vocab_size"));
  ASSIGN_OR_RETURN(c->hidden_size, f.RequiredInt("hidden_size"));
  ASSIGN_OR_RETURN(c->num_layers, f.RequiredInt("num_hidden_layers"));
  ASSIGN_OR_RETURN(c->num_heads, f.RequiredInt("num_attention_heads"));
  ASSIGN_OR_RETURN(c->intermediate_size, f.RequiredInt("intermediate_size"));
  ASSIGN_OR_RETURN(c->max_position_embeddings, f.RequiredInt("max_position_embeddings"));
  if (c->num_heads <= 0) {
    return f.Error(
        absl::StrCat("field \"num_attention_heads\" must be positive, got ", c->num_heads));
  }
  if (f.IsNullOrAbsent("num_key_value_heads")) {
    c->num_kv_heads = c->num_heads;
  } else {
    ASSIGN_OR_RETURN(c->num_kv_heads, f.RequiredInt("num_key_value_heads"));
  }
  if (f.IsNullOrAbsent("head_dim") && is_qwen3) {
    c->head_dim = kQwen3DefaultHeadDim;  // Qwen3Config's default, not hidden / heads
  } else if (f.IsNullOrAbsent("head_dim")) {
    if (c->hidden_size % c->num_heads != 0) {
      return f.Error(absl::StrCat("\"hidden_size\" (", c->hidden_size,
                                  ") is not divisible by \"num_attention_heads\" (", c->num_heads,
                                  ") and no \"head_dim\" is given"));
    }
    c->head_dim = c->hidden_size / c->num_heads;
  } else {
    ASSIGN_OR_RETURN(c->head_dim, f.RequiredInt("head_dim"));
  }
  ASSIGN_OR_RETURN(c->norm_eps, f.Number("rms_norm_eps", kLlamaDefaultRmsNormEps));
  // RoPE: transformers 4.x writes rope_theta + rope_scaling, 5.x one rope_parameters object.
  const bool has_parameters = !f.IsNullOrAbsent("rope_parameters");
  double theta_fallback = 10000.0;
  if (has_parameters && json["rope_parameters"].is_object() &&
      json["rope_parameters"].contains("rope_theta")) {
    ConfigFields parameters(json["rope_parameters"], source);
    ASSIGN_OR_RETURN(theta_fallback, parameters.Number("rope_theta", 10000.0));
  }
  ASSIGN_OR_RETURN(c->rope_theta, f.Number("rope_theta", theta_fallback));
  if (!f.IsNullOrAbsent("rope_scaling")) {
    RETURN_IF_ERROR(ParseRopeScaling(json["rope_scaling"],
                                     absl::StrCat(source, ": field \"rope_scaling\""), c));
  } else if (has_parameters) {
    RETURN_IF_ERROR(ParseRopeScaling(json["rope_parameters"],
                                     absl::StrCat(source, ": field \"rope_parameters\""), c));
  }
  ASSIGN_OR_RETURN(c->hidden_act, f.String("hidden_act", "silu"));
  if (c->hidden_act != "silu") {
    return f.Unsupported(absl::StrCat("field \"hidden_act\" is ", Quoted(c->hidden_act),
                                      "; only \"silu\" is implemented"));
  }
  // Biases and norms as each Hugging Face class builds them.
  if (is_llama || is_qwen3) {
    ASSIGN_OR_RETURN(bool attention_bias, f.Bool("attention_bias", false));
    c->qkv_bias = c->o_bias = attention_bias;
  }
  if (is_llama) {
    ASSIGN_OR_RETURN(c->mlp_bias, f.Bool("mlp_bias", false));
  }
  if (is_qwen2) c->qkv_bias = true;
  c->qk_norm = is_qwen3;
  if (is_qwen2 || is_qwen3) {
    RETURN_IF_ERROR(RefuseQwenSlidingWindow(f));
  }
  if (is_mistral && !f.IsNullOrAbsent("sliding_window")) {
    ASSIGN_OR_RETURN(c->sliding_window, f.RequiredInt("sliding_window"));
    if (c->sliding_window <= 0) {
      return f.Error(
          absl::StrCat("field \"sliding_window\" must be positive or null, got ", c->sliding_window));
    }
  }
  ASSIGN_OR_RETURN(c->tie_word_embeddings, f.Bool("tie_word_embeddings", false));
  ASSIGN_OR_RETURN(c->pad_token_id, f.TokenId("pad_token_id", -1));
  // LlamaConfig and MistralConfig default bos/eos to 1/2; the Qwen configs to none.
  const bool default_ids = is_llama || is_mistral;
  ASSIGN_OR_RETURN(c->bos_token_id,
                   f.TokenId("bos_token_id", default_ids ? kLlamaDefaultBosTokenId : -1));
  ASSIGN_OR_RETURN(c->eos_token_id,
                   f.TokenId("eos_token_id", default_ids ? kLlamaDefaultEosTokenId : -1));
  ASSIGN_OR_RETURN(c->initializer_range, f.Number("initializer_range", 0.02));
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> Parse(absl::string_view json_text, absl::string_view source) {
  Json json = Json::parse(json_text.begin(), json_text.end(), /*cb=*/nullptr,
                          /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid JSON"));
  }
  if (!json.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": must be a JSON object, got ", json.type_name()));
  }
  ConfigFields fields(json, source);
  ModelConfig config;
  ASSIGN_OR_RETURN(config.model_type, fields.RequiredString("model_type"));
  ASSIGN_OR_RETURN(config.architectures, fields.StringList("architectures"));
  if (config.model_type == kDistilBert) {
    RETURN_IF_ERROR(ParseDistilBert(fields, &config));
  } else if (config.model_type == kLlama || config.model_type == kMistral ||
             config.model_type == kQwen2 || config.model_type == kQwen3) {
    RETURN_IF_ERROR(ParseLlama(fields, json, source, &config));
  } else {
    return fields.Error(absl::StrCat("model_type ", Quoted(config.model_type),
                                     " is not supported (supported: \"", kDistilBert, "\", \"",
                                     kLlama, "\", \"", kMistral, "\", \"", kQwen2, "\", \"",
                                     kQwen3, "\")"));
  }
  RETURN_IF_ERROR(Validate(config, source));
  return config;
}

absl::StatusOr<ModelConfig> ParseGuarded(absl::string_view json_text, absl::string_view source) {
  try {
    return Parse(json_text, source);
  } catch (const Json::exception& e) {
    // Unreachable while every access checks types first; kept so that none escapes.
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", e.what()));
  }
}

Json TokenIdJson(int64_t id) { return id < 0 ? Json(nullptr) : Json(id); }

// The fields PretrainedConfig writes for a one-label sequence-classification head.
void AddClassificationFields(Json* json) {
  (*json)["id2label"] = {{"0", "LABEL_0"}};
  (*json)["label2id"] = {{"LABEL_0", 0}};
  (*json)["torch_dtype"] = "float32";
}

Json DistilBertJson(const ModelConfig& c) {
  Json json = {
      {"architectures", Json::array({kDistilBertArchitecture})},
      {"model_type", kDistilBert},
      {"vocab_size", c.vocab_size},
      {"dim", c.hidden_size},
      {"n_layers", c.num_layers},
      {"n_heads", c.num_heads},
      {"hidden_dim", c.intermediate_size},
      {"max_position_embeddings", c.max_position_embeddings},
      {"activation", c.hidden_act.empty() ? "gelu" : c.hidden_act},
      {"sinusoidal_pos_embds", c.sinusoidal_pos_embds},
      {"initializer_range", c.initializer_range},
      {"pad_token_id", TokenIdJson(c.pad_token_id)},
      {"tie_word_embeddings", c.tie_word_embeddings},
      // HF's defaults, so that fine-tuning the saved model in Python behaves as usual.
      {"dropout", 0.1},
      {"attention_dropout", 0.1},
      {"seq_classif_dropout", 0.2},
      {"qa_dropout", 0.1},
      {"tie_weights_", true},
  };
  if (c.bos_token_id >= 0) json["bos_token_id"] = c.bos_token_id;
  if (c.eos_token_id >= 0) json["eos_token_id"] = c.eos_token_id;
  return json;
}

Json RopeScalingJson(const ModelConfig::RopeScaling& r) {
  if (r.type.empty()) return nullptr;
  Json json = {{"rope_type", r.type}, {"factor", r.factor}};
  if (r.type == kRopeLlama3) {
    json["low_freq_factor"] = r.low_freq_factor;
    json["high_freq_factor"] = r.high_freq_factor;
    json["original_max_position_embeddings"] = r.original_max_position_embeddings;
  }
  return json;
}

// The decoder types, each with the keys its transformers config class writes.
Json LlamaJson(const ModelConfig& c) {
  const std::string& type = c.model_type.empty() ? std::string(kLlama) : c.model_type;
  const char* architecture = type == kMistral ? kMistralArchitecture
                             : type == kQwen2 ? kQwen2Architecture
                             : type == kQwen3 ? kQwen3Architecture
                                              : kLlamaArchitecture;
  Json json = {
      {"architectures", Json::array({architecture})},
      {"model_type", type},
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"num_hidden_layers", c.num_layers},
      {"num_attention_heads", c.num_heads},
      {"num_key_value_heads", c.num_kv_heads},
      {"head_dim", c.head_dim},
      {"intermediate_size", c.intermediate_size},
      {"max_position_embeddings", c.max_position_embeddings},
      {"rms_norm_eps", c.norm_eps},
      {"rope_theta", c.rope_theta},
      {"rope_scaling", RopeScalingJson(c.rope_scaling)},
      {"hidden_act", c.hidden_act.empty() ? "silu" : c.hidden_act},
      {"attention_dropout", 0.0},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"initializer_range", c.initializer_range},
      // See SerializeModelConfig: never null, so that HF's classifier batches.
      {"pad_token_id", c.pad_token_id >= 0 ? c.pad_token_id : 0},
      {"bos_token_id", TokenIdJson(c.bos_token_id)},
      {"eos_token_id", TokenIdJson(c.eos_token_id)},
      {"use_cache", true},
  };
  if (type == kLlama) {
    json["attention_bias"] = c.qkv_bias;
    json["mlp_bias"] = c.mlp_bias;
    json["pretraining_tp"] = 1;
  } else if (type == kMistral) {
    json["sliding_window"] = c.sliding_window > 0 ? Json(c.sliding_window) : Json(nullptr);
  } else {  // qwen2, qwen3
    if (type == kQwen3) json["attention_bias"] = c.qkv_bias;
    // Qwen2Config has no head_dim; its attention reads one when present.
    if (type == kQwen2 && c.head_dim * c.num_heads == c.hidden_size) json.erase("head_dim");
    json["use_sliding_window"] = false;
    json["sliding_window"] = nullptr;
    json["max_window_layers"] = c.num_layers;
    json["layer_types"] = std::vector<std::string>(c.num_layers, "full_attention");
  }
  return json;
}

struct Preset {
  const char* name;
  ModelFamily family;
  int64_t hidden_size;
  int64_t num_layers;
  int64_t num_heads;
  int64_t num_kv_heads;
  int64_t intermediate_size;
  int64_t max_position_embeddings;
};

constexpr Preset kPresets[] = {
    {"encoder-tiny", ModelFamily::kEncoder, 64, 2, 4, 4, 256, 512},
    {"encoder-small", ModelFamily::kEncoder, 256, 4, 4, 4, 1024, 512},
    {"encoder-base", ModelFamily::kEncoder, 768, 6, 12, 12, 3072, 512},
    {"decoder-tiny", ModelFamily::kDecoder, 64, 2, 4, 2, 172, 1024},
    {"decoder-small", ModelFamily::kDecoder, 256, 4, 8, 4, 688, 1024},
};

}  // namespace

absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text) {
  return ParseGuarded(json_text, "config.json");
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseGuarded(text, path);
}

std::string SerializeModelConfig(const ModelConfig& config) {
  Json json = config.family == ModelFamily::kEncoder ? DistilBertJson(config) : LlamaJson(config);
  AddClassificationFields(&json);
  // Sorted keys, two-space indent and a final newline, as save_pretrained writes them.
  return json.dump(2, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace) + "\n";
}

absl::StatusOr<ModelConfig> PresetModelConfig(absl::string_view preset, int64_t vocab_size,
                                              int64_t pad_token_id) {
  for (const Preset& p : kPresets) {
    if (preset != p.name) continue;
    ModelConfig c;
    c.family = p.family;
    c.vocab_size = vocab_size;
    c.hidden_size = p.hidden_size;
    c.num_layers = p.num_layers;
    c.num_heads = p.num_heads;
    c.num_kv_heads = p.num_kv_heads;
    c.head_dim = p.hidden_size / p.num_heads;
    c.intermediate_size = p.intermediate_size;
    c.max_position_embeddings = p.max_position_embeddings;
    c.pad_token_id = pad_token_id;
    c.initializer_range = 0.02;
    if (p.family == ModelFamily::kEncoder) {
      c.model_type = kDistilBert;
      c.architectures = {kDistilBertArchitecture};
      c.hidden_act = "gelu";
      c.norm_eps = kDistilBertNormEps;
      c.tie_word_embeddings = true;
    } else {
      c.model_type = kLlama;
      c.architectures = {kLlamaArchitecture};
      c.hidden_act = "silu";
      c.norm_eps = 1e-5;
      c.rope_theta = 10000.0;
      c.tie_word_embeddings = false;
    }
    if (p.family == ModelFamily::kEncoder && pad_token_id < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("preset ", Quoted(preset), " needs a pad token id, got ", pad_token_id));
    }
    RETURN_IF_ERROR(Validate(c, absl::StrCat("preset ", Quoted(preset))));
    return c;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown model preset ", Quoted(preset),
                                                 " (presets: ", absl::StrJoin(PresetNames(), ", "),
                                                 ")"));
}

std::vector<std::string> PresetNames() {
  std::vector<std::string> names;
  for (const Preset& p : kPresets) names.push_back(p.name);
  return names;
}

std::vector<std::string> LoraModuleNames(ModelFamily family) {
  if (family == ModelFamily::kEncoder) {
    return {"q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"};
  }
  return {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
}

int64_t MaxSequenceLength(const ModelConfig& config) {
  return config.family == ModelFamily::kEncoder ? config.max_position_embeddings : 0;
}

int64_t EffectiveMaxLength(const ModelConfig& config, int64_t requested) {
  const int64_t limit = MaxSequenceLength(config);
  if (limit <= 0) return requested;
  return requested > 0 ? std::min(requested, limit) : limit;
}

}  // namespace verdict
