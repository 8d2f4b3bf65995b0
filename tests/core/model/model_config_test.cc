#include "core/model/model_config.h"

#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"

namespace verdict {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::verdict::testing::TestDataPath;
using Json = nlohmann::json;

void ExpectSameArchitecture(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.family, b.family);
  EXPECT_EQ(a.model_type, b.model_type);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.hidden_size, b.hidden_size);
  EXPECT_EQ(a.num_layers, b.num_layers);
  EXPECT_EQ(a.num_heads, b.num_heads);
  EXPECT_EQ(a.num_kv_heads, b.num_kv_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.intermediate_size, b.intermediate_size);
  EXPECT_EQ(a.max_position_embeddings, b.max_position_embeddings);
  EXPECT_EQ(a.norm_eps, b.norm_eps);
  EXPECT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_EQ(a.initializer_range, b.initializer_range);
  EXPECT_EQ(a.hidden_act, b.hidden_act);
  EXPECT_EQ(a.pad_token_id, b.pad_token_id);
  EXPECT_EQ(a.bos_token_id, b.bos_token_id);
  EXPECT_EQ(a.eos_token_id, b.eos_token_id);
  EXPECT_EQ(a.tie_word_embeddings, b.tie_word_embeddings);
  EXPECT_EQ(a.sinusoidal_pos_embds, b.sinusoidal_pos_embds);
  EXPECT_EQ(a.rope_scaling.type, b.rope_scaling.type);
  EXPECT_EQ(a.rope_scaling.factor, b.rope_scaling.factor);
  EXPECT_EQ(a.rope_scaling.low_freq_factor, b.rope_scaling.low_freq_factor);
  EXPECT_EQ(a.rope_scaling.high_freq_factor, b.rope_scaling.high_freq_factor);
  EXPECT_EQ(a.rope_scaling.original_max_position_embeddings,
            b.rope_scaling.original_max_position_embeddings);
  EXPECT_EQ(a.qkv_bias, b.qkv_bias);
  EXPECT_EQ(a.o_bias, b.o_bias);
  EXPECT_EQ(a.mlp_bias, b.mlp_bias);
  EXPECT_EQ(a.qk_norm, b.qk_norm);
  EXPECT_EQ(a.sliding_window, b.sliding_window);
}

// The golden DistilBERT config.json with one field replaced (or removed, for null).
std::string DistilBertWith(const std::string& field, const Json& value) {
  Json json = {{"model_type", "distilbert"},
               {"vocab_size", 1000},
               {"dim", 64},
               {"n_layers", 2},
               {"n_heads", 4},
               {"hidden_dim", 256},
               {"max_position_embeddings", 128}};
  if (value.is_null()) {
    json.erase(field);
  } else {
    json[field] = value;
  }
  return json.dump();
}

std::string LlamaWith(const std::string& field, const Json& value) {
  Json json = {{"model_type", "llama"},    {"vocab_size", 1000},
               {"hidden_size", 64},        {"num_hidden_layers", 2},
               {"num_attention_heads", 4}, {"num_key_value_heads", 2},
               {"intermediate_size", 172}, {"max_position_embeddings", 128}};
  json[field] = value;
  return json.dump();
}

void ExpectError(const std::string& text, absl::StatusCode code, const std::string& fragment) {
  absl::StatusOr<ModelConfig> config = ParseModelConfig(text);
  ASSERT_FALSE(config.ok()) << "accepted " << text;
  EXPECT_EQ(config.status().code(), code) << config.status();
  EXPECT_THAT(std::string(config.status().message()), HasSubstr(fragment));
}

