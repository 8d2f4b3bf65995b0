// ScoringModel on a model the real Trainer has just trained (encoder-tiny, a sentencepiece
// tokenizer trained on the synthetic preference data, a separate eval file): text scored here
// gets the trainer's eval rewards exactly, settings and statistics come from the directory,
// and the defaults hold where the files are missing.
#include "core/score/scoring_model.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "core/data/preference_reader.h"
#include "core/score/dynamic_batcher.h"
#include "core/tokenize/pair_encoding.h"
#include "core/train/trainer.h"
#include "core/util/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/test_paths.h"

namespace verdict {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::verdict::testing::ScratchDir;
using ::verdict::testing::TestDataPath;

constexpr int64_t kMaxLength = 48;
constexpr int kEvalPairs = 24;

class ScoringModelTest : public ::testing::Test {
 protected:
  // Trains once for the whole suite (a few seconds): every test reads the same directory.
  static void SetUpTestSuite() {
    scratch_ = new ScratchDir();
    // The eval file: the first pairs of the synthetic data, the longest of which need
    // truncating at kMaxLength.
    std::ifstream in(TestDataPath("synthetic/helpful-concise.jsonl"));
    std::ofstream eval(scratch_->Path("eval.jsonl"));
    std::string line;
    for (int i = 0; i < kEvalPairs && std::getline(in, line); ++i) eval << line << "\n";
    eval.close();

    TrainingConfig config;
    config.train_path = TestDataPath("synthetic/helpful-concise.jsonl");
    config.eval_path = scratch_->Path("eval.jsonl");
    config.eval_fraction = 0;
    config.preset = "encoder-tiny";
    config.vocab_size = 400;
    config.batch_size = 16;
    config.learning_rate = 1e-3;
    config.max_steps = 5;
    config.max_length = kMaxLength;
    config.truncation = TruncationPolicy::kTruncate;
    config.chat_format = ChatFormat::kChatML;
    config.logging_steps = 5;
    config.run_dir = scratch_->Path("run");
    config.output_dir = scratch_->Path("model");
    auto trainer = Trainer::Create(config, {});
    ASSERT_TRUE(trainer.ok()) << trainer.status();
    auto result = (*trainer)->Run();
    ASSERT_TRUE(result.ok()) << result.status();
    result_ = new TrainingResult(*result);
    model_dir_ = new std::string(result->output_dir);
  }
  static void TearDownTestSuite() {
    delete result_;
    delete model_dir_;
    delete scratch_;
  }

  void SetUp() override {
    ASSERT_NE(model_dir_, nullptr) << "training failed";
    auto model = ScoringModel::Load(*model_dir_, ModelOptions{});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *model;
  }

  // The trained directory minus `files`, plus `extra` files (name, contents).
  std::string CopyModelDir(const ScratchDir& scratch, const std::vector<std::string>& without,
                           const std::vector<std::pair<std::string, std::string>>& extra = {}) {
    const std::string copy = scratch.Path("copy");
    fs::copy(*model_dir_, copy, fs::copy_options::recursive);
    for (const auto& file : without) fs::remove(fs::path(copy) / file);
    for (const auto& [name, contents] : extra) {
      EXPECT_TRUE(WriteFileAtomically((fs::path(copy) / name).string(), contents).ok());
    }
    return copy;
  }

  static std::vector<PreferencePair> EvalPairs() {
    auto data = ReadPreferenceFile(scratch_->Path("eval.jsonl"), PreferenceReaderOptions{});
    EXPECT_TRUE(data.ok()) << data.status();
    return data.ok() ? data->pairs : std::vector<PreferencePair>{};
  }

