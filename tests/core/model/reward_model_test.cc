// The reward models against the golden fixtures, the real pretrained stories260K checkpoint,
// and checkpoints written by SaveRewardModel.
#include "core/model/reward_model.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <utility>

#include "core/util/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/core/model/golden_fixtures.h"
#include "tests/testing/test_paths.h"

namespace verdict {
namespace {

using ::testing::HasSubstr;
using ::verdict::testing::ScratchDir;
using ::verdict::testing::TestDataPath;
using ::verdict::testing::ReadJson;
using ::verdict::testing::ToTensor;
using ::verdict::testing::LoadOrDie;

// Copies a golden model into a scratch directory with its tensors edited by `edit` (defined
// below).
std::string WriteEditedCopy(const ScratchDir& scratch, const std::string& family,
                            const std::function<void(TensorMap&)>& edit,
                            const std::string& config_json = "");

class GoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenTest, RewardsAndHiddenStatesMatchTheReference) {
  const std::string dir = TestDataPath("golden/" + GetParam());
  auto model = LoadOrDie(dir);
  ASSERT_NE(model, nullptr);
  const nlohmann::json cases = ReadJson(dir + "/cases.json");
  const double reward_tolerance = cases["tolerance"]["reward_abs"].get<double>();
  const double norm_tolerance = cases["tolerance"]["hidden_norm_rel"].get<double>();
  torch::InferenceMode inference;
  int rows_checked = 0;
  double max_error = 0, max_error_alone = 0;
  for (const auto& batch : cases["batches"]) {
    SCOPED_TRACE(batch["name"].get<std::string>());
    auto ids = ToTensor(batch["input_ids"]);
    auto mask = ToTensor(batch["attention_mask"]);
    auto rewards = model->Forward(ids, mask);
    auto hidden = model->HiddenStates(ids, mask);
    for (int64_t row = 0; row < ids.size(0); ++row) {
      const double expected = batch["reward"][row].get<double>();
      EXPECT_NEAR(rewards[row].item<double>(), expected, reward_tolerance) << "row " << row;
      max_error = std::max(max_error, std::abs(rewards[row].item<double>() - expected));

      const int64_t length = batch["lengths"][row].get<int64_t>();
      const int64_t pooled = batch["pooled_index"][row].get<int64_t>();
      const double pooled_norm = hidden[row][pooled].norm().item<double>();
      const double valid_norm = hidden[row].slice(0, 0, length).norm().item<double>();
      const double expected_pooled = batch["pooled_hidden_norm"][row].get<double>();
      const double expected_valid = batch["valid_hidden_norm"][row].get<double>();
      EXPECT_NEAR(pooled_norm, expected_pooled, norm_tolerance * expected_pooled);
      EXPECT_NEAR(valid_norm, expected_valid, norm_tolerance * expected_valid);

      // Alone and unpadded, the row scores the same.
      auto alone = model->Forward(ids[row].slice(0, 0, length).unsqueeze(0),
                                  mask[row].slice(0, 0, length).unsqueeze(0));
      EXPECT_NEAR(alone.item<double>(), expected, reward_tolerance) << "row " << row << " alone";
      max_error_alone = std::max(max_error_alone, std::abs(alone.item<double>() - expected));
      ++rows_checked;
    }
  }
  EXPECT_GT(rows_checked, 6);
  std::cout << "[golden " << GetParam() << "] " << rows_checked
            << " rows, max |reward - expected| padded " << max_error << ", alone "
            << max_error_alone << "\n";
}

// The packed forward (scoring's, no padding): every golden batch's rows laid back to back
// score as transformers scored them padded, in their order; an architecture without one says
// so and refuses.
TEST_P(GoldenTest, PackedForwardScoresAsThePaddedReferenceWhereTheArchitectureHasOne) {
  const std::string dir = TestDataPath("golden/" + GetParam());
  auto model = LoadOrDie(dir);
  ASSERT_NE(model, nullptr);
  const nlohmann::json cases = ReadJson(dir + "/cases.json");
  torch::InferenceMode inference;
  std::vector<torch::Tensor> pieces;
  std::vector<int64_t> lengths;
  std::vector<double> expected;
  for (const auto& batch : cases["batches"]) {
    auto ids = ToTensor(batch["input_ids"]);
    for (int64_t row = 0; row < ids.size(0); ++row) {
      lengths.push_back(batch["lengths"][row].get<int64_t>());
      pieces.push_back(ids[row].slice(0, 0, lengths.back()));
      expected.push_back(batch["reward"][row].get<double>());
    }
  }
  const auto packed = torch::cat(pieces);
  if (!model->packs_sequences()) {
    EXPECT_THROW(model->ForwardPacked(packed, lengths), c10::Error);
    return;
  }
  EXPECT_EQ(GetParam(), "distilbert");
  const auto rewards = model->ForwardPacked(packed, lengths);
  ASSERT_EQ(rewards.size(0), static_cast<int64_t>(expected.size()));
  EXPECT_EQ(rewards.scalar_type(), torch::kFloat32);
  for (size_t row = 0; row < expected.size(); ++row) {
    EXPECT_NEAR(rewards[row].item<double>(), expected[row], 1e-5) << "row " << row;
  }
  // Lengths that do not add up to the ids are refused, not read past.
  lengths.back() += 1;
  EXPECT_THROW(model->ForwardPacked(packed, lengths), c10::Error);
}

TEST_P(GoldenTest, SaveThenLoadGivesBitIdenticalRewards) {
  auto model = LoadOrDie(TestDataPath("golden/" + GetParam()));
  ASSERT_NE(model, nullptr);
  ScratchDir scratch;
  ASSERT_TRUE(SaveRewardModel(*model, scratch.Path("saved")).ok());
  auto reloaded = LoadOrDie(scratch.Path("saved"));
  ASSERT_NE(reloaded, nullptr);
  torch::InferenceMode inference;
  auto ids = torch::randint(1, 1000, {3, 17}, torch::kLong);
  auto mask = torch::ones({3, 17}, torch::kLong);
  mask[1].slice(0, 9).zero_();
  EXPECT_TRUE(torch::equal(model->Forward(ids, mask), reloaded->Forward(ids, mask)));
}

TEST_P(GoldenTest, SavedConfigLoadsBackIdentically) {
  auto model = LoadOrDie(TestDataPath("golden/" + GetParam()));
  ASSERT_NE(model, nullptr);
  ScratchDir scratch;
  ASSERT_TRUE(SaveRewardModel(*model, scratch.Path("saved")).ok());
  const nlohmann::json original = ReadJson(TestDataPath("golden/" + GetParam() + "/config.json"));
  const nlohmann::json saved = ReadJson(scratch.Path("saved/config.json"));
  // The family's own keys, as the golden file (written by transformers) has them.
  for (const char* key : {"model_type", "architectures", "head_dim", "rope_scaling",
                          "attention_bias", "mlp_bias", "rope_theta", "use_sliding_window",
                          "sliding_window", "num_key_value_heads", "pad_token_id"}) {
    SCOPED_TRACE(key);
    EXPECT_EQ(saved.contains(key), original.contains(key));
    if (original.contains(key)) EXPECT_EQ(saved[key], original[key]);
  }
  auto tensors = ReadSafetensors(scratch.Path("saved/model.safetensors"));
  ASSERT_TRUE(tensors.ok()) << tensors.status();
  for (const auto& [name, tensor] : model->StateDict()) {
    ASSERT_EQ(tensors->count(name), 1u) << name;
    EXPECT_TRUE(torch::equal(tensors->at(name), tensor)) << name;
  }
  EXPECT_EQ(tensors->size(), model->StateDict().size());
}

// Every golden batch's rewards.
std::vector<torch::Tensor> GoldenRewards(RewardModel& model, const nlohmann::json& cases) {
  torch::InferenceMode inference;
  std::vector<torch::Tensor> out;
  for (const auto& batch : cases["batches"]) {
    out.push_back(model.Forward(ToTensor(batch["input_ids"]), ToTensor(batch["attention_mask"])));
  }
  return out;
}

// Hub checkpoints are mostly bf16 (some f16). Stored that way, they load into float32 exactly
// as the float32 model with its weights rounded to that dtype; run in bf16 they stay within
// the error that rounding the weights to bf16 causes.
TEST_P(GoldenTest, HalfPrecisionCheckpointsLoadAndRunInTheRequestedDtype) {
  const std::string golden = TestDataPath("golden/" + GetParam());
  const nlohmann::json cases = ReadJson(golden + "/cases.json");
  for (const auto dtype : {torch::kBFloat16, torch::kHalf}) {
    SCOPED_TRACE(c10::toString(dtype));
    ScratchDir scratch;
    auto dir = WriteEditedCopy(scratch, GetParam(), [&](TensorMap& t) {
      for (auto& [name, tensor] : t) tensor = tensor.to(dtype);
    });
    auto reference = LoadOrDie(golden);
    ASSERT_NE(reference, nullptr);
    {
      torch::NoGradGuard no_grad;
      for (auto& [name, p] : reference->StateDict()) p.copy_(p.to(dtype).to(torch::kFloat32));
    }
    const auto want = GoldenRewards(*reference, cases);

    auto as_float32 = LoadOrDie(dir);
    ASSERT_NE(as_float32, nullptr);
    EXPECT_EQ(as_float32->StateDict().begin()->second.scalar_type(), torch::kFloat32);
    const auto got = GoldenRewards(*as_float32, cases);
    for (size_t b = 0; b < want.size(); ++b) EXPECT_TRUE(torch::equal(got[b], want[b]));

    if (dtype != torch::kBFloat16) continue;
    ModelOptions bf16;
    bf16.dtype = Dtype::kBFloat16;
    auto in_bf16 = LoadOrDie(dir, bf16);
    ASSERT_NE(in_bf16, nullptr);
    EXPECT_EQ(in_bf16->StateDict().begin()->second.scalar_type(), torch::kBFloat16);
    const auto got_bf16 = GoldenRewards(*in_bf16, cases);
    // The yardstick is the float64 reference's distance from the float32 model on
    // bf16-rounded weights: what storing the checkpoint in bf16 costs by itself. Running in
    // bf16 rounds every activation to the same 8 significant bits, an error of the same kind
    // and size, so it may add a small multiple of that (measured: 0.9x to 2.6x, see the
    // output); a wrong layer (a missing bias or norm, a float32-only path) moves rewards by
    // O(1), far beyond it.
    double weight_error = 0, run_error = 0, bf16_vs_rounded = 0;
    for (size_t b = 0; b < want.size(); ++b) {
      auto expected = torch::tensor(cases["batches"][b]["reward"].get<std::vector<double>>());
      weight_error = std::max(
          weight_error, (want[b].to(torch::kDouble) - expected).abs().max().item<double>());
      run_error = std::max(
          run_error, (got_bf16[b].to(torch::kDouble) - expected).abs().max().item<double>());
      bf16_vs_rounded =
          std::max(bf16_vs_rounded, (got_bf16[b] - want[b]).abs().max().item<double>());
    }
    std::cout << "[golden " << GetParam() << "] max |reward - expected|: float32 on bf16 weights "
              << weight_error << ", bf16 run " << run_error
              << "; bf16 run vs float32 on bf16 weights " << bf16_vs_rounded << "\n";
    EXPECT_GT(weight_error, 0.0);
    EXPECT_LE(bf16_vs_rounded, 4 * weight_error);
  }
}

INSTANTIATE_TEST_SUITE_P(AllFamilies, GoldenTest,
                         ::testing::Values("distilbert", "llama", "llama3", "qwen2", "qwen3"));

// Each decoder family's causal-LM checkpoint (the golden backbone with an lm_head and no
// score) loads as a base: the same backbone, a fresh head seeded by options.seed.
class DecoderBaseTest : public ::testing::TestWithParam<std::pair<std::string, std::string>> {};

TEST_P(DecoderBaseTest, CausalLmCheckpointLoadsWithASeededFreshScoreHead) {
  const auto& [family, architecture] = GetParam();
  const std::string golden_dir = TestDataPath("golden/" + family);
  nlohmann::json config = ReadJson(golden_dir + "/config.json");
  config["architectures"] = {architecture};
  ScratchDir scratch;
  auto dir = WriteEditedCopy(
      scratch, family,
      [](TensorMap& t) {
        t.erase("score.weight");
        t["lm_head.weight"] = t.at("model.embed_tokens.weight").clone();
      },
      config.dump());
  auto base = LoadOrDie(dir);
  auto golden = LoadOrDie(golden_dir);
  ASSERT_NE(base, nullptr);
  ASSERT_NE(golden, nullptr);
  torch::InferenceMode inference;
  auto ids = torch::tensor({{5, 6, 7, 8}}, torch::kLong);
  auto mask = torch::ones_like(ids);
  EXPECT_TRUE(torch::equal(base->HiddenStates(ids, mask), golden->HiddenStates(ids, mask)));
  auto head = base->StateDict().at("score.weight");
  EXPECT_GT(head.abs().sum().item<double>(), 0.0);
  EXPECT_FALSE(torch::equal(head, golden->StateDict().at("score.weight")));
  auto again = LoadOrDie(dir);
  EXPECT_TRUE(torch::equal(head, again->StateDict().at("score.weight")));
}

INSTANTIATE_TEST_SUITE_P(
    AllDecoders, DecoderBaseTest,
    ::testing::Values(std::make_pair("llama3", "LlamaForCausalLM"),
                      std::make_pair("qwen2", "Qwen2ForCausalLM"),
                      std::make_pair("qwen3", "Qwen3ForCausalLM")));

// Hugging Face pools at the rightmost token that is not pad_token_id, so a real token that
// shares the pad id at the end of a row (Qwen's <|endoftext|> is both) is skipped, as TRL
// trains it. Padding under attention_mask 0 never counts, whatever its id.
TEST(RewardModelPoolingTest, PoolsAtTheLastTokenThatIsNotThePadId) {
  auto model = LoadOrDie(TestDataPath("golden/qwen2"));  // pad_token_id 0
  ASSERT_NE(model, nullptr);
  torch::InferenceMode inference;
  auto short_ids = torch::tensor({{5, 17, 23}}, torch::kLong);
  const double want = model->Forward(short_ids, torch::ones_like(short_ids)).item<double>();
  auto trailing_pad_ids = torch::tensor({{5, 17, 23, 0, 0}}, torch::kLong);
  EXPECT_NEAR(model->Forward(trailing_pad_ids, torch::ones_like(trailing_pad_ids)).item<double>(),
              want, 1e-5);
  auto other_padding = torch::tensor({{5, 17, 23, 999}, {5, 17, 23, 8}}, torch::kLong);
  auto mask = torch::tensor({{1, 1, 1, 0}, {1, 1, 1, 1}}, torch::kLong);
  EXPECT_NEAR(model->Forward(other_padding, mask)[0].item<double>(), want, 1e-5);
}

// Llama's attention_bias (q/k/v/o) and mlp_bias: zero biases score as the bias-free golden
// model, a non-zero one moves the reward, and a checkpoint without them names the tensor.
TEST(RewardModelBiasTest, LlamaAttentionAndMlpBiasesAreLoadedAndUsed) {
  nlohmann::json config = ReadJson(TestDataPath("golden/llama/config.json"));
  config["attention_bias"] = true;
  config["mlp_bias"] = true;
  auto add_biases = [](TensorMap& t) {
    for (int layer = 0; layer < 2; ++layer) {
      const std::string prefix = "model.layers." + std::to_string(layer) + ".";
      for (const char* name : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                               "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
                               "mlp.down_proj"}) {
        const std::string key = prefix + name;
        t[key + ".bias"] = torch::zeros({t.at(key + ".weight").size(0)});
      }
    }
  };
  ScratchDir scratch;
  auto dir = WriteEditedCopy(scratch, "llama", add_biases, config.dump());
  auto biased = LoadOrDie(dir);
  auto golden = LoadOrDie(TestDataPath("golden/llama"));
  ASSERT_NE(biased, nullptr);
  const nlohmann::json cases = ReadJson(TestDataPath("golden/llama/cases.json"));
  const auto got = GoldenRewards(*biased, cases), want = GoldenRewards(*golden, cases);
  for (size_t b = 0; b < got.size(); ++b) EXPECT_TRUE(torch::allclose(got[b], want[b]));
  {
    torch::NoGradGuard no_grad;
    biased->StateDict().at("model.layers.1.self_attn.o_proj.bias").fill_(0.5);
  }
  EXPECT_FALSE(torch::allclose(GoldenRewards(*biased, cases)[0], want[0], 1e-3, 1e-3));