TEST(ModelConfigTest, ParsesGoldenDistilBertConfig) {
  absl::StatusOr<ModelConfig> c = LoadModelConfig(TestDataPath("golden/distilbert/config.json"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->family, ModelFamily::kEncoder);
  EXPECT_EQ(c->model_type, "distilbert");
  EXPECT_THAT(c->architectures, ElementsAre("DistilBertForSequenceClassification"));
  EXPECT_EQ(c->vocab_size, 1000);
  EXPECT_EQ(c->hidden_size, 64);
  EXPECT_EQ(c->num_layers, 2);
  EXPECT_EQ(c->num_heads, 4);
  EXPECT_EQ(c->num_kv_heads, 4);
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_EQ(c->intermediate_size, 256);
  EXPECT_EQ(c->max_position_embeddings, 128);
  EXPECT_EQ(c->norm_eps, 1e-12);
  EXPECT_EQ(c->hidden_act, "gelu");
  EXPECT_EQ(c->pad_token_id, 0);
  EXPECT_EQ(c->initializer_range, 0.02);
  EXPECT_FALSE(c->sinusoidal_pos_embds);
}

TEST(ModelConfigTest, ParsesGoldenLlamaConfig) {
  absl::StatusOr<ModelConfig> c = LoadModelConfig(TestDataPath("golden/llama/config.json"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->family, ModelFamily::kDecoder);
  EXPECT_THAT(c->architectures, ElementsAre("LlamaForSequenceClassification"));
  EXPECT_EQ(c->vocab_size, 1000);
  EXPECT_EQ(c->hidden_size, 64);
  EXPECT_EQ(c->num_layers, 2);
  EXPECT_EQ(c->num_heads, 4);
  EXPECT_EQ(c->num_kv_heads, 2);
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_EQ(c->intermediate_size, 172);
  EXPECT_EQ(c->max_position_embeddings, 128);
  EXPECT_EQ(c->norm_eps, 1e-6);
  EXPECT_EQ(c->rope_theta, 10000.0);
  EXPECT_EQ(c->hidden_act, "silu");
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->pad_token_id, 0);
  // Absent from the file: LlamaConfig's defaults.
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_EQ(c->eos_token_id, 2);
}

TEST(ModelConfigTest, ParsesStories260KCausalLlamaConfig) {
  absl::StatusOr<ModelConfig> c =
      LoadModelConfig(TestDataPath("models/stories260K-hf/config.json"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->family, ModelFamily::kDecoder);
  EXPECT_THAT(c->architectures, ElementsAre("LlamaForCausalLM"));
  EXPECT_EQ(c->vocab_size, 512);
  EXPECT_EQ(c->hidden_size, 64);
  EXPECT_EQ(c->num_layers, 5);
  EXPECT_EQ(c->num_heads, 8);
  EXPECT_EQ(c->num_kv_heads, 4);
  EXPECT_EQ(c->head_dim, 8);
  EXPECT_EQ(c->intermediate_size, 172);
  EXPECT_EQ(c->max_position_embeddings, 512);
  EXPECT_EQ(c->norm_eps, 1e-5);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_EQ(c->eos_token_id, 2);
  EXPECT_EQ(c->pad_token_id, -1);  // no pad_token_id in the file
}

TEST(ModelConfigTest, DefaultsLlamaKeyValueHeadsAndHeadDimFromTheQueryHeads) {
  Json json = Json::parse(LlamaWith("rope_theta", 500000));
  json.erase("num_key_value_heads");
  absl::StatusOr<ModelConfig> c = ParseModelConfig(json.dump());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_kv_heads, 4);
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_EQ(c->rope_theta, 500000.0);  // an integer is a fine number
  EXPECT_EQ(c->pad_token_id, -1);
}

TEST(ModelConfigTest, ReadsNullPadAndListEosTokenIds) {
  Json json = Json::parse(LlamaWith("pad_token_id", nullptr));
  json["eos_token_id"] = {128001, 128009};
  json["vocab_size"] = 128256;
  absl::StatusOr<ModelConfig> c = ParseModelConfig(json.dump());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->pad_token_id, -1);
  EXPECT_EQ(c->eos_token_id, 128001);
}