  static ScratchDir* scratch_;
  static TrainingResult* result_;
  static std::string* model_dir_;
  std::shared_ptr<ScoringModel> model_;
};
ScratchDir* ScoringModelTest::scratch_ = nullptr;
TrainingResult* ScoringModelTest::result_ = nullptr;
std::string* ScoringModelTest::model_dir_ = nullptr;

TEST_F(ScoringModelTest, ScoresTextExactlyAsTheTrainersEvaluationDid) {
  std::vector<std::vector<int32_t>> sequences;
  bool truncated_one = false;
  for (const PreferencePair& pair : EvalPairs()) {
    for (const std::string* response : {&pair.chosen, &pair.rejected}) {
      auto ids = model_->Encode(pair.prompt, *response);
      ASSERT_TRUE(ids.ok()) << ids.status();
      truncated_one |= static_cast<int64_t>(ids->size()) == kMaxLength;
      sequences.push_back(*std::move(ids));
    }
  }
  ASSERT_EQ(sequences.size(), 2u * kEvalPairs);
  EXPECT_TRUE(truncated_one) << "no eval text reached max_length: the truncation path is untested";

  // Through the batcher, as the server scores: one request, split over several forwards.
  DynamicBatcher::Options options;
  options.max_batch_tokens = 512;
  auto batcher = DynamicBatcher::Create(model_, options);
  ASSERT_TRUE(batcher.ok()) << batcher.status();
  absl::StatusOr<DynamicBatcher::Result> result;
  absl::Notification done;
  DynamicBatcher::Request request;
  request.sequences = sequences;
  request.done = [&](absl::StatusOr<DynamicBatcher::Result> r) {
    result = std::move(r);
    done.Notify();
  };
  ASSERT_TRUE((*batcher)->Submit(std::move(request)).ok());
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(60)));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_GT(result->batches, 1);

  // The trainer's eval reward mean / std over chosen and rejected (population std), which it
  // saved as the normalisation statistics.
  double sum = 0, sum_sq = 0;
  for (float r : result->scores) {
    sum += r;
    sum_sq += static_cast<double>(r) * r;
  }
  const double n = static_cast<double>(result->scores.size());
  const double mean = sum / n, std = std::sqrt(std::max(0.0, sum_sq / n - mean * mean));
  EXPECT_EQ(result_->final_eval.pairs, kEvalPairs);
  EXPECT_NEAR(mean, result_->final_eval.reward_mean, 1e-5);
  EXPECT_NEAR(std, result_->final_eval.reward_std, 1e-4);
  ASSERT_TRUE(model_->can_normalize());
  EXPECT_NEAR(model_->settings().reward_stats->mean, mean, 1e-5);
}

TEST_F(ScoringModelTest, LoadReadsTheSettingsStatisticsAndSizeOfATrainedModel) {
  EXPECT_EQ(model_->family(), ModelFamily::kEncoder);
  EXPECT_EQ(model_->max_length(), kMaxLength);
  EXPECT_EQ(model_->settings().truncation, TruncationPolicy::kTruncate);
  EXPECT_EQ(model_->settings().chat_format, ChatFormat::kChatML);
  EXPECT_EQ(model_->settings().input_rule, InputRule::kConcat);
  EXPECT_EQ(model_->device(), "cpu");
  ASSERT_NE(model_->tokenizer(), nullptr);
  EXPECT_EQ(model_->pad_id(), std::max<int32_t>(0, model_->tokenizer()->special_tokens().pad));

  auto stats_text = ReadFileToString((fs::path(*model_dir_) / kRewardStatsFile).string());
  ASSERT_TRUE(stats_text.ok());
  auto stats = nlohmann::json::parse(*stats_text);
  ASSERT_TRUE(model_->can_normalize());
  EXPECT_DOUBLE_EQ(model_->settings().reward_stats->mean, stats["mean"].get<double>());
  EXPECT_DOUBLE_EQ(model_->settings().reward_stats->std, stats["std"].get<double>());
  EXPECT_DOUBLE_EQ(model_->settings().reward_stats->mean, result_->reward_mean);

  auto network = LoadRewardModel(*model_dir_, ModelOptions{});
  ASSERT_TRUE(network.ok());
  int64_t parameters = 0;
  for (const auto& p : (*network)->module().parameters()) parameters += p.numel();
  EXPECT_EQ(model_->parameter_count(), parameters);
  EXPECT_GT(parameters, 10000);
}

TEST_F(ScoringModelTest, NormalisedScoresUseTheSavedStatistics) {
  auto ids = model_->Encode("\n\nHuman: What is two plus two?\n\nAssistant:", " Four.");
  ASSERT_TRUE(ids.ok()) << ids.status();
  auto raw = model_->ScoreEncoded({*ids, *ids});
  ASSERT_TRUE(raw.ok()) << raw.status();
  auto normalised = model_->Normalize(*raw);
  ASSERT_TRUE(normalised.ok()) << normalised.status();
  const RewardStats& stats = *model_->settings().reward_stats;
  ASSERT_EQ(normalised->size(), 2u);
  EXPECT_NEAR((*normalised)[0], ((*raw)[0] - stats.mean) / stats.std, 1e-6);
  EXPECT_NE((*normalised)[0], (*raw)[0]);
}