  ScratchDir missing_scratch;
  auto missing = WriteEditedCopy(
      missing_scratch, "llama",
      [&](TensorMap& t) {
        add_biases(t);
        t.erase("model.layers.0.mlp.down_proj.bias");
      },
      config.dump());
  auto status = LoadRewardModel(missing, {}).status();
  EXPECT_THAT(status.message(), HasSubstr("missing tensor \"model.layers.0.mlp.down_proj.bias\""));
}

// Mistral is the Llama layout: the golden Llama relabelled scores the same; saved, it stays
// Mistral.
TEST(RewardModelMistralTest, LoadsTheLlamaLayoutAndSavesAsMistral) {
  nlohmann::json config = ReadJson(TestDataPath("golden/llama/config.json"));
  config["model_type"] = "mistral";
  config["architectures"] = {"MistralForSequenceClassification"};
  config["sliding_window"] = nullptr;
  ScratchDir scratch;
  auto dir = WriteEditedCopy(scratch, "llama", [](TensorMap&) {}, config.dump());
  auto mistral = LoadOrDie(dir);
  auto llama = LoadOrDie(TestDataPath("golden/llama"));
  ASSERT_NE(mistral, nullptr);
  const nlohmann::json cases = ReadJson(TestDataPath("golden/llama/cases.json"));
  const auto got = GoldenRewards(*mistral, cases), want = GoldenRewards(*llama, cases);
  for (size_t b = 0; b < got.size(); ++b) EXPECT_TRUE(torch::equal(got[b], want[b]));
  ASSERT_TRUE(SaveRewardModel(*mistral, scratch.Path("saved")).ok());
  const nlohmann::json saved = ReadJson(scratch.Path("saved/config.json"));
  EXPECT_EQ(saved["model_type"], "mistral");
  EXPECT_EQ(saved["architectures"], nlohmann::json::array({"MistralForSequenceClassification"}));
  auto reloaded = LoadOrDie(scratch.Path("saved"));
  ASSERT_NE(reloaded, nullptr);
  EXPECT_EQ(reloaded->config().model_type, "mistral");
}