TEST(ModelConfigTest, NamesAFieldOfTheWrongType) {
  ExpectError(DistilBertWith("n_heads", "4"), absl::StatusCode::kInvalidArgument,
              "config.json: field \"n_heads\" must be an integer, got string");
  ExpectError(DistilBertWith("dim", 64.5), absl::StatusCode::kInvalidArgument,
              "field \"dim\" must be an integer, got number 64.5");
  ExpectError(LlamaWith("rms_norm_eps", "1e-6"), absl::StatusCode::kInvalidArgument,
              "field \"rms_norm_eps\" must be a number, got string");
  ExpectError(LlamaWith("tie_word_embeddings", 1), absl::StatusCode::kInvalidArgument,
              "field \"tie_word_embeddings\" must be a boolean, got number 1");
  ExpectError(LlamaWith("architectures", "LlamaForCausalLM"), absl::StatusCode::kInvalidArgument,
              "field \"architectures\" must be a list of strings, got string");
}

TEST(ModelConfigTest, NamesAMissingRequiredField) {
  ExpectError(DistilBertWith("hidden_dim", nullptr), absl::StatusCode::kInvalidArgument,
              "config.json: missing required field \"hidden_dim\"");
  ExpectError(R"({"dim": 64})", absl::StatusCode::kInvalidArgument,
              "missing required field \"model_type\"");
}

TEST(ModelConfigTest, NamesAnUnknownModelType) {
  ExpectError(DistilBertWith("model_type", "bert"), absl::StatusCode::kInvalidArgument,
              "model_type \"bert\" is not supported");
}

TEST(ModelConfigTest, RejectsTextThatIsNotAJsonObject) {
  ExpectError("{\"model_type\": ", absl::StatusCode::kInvalidArgument,
              "config.json: not valid JSON");
  ExpectError("[]", absl::StatusCode::kInvalidArgument, "must be a JSON object, got array");
}

TEST(ModelConfigTest, NamesSizesThatDoNotDivide) {
  ExpectError(DistilBertWith("n_heads", 5), absl::StatusCode::kInvalidArgument,
              "\"dim\" (64) is not divisible by \"n_heads\" (5)");
  ExpectError(LlamaWith("num_key_value_heads", 3), absl::StatusCode::kInvalidArgument,
              "\"num_attention_heads\" (4) is not divisible by \"num_key_value_heads\" (3)");
  ExpectError(LlamaWith("num_attention_heads", 5), absl::StatusCode::kInvalidArgument,
              "\"hidden_size\" (64) is not divisible by \"num_attention_heads\" (5)");
  ExpectError(DistilBertWith("n_layers", 0), absl::StatusCode::kInvalidArgument,
              "field \"n_layers\" must be positive, got 0");
  ExpectError(DistilBertWith("pad_token_id", 1000), absl::StatusCode::kInvalidArgument,
              "field \"pad_token_id\" (1000) is outside the vocabulary");
  ExpectError(LlamaWith("head_dim", 15), absl::StatusCode::kInvalidArgument,
              "field \"head_dim\" must be positive and even");
}

TEST(ModelConfigTest, AcceptsAnExplicitHeadDimThatDoesNotDivideTheHiddenSize) {
  Json json = Json::parse(LlamaWith("num_attention_heads", 6));
  json["num_key_value_heads"] = 3;
  json["head_dim"] = 32;
  absl::StatusOr<ModelConfig> c = ParseModelConfig(json.dump());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 32);
}

