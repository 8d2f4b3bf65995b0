// LoRA adapters (core/model/lora.h) on the golden models: a fresh adapter changes nothing,
// only adapters and the reward head train, and the merged export (SaveRewardModel) scores as
// the adapted model without any LoRA code.
#include "core/model/lora.h"

#include <torch/torch.h>

#include <fstream>
#include <string>
#include <vector>

#include "core/model/reward_model.h"
#include "core/model/transformer_modules.h"  // IsRewardHeadParameter
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

torch::Tensor GoldenRewards(RewardModel& model, const nlohmann::json& cases) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> all;
  for (const auto& batch : cases["batches"]) {
    all.push_back(model.Forward(ToTensor(batch["input_ids"]), ToTensor(batch["attention_mask"])));
  }
  return torch::cat(all);
}

ModelOptions WithLora(int64_t rank, std::vector<std::string> targets = {}) {
  ModelOptions options;
  options.seed = 7;
  options.lora.rank = rank;
  options.lora.alpha = 16;
  options.lora.target_modules = std::move(targets);
  return options;
}

class LoraGoldenTest : public ::testing::TestWithParam<std::string> {};

// B = 0 at the start: step 0 is the base model.
TEST_P(LoraGoldenTest, FreshAdaptersScoreAsTheBaseModel) {
  const std::string dir = TestDataPath("golden/" + GetParam());
  const nlohmann::json cases = ReadJson(dir + "/cases.json");
  auto base = LoadOrDie(dir);
  auto adapted = LoadOrDie(dir, WithLora(4));
  ASSERT_NE(base, nullptr);
  ASSERT_NE(adapted, nullptr);
  EXPECT_TRUE(torch::equal(GoldenRewards(*adapted, cases), GoldenRewards(*base, cases)));
  // Every targeted layer of every block has both matrices; StateDict keeps the checkpoint's
  // names only.
  const int64_t layers = adapted->config().num_layers;
  EXPECT_EQ(LoraAdapterTensors(*adapted).size(),
            static_cast<size_t>(2 * layers) * LoraModuleNames(adapted->config().family).size());
  EXPECT_EQ(adapted->StateDict().size(), base->StateDict().size());
}

// One AdamW step on a pairwise loss: the adapters and the head move, nothing else does.
TEST_P(LoraGoldenTest, OnlyAdaptersAndTheHeadChangeAfterAStep) {
  const std::string dir = TestDataPath("golden/" + GetParam());
  const nlohmann::json cases = ReadJson(dir + "/cases.json");
  auto model = LoadOrDie(dir, WithLora(4));
  ASSERT_NE(model, nullptr);
  std::vector<torch::Tensor> trainable;
  for (const auto& p : model->module().parameters()) {
    if (p.requires_grad()) trainable.push_back(p);
  }
  std::map<std::string, torch::Tensor> before;
  for (const auto& item : model->module().named_parameters()) {
    before[item.key()] = item.value().detach().clone();
  }
  torch::optim::AdamW optimizer(trainable, torch::optim::AdamWOptions(1e-2));
  model->module().train();
  // Two steps: A's gradient is zero while B is, so the first step moves B (and the head) only.
  for (int step = 0; step < 2; ++step) {
    optimizer.zero_grad();
    const auto& batch = cases["batches"][5];  // 6 rows of up to 48 tokens
    torch::Tensor r =
        model->Forward(ToTensor(batch["input_ids"]), ToTensor(batch["attention_mask"]));
    const int64_t half = r.size(0) / 2;
    (-torch::log_sigmoid(r.slice(0, 0, half) - r.slice(0, half, 2 * half)).sum() -
     r.sum()).backward();
    optimizer.step();
  }
  for (const auto& item : model->module().named_parameters()) {
    const std::string& name = item.key();
    const bool moved = !torch::equal(item.value(), before.at(name));
    const bool should_train =
        IsLoraParameterName(name) || IsRewardHeadParameter(model->config(), name);
    EXPECT_EQ(moved, should_train) << name;
    EXPECT_EQ(item.value().requires_grad(), should_train) << name;
  }
}

