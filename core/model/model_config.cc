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
constexpr char kDistilBertArchitecture[] = "DistilBertForSequenceClassification";
constexpr char kLlamaArchitecture[] = "LlamaForSequenceClassification";
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

absl::Status ParseLlama(const ConfigFields& f, ModelConfig* c) {
  c->family = ModelFamily::kDecoder;
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
  if (f.IsNullOrAbsent("head_dim")) {
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
  ASSIGN_OR_RETURN(c->rope_theta, f.Number("rope_theta", 10000.0));
  if (!f.IsNullOrAbsent("rope_scaling")) {
    return f.Unsupported("field \"rope_scaling\" is set; only unscaled RoPE is implemented");
  }
  ASSIGN_OR_RETURN(c->hidden_act, f.String("hidden_act", "silu"));
  if (c->hidden_act != "silu") {
    return f.Unsupported(absl::StrCat("field \"hidden_act\" is ", Quoted(c->hidden_act),
                                      "; only \"silu\" is implemented"));
  }
  for (const char* bias : {"attention_bias", "mlp_bias"}) {
    ASSIGN_OR_RETURN(bool has_bias, f.Bool(bias, false));
    if (has_bias) {
      return f.Unsupported(
          absl::StrCat("field ", Quoted(bias), " is true; only bias-free Llama is implemented"));
    }
  }
  ASSIGN_OR_RETURN(c->tie_word_embeddings, f.Bool("tie_word_embeddings", false));
  ASSIGN_OR_RETURN(c->pad_token_id, f.TokenId("pad_token_id", -1));
  ASSIGN_OR_RETURN(c->bos_token_id, f.TokenId("bos_token_id", kLlamaDefaultBosTokenId));
  ASSIGN_OR_RETURN(c->eos_token_id, f.TokenId("eos_token_id", kLlamaDefaultEosTokenId));
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
  } else if (config.model_type == kLlama) {
    RETURN_IF_ERROR(ParseLlama(fields, &config));
  } else {
    return fields.Error(absl::StrCat("model_type ", Quoted(config.model_type),
                                     " is not supported (supported: \"", kDistilBert, "\", \"",
                                     kLlama, "\")"));
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

Json LlamaJson(const ModelConfig& c) {
  return {
      {"architectures", Json::array({kLlamaArchitecture})},
      {"model_type", kLlama},
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
      {"rope_scaling", nullptr},
      {"hidden_act", c.hidden_act.empty() ? "silu" : c.hidden_act},
      {"attention_bias", false},
      {"attention_dropout", 0.0},
      {"mlp_bias", false},
      {"pretraining_tp", 1},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"initializer_range", c.initializer_range},
      {"pad_token_id", TokenIdJson(c.pad_token_id)},
      {"bos_token_id", TokenIdJson(c.bos_token_id)},
      {"eos_token_id", TokenIdJson(c.eos_token_id)},
      {"use_cache", true},
  };
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

PairLayout PairLayoutOf(ModelFamily family) {
  return family == ModelFamily::kEncoder ? PairLayout::kEncoder : PairLayout::kDecoder;
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