TEST(ModelConfigTest, RefusesHuggingFaceFeaturesThisProjectDoesNotImplement) {
  ExpectError(DistilBertWith("sinusoidal_pos_embds", true), absl::StatusCode::kUnimplemented,
              "\"sinusoidal_pos_embds\"");
  ExpectError(DistilBertWith("activation", "relu"), absl::StatusCode::kUnimplemented,
              "field \"activation\" is \"relu\"");
  ExpectError(LlamaWith("rope_scaling", {{"rope_type", "dynamic"}, {"factor", 2.0}}),
              absl::StatusCode::kUnimplemented,
              "config.json: field \"rope_scaling\": rope type \"dynamic\" is not implemented");
  ExpectError(LlamaWith("rope_scaling", {{"type", "yarn"}, {"factor", 4.0}}),
              absl::StatusCode::kUnimplemented, "rope type \"yarn\"");
  ExpectError(LlamaWith("hidden_act", "gelu"), absl::StatusCode::kUnimplemented,
              "field \"hidden_act\" is \"gelu\"");
  Json qwen = Json::parse(LlamaWith("model_type", "qwen2"));
  qwen["use_sliding_window"] = true;
  ExpectError(qwen.dump(), absl::StatusCode::kUnimplemented, "\"use_sliding_window\" is true");
  qwen["use_sliding_window"] = false;
  qwen["model_type"] = "qwen3";
  qwen["layer_types"] = {"full_attention", "sliding_attention"};
  ExpectError(qwen.dump(), absl::StatusCode::kUnimplemented,
              "\"layer_types\" has \"sliding_attention\"");
}

TEST(ModelConfigTest, RejectsMalformedRopeScaling) {
  ExpectError(LlamaWith("rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}}),
              absl::StatusCode::kInvalidArgument,
              "field \"rope_scaling\": missing required field \"low_freq_factor\"");
  ExpectError(LlamaWith("rope_scaling", {{"rope_type", "linear"}}),
              absl::StatusCode::kInvalidArgument, "missing required field \"factor\"");
  ExpectError(LlamaWith("rope_scaling", {{"rope_type", "llama3"},
                                         {"factor", 8.0},
                                         {"low_freq_factor", 4.0},
                                         {"high_freq_factor", 1.0},
                                         {"original_max_position_embeddings", 64}}),
              absl::StatusCode::kInvalidArgument, "0 < \"low_freq_factor\" < \"high_freq_factor\"");
  ExpectError(LlamaWith("rope_scaling", "llama3"), absl::StatusCode::kInvalidArgument,
              "must be an object, got string");
  Json mistral = Json::parse(LlamaWith("model_type", "mistral"));
  mistral["sliding_window"] = 0;
  ExpectError(mistral.dump(), absl::StatusCode::kInvalidArgument,
              "\"sliding_window\" must be positive or null");
}

TEST(ModelConfigTest, ParsesGoldenLlama3Qwen2AndQwen3Configs) {
  absl::StatusOr<ModelConfig> llama3 = LoadModelConfig(TestDataPath("golden/llama3/config.json"));
  ASSERT_TRUE(llama3.ok()) << llama3.status();
  EXPECT_EQ(llama3->family, ModelFamily::kDecoder);
  EXPECT_EQ(llama3->rope_scaling.type, "llama3");
  EXPECT_EQ(llama3->rope_scaling.factor, 8.0);
  EXPECT_EQ(llama3->rope_scaling.low_freq_factor, 1.0);
  EXPECT_EQ(llama3->rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(llama3->rope_scaling.original_max_position_embeddings, 64);
  EXPECT_EQ(llama3->rope_theta, 500000.0);
  EXPECT_FALSE(llama3->qkv_bias || llama3->o_bias || llama3->mlp_bias || llama3->qk_norm);

  absl::StatusOr<ModelConfig> qwen2 = LoadModelConfig(TestDataPath("golden/qwen2/config.json"));
  ASSERT_TRUE(qwen2.ok()) << qwen2.status();
  EXPECT_EQ(qwen2->model_type, "qwen2");
  EXPECT_EQ(qwen2->head_dim, 16);  // hidden / heads: no head_dim in the file
  EXPECT_TRUE(qwen2->qkv_bias);
  EXPECT_FALSE(qwen2->o_bias);
  EXPECT_FALSE(qwen2->qk_norm);
  EXPECT_EQ(qwen2->sliding_window, -1);
  EXPECT_EQ(qwen2->rope_scaling.type, "");
  EXPECT_EQ(qwen2->bos_token_id, -1);

  absl::StatusOr<ModelConfig> qwen3 = LoadModelConfig(TestDataPath("golden/qwen3/config.json"));
  ASSERT_TRUE(qwen3.ok()) << qwen3.status();
  EXPECT_EQ(qwen3->head_dim, 24);
  EXPECT_TRUE(qwen3->qk_norm);
  EXPECT_FALSE(qwen3->qkv_bias || qwen3->o_bias);
  EXPECT_THAT(qwen3->architectures, ElementsAre("Qwen3ForSequenceClassification"));
}

TEST(ModelConfigTest, ReadsDecoderSwitchesPerModelType) {
  Json llama = Json::parse(LlamaWith("attention_bias", true));
  llama["mlp_bias"] = true;
  llama["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};  // the legacy key
  absl::StatusOr<ModelConfig> c = ParseModelConfig(llama.dump());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->qkv_bias && c->o_bias && c->mlp_bias);
  EXPECT_EQ(c->rope_scaling.type, "linear");
  EXPECT_EQ(c->rope_scaling.factor, 2.0);

  // Mistral has no bias keys; its window is kept.
  Json mistral = Json::parse(LlamaWith("model_type", "mistral"));
  mistral["sliding_window"] = 4096;
  c = ParseModelConfig(mistral.dump());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->sliding_window, 4096);
  EXPECT_EQ(c->bos_token_id, 1);

  // Qwen3Config's head_dim default is 128, not hidden / heads; a window that is off is fine.
  Json qwen3 = Json::parse(LlamaWith("model_type", "qwen3"));
  qwen3["use_sliding_window"] = false;
  qwen3["sliding_window"] = 4096;
  c = ParseModelConfig(qwen3.dump());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->sliding_window, -1);

  // transformers 5: one rope_parameters object.
  Json v5 = Json::parse(LlamaWith("rope_parameters", {{"rope_type", "llama3"},
                                                       {"rope_theta", 500000.0},
                                                       {"factor", 32.0},
                                                       {"low_freq_factor", 1.0},
                                                       {"high_freq_factor", 4.0},
                                                       {"original_max_position_embeddings", 8192}}));
  c = ParseModelConfig(v5.dump());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_theta, 500000.0);
  EXPECT_EQ(c->rope_scaling.type, "llama3");
  EXPECT_EQ(c->rope_scaling.factor, 32.0);
  EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 8192);
}