// Mistral's sliding window: a query sees its `sliding_window` most recent keys. With one
// layer and RoPE (which sees only relative positions), the last token of a long row then
// scores as the same last `sliding_window` tokens alone.
TEST(RewardModelMistralTest, SlidingWindowLimitsAttentionToTheMostRecentKeys) {
  nlohmann::json config = ReadJson(TestDataPath("golden/llama/config.json"));
  config["model_type"] = "mistral";
  config["num_hidden_layers"] = 1;
  config["sliding_window"] = 4;
  ScratchDir scratch;
  auto dir = WriteEditedCopy(
      scratch, "llama",
      [](TensorMap& t) {
        for (auto it = t.begin(); it != t.end();) {
          it = it->first.rfind("model.layers.1.", 0) == 0 ? t.erase(it) : std::next(it);
        }
      },
      config.dump());
  auto windowed = LoadOrDie(dir);
  ASSERT_NE(windowed, nullptr);
  torch::InferenceMode inference;
  auto ids = torch::tensor({{11, 502, 33, 74, 95, 306, 17, 288, 49, 610}}, torch::kLong);
  auto last4 = ids.slice(1, 6);
  const double full = windowed->Forward(ids, torch::ones_like(ids)).item<double>();
  const double alone = windowed->Forward(last4, torch::ones_like(last4)).item<double>();
  EXPECT_NEAR(full, alone, 1e-5);
  // Without the window the early tokens count.
  config["sliding_window"] = nullptr;
  ScratchDir unwindowed_scratch;
  auto unwindowed_dir = WriteEditedCopy(
      unwindowed_scratch, "llama",
      [](TensorMap& t) {
        for (auto it = t.begin(); it != t.end();) {
          it = it->first.rfind("model.layers.1.", 0) == 0 ? t.erase(it) : std::next(it);
        }
      },
      config.dump());
  auto unwindowed = LoadOrDie(unwindowed_dir);
  ASSERT_NE(unwindowed, nullptr);
  EXPECT_GT(std::abs(unwindowed->Forward(ids, torch::ones_like(ids)).item<double>() - full), 1e-3);
  EXPECT_NEAR(unwindowed->Forward(last4, torch::ones_like(last4)).item<double>(), alone, 1e-6);
}

