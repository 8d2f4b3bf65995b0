// Gradient checkpointing (RewardModel::set_gradient_checkpointing): the same loss and the same
// gradients as the plain forward on the golden models, for the padded forward of both families
// and the decoder's shared-prefix forward, in float32 and under bfloat16 autocast; and less
// memory held between forward and backward (printed as a bench line).
#include "core/model/activation_checkpoint.h"

#include <ATen/autocast_mode.h>
#include <malloc.h>
#include <torch/torch.h>

#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "core/model/reward_model.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/core/model/golden_fixtures.h"
#include "tests/testing/test_paths.h"

#include "tests/testing/sanitizers.h"
#if VERDICT_SANITIZER_ALLOCATOR
#include <sanitizer/allocator_interface.h>
#endif

namespace verdict {
namespace {

using ::verdict::testing::TestDataPath;
using ::verdict::testing::ReadJson;
using ::verdict::testing::ToTensor;
using ::verdict::testing::LoadOrDie;

// A Bradley–Terry-like loss over every golden batch (rows paired as first half vs second
// half), its value and every parameter's gradient.
struct LossAndGradients {
  double loss = 0;
  std::map<std::string, torch::Tensor> gradients;
};

LossAndGradients LossAndGradientsOf(RewardModel& model,
                                    const std::function<torch::Tensor()>& rewards_fn) {
  model.module().train();
  model.module().zero_grad();
  torch::Tensor rewards = rewards_fn();
  const int64_t half = rewards.size(0) / 2;
  torch::Tensor loss = -torch::log_sigmoid(rewards.slice(0, 0, half) -
                                           rewards.slice(0, half, 2 * half)).sum() +
                       0.01 * rewards.pow(2).sum();
  loss.backward();
  LossAndGradients out;
  out.loss = loss.item<double>();
  for (const auto& [name, p] : model.StateDict()) {
    EXPECT_TRUE(p.grad().defined()) << name;
    if (p.grad().defined()) out.gradients[name] = p.grad().clone();
  }
  return out;
}

void ExpectSame(const LossAndGradients& plain, const LossAndGradients& checkpointed,
                double tolerance) {
  EXPECT_NEAR(plain.loss, checkpointed.loss, tolerance);
  ASSERT_EQ(plain.gradients.size(), checkpointed.gradients.size());
  for (const auto& [name, g] : plain.gradients) {
    const torch::Tensor& other = checkpointed.gradients.at(name);
    EXPECT_LE((g - other).abs().max().item<double>(), tolerance) << name;
  }
}

torch::Tensor GoldenRewards(RewardModel& model, const nlohmann::json& cases) {
  std::vector<torch::Tensor> all;
  for (const auto& batch : cases["batches"]) {
    all.push_back(model.Forward(ToTensor(batch["input_ids"]), ToTensor(batch["attention_mask"])));
  }
  return torch::cat(all);
}

class CheckpointGoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(CheckpointGoldenTest, SameLossAndGradientsAsThePlainForward) {
  const std::string dir = TestDataPath("golden/" + GetParam());
  auto model = LoadOrDie(dir);
  ASSERT_NE(model, nullptr);
  const nlohmann::json cases = ReadJson(dir + "/cases.json");
  auto rewards = [&] { return GoldenRewards(*model, cases); };
  const LossAndGradients plain = LossAndGradientsOf(*model, rewards);
  model->set_gradient_checkpointing(true);
  const LossAndGradients checkpointed = LossAndGradientsOf(*model, rewards);
  ExpectSame(plain, checkpointed, 1e-6);
  // Evaluation (no grad, eval mode) is unaffected.
  model->module().eval();
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(GoldenRewards(*model, cases), rewards()));
}

// bfloat16 autocast, as the trainer runs it: the recomputation re-enters autocast, so the
// gradients are those of the plain autocast forward.
TEST_P(CheckpointGoldenTest, SameGradientsUnderBfloat16Autocast) {
  const std::string dir = TestDataPath("golden/" + GetParam());
  auto model = LoadOrDie(dir);
  ASSERT_NE(model, nullptr);
  const nlohmann::json cases = ReadJson(dir + "/cases.json");
  auto rewards = [&] {
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::set_cpu_enabled(true);
    at::autocast::increment_nesting();
    torch::Tensor r = GoldenRewards(*model, cases).to(torch::kFloat32);
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_cpu_enabled(false);
    return r;
  };
  const LossAndGradients plain = LossAndGradientsOf(*model, rewards);
  model->set_gradient_checkpointing(true);
  const LossAndGradients checkpointed = LossAndGradientsOf(*model, rewards);
  ExpectSame(plain, checkpointed, 1e-6);
}

INSTANTIATE_TEST_SUITE_P(Families, CheckpointGoldenTest, ::testing::Values("llama", "distilbert"));

// The shared-prefix forward (decoder training with prefix sharing) checkpoints too.
TEST(CheckpointSharedPrefixTest, SameGradientsForTheSharedPrefixForward) {
  auto model = LoadOrDie(TestDataPath("golden/llama"));
  ASSERT_NE(model, nullptr);
  torch::manual_seed(3);
  const torch::Tensor ids = torch::randint(1, 1000, {5 + 3 + 4 + 6 + 2 + 2}, torch::kLong);
  const std::vector<SharedPrefixGroup> groups = {{5, {3, 4}}, {6, {2, 2}}};
  auto rewards = [&] { return model->ForwardShared(ids, groups); };
  const LossAndGradients plain = LossAndGradientsOf(*model, rewards);
  model->set_gradient_checkpointing(true);
  const LossAndGradients checkpointed = LossAndGradientsOf(*model, rewards);
  ExpectSame(plain, checkpointed, 1e-6);
}

// Frozen blocks (as with LoRA, whose base weights do not require grad) still pass gradients
// to what does: the input of the first block need not require grad.
TEST(CheckpointedForwardTest, GradientsReachParametersWhenTheInputNeedsNone) {
  torch::nn::Linear linear(4, 3);
  const torch::Tensor x = torch::randn({2, 4});
  auto block = [&](const torch::Tensor& h) { return torch::tanh(linear(h)); };
  block(x).sum().backward();
  const torch::Tensor want = linear->weight.grad().clone();
  linear->zero_grad();
  CheckpointedForward(block, x, linear->parameters()).sum().backward();
  EXPECT_TRUE(torch::allclose(linear->weight.grad(), want, 0, 1e-7));
}

// Under ASan and TSan malloc is the sanitizer's, and glibc's mallinfo2() sees none of it (it
// read 0 MiB both ways and failed this test); the runtime's own count is the same quantity.
size_t HeapBytesInUse() {
#if VERDICT_SANITIZER_ALLOCATOR
  return __sanitizer_get_current_allocated_bytes();
#else
  const struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd;
#endif
}

// Bench line (not a timed test): heap bytes held between forward and backward, i.e. what
// autograd keeps for the backward pass, on a 4-layer decoder of width 256, batch 8 x 256.
TEST(CheckpointMemoryTest, HoldsLessBetweenForwardAndBackward) {
  auto config = PresetModelConfig("decoder-small", /*vocab_size=*/1000, /*pad_token_id=*/0);
  ASSERT_TRUE(config.ok()) << config.status();
  auto model = CreateRewardModel(*config, ModelOptions{});
  ASSERT_TRUE(model.ok()) << model.status();
  RewardModel& m = **model;
  m.module().train();
  const int64_t batch = 8, seq = 256;
  const torch::Tensor ids = torch::randint(1, config->vocab_size, {batch, seq}, torch::kLong);
  const torch::Tensor mask = torch::ones({batch, seq}, torch::kLong);
  auto held = [&](bool checkpointing) {
    m.set_gradient_checkpointing(checkpointing);
    const size_t before = HeapBytesInUse();
    torch::Tensor loss = m.Forward(ids, mask).sum();
    const size_t after = HeapBytesInUse();
    loss.backward();
    m.module().zero_grad();
    return static_cast<double>(after - before);
  };
  held(false);  // warm up allocations that persist (gradient buffers)
  const double plain = held(false), checkpointed = held(true);
  std::cout << "[bench] decoder-small (" << config->num_layers << " layers, hidden "
            << config->hidden_size << "), batch " << batch << " x " << seq
            << ": held for backward " << plain / (1 << 20) << " MiB plain, "
            << checkpointed / (1 << 20) << " MiB checkpointed (" << plain / checkpointed
            << "x less)\n";
  EXPECT_LT(checkpointed, plain / 2);
}

}  // namespace
}  // namespace verdict