TEST_F(ScoringModelTest, EncodeIsThePairEncodingTheTrainerUses) {
  const std::string prompt = "\n\nHuman: Please name a colour that starts with b.\n\nAssistant:";
  const std::string long_response(400, 'x');
  for (const std::string& response : {std::string(" Blue."), long_response}) {
    auto ids = model_->Encode(prompt, response);
    ASSERT_TRUE(ids.ok()) << ids.status();
    // TRL's rule, the trainer's default: [CLS] prompt + response + EOS [SEP].
    auto expected = EncodePair(*model_->tokenizer(), prompt, response,
                               {PairFraming::kJoinedWithEos, kMaxLength, TruncationPolicy::kTruncate});
    ASSERT_TRUE(expected.ok());
    EXPECT_EQ(*ids, expected->ids);
    EXPECT_LE(static_cast<int64_t>(ids->size()), kMaxLength);
    EXPECT_TRUE(model_->ValidateSequence(*ids).ok());
  }
}

TEST_F(ScoringModelTest, EncodesConversationsWithTheModelsChatFormat) {
  const std::vector<ChatMessage> conversation = {{ChatRole::kUser, "Hi there"},
                                                 {ChatRole::kAssistant, "Hello!"},
                                                 {ChatRole::kUser, "What is 3+3?"},
                                                 {ChatRole::kAssistant, "Six."}};
  auto ids = model_->EncodeConversation(conversation);
  ASSERT_TRUE(ids.ok()) << ids.status();
  // ChatML, from training_args.json: the last assistant message is the response.
  auto text =
      RenderPromptAndResponse(absl::MakeConstSpan(conversation).subspan(0, 3),
                              absl::MakeConstSpan(conversation).subspan(3), ChatFormat::kChatML);
  ASSERT_TRUE(text.ok());
  EXPECT_THAT(text->prompt, HasSubstr("<|im_start|>assistant\n"));
  // ChatML writes its own special tokens: the rendering is encoded as it stands, as
  // apply_chat_template(..., tokenize=True) does, with no [CLS] / EOS added.
  auto expected = EncodePair(*model_->tokenizer(), text->prompt, text->response,
                             {PairFraming::kAsRendered, kMaxLength, TruncationPolicy::kTruncate});
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ(*ids, expected->ids);

  auto ends_with_user = model_->EncodeConversation(absl::MakeConstSpan(conversation).subspan(0, 3));
  EXPECT_EQ(ends_with_user.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ends_with_user.status().message(), HasSubstr("assistant"));
}

TEST_F(ScoringModelTest, DropPolicyRefusesTooLongTextsAsInvalidArgument) {
  auto network = LoadRewardModel(*model_dir_, ModelOptions{});
  auto tokenizer = LoadTokenizerFromDirectory(*model_dir_);
  ASSERT_TRUE(network.ok() && tokenizer.ok());
  ScoringSettings settings;
  settings.max_length = 16;
  settings.truncation = TruncationPolicy::kDrop;
  auto model = ScoringModel::Create(std::move(*network), std::move(*tokenizer), settings);
  ASSERT_TRUE(model.ok()) << model.status();
  auto too_long = (*model)->Encode("\n\nHuman: Tell me everything about bananas.\n\nAssistant:",
                                   " Bananas are yellow, long, sweet and grow in bunches.");
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_long.status().message(), HasSubstr("too long"));
  EXPECT_TRUE((*model)->Encode("Hi", " Yes.").ok());
  EXPECT_FALSE((*model)->can_normalize());
}

// float16 cannot run on the CPU: Load refuses it instead of serving a model whose every
// forward fails (or, before, whose first forward aborted the process).
TEST_F(ScoringModelTest, Float16OnTheCpuIsRefusedAtLoad) {
  ModelOptions options;
  options.dtype = Dtype::kFloat16;
  auto model = ScoringModel::Load(*model_dir_, options);
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(model.status().message(), HasSubstr("float16"));
}

TEST_F(ScoringModelTest, AForwardThatFailsInLibTorchComesBackAsAStatus) {
  auto network = LoadRewardModel(*model_dir_, ModelOptions{});
  ASSERT_TRUE(network.ok());
  (*network)->module().to(torch::kHalf);  // by hand, past Load's check
  auto model = ScoringModel::Create(std::move(*network), nullptr, ScoringSettings{});
  ASSERT_TRUE(model.ok()) << model.status();
  auto rewards = (*model)->ScoreEncoded({{2, 10, 11, 3}});
  EXPECT_EQ(rewards.status().code(), absl::StatusCode::kInternal) << rewards.status();
}