// A trained model's config.json always names a pad id: stories260K has none, and HF's
// classifier refuses batches of more than one row without one.
TEST(RewardModelSaveTest, SavedDecoderConfigHasAPadTokenId) {
  auto model = LoadOrDie(TestDataPath("models/stories260K-hf"));
  ASSERT_NE(model, nullptr);
  ASSERT_EQ(model->config().pad_token_id, -1);
  ScratchDir scratch;
  ASSERT_TRUE(SaveRewardModel(*model, scratch.Path("saved")).ok());
  const nlohmann::json saved = ReadJson(scratch.Path("saved/config.json"));
  ASSERT_TRUE(saved["pad_token_id"].is_number_integer()) << saved["pad_token_id"];
  EXPECT_EQ(saved["pad_token_id"], 0);  // the id the trainer pads with when there is none
  auto reloaded = LoadOrDie(scratch.Path("saved"));
  ASSERT_NE(reloaded, nullptr);
  torch::InferenceMode inference;
  auto ids = torch::tensor({{1, 40, 41, 42, 2}, {1, 50, 51, 2, 0}}, torch::kLong);
  auto mask = torch::tensor({{1, 1, 1, 1, 1}, {1, 1, 1, 1, 0}}, torch::kLong);
  EXPECT_TRUE(torch::equal(model->Forward(ids, mask), reloaded->Forward(ids, mask)));
}

