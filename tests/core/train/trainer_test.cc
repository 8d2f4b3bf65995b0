// End-to-end tests of the Trainer on real files: learning, exact resume, the NaN guard,
// malformed data, and the model directory it writes.
#include "core/train/trainer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include <torch/torch.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

#include "core/model/model_directory.h"
#include "core/model/reward_model.h"
#include "core/tokenize/pair_encoding.h"
#include "core/model/safetensors.h"
#include "core/train/checkpoint.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"

namespace verdict {
namespace {

using ::testing::HasSubstr;
using ::verdict::testing::ScratchDir;
using ::verdict::testing::TestDataPath;

TrainingConfig SmallSyntheticRun(const ScratchDir& scratch) {
  TrainingConfig config;
  config.train_path = TestDataPath("synthetic/helpful-concise.jsonl");
  config.preset = "encoder-tiny";
  config.vocab_size = 400;
  config.eval_fraction = 0.1;
  config.batch_size = 16;
  config.learning_rate = 1e-3;
  config.warmup_ratio = 0.05;
  config.max_length = 256;
  config.truncation = TruncationPolicy::kTruncate;
  config.logging_steps = 1;
  config.run_dir = scratch.Path("run");
  config.output_dir = scratch.Path("model");
  return config;
}

TEST(TrainerTest, LearnsTheSyntheticPreferenceToHighHeldOutAccuracy) {
  ScratchDir scratch;
  TrainingConfig config = SmallSyntheticRun(scratch);
  config.num_epochs = 1;
  DataSummary summary;
  std::vector<TrainStepMetrics> steps;
  TrainerCallbacks callbacks;
  callbacks.on_start = [&](const DataSummary& s) { summary = s; };
  callbacks.on_step = [&](const TrainStepMetrics& m) { steps.push_back(m); };
  auto trainer = Trainer::Create(config, callbacks);
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  auto result = (*trainer)->Run();
  ASSERT_TRUE(result.ok()) << result.status();

  EXPECT_EQ(summary.train_pairs + summary.eval_pairs, 2000);
  EXPECT_GE(summary.eval_pairs, 150);
  EXPECT_GE(result->final_eval.accuracy, 0.95) << "eval loss " << result->final_eval.loss;
  ASSERT_FALSE(steps.empty());
  EXPECT_EQ(steps.back().step, summary.total_steps);
  EXPECT_LT(steps.back().loss, steps.front().loss);
  EXPECT_GT(steps.back().pairs_per_second, 0);
  EXPECT_GT(steps.back().tokens_per_second, 0);

  // The output is a model directory that loads and scores like the trainer's eval.
  auto model = LoadRewardModel(result->output_dir, {});
  ASSERT_TRUE(model.ok()) << model.status();
  for (const char* file : {"config.json", "model.safetensors", "tokenizer.model",
                           "tokenizer_config.json", kRewardStatsFile, "training_args.json"}) {
    EXPECT_TRUE(std::filesystem::exists(std::filesystem::path(result->output_dir) / file)) << file;
  }
  EXPECT_GT(result->reward_std, 0);
}

std::map<int64_t, double> LossesByStep(TrainingConfig config, int64_t cancel_after_step = 0) {
  std::map<int64_t, double> losses;
  std::unique_ptr<Trainer> trainer;
  TrainerCallbacks callbacks;
  callbacks.on_step = [&](const TrainStepMetrics& m) {
    losses[m.step] = m.loss;
    if (m.step == cancel_after_step) trainer->Cancel();
  };
  auto created = Trainer::Create(config, callbacks);
  EXPECT_TRUE(created.ok()) << created.status();
  trainer = std::move(created).value();
  auto result = trainer->Run();
  if (cancel_after_step > 0) {
    EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled) << result.status();
  } else {
    EXPECT_TRUE(result.ok()) << result.status();
  }
  return losses;
}

TEST(TrainerTest, ResumingFromACheckpointReproducesTheUninterruptedRun) {
  ScratchDir scratch;
  TrainingConfig config = SmallSyntheticRun(scratch);
  config.max_steps = 14;
  config.save_steps = 4;
  config.gradient_accumulation_steps = 2;
  config.lr_scheduler = LrScheduleKind::kCosine;
  config.weight_decay = 0.01;

  TrainingConfig uninterrupted = config;
  uninterrupted.run_dir = scratch.Path("run-a");
  uninterrupted.output_dir = scratch.Path("model-a");
  const auto expected = LossesByStep(uninterrupted);
  ASSERT_EQ(expected.size(), 14u);

  TrainingConfig interrupted = config;
  interrupted.run_dir = scratch.Path("run-b");
  interrupted.output_dir = scratch.Path("model-b");
  const auto first_part = LossesByStep(interrupted, /*cancel_after_step=*/6);
  EXPECT_EQ(first_part.rbegin()->first, 6);
  EXPECT_EQ(ListCheckpoints(interrupted.run_dir).back(), 6);
  const auto second_part = LossesByStep(interrupted);
  ASSERT_EQ(second_part.begin()->first, 7) << "resumed at the wrong step";
  ASSERT_EQ(second_part.rbegin()->first, 14);
  for (const auto& [step, loss] : second_part) {
    EXPECT_NEAR(loss, expected.at(step), 1e-6) << "step " << step;
  }
  // Only save_total_limit (2) checkpoints are kept.
  EXPECT_EQ(ListCheckpoints(interrupted.run_dir).size(), 2u);
}

// LoRA with gradient checkpointing: the same losses as without checkpointing; cancelled and
// resumed, the run reproduces the uninterrupted one (the checkpoints hold the adapters beside
// the merged model); the model directory is the merged model, which loads without LoRA.
TEST(TrainerTest, LoraRunsCheckpointResumeAndSaveTheMergedModel) {
  ScratchDir scratch;
  TrainingConfig config = SmallSyntheticRun(scratch);
  config.max_steps = 8;
  config.save_steps = 3;
  config.lora_rank = 4;
  config.lora_alpha = 8;
  config.gradient_checkpointing = true;

  TrainingConfig uninterrupted = config;
  uninterrupted.run_dir = scratch.Path("run-a");
  uninterrupted.output_dir = scratch.Path("model-a");
  const auto expected = LossesByStep(uninterrupted);
  ASSERT_EQ(expected.size(), 8u);
  int checkpoints = 0;
  for (const auto& entry : std::filesystem::directory_iterator(uninterrupted.run_dir)) {
    if (entry.path().filename().string().rfind("checkpoint-", 0) != 0) continue;
    ++checkpoints;
    EXPECT_TRUE(std::filesystem::exists(entry.path() / "adapter_model.safetensors")) << entry;
  }
  EXPECT_GT(checkpoints, 0);

  TrainingConfig plain = config;
  plain.gradient_checkpointing = false;
  plain.run_dir = scratch.Path("run-c");
  plain.output_dir = scratch.Path("model-c");
  for (const auto& [step, loss] : LossesByStep(plain)) {
    EXPECT_NEAR(loss, expected.at(step), 1e-6) << "step " << step;
  }

  TrainingConfig interrupted = config;
  interrupted.run_dir = scratch.Path("run-b");
  interrupted.output_dir = scratch.Path("model-b");
  LossesByStep(interrupted, /*cancel_after_step=*/4);
  const auto second_part = LossesByStep(interrupted);
  ASSERT_EQ(second_part.begin()->first, 5) << "resumed at the wrong step";
  for (const auto& [step, loss] : second_part) {
    EXPECT_NEAR(loss, expected.at(step), 1e-6) << "step " << step;
  }

  auto merged = LoadRewardModel(uninterrupted.output_dir, {});
  ASSERT_TRUE(merged.ok()) << merged.status();
  auto resumed = LoadRewardModel(interrupted.output_dir, {});
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  for (const auto& [name, tensor] : (*merged)->StateDict()) {
    EXPECT_LE((tensor - (*resumed)->StateDict().at(name)).abs().max().item<double>(), 1e-6)
        << name;
  }
}

// A run restarted on the run directory of a finished run (a crash after the final eval, before
// the caller recorded the result) neither trains nor evaluates again: the last checkpoint is
// written after the final eval and records it. Old code: it evaluated and reported it again.
TEST(TrainerTest, ARunRestartedAfterItsFinalEvalNeitherTrainsNorEvaluatesAgain) {
  ScratchDir scratch;
  TrainingConfig config = SmallSyntheticRun(scratch);
  config.max_steps = 4;
  config.max_eval_pairs = 32;
  struct Reported {
    int64_t steps = 0;
    std::vector<EvalMetrics> evals;
  };
  auto run = [&config](Reported& reported) {
    TrainerCallbacks callbacks;
    callbacks.on_step = [&](const TrainStepMetrics&) { ++reported.steps; };
    callbacks.on_eval = [&](const EvalMetrics& m) { reported.evals.push_back(m); };
    auto trainer = Trainer::Create(config, callbacks);
    EXPECT_TRUE(trainer.ok()) << trainer.status();
    return (*trainer)->Run();
  };
  Reported first, second;
  auto finished = run(first);
  ASSERT_TRUE(finished.ok()) << finished.status();
  EXPECT_EQ(first.steps, 4);
  ASSERT_EQ(first.evals.size(), 1u);
  EXPECT_EQ(ListCheckpoints(config.run_dir).back(), 4);
  std::filesystem::remove_all(config.output_dir);

  auto restarted = run(second);
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  EXPECT_EQ(second.steps, 0);
  EXPECT_TRUE(second.evals.empty());
  EXPECT_EQ(restarted->final_eval.step, 4);
  EXPECT_EQ(restarted->final_eval.pairs, first.evals[0].pairs);
  EXPECT_EQ(restarted->final_eval.loss, first.evals[0].loss);
  EXPECT_EQ(restarted->final_eval.accuracy, first.evals[0].accuracy);
  EXPECT_EQ(restarted->reward_mean, finished->reward_mean);
  EXPECT_EQ(restarted->reward_std, finished->reward_std);
  EXPECT_TRUE(LoadRewardModel(restarted->output_dir, {}).ok());

  // Once written, the model directory is not written again (it may be registered already).
  const auto written = std::filesystem::last_write_time(
      std::filesystem::path(restarted->output_dir) / "model.safetensors");
  Reported third;
  auto again = run(third);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(third.steps, 0);
  EXPECT_TRUE(third.evals.empty());
  EXPECT_EQ(std::filesystem::last_write_time(std::filesystem::path(again->output_dir) /
                                             "model.safetensors"),
            written);
}

TEST(TrainerTest, NonFiniteLossStopsTheRunAndKeepsTheLastCheckpoint) {
  // Two clean steps and their checkpoint; then the same pairs with margins that overflow
  // float32 (finite in the file, infinite in the loss), resumed from that checkpoint.
  ScratchDir scratch;
  TrainingConfig config = SmallSyntheticRun(scratch);
  config.max_steps = 2;
  config.save_steps = 1;
  auto first = Trainer::Create(config, {});
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE((*first)->Run().ok());
  ASSERT_EQ(ListCheckpoints(config.run_dir).back(), 2);

  const std::string poisoned = scratch.Path("poisoned.jsonl");
  {
    std::ifstream in(config.train_path);
    std::ofstream out(poisoned);
    std::string line;
    while (std::getline(in, line)) {
      ASSERT_EQ(line.back(), '}');
      line.pop_back();
      out << line << R"(, "margin": 1e300})" << "\n";
    }
  }
  config.train_path = poisoned;
  config.max_steps = 20;
  config.output_dir = scratch.Path("model-poisoned");
  auto trainer = Trainer::Create(config, {});
  ASSERT_TRUE(trainer.ok());
  auto result = (*trainer)->Run();
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(result.status().message(), HasSubstr("non-finite loss at step 3"));
  EXPECT_THAT(result.status().message(), HasSubstr("last checkpoint is intact"));
  EXPECT_EQ(ListCheckpoints(config.run_dir).back(), 2);
  EXPECT_FALSE(std::filesystem::exists(config.output_dir));
}

TEST(TrainerTest, MalformedLineFailsTheRunWithItsLineNumber) {
  ScratchDir scratch;
  const std::string path = scratch.Path("bad.jsonl");
  {
    std::ofstream out(path);
    out << R"({"prompt": "p", "chosen": "a", "rejected": "b"})" << "\n";
    out << R"({"prompt": "p", "chosen": 3, "rejected": "b"})" << "\n";
  }
  TrainingConfig config = SmallSyntheticRun(scratch);
  config.train_path = path;
  auto trainer = Trainer::Create(config, {});
  ASSERT_TRUE(trainer.ok());
  auto result = (*trainer)->Run();
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(result.status().message(), HasSubstr("bad.jsonl:2"));
}

TEST(TrainerTest, InvalidConfigNamesTheField) {
  ScratchDir scratch;
  TrainingConfig config = SmallSyntheticRun(scratch);
  config.learning_rate = -1;
  EXPECT_THAT(std::string(Trainer::Create(config, {}).status().message()),
              ::testing::StartsWith("learning_rate: "));
  config = SmallSyntheticRun(scratch);
  config.preset = "encoder-huge";
  EXPECT_THAT(std::string(Trainer::Create(config, {}).status().message()),
              ::testing::StartsWith("preset: "));
}

// The checkpoint's tensors after `steps` bfloat16 steps: weights and AdamW moments by name.
std::map<std::string, torch::Dtype> CheckpointDtypes(const std::string& checkpoint) {
  std::map<std::string, torch::Dtype> dtypes;
  auto weights = ReadSafetensors((std::filesystem::path(checkpoint) / "model.safetensors").string());
  EXPECT_TRUE(weights.ok()) << weights.status();
  if (weights.ok()) {
    for (const auto& [name, tensor] : *weights) dtypes[name] = tensor.scalar_type();
  }
  torch::serialize::InputArchive archive;
  archive.load_from((std::filesystem::path(checkpoint) / "optimizer.pt").string());
  torch::serialize::InputArchive state;
  archive.read("state", state);
  for (const std::string& parameter : state.keys()) {
    torch::serialize::InputArchive parameter_state;
    state.read(parameter, parameter_state);
    for (const char* moment : {"exp_avg", "exp_avg_sq"}) {
      c10::IValue value;
      parameter_state.read(moment, value);
      dtypes[absl::StrCat("optimizer ", parameter, " ", moment)] = value.toTensor().scalar_type();
    }
  }
  return dtypes;
}

TEST(TrainerTest, Bfloat16TrainsUnderAutocastWithFloat32WeightsAndOptimizerState) {
  ScratchDir scratch;
  TrainingConfig config = SmallSyntheticRun(scratch);
  config.max_steps = 2;
  config.save_steps = 1;
  TrainingConfig float32 = config;
  float32.run_dir = scratch.Path("run-float32");
  float32.output_dir = scratch.Path("model-float32");
  config.dtype = Dtype::kBFloat16;

  const auto bf16_losses = LossesByStep(config);
  const auto float32_losses = LossesByStep(float32);
  ASSERT_EQ(bf16_losses.size(), 2u);
  // Same data, same initial weights: only the compute precision differs.
  EXPECT_NE(bf16_losses.at(1), float32_losses.at(1));
  EXPECT_NEAR(bf16_losses.at(1), float32_losses.at(1), 0.05);

  ASSERT_EQ(ListCheckpoints(config.run_dir).back(), 2);
  std::string newest;  // names sort by step
  for (const auto& entry : std::filesystem::directory_iterator(config.run_dir)) {
    const std::string name = entry.path().filename().string();
    if (absl::StartsWith(name, "checkpoint-") && name > newest) newest = name;
  }
  const auto dtypes = CheckpointDtypes((std::filesystem::path(config.run_dir) / newest).string());
  int moments = 0;
  for (const auto& [name, dtype] : dtypes) {
    EXPECT_EQ(dtype, torch::kFloat32) << name;
    moments += absl::StartsWith(name, "optimizer ") ? 1 : 0;
  }
  EXPECT_GT(moments, 0);
  // The saved model is float32 and loads.
  auto model = LoadRewardModel(config.output_dir, {});
  ASSERT_TRUE(model.ok()) << model.status();
}

// A decoder trains each pair as one shared-prefix row (prefix_sharing, the default): the same
// losses, accuracies and weights as the two padded rows per pair, on hh-rlhf's multi-turn
// prompts, while the tokens it reports (those computed) drop by the prompts shared.
// center_rewards_coefficient and adam_epsilon keep Adam from amplifying float noise in
// parameters whose gradients are near zero (as DataParallelTest does).
TEST(TrainerTest, DecoderPrefixSharingTrainsAsTheUnsharedRowsDo) {
  ScratchDir scratch;
  TrainingConfig config;
  config.train_path = TestDataPath("hh-rlhf/helpful-base/test.jsonl.gz");
  config.preset = "decoder-tiny";
  config.vocab_size = 500;
  config.eval_fraction = 0.1;
  config.max_train_pairs = 48;
  config.max_eval_pairs = 16;
  config.batch_size = 8;
  config.max_steps = 5;
  config.learning_rate = 1e-3;
  config.center_rewards_coefficient = 0.01;
  config.adam_epsilon = 1e-6;
  // Long enough that few pairs are truncated: a truncated prompt loses tokens from its start,
  // by as many as its response is too long, so its two sides share little of it.
  config.max_length = 1024;
  config.truncation = TruncationPolicy::kTruncate;
  config.logging_steps = 1;
  config.save_steps = 0;
  std::map<bool, std::vector<TrainStepMetrics>> steps;
  std::map<bool, TrainingResult> results;
  std::vector<std::string> logs;
  for (const bool share : {true, false}) {
    TrainingConfig arm = config;
    arm.prefix_sharing = share;
    arm.run_dir = scratch.Path(share ? "run-shared" : "run-padded");
    arm.output_dir = scratch.Path(share ? "model-shared" : "model-padded");
    // The tokenizer the first arm trained, so that both see the same ids.
    if (!share) arm.tokenizer_path = scratch.Path("run-shared/tokenizer");
    TrainerCallbacks callbacks;
    callbacks.on_step = [&, share](const TrainStepMetrics& m) { steps[share].push_back(m); };
    callbacks.on_log = [&](const std::string& line) { logs.push_back(line); };
    auto trainer = Trainer::Create(arm, callbacks);
    ASSERT_TRUE(trainer.ok()) << trainer.status();
    auto result = (*trainer)->Run();
    ASSERT_TRUE(result.ok()) << result.status();
    results[share] = *result;
  }
  ASSERT_EQ(steps[true].size(), 5u);
  ASSERT_EQ(steps[false].size(), 5u);
  int64_t shared_tokens = 0, padded_tokens = 0;
  for (size_t i = 0; i < 5; ++i) {
    const TrainStepMetrics& shared = steps[true][i];
    const TrainStepMetrics& padded = steps[false][i];
    EXPECT_NEAR(shared.loss, padded.loss, 1e-5) << "step " << shared.step;
    EXPECT_EQ(shared.accuracy, padded.accuracy) << "step " << shared.step;
    EXPECT_NEAR(shared.margin, padded.margin, 1e-5) << "step " << shared.step;
    EXPECT_NEAR(shared.grad_norm, padded.grad_norm, 1e-4 * padded.grad_norm);
    EXPECT_EQ(shared.pairs, padded.pairs);
    // Tokens computed: the prompt once instead of twice, and no padding.
    EXPECT_LT(shared.tokens, padded.tokens) << "step " << shared.step;
    EXPECT_GT(shared.tokens, padded.tokens / 2) << "step " << shared.step;
    EXPECT_EQ(shared.padding_fraction, 0.0);
    shared_tokens += shared.tokens;
    padded_tokens += padded.tokens;
  }
  // hh-rlhf's prompts are most of each sequence (0.72 here).
  EXPECT_LT(shared_tokens, 0.85 * padded_tokens);
  EXPECT_NEAR(results[true].final_eval.loss, results[false].final_eval.loss, 1e-5);
  EXPECT_EQ(results[true].final_eval.accuracy, results[false].final_eval.accuracy);
  EXPECT_TRUE(std::any_of(logs.begin(), logs.end(), [](const std::string& line) {
    return absl::StartsWith(line, "prefix sharing: each pair trains as one row");
  }));

  auto shared_weights = ReadModelWeights(results[true].output_dir);
  auto padded_weights = ReadModelWeights(results[false].output_dir);
  ASSERT_TRUE(shared_weights.ok()) << shared_weights.status();
  ASSERT_TRUE(padded_weights.ok()) << padded_weights.status();
  ASSERT_EQ(shared_weights->size(), padded_weights->size());
  for (const auto& [name, tensor] : *padded_weights) {
    ASSERT_TRUE(shared_weights->count(name)) << name;
    const double scale = std::max(1e-3, tensor.abs().max().item<double>());
    EXPECT_LE((shared_weights->at(name) - tensor).abs().max().item<double>(), 1e-4 * scale)
        << name;
  }
}

TEST(TrainerTest, Float16TrainingIsRefusedBeforeItStarts) {
  ScratchDir scratch;
  TrainingConfig config = SmallSyntheticRun(scratch);
  config.dtype = Dtype::kFloat16;
  auto trainer = Trainer::Create(config, {});
  EXPECT_EQ(trainer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(trainer.status().message()), ::testing::StartsWith("dtype: "));
}

}  // namespace
}  // namespace verdict