TEST_F(ScoringModelTest, DirectoryWithoutTrainingFilesGetsTheDefaults) {
  ScratchDir scratch;
  const std::string dir =
      CopyModelDir(scratch, {kEncodingFile, kTrainingArgsFile, kRewardStatsFile});
  auto model = ScoringModel::Load(dir, ModelOptions{});
  ASSERT_TRUE(model.ok()) << model.status();
  // TRL's input rule; min(512, max_position_embeddings) for an encoder; truncate; hh-rlhf.
  EXPECT_EQ((*model)->settings().input_rule, InputRule::kConcat);
  EXPECT_EQ((*model)->max_length(),
            std::min<int64_t>(512, (*model)->config().max_position_embeddings));
  EXPECT_EQ((*model)->settings().truncation, TruncationPolicy::kTruncate);
  EXPECT_EQ((*model)->settings().chat_format, ChatFormat::kHhRlhf);
  EXPECT_FALSE((*model)->can_normalize());
  const std::vector<float> raw = {0.5f};
  auto normalised = (*model)->Normalize(raw);
  EXPECT_EQ(normalised.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(normalised.status().message(), HasSubstr("raw"));
  // Same weights, same scores.
  auto ids = model_->Encode("\n\nHuman: Hi\n\nAssistant:", " Hello.");
  ASSERT_TRUE(ids.ok());
  auto here = (*model)->ScoreEncoded({*ids});
  auto there = model_->ScoreEncoded({*ids});
  ASSERT_TRUE(here.ok() && there.ok());
  EXPECT_FLOAT_EQ((*here)[0], (*there)[0]);
  // TRL's rule joins the prompt and the response: a text the client joined (OpenRLHF's remote
  // reward requests) gets the same ids.
  auto plain = (*model)->Encode("\n\nHuman: Hi\n\nAssistant:", " Hello.");
  auto joined = (*model)->EncodeJoined("\n\nHuman: Hi\n\nAssistant: Hello.");
  ASSERT_TRUE(plain.ok() && joined.ok());
  EXPECT_EQ(*joined, *plain);
}

// A directory trained before encoding.json existed: training_args.json's settings, scored by
// the rule it was trained with, [CLS] prompt [SEP] response [SEP].
TEST_F(ScoringModelTest, ADirectoryWithOnlyTrainingArgsScoresByThePairRule) {
  ScratchDir scratch;
  auto args = ReadFileToString((fs::path(*model_dir_) / kTrainingArgsFile).string());
  ASSERT_TRUE(args.ok());
  nlohmann::json old_args = nlohmann::json::parse(*args);
  old_args.erase("input_rule");
  const std::string dir =
      CopyModelDir(scratch, {kEncodingFile}, {{kTrainingArgsFile, old_args.dump()}});
  auto model = ScoringModel::Load(dir, ModelOptions{});
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->settings().input_rule, InputRule::kPair);
  EXPECT_EQ((*model)->settings().chat_format, ChatFormat::kChatML);
  EXPECT_EQ((*model)->max_length(), kMaxLength);
  const std::string prompt = "\n\nHuman: Hi\n\nAssistant:", response = " Hello.";
  auto ids = (*model)->Encode(prompt, response);
  ASSERT_TRUE(ids.ok()) << ids.status();
  auto expected = EncodePair(*model_->tokenizer(), prompt, response,
                             {PairFraming::kTextPair, kMaxLength, TruncationPolicy::kTruncate});
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ(*ids, expected->ids);
  EXPECT_NE(*ids, *model_->Encode(prompt, response));
  // A text pair needs the prompt and the response apart: a joined text is refused.
  EXPECT_EQ((*model)->EncodeJoined(prompt + response).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(ScoringModelTest, LoadFailsOnBrokenFilesNamingThem) {
  for (const char* file : {kEncodingFile, kTrainingArgsFile}) {
    ScratchDir scratch;
    // Without encoding.json, training_args.json is read.
    const std::string dir = CopyModelDir(scratch, {kEncodingFile}, {{file, R"({"truncation": "chop"})"}});
    auto model = ScoringModel::Load(dir, ModelOptions{});
    EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(model.status().message(), HasSubstr(file));
  }
  {
    ScratchDir scratch;
    const std::string dir = CopyModelDir(scratch, {}, {{kEncodingFile, R"({"input_rule": "mix"})"}});
    auto model = ScoringModel::Load(dir, ModelOptions{});
    EXPECT_THAT(model.status().message(), AllOf(HasSubstr(kEncodingFile), HasSubstr("input_rule")));
  }
  {
    ScratchDir scratch;
    const std::string dir = CopyModelDir(scratch, {}, {{kRewardStatsFile, "not json"}});
    auto model = ScoringModel::Load(dir, ModelOptions{});
    EXPECT_THAT(model.status().message(), HasSubstr(kRewardStatsFile));
  }
  {
    ScratchDir scratch;
    const std::string dir = CopyModelDir(scratch, {"tokenizer.model"});
    EXPECT_FALSE(ScoringModel::Load(dir, ModelOptions{}).ok());
  }
  EXPECT_FALSE(ScoringModel::Load(TestDataPath("no-such-model"), ModelOptions{}).ok());
}

// ModelOptions::int8_linear: the packed scoring forward runs int8 linear layers. On held-out
// hh-rlhf pairs (harmless-base, which the model never saw) its scores stay within 5 % of
// float32's spread and it orders at least 95 % of the pairs as float32 does. (This fixture is
// barely trained, so many margins are tiny and flip on rounding; bench/RESULTS.md reports the
// agreement of a model trained on hh-rlhf.) A decoder, which has no packed forward, is refused.
TEST_F(ScoringModelTest, Int8LinearLayersAgreeWithFloat32OnHeldOutPairs) {
  ModelOptions options;
  options.int8_linear = true;
  auto int8 = ScoringModel::Load(*model_dir_, options);
  ASSERT_TRUE(int8.ok()) << int8.status();
  auto held_out = ReadPreferenceFile(TestDataPath("hh-rlhf/harmless-base/test.jsonl.gz"),
                                     PreferenceReaderOptions{});
  ASSERT_TRUE(held_out.ok()) << held_out.status();
  std::vector<std::vector<int32_t>> rows;
  for (const PreferencePair& pair : held_out->pairs) {
    if (rows.size() >= 2 * 256) break;
    auto chosen = model_->Encode(pair.prompt, pair.chosen);
    auto rejected = model_->Encode(pair.prompt, pair.rejected);
    // Pairs that truncation makes identical have no order to agree on.
    if (!chosen.ok() || !rejected.ok() || *chosen == *rejected) continue;
    rows.push_back(*chosen);
    rows.push_back(*rejected);
  }
  ASSERT_GE(rows.size(), 2u * 100);
  auto exact = model_->ScoreEncoded(rows);
  auto approximate = (*int8)->ScoreEncoded(rows);
  ASSERT_TRUE(exact.ok()) << exact.status();
  ASSERT_TRUE(approximate.ok()) << approximate.status();
  const auto [low, high] = std::minmax_element(exact->begin(), exact->end());
  const double spread = *high - *low;
  ASSERT_GT(spread, 0);
  int agree = 0, pairs = 0;
  double max_difference = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    max_difference = std::max<double>(max_difference, std::abs((*exact)[i] - (*approximate)[i]));
    if (i % 2 == 1) {
      ++pairs;
      agree += ((*exact)[i - 1] > (*exact)[i]) == ((*approximate)[i - 1] > (*approximate)[i]);
    }
  }
  EXPECT_GT(max_difference, 0) << "int8 layers were not used";
  EXPECT_LT(max_difference, 0.05 * spread);
  EXPECT_GE(agree, pairs * 95 / 100) << agree << " of " << pairs;
  std::cout << "int8 vs float32: " << agree << " of " << pairs << " pairs agree; max |diff| "
            << max_difference << " of a spread of " << spread << "\n";

  auto decoder = LoadRewardModel(TestDataPath("golden/llama"), ModelOptions{});
  ASSERT_TRUE(decoder.ok()) << decoder.status();
  EXPECT_EQ(QuantizeLinearsForCpuScoring(**decoder, options).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ScoringModelTest, ScoreEncodedMayRunOnManyThreadsAtOnce) {
  std::vector<std::vector<int32_t>> sequences;
  for (const PreferencePair& pair : EvalPairs()) {
    auto ids = model_->Encode(pair.prompt, pair.chosen);
    ASSERT_TRUE(ids.ok());
    sequences.push_back(*ids);
  }
  auto reference = model_->ScoreEncoded(sequences);
  ASSERT_TRUE(reference.ok()) << reference.status();
  std::vector<std::thread> threads;
  std::vector<std::vector<float>> seen(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      // Each thread its own batch shape: all rows, every other row, one row at a time...
      for (size_t i = 0; i < sequences.size(); i += 1 + t) {
        std::vector<std::vector<int32_t>> batch(
            sequences.begin() + i, sequences.begin() + std::min(sequences.size(), i + 1 + t));
        auto scores = model_->ScoreEncoded(batch);
        if (!scores.ok()) return;
        seen[t].insert(seen[t].end(), scores->begin(), scores->end());
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (int t = 0; t < 4; ++t) {
    ASSERT_EQ(seen[t].size(), reference->size()) << "thread " << t;
    for (size_t i = 0; i < seen[t].size(); ++i) {
      EXPECT_NEAR(seen[t][i], (*reference)[i], 1e-5) << "thread " << t << " row " << i;
    }
  }
}

}  // namespace
}  // namespace verdict