// The real pretrained stories260K (a tiny Llama trained on TinyStories) loads as a base
// checkpoint: its backbone must reproduce the recorded logits through the tied lm_head.
class Stories260KTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TestDataPath("models/stories260K-hf");
    expected_ = ReadJson(dir_ + "/expected.json");
    model_ = LoadOrDie(dir_);
    ASSERT_NE(model_, nullptr);
    embedding_ = model_->StateDict().at("model.embed_tokens.weight");
  }

  torch::Tensor Logits(const std::vector<int64_t>& ids) {
    auto input = torch::tensor(ids, torch::kLong).unsqueeze(0);
    auto hidden = model_->HiddenStates(input, torch::ones_like(input));
    return torch::matmul(hidden[0], embedding_.t());
  }

  std::string dir_;
  nlohmann::json expected_;
  std::unique_ptr<RewardModel> model_;
  torch::Tensor embedding_;
};

TEST_F(Stories260KTest, BackboneReproducesRecordedLogits) {
  torch::InferenceMode inference;
  auto prompt = expected_["prompt_ids"].get<std::vector<int64_t>>();
  auto logits = Logits(prompt);
  const double tolerance = expected_["tolerance_abs"].get<double>();
  for (const char* key : {"logits_position_0", "logits_last_prompt_position"}) {
    SCOPED_TRACE(key);
    const auto& reference = expected_[key];
    const int64_t position = reference.contains("position") ? reference["position"].get<int64_t>() : 0;
    auto values = reference["values"].get<std::vector<double>>();
    auto want = torch::tensor(values, torch::kDouble);
    auto got = logits[position].to(torch::kDouble);
    EXPECT_LT((got - want).abs().max().item<double>(), tolerance);
    EXPECT_EQ(got.argmax().item<int64_t>(), reference["argmax"].get<int64_t>());
  }
}