// The merged export is a plain Hugging Face directory that scores as the adapted model.
TEST_P(LoraGoldenTest, MergedExportScoresAsTheAdaptedModel) {
  const std::string dir = TestDataPath("golden/" + GetParam());
  const nlohmann::json cases = ReadJson(dir + "/cases.json");
  auto adapted = LoadOrDie(dir, WithLora(4));
  ASSERT_NE(adapted, nullptr);
  {
    // Trained-looking adapters: B no longer zero.
    torch::NoGradGuard no_grad;
    torch::manual_seed(11);
    for (auto& [name, tensor] : LoraAdapterTensors(*adapted)) {
      if (name.find(".lora_B.") != std::string::npos) tensor.normal_(0, 0.05);
    }
  }
  const torch::Tensor want = GoldenRewards(*adapted, cases);
  auto base = LoadOrDie(dir);
  ASSERT_NE(base, nullptr);
  EXPECT_GT((want - GoldenRewards(*base, cases)).abs().max().item<double>(), 1e-3)
      << "the adapters should change the rewards";
  ScratchDir scratch;
  ASSERT_TRUE(SaveRewardModel(*adapted, scratch.Path("merged")).ok());
  auto merged = LoadOrDie(scratch.Path("merged"));
  ASSERT_NE(merged, nullptr);
  EXPECT_TRUE(LoraAdapterTensors(*merged).empty());
  EXPECT_LE((GoldenRewards(*merged, cases) - want).abs().max().item<double>(), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Families, LoraGoldenTest, ::testing::Values("llama", "distilbert"));

TEST(LoraTest, TargetModulesChooseTheLayers) {
  auto model = LoadOrDie(TestDataPath("golden/llama"), WithLora(2, {"q_proj", "v_proj"}));
  ASSERT_NE(model, nullptr);
  const TensorMap adapters = LoraAdapterTensors(*model);
  EXPECT_EQ(adapters.size(), static_cast<size_t>(2 * 2 * model->config().num_layers));
  EXPECT_EQ(adapters.count("model.layers.0.self_attn.q_proj.lora_A.weight"), 1u);
  EXPECT_EQ(adapters.at("model.layers.1.self_attn.v_proj.lora_B.weight").sizes(),
            (std::vector<int64_t>{2 * 16, 2}));  // [kv heads x head_dim, rank]
  EXPECT_EQ(adapters.count("model.layers.0.self_attn.k_proj.lora_A.weight"), 0u);
}

TEST(LoraTest, ALayerTheFamilyLacksIsNamed) {
  auto model = LoadRewardModel(TestDataPath("golden/distilbert"), WithLora(2, {"q_proj"}));
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(model.status().message(), HasSubstr("lora_target_modules: \"q_proj\""));
}

TEST(LoraTest, Int8ScoringRefusesAModelWithAdapters) {
  auto model = LoadOrDie(TestDataPath("golden/distilbert"), WithLora(2));
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(model->QuantizeLinearsToInt8().code(), absl::StatusCode::kFailedPrecondition);
}

// LoRA and gradient checkpointing together: the frozen embeddings give the first block an
// input that needs no gradient, yet the adapters get theirs, equal to the plain forward's.
TEST(LoraTest, CheckpointingGivesTheAdaptersTheSameGradients) {
  const nlohmann::json cases = ReadJson(TestDataPath("golden/llama/cases.json"));
  auto model = LoadOrDie(TestDataPath("golden/llama"), WithLora(4));
  ASSERT_NE(model, nullptr);
  {
    torch::NoGradGuard no_grad;
    for (auto& [name, tensor] : LoraAdapterTensors(*model)) tensor.normal_(0, 0.05);
  }
  model->module().train();
  auto gradients = [&] {
    model->module().zero_grad();
    const auto& batch = cases["batches"][5];  // 6 rows of up to 48 tokens
    model->Forward(ToTensor(batch["input_ids"]), ToTensor(batch["attention_mask"]))
        .sum()
        .backward();
    std::map<std::string, torch::Tensor> out;
    for (const auto& [name, tensor] : LoraAdapterTensors(*model)) {
      EXPECT_TRUE(tensor.grad().defined()) << name;
      if (tensor.grad().defined()) out[name] = tensor.grad().clone();
    }
    return out;
  };
  const auto plain = gradients();
  model->set_gradient_checkpointing(true);
  const auto checkpointed = gradients();
  ASSERT_EQ(plain.size(), checkpointed.size());
  for (const auto& [name, g] : plain) {
    EXPECT_LE((g - checkpointed.at(name)).abs().max().item<double>(), 1e-6) << name;
  }
}

}  // namespace
}  // namespace verdict