TEST(ModelConfigTest, LoadNamesTheFile) {
  absl::StatusOr<ModelConfig> missing = LoadModelConfig(TestDataPath("no/such/config.json"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST(ModelConfigTest, SerializesWhatParsesBackForEveryFamily) {
  for (const char* path : {"golden/distilbert/config.json", "golden/llama/config.json",
                           "golden/llama3/config.json", "golden/qwen2/config.json",
                           "golden/qwen3/config.json", "models/stories260K-hf/config.json"}) {
    SCOPED_TRACE(path);
    absl::StatusOr<ModelConfig> original = LoadModelConfig(TestDataPath(path));
    ASSERT_TRUE(original.ok()) << original.status();
    absl::StatusOr<ModelConfig> again = ParseModelConfig(SerializeModelConfig(*original));
    ASSERT_TRUE(again.ok()) << again.status();
    // A decoder without a pad id is written with 0 (see SerializeModelConfig).
    if (original->pad_token_id < 0) original->pad_token_id = 0;
    ExpectSameArchitecture(*again, *original);
    if (original->architectures[0].find("ForSequenceClassification") != std::string::npos) {
      EXPECT_EQ(again->architectures, original->architectures);
    }
  }
  // Switches no golden file sets.
  Json mistral = Json::parse(LlamaWith("model_type", "mistral"));
  mistral["sliding_window"] = 4096;
  mistral["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}};
  Json llama = Json::parse(LlamaWith("attention_bias", true));
  llama["mlp_bias"] = true;
  for (const Json& json : {mistral, llama}) {
    absl::StatusOr<ModelConfig> original = ParseModelConfig(json.dump());
    ASSERT_TRUE(original.ok()) << original.status();
    absl::StatusOr<ModelConfig> again = ParseModelConfig(SerializeModelConfig(*original));
    ASSERT_TRUE(again.ok()) << again.status();
    original->pad_token_id = 0;
    ExpectSameArchitecture(*again, *original);
  }
}

TEST(ModelConfigTest, SerializesEachDecoderTypeWithItsOwnKeys) {
  absl::StatusOr<ModelConfig> qwen2 = LoadModelConfig(TestDataPath("golden/qwen2/config.json"));
  ASSERT_TRUE(qwen2.ok()) << qwen2.status();
  Json json = Json::parse(SerializeModelConfig(*qwen2));
  EXPECT_EQ(json["architectures"], Json::array({"Qwen2ForSequenceClassification"}));
  EXPECT_EQ(json["model_type"], "qwen2");
  EXPECT_FALSE(json.contains("head_dim"));
  EXPECT_FALSE(json.contains("attention_bias"));
  EXPECT_EQ(json["use_sliding_window"], false);

  absl::StatusOr<ModelConfig> qwen3 = LoadModelConfig(TestDataPath("golden/qwen3/config.json"));
  ASSERT_TRUE(qwen3.ok()) << qwen3.status();
  json = Json::parse(SerializeModelConfig(*qwen3));
  EXPECT_EQ(json["architectures"], Json::array({"Qwen3ForSequenceClassification"}));
  EXPECT_EQ(json["head_dim"], 24);
  EXPECT_EQ(json["attention_bias"], false);

  absl::StatusOr<ModelConfig> llama3 = LoadModelConfig(TestDataPath("golden/llama3/config.json"));
  ASSERT_TRUE(llama3.ok()) << llama3.status();
  json = Json::parse(SerializeModelConfig(*llama3));
  EXPECT_EQ(json["rope_scaling"], Json::parse(R"({"rope_type": "llama3", "factor": 8.0,
      "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64})"));

  Json mistral_in = Json::parse(LlamaWith("model_type", "mistral"));
  absl::StatusOr<ModelConfig> mistral = ParseModelConfig(mistral_in.dump());
  ASSERT_TRUE(mistral.ok()) << mistral.status();
  json = Json::parse(SerializeModelConfig(*mistral));
  EXPECT_EQ(json["architectures"], Json::array({"MistralForSequenceClassification"}));
  EXPECT_TRUE(json["sliding_window"].is_null());
  EXPECT_FALSE(json.contains("mlp_bias"));
}

TEST(ModelConfigTest, SerializesTheSequenceClassificationFormWithHuggingFaceNames) {
  absl::StatusOr<ModelConfig> stories =
      LoadModelConfig(TestDataPath("models/stories260K-hf/config.json"));
  ASSERT_TRUE(stories.ok()) << stories.status();
  Json json = Json::parse(SerializeModelConfig(*stories));
  EXPECT_EQ(json["architectures"], Json::array({"LlamaForSequenceClassification"}));
  EXPECT_EQ(json["id2label"], Json({{"0", "LABEL_0"}}));
  EXPECT_EQ(json["label2id"], Json({{"LABEL_0", 0}}));
  EXPECT_EQ(json["torch_dtype"], "float32");
  EXPECT_EQ(json["num_key_value_heads"], 4);
  EXPECT_EQ(json["head_dim"], 8);
  EXPECT_EQ(json["rms_norm_eps"], 1e-5);
  // No pad id in the file: written as 0, never null, so that HF's classifier batches.
  EXPECT_EQ(json["pad_token_id"], 0);
  EXPECT_TRUE(json["rope_scaling"].is_null());
  EXPECT_EQ(json["hidden_act"], "silu");

  absl::StatusOr<ModelConfig> encoder = PresetModelConfig("encoder-tiny", 1000, 0);
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  Json distilbert = Json::parse(SerializeModelConfig(*encoder));
  EXPECT_EQ(distilbert["architectures"], Json::array({"DistilBertForSequenceClassification"}));
  EXPECT_EQ(distilbert["dim"], 64);
  EXPECT_EQ(distilbert["hidden_dim"], 256);
  EXPECT_EQ(distilbert["activation"], "gelu");
  EXPECT_EQ(distilbert["sinusoidal_pos_embds"], false);
  EXPECT_FALSE(distilbert.contains("hidden_size"));
}

TEST(ModelConfigTest, BuildsEveryPresetAndRoundTripsIt) {
  EXPECT_THAT(PresetNames(), ElementsAre("encoder-tiny", "encoder-small", "encoder-base",
                                         "decoder-tiny", "decoder-small"));
  for (const std::string& name : PresetNames()) {
    SCOPED_TRACE(name);
    absl::StatusOr<ModelConfig> c = PresetModelConfig(name, 5000, 3);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->vocab_size, 5000);
    EXPECT_EQ(c->pad_token_id, 3);
    EXPECT_EQ(c->head_dim * c->num_heads, c->hidden_size);
    absl::StatusOr<ModelConfig> again = ParseModelConfig(SerializeModelConfig(*c));
    ASSERT_TRUE(again.ok()) << again.status();
    ExpectSameArchitecture(*again, *c);
    EXPECT_EQ(again->architectures, c->architectures);
  }
}

TEST(ModelConfigTest, PresetsHaveTheDocumentedSizes) {
  absl::StatusOr<ModelConfig> base = PresetModelConfig("encoder-base", 30522, 0);
  ASSERT_TRUE(base.ok()) << base.status();
  EXPECT_EQ(base->family, ModelFamily::kEncoder);
  EXPECT_EQ(base->hidden_size, 768);
  EXPECT_EQ(base->num_layers, 6);
  EXPECT_EQ(base->num_heads, 12);
  EXPECT_EQ(base->intermediate_size, 3072);
  EXPECT_EQ(base->max_position_embeddings, 512);

  absl::StatusOr<ModelConfig> small = PresetModelConfig("decoder-small", 8000, -1);
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_EQ(small->family, ModelFamily::kDecoder);
  EXPECT_EQ(small->hidden_size, 256);
  EXPECT_EQ(small->num_layers, 4);
  EXPECT_EQ(small->num_heads, 8);
  EXPECT_EQ(small->num_kv_heads, 4);
  EXPECT_EQ(small->intermediate_size, 688);
  EXPECT_EQ(small->max_position_embeddings, 1024);
  EXPECT_EQ(small->pad_token_id, -1);

  absl::StatusOr<ModelConfig> tiny = PresetModelConfig("decoder-tiny", 8000, 0);
  ASSERT_TRUE(tiny.ok()) << tiny.status();
  EXPECT_EQ(tiny->num_kv_heads, 2);
  EXPECT_EQ(tiny->intermediate_size, 172);
}

TEST(ModelConfigTest, RejectsAnUnknownPresetListingTheKnownOnes) {
  absl::StatusOr<ModelConfig> c = PresetModelConfig("encoder-huge", 1000, 0);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("\"encoder-huge\" (presets: encoder-tiny, encoder-small, encoder-base, "
                        "decoder-tiny, decoder-small)"));
}

TEST(ModelConfigTest, RejectsAPresetWithAnImpossibleVocabulary) {
  EXPECT_EQ(PresetModelConfig("encoder-tiny", 0, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PresetModelConfig("encoder-tiny", 1000, 1000).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PresetModelConfig("encoder-tiny", 1000, -1).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace verdict