TEST_F(Stories260KTest, GreedyDecodingGivesTheRecordedContinuation) {
  torch::InferenceMode inference;
  auto ids = expected_["prompt_ids"].get<std::vector<int64_t>>();
  const auto want = expected_["greedy"]["ids"].get<std::vector<int64_t>>();
  std::vector<int64_t> generated;
  for (size_t i = 0; i < want.size(); ++i) {
    auto logits = Logits(ids);
    const int64_t next = logits[-1].argmax().item<int64_t>();
    generated.push_back(next);
    ids.push_back(next);
  }
  EXPECT_EQ(generated, want);
}

TEST_F(Stories260KTest, BaseCheckpointGetsASeededFreshScoreHead) {
  auto head = model_->StateDict().at("score.weight");
  EXPECT_EQ(head.sizes(), (std::vector<int64_t>{1, 64}));
  EXPECT_GT(head.abs().sum().item<double>(), 0.0);
  auto again = LoadOrDie(dir_);
  EXPECT_TRUE(torch::equal(head, again->StateDict().at("score.weight")));
  ModelOptions other_seed;
  other_seed.seed = 7;
  auto different = LoadOrDie(dir_, other_seed);
  EXPECT_FALSE(torch::equal(head, different->StateDict().at("score.weight")));
  // The backbone is the checkpoint's whatever the seed.
  EXPECT_TRUE(torch::equal(model_->StateDict().at("model.norm.weight"),
                           different->StateDict().at("model.norm.weight")));
}

