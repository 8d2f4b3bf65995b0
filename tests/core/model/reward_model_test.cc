// The reward models against the golden fixtures, the real pretrained stories260K checkpoint,
// and checkpoints written by SaveRewardModel.
#include "core/model/reward_model.h"

#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "core/util/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/test_paths.h"

namespace verdict {
namespace {

using ::testing::HasSubstr;
using ::verdict::testing::ScratchDir;
using ::verdict::testing::TestDataPath;

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

torch::Tensor ToTensor(const nlohmann::json& rows) {
  std::vector<int64_t> flat;
  for (const auto& row : rows) {
    for (const auto& v : row) flat.push_back(v.get<int64_t>());
  }
  const auto batch = static_cast<int64_t>(rows.size());
  return torch::tensor(flat, torch::kLong).view({batch, -1});
}

std::unique_ptr<RewardModel> LoadOrDie(const std::string& dir, ModelOptions options = {}) {
  auto model = LoadRewardModel(dir, options);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? std::move(model).value() : nullptr;
}

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
  for (const auto& batch : cases["batches"]) {
    SCOPED_TRACE(batch["name"].get<std::string>());
    auto ids = ToTensor(batch["input_ids"]);
    auto mask = ToTensor(batch["attention_mask"]);
    auto rewards = model->Forward(ids, mask);
    auto hidden = model->HiddenStates(ids, mask);
    for (int64_t row = 0; row < ids.size(0); ++row) {
      const double expected = batch["reward"][row].get<double>();
      EXPECT_NEAR(rewards[row].item<double>(), expected, reward_tolerance) << "row " << row;

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
      ++rows_checked;
    }
  }
  EXPECT_GT(rows_checked, 6);
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

INSTANTIATE_TEST_SUITE_P(BothFamilies, GoldenTest, ::testing::Values("distilbert", "llama"));

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
                            const std::string& config_json = "") {
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
  EXPECT_FALSE(ParseDeviceName("cuda:64").ok());
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