// Copies a golden model into a scratch directory with its tensors edited by `edit`.
std::string WriteEditedCopy(const ScratchDir& scratch, const std::string& family,
                            const std::function<void(TensorMap&)>& edit,
                            const std::string& config_json) {
  const std::string source = TestDataPath("golden/" + family);
  const std::string dir = scratch.Path(family + "-edited");
  std::filesystem::create_directories(dir);
  auto tensors = ReadSafetensors(source + "/model.safetensors");
  EXPECT_TRUE(tensors.ok()) << tensors.status();
  edit(*tensors);
  EXPECT_TRUE(WriteSafetensors(dir + "/model.safetensors", *tensors).ok());
  if (config_json.empty()) {
    std::filesystem::copy_file(source + "/config.json", dir + "/config.json");
  } else {
    EXPECT_TRUE(WriteFileAtomically(dir + "/config.json", config_json).ok());
  }
  return dir;
}

TEST(RewardModelLoadTest, MissingTensorIsNamed) {
  ScratchDir scratch;
  auto dir = WriteEditedCopy(scratch, "llama", [](TensorMap& t) {
    t.erase("model.layers.1.mlp.up_proj.weight");
  });
  auto model = LoadRewardModel(dir, {});
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(model.status().message(), HasSubstr("missing tensor \"model.layers.1.mlp.up_proj.weight\""));
}

TEST(RewardModelLoadTest, UnexpectedTensorIsNamed) {
  ScratchDir scratch;
  auto dir = WriteEditedCopy(scratch, "distilbert", [](TensorMap& t) {
    t["distilbert.transformer.layer.9.ffn.lin1.weight"] = torch::zeros({2, 2});
  });
  auto model = LoadRewardModel(dir, {});
  ASSERT_FALSE(model.ok());
  EXPECT_THAT(model.status().message(),
              HasSubstr("unexpected tensor \"distilbert.transformer.layer.9.ffn.lin1.weight\""));
}

TEST(RewardModelLoadTest, ShapeThatDisagreesWithConfigIsNamed) {
  ScratchDir scratch;
  auto dir = WriteEditedCopy(scratch, "distilbert", [](TensorMap& t) {
    t["pre_classifier.weight"] = torch::zeros({64, 32});
  });
  auto model = LoadRewardModel(dir, {});
  ASSERT_FALSE(model.ok());
  EXPECT_THAT(model.status().message(), HasSubstr("\"pre_classifier.weight\" has shape [64, 32]"));
  EXPECT_THAT(model.status().message(), HasSubstr("[64, 64]"));
}

TEST(RewardModelLoadTest, IncompleteRewardHeadIsAnError) {
  ScratchDir scratch;
  auto dir = WriteEditedCopy(scratch, "distilbert", [](TensorMap& t) { t.erase("classifier.bias"); });
  auto model = LoadRewardModel(dir, {});
  ASSERT_FALSE(model.ok());
  EXPECT_THAT(model.status().message(), HasSubstr("missing tensor \"classifier.bias\""));
}

TEST(RewardModelLoadTest, BareDistilBertBackboneLoadsWithAFreshHead) {
  ScratchDir scratch;
  auto dir = WriteEditedCopy(scratch, "distilbert", [](TensorMap& t) {
    TensorMap bare;
    for (auto& [name, tensor] : t) {
      if (name.rfind("distilbert.", 0) == 0) bare[name.substr(11)] = tensor;
    }
    bare["vocab_projector.weight"] = torch::zeros({1000, 64});  // a masked-LM head: ignored
    t = bare;
  });
  auto base = LoadOrDie(dir);
  auto golden = LoadOrDie(TestDataPath("golden/distilbert"));
  ASSERT_NE(base, nullptr);
  torch::InferenceMode inference;
  auto ids = torch::tensor({{5, 6, 7}}, torch::kLong);
  auto mask = torch::ones_like(ids);
  EXPECT_TRUE(torch::allclose(base->HiddenStates(ids, mask), golden->HiddenStates(ids, mask)));
  EXPECT_FALSE(torch::equal(base->StateDict().at("classifier.weight"),
                            golden->StateDict().at("classifier.weight")));
}

TEST(RewardModelCreateTest, PresetsBuildBothFamiliesOnTheRequestedDtype) {
  for (const char* preset : {"encoder-tiny", "decoder-tiny"}) {
    SCOPED_TRACE(preset);
    auto config = PresetModelConfig(preset, 300, 0);
    ASSERT_TRUE(config.ok()) << config.status();
    ModelOptions options;
    options.dtype = Dtype::kBFloat16;
    auto model = CreateRewardModel(*config, options);
    ASSERT_TRUE(model.ok()) << model.status();
    torch::InferenceMode inference;
    auto ids = torch::randint(1, 300, {4, 12}, torch::kLong);
    auto rewards = (*model)->Forward(ids, torch::ones_like(ids));
    EXPECT_EQ(rewards.sizes(), (std::vector<int64_t>{4}));
    EXPECT_EQ(rewards.scalar_type(), torch::kFloat32);
    EXPECT_EQ((*model)->StateDict().begin()->second.scalar_type(), torch::kBFloat16);
  }
}

TEST(RewardModelCreateTest, SameSeedGivesTheSameModel) {
  auto config = PresetModelConfig("encoder-tiny", 300, 0);
  ASSERT_TRUE(config.ok());
  ModelOptions options;
  options.seed = 42;
  auto a = CreateRewardModel(*config, options), b = CreateRewardModel(*config, options);
  ASSERT_TRUE(a.ok() && b.ok());
  for (const auto& [name, tensor] : (*a)->StateDict()) {
    EXPECT_TRUE(torch::equal(tensor, (*b)->StateDict().at(name))) << name;
  }
  // The padding row of the embedding starts at zero, as in Hugging Face.
  EXPECT_EQ((*a)->StateDict().at("distilbert.embeddings.word_embeddings.weight")[0].abs().sum().item<double>(), 0.0);
}

TEST(RewardModelCreateTest, UnknownDeviceAndDtypeAreRejected) {
  auto config = PresetModelConfig("encoder-tiny", 300, 0);
  ASSERT_TRUE(config.ok());
  ModelOptions bad_device;
  bad_device.device = "tpu:0";
  EXPECT_THAT(CreateRewardModel(*config, bad_device).status().message(), HasSubstr("unknown device \"tpu:0\""));
  EXPECT_THAT(ParseDtypeName("int8").status().message(), HasSubstr("unknown dtype \"int8\""));
}

TEST(DeviceTest, NamesParseAndPrintBack) {
  for (const char* name : {"cpu", "cuda", "cuda:3"}) {
    auto device = ParseDeviceName(name);
    ASSERT_TRUE(device.ok()) << name;
    EXPECT_EQ(DeviceName(*device), name);
  }
  EXPECT_EQ(DeviceName(*ParseDeviceName("cuda:64")), "cuda:64");
  EXPECT_FALSE(ParseDeviceName("cuda:-1").ok());
  EXPECT_TRUE(CheckDeviceAvailable(*ParseDeviceName("cpu")).ok());
  // An index no machine here has is a precondition of this machine, not a malformed name.
  const absl::Status missing = CheckDeviceAvailable(*ParseDeviceName("cuda:64"));
  EXPECT_EQ(missing.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(missing.message(), HasSubstr("cuda:64"));
  EXPECT_FALSE(ParseDeviceName("gpu").ok());
  for (Dtype dtype : {Dtype::kFloat32, Dtype::kBFloat16, Dtype::kFloat16}) {
    EXPECT_EQ(*ParseDtypeName(DtypeName(dtype)), dtype);
  }
}

// LibTorch has no float16 CPU kernels: such a model would load, then fail in its first
// forward. It is refused where it is built instead.
TEST(RewardModelCreateTest, Float16OnTheCpuIsRefusedAtCreateAndLoad) {
  auto config = PresetModelConfig("encoder-tiny", 300, 0);
  ASSERT_TRUE(config.ok());
  ModelOptions options;
  options.dtype = Dtype::kFloat16;
  auto created = CreateRewardModel(*config, options);
  EXPECT_EQ(created.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(created.status().message(), HasSubstr("float16 needs a CUDA device"));
  auto loaded = LoadRewardModel(TestDataPath("golden/distilbert"), options);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RewardModelForwardTest, ForwardRewardsTurnsLibTorchErrorsIntoAStatus) {
  auto model = LoadOrDie(TestDataPath("golden/distilbert"));
  ASSERT_NE(model, nullptr);
  torch::InferenceMode inference;
  auto ids = torch::tensor({{5, 6, 7}}, torch::kLong);
  auto ok = ForwardRewards(*model, ids, torch::ones_like(ids));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->sizes(), (std::vector<int64_t>{1}));
  // A model cast to float16 by hand on the CPU: the forward throws inside LibTorch.
  model->module().to(torch::kHalf);
  auto failed = ForwardRewards(*model, ids, torch::ones_like(ids));
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kInternal) << failed.status();
}

}  // namespace
}  // namespace verdict
