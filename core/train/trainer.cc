#include "core/train/trainer.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <optional>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/data/chat_format.h"
#include "core/data/dataset_split.h"
#include "core/model/model_directory.h"
#include "core/model/reward_model.h"
#include "core/tokenize/pair_encoding.h"
#include "core/tokenize/sentencepiece_tokenizer.h"
#include "core/tokenize/wordpiece_tokenizer.h"
#include "core/train/batching.h"
#include "core/train/pair_evaluation.h"
#include "core/train/checkpoint.h"
#include "core/train/distributed.h"
#include "core/train/lr_schedule.h"
#include "core/util/crash_point.h"
#include "core/util/file_util.h"
#include "core/util/status_macros.h"

namespace verdict {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Pairs scored to estimate reward statistics when there is no eval set.
constexpr size_t kStatsSamplePairs = 512;

struct StepPlan {
  // The micro-batches of every epoch, cut once: batching is a pure function of the epoch.
  std::vector<std::vector<std::vector<int64_t>>> epochs;
  int64_t total_steps = 0;
};

// Sums over the pairs of a logging window or an evaluation.
struct PairStats {
  double loss_sum = 0;
  int64_t correct = 0;
  double margin_sum = 0;
  double chosen_sum = 0;
  double reward_sum = 0;
  double reward_sq_sum = 0;
  double reward_min = std::numeric_limits<double>::infinity();
  double reward_max = -std::numeric_limits<double>::infinity();
  int64_t pairs = 0;
  int64_t real_tokens = 0;
  int64_t padded_tokens = 0;

  void Add(const torch::Tensor& chosen, const torch::Tensor& rejected, double loss_sum_in,
           const PaddingStats& padding) {
    auto rewards = torch::cat({chosen, rejected}).to(torch::kDouble).cpu();
    loss_sum += loss_sum_in;
    correct += (chosen > rejected).sum().item<int64_t>();
    margin_sum += (chosen - rejected).sum().item<double>();
    chosen_sum += chosen.sum().item<double>();
    reward_sum += rewards.sum().item<double>();
    reward_sq_sum += rewards.pow(2).sum().item<double>();
    reward_min = std::min(reward_min, rewards.min().item<double>());
    reward_max = std::max(reward_max, rewards.max().item<double>());
    pairs += chosen.size(0);
    real_tokens += padding.real_tokens;
    padded_tokens += padding.padded_tokens;
  }
  double RewardMean() const { return pairs ? reward_sum / (2.0 * pairs) : 0; }
  double ChosenMean() const { return pairs ? chosen_sum / pairs : 0; }
  double RejectedMean() const { return pairs ? (reward_sum - chosen_sum) / pairs : 0; }
  double RewardStd() const {
    if (pairs == 0) return 0;
    const double mean = RewardMean();
    return std::sqrt(std::max(0.0, reward_sq_sum / (2.0 * pairs) - mean * mean));
  }
};

// The metrics of the steps since the last on_step report.
struct LogWindow {
  PairStats pairs;
  double grad_norm_sum = 0;
  double sync_seconds = 0;  // in ReduceStep
  int64_t steps = 0;
  Clock::time_point start = Clock::now();
};

class TrainerImpl : public Trainer {
 public:
  TrainerImpl(const TrainingConfig& config, TrainerCallbacks callbacks)
      : config_(config), callbacks_(std::move(callbacks)) {}

  absl::StatusOr<TrainingResult> Run() override {
    try {
      return RunUnchecked();
    } catch (const c10::Error& e) {
      return absl::InternalError(absl::StrCat("training failed: ", e.what_without_backtrace()));
    }
  }

 private:
  // The phases of a run, in the order RunUnchecked calls them.
  absl::StatusOr<TrainingResult> RunUnchecked();
  absl::StatusOr<TrainEvalData> LoadData();
  absl::Status PrepareTokenizer(const std::vector<PreferencePair>& train);
  absl::Status PrepareModel();
  absl::Status EncodeData(const TrainEvalData& data);
  void BuildOptimizer(const StepPlan& plan);
  absl::StatusOr<TrainerPosition> Resume();
  // Trains from `position` to the end of the plan; Cancelled (after a checkpoint) when
  // cancelled. `position` is where the loop stopped.
  absl::Status TrainLoop(const StepPlan& plan, TrainerPosition& position);
  absl::StatusOr<TrainingResult> FinishAndSave(const TrainerPosition& position);
  absl::StatusOr<TrainingResult> FinishOnThisRank(const TrainerPosition& position);

  // One optimizer step over the micro-batches [position.batch, group_end); the rate it used.
  absl::StatusOr<double> TrainStep(const std::vector<std::vector<int64_t>>& epoch_batches,
                                   int64_t group_end, const TrainerPosition& position,
                                   LogWindow& window);
  absl::Status ReportWindow(const StepPlan& plan, const TrainerPosition& position,
                            int64_t batches_done_before_epoch, double lr, LogWindow& window);
  // Data parallelism (world_size > 1). Joins the group named by the torchrun variables.
  absl::Status JoinGroup();
  // This rank's slice of a global micro-batch: contiguous, sizes differing by at most one.
  std::vector<int64_t> Shard(const std::vector<int64_t>& global_batch) const;
  // Sums the step's loss and cancel flags over the ranks and the gradients (scaled by
  // 1 / pairs over all ranks already; with overlap_allreduce_, started during the last backward
  // and finished here); a rank whose shard left a gradient undefined that another rank has
  // contributes zeros. Returns the step's total loss.
  absl::StatusOr<double> ReduceStep(double local_loss);
  // `fn` on rank 0, then on the other ranks once rank 0 has succeeded (it writes files the
  // others read); without a group, just `fn`.
  absl::Status RankZeroFirst(absl::string_view what, const std::function<absl::Status()>& fn);
  bool is_main() const { return group_ == nullptr || group_->rank() == 0; }
  int rank() const { return group_ ? group_->rank() : 0; }
  int world() const { return group_ ? group_->world_size() : 1; }
  absl::Status EncodePairs(const std::vector<PreferencePair>& pairs, std::vector<EncodedPair>& out);
  StepPlan PlanSteps() const;
  absl::StatusOr<EvalMetrics> Evaluate(int64_t step, const std::vector<EncodedPair>& pairs);
  absl::Status SaveCheckpoint(int64_t step, const TrainerPosition& position,
                              std::optional<RunEnd> end = std::nullopt);
  absl::StatusOr<TrainingResult> WriteOutput(int64_t steps, const EvalMetrics& final_eval,
                                             double reward_mean, double reward_std);
  bool autocast() const { return config_.dtype == Dtype::kBFloat16; }
  // Each pair as one ForwardShared row, its common prefix computed once (set by PrepareModel).
  bool share_prefixes() const { return config_.prefix_sharing && model_->shares_prefixes(); }
  // The micro-batch's rewards, chosen and rejected [pairs] each, its margins and token counts.
  struct PairRewards {
    torch::Tensor chosen, rejected, margin;
    PaddingStats padding;
  };
  PairRewards ForwardPairs(const std::vector<int64_t>& shard);
  void Log(const std::string& line) {
    if (callbacks_.on_log && is_main()) callbacks_.on_log(line);
  }

  TrainingConfig config_;
  TrainerCallbacks callbacks_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<RewardModel> model_;
  std::vector<torch::Tensor> parameters_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  LrSchedule schedule_;
  torch::Device device_{torch::kCPU};
  int32_t pad_id_ = 0;
  InputEncoding encoding_;
  std::vector<EncodedPair> train_, eval_;
  DataSummary summary_;
  // Set when the checkpoint resumed from is the run's last (written after the final eval).
  std::optional<RunEnd> resumed_end_;
  std::unique_ptr<DataParallelGroup> group_;  // null when world_size is 1
  bool overlap_allreduce_ = false;            // gradients summed during backward (TrainStep)
  bool any_rank_cancelled_ = false;           // set by ReduceStep
};

absl::Status TrainerImpl::PrepareTokenizer(const std::vector<PreferencePair>& train) {
  if (!config_.tokenizer_path.empty()) {
    if (fs::is_directory(config_.tokenizer_path)) {
      ASSIGN_OR_RETURN(tokenizer_, LoadTokenizerFromDirectory(config_.tokenizer_path));
    } else if (fs::path(config_.tokenizer_path).filename() == "vocab.txt") {
      ASSIGN_OR_RETURN(tokenizer_, WordPieceTokenizer::Load(config_.tokenizer_path));
    } else {
      ASSIGN_OR_RETURN(tokenizer_, SentencePieceTokenizer::Load(config_.tokenizer_path));
    }
    return absl::OkStatus();
  }
  if (!config_.base_model_dir.empty()) {
    ASSIGN_OR_RETURN(tokenizer_, LoadTokenizerFromDirectory(config_.base_model_dir));
    return absl::OkStatus();
  }
  // Trained on the job's own text, once: a resumed run reloads the same tokenizer.
  const std::string saved = (fs::path(config_.run_dir) / "tokenizer").string();
  if (fs::exists(fs::path(saved) / "tokenizer.model")) {
    ASSIGN_OR_RETURN(tokenizer_, LoadTokenizerFromDirectory(saved));
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(TrainTokenizerForPairs(train, config_, saved));
  ASSIGN_OR_RETURN(tokenizer_, LoadTokenizerFromDirectory(saved));
  Log(absl::StrCat("trained a sentencepiece tokenizer: ", tokenizer_->vocab_size(), " pieces"));
  return absl::OkStatus();
}

absl::Status TrainerImpl::PrepareModel() {
  ModelOptions options;
  options.device = DeviceName(config_.device);
  // Master weights stay float32 whatever the compute dtype: bfloat16 runs under autocast.
  options.dtype = Dtype::kFloat32;
  options.seed = config_.seed;
  options.gradient_checkpointing = config_.gradient_checkpointing;
  options.lora.rank = config_.lora_rank;
  options.lora.alpha = config_.lora_alpha;
  options.lora.target_modules = config_.lora_target_modules;
  if (!config_.base_model_dir.empty()) {
    ASSIGN_OR_RETURN(model_, LoadRewardModel(config_.base_model_dir, options));
  } else {
    const int32_t pad = tokenizer_->special_tokens().pad;
    ASSIGN_OR_RETURN(ModelConfig model_config,
                     PresetModelConfig(config_.preset, tokenizer_->vocab_size(), pad >= 0 ? pad : 0));
    ASSIGN_OR_RETURN(model_, CreateRewardModel(model_config, options));
  }
  if (tokenizer_->vocab_size() > model_->config().vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizer has ", tokenizer_->vocab_size(), " tokens but the model's vocab_size is ",
        model_->config().vocab_size));
  }
  device_ = ToTorchDevice(config_.device);
  pad_id_ = std::max<int32_t>(0, tokenizer_->special_tokens().pad);
  encoding_ = InputEncodingOf(model_->config(), EncodingOf(config_));
  int64_t trainable = 0;
  for (const auto& p : model_->module().parameters()) {
    summary_.parameters += p.numel();
    if (p.requires_grad()) trainable += p.numel();
  }
  if (config_.lora_rank > 0) {
    Log(absl::StrCat("LoRA rank ", config_.lora_rank, ": ", trainable, " of ",
                     summary_.parameters, " parameters train (adapters and reward head)"));
  }
  return absl::OkStatus();
}

absl::Status TrainerImpl::EncodePairs(const std::vector<PreferencePair>& pairs,
                                      std::vector<EncodedPair>& out) {
  out.reserve(pairs.size());
  for (const PreferencePair& pair : pairs) {
    const TextOrigin origin = pair.conversational ? TextOrigin::kRendered : TextOrigin::kPlain;
    auto chosen = EncodeInput(*tokenizer_, encoding_, pair.prompt, pair.chosen, origin);
    auto rejected = EncodeInput(*tokenizer_, encoding_, pair.prompt, pair.rejected, origin);
    if (!chosen.ok() || !rejected.ok()) {
      const absl::Status& status = chosen.ok() ? rejected.status() : chosen.status();
      if (status.code() == absl::StatusCode::kOutOfRange &&
          encoding_.truncation == TruncationPolicy::kDrop) {
        ++summary_.too_long_dropped;
        continue;
      }
      return absl::InvalidArgumentError(absl::StrCat("line ", pair.line, ": ", status.message()));
    }
    if (chosen->truncated || rejected->truncated) ++summary_.truncated;
    EncodedPair encoded;
    encoded.chosen = std::move(chosen->ids);
    encoded.rejected = std::move(rejected->ids);
    encoded.margin = static_cast<float>(pair.margin.value_or(0.0));
    out.push_back(std::move(encoded));
  }
  return absl::OkStatus();
}

StepPlan TrainerImpl::PlanSteps() const {
  BatchingOptions options;
  // Global micro-batches, cut as one process with world_size times the batch would cut them;
  // each rank trains on its Shard() of each.
  options.batch_size = config_.batch_size * config_.world_size;
  options.max_batch_tokens = config_.max_batch_tokens * config_.world_size;
  options.group_by_length = config_.group_by_length;
  options.shared_rows = share_prefixes();
  options.seed = config_.seed;
  StepPlan plan;
  const int64_t accumulation = config_.gradient_accumulation_steps;
  for (int64_t epoch = 0;; ++epoch) {
    const bool enough_epochs = config_.max_steps <= 0 && epoch >= std::ceil(config_.num_epochs);
    const bool enough_steps = config_.max_steps > 0 && plan.total_steps >= config_.max_steps;
    if (enough_epochs || enough_steps) break;
    plan.epochs.push_back(MakeBatches(train_, options, epoch));
    plan.total_steps += (static_cast<int64_t>(plan.epochs.back().size()) + accumulation - 1) /
                        accumulation;
  }
  if (config_.max_steps > 0) {
    plan.total_steps = config_.max_steps;
  } else if (config_.num_epochs != std::floor(config_.num_epochs)) {
    // A fractional last epoch: stop partway through it.
    const int64_t last = (static_cast<int64_t>(plan.epochs.back().size()) + accumulation - 1) / accumulation;
    const double fraction = config_.num_epochs - std::floor(config_.num_epochs);
    plan.total_steps -= last - static_cast<int64_t>(std::ceil(fraction * last));
  }
  return plan;
}

absl::StatusOr<EvalMetrics> TrainerImpl::Evaluate(int64_t step,
                                                   const std::vector<EncodedPair>& pairs) {
  const auto start = Clock::now();
  PairEvalOptions options;
  options.batch_size = config_.eval_batch_size > 0 ? config_.eval_batch_size : config_.batch_size;
  options.max_batch_tokens = config_.max_batch_tokens;
  options.pad_id = pad_id_;
  options.bfloat16_autocast = autocast();
  // Each rank scores its contiguous slice; the sums are added over the ranks, so the set is
  // evaluated once between them and every rank gets the same metrics.
  std::vector<EncodedPair> slice;
  if (group_) {
    const int64_t n = static_cast<int64_t>(pairs.size());
    slice.assign(pairs.begin() + n * rank() / world(), pairs.begin() + n * (rank() + 1) / world());
  }
  model_->module().eval();
  absl::StatusOr<PairScores> scores =
      ScoreEncodedPairs(*model_, device_, group_ ? slice : pairs, options);
  model_->module().train();
  RETURN_IF_ERROR(scores.status());
  PairScoreSums sums = SumPairScores(*scores);
  if (group_) {
    std::vector<double> values = sums.ToVector();
    RETURN_IF_ERROR(group_->Sum(values));
    sums = PairScoreSums::FromVector(values);
  }
  EvalMetrics metrics = SummarizePairScoreSums(sums);
  metrics.step = step;
  metrics.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return metrics;
}

absl::Status TrainerImpl::SaveCheckpoint(int64_t step, const TrainerPosition& position,
                                         std::optional<RunEnd> end) {
  if (!is_main()) return absl::OkStatus();  // every rank holds the same weights and state
  if (callbacks_.on_checkpoint_started) callbacks_.on_checkpoint_started(step);
  const auto start = Clock::now();
  std::ostringstream optimizer_bytes;
  torch::save(*optimizer_, optimizer_bytes);
  CheckpointContents contents;
  contents.model = model_.get();
  contents.optimizer_state = optimizer_bytes.str();
  contents.position = position;
  contents.end = end;
  ASSIGN_OR_RETURN(std::string path, WriteCheckpoint(config_.run_dir, step, contents));
  RETURN_IF_ERROR(PruneCheckpoints(config_.run_dir, config_.save_total_limit));
  Log(absl::StrCat("checkpoint ", path, " written in ",
                   std::chrono::duration<double>(Clock::now() - start).count(), " s"));
  if (callbacks_.on_checkpoint) callbacks_.on_checkpoint(step, path);
  return absl::OkStatus();
}

absl::StatusOr<TrainingResult> TrainerImpl::WriteOutput(int64_t steps, const EvalMetrics& final_eval,
                                                        double reward_mean, double reward_std) {
  TrainingResult result;
  result.output_dir = config_.output_dir;
  result.steps = steps;
  result.final_eval = final_eval;
  result.reward_mean = reward_mean;
  result.reward_std = reward_std;
  if (!is_main()) return result;  // rank 0 writes the one model directory
  ModelDirectoryExtras extras;
  extras.reward_stats.mean = reward_mean;
  extras.reward_stats.std = reward_std;
  extras.reward_stats.pairs = final_eval.pairs;
  extras.reward_stats.eval_accuracy = final_eval.accuracy;
  extras.reward_stats.eval_loss = final_eval.loss;
  extras.encoding = EncodingOf(config_);
  extras.training_args_json = TrainingConfigToJson(config_);
  RETURN_IF_ERROR(WriteModelDirectory(config_.output_dir, *model_, *tokenizer_, extras));
  return result;
}

absl::StatusOr<TrainingResult> TrainerImpl::RunUnchecked() {
  RETURN_IF_ERROR(ValidateTrainingConfig(config_));
  std::error_code error;
  fs::create_directories(config_.run_dir, error);
  if (error) return absl::InternalError(absl::StrCat("cannot create ", config_.run_dir, ": ", error.message()));
  if (config_.world_size > 1) RETURN_IF_ERROR(JoinGroup());
  ASSIGN_OR_RETURN(TrainEvalData data, LoadData());
  // A tokenizer trained on the data is trained once, by rank 0, and loaded by the others.
  RETURN_IF_ERROR(RankZeroFirst("prepare the tokenizer", [&] { return PrepareTokenizer(data.train); }));
  RETURN_IF_ERROR(PrepareModel());
  RETURN_IF_ERROR(EncodeData(data));
  const StepPlan plan = PlanSteps();
  summary_.total_steps = plan.total_steps;
  BuildOptimizer(plan);
  ASSIGN_OR_RETURN(TrainerPosition position, Resume());
  // Every rank built or loaded the same weights; rank 0's are made authoritative anyway.
  if (group_) RETURN_IF_ERROR(group_->Broadcast(parameters_));
  if (group_ && config_.overlap_allreduce) {
    RETURN_IF_ERROR(group_->AttachGradientHooks(parameters_));
    overlap_allreduce_ = true;
  }
  if (callbacks_.on_start && is_main()) callbacks_.on_start(summary_);
  RETURN_IF_ERROR(TrainLoop(plan, position));
  return FinishAndSave(position);
}

absl::StatusOr<TrainEvalData> TrainerImpl::LoadData() {
  PreferenceDataSpec data;
  data.train_path = config_.train_path;
  data.eval_path = config_.eval_path;
  data.eval_fraction = config_.eval_path.empty() ? config_.eval_fraction : 0.0;
  data.seed = config_.split_seed;
  data.reader.skip_invalid = config_.skip_invalid;
  data.reader.chat_format = config_.chat_format;
  data.reader.format = config_.data_format;
  ASSIGN_OR_RETURN(TrainEvalData train_data, LoadTrainEvalData(data));
  summary_.invalid_lines = train_data.train_stats.invalid_lines + train_data.eval_stats.invalid_lines;
  summary_.identical_dropped =
      train_data.train_stats.identical_dropped + train_data.eval_stats.identical_dropped;
  if (train_data.train.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(config_.train_path, ": no training pairs"));
  }
  Log(absl::StrCat(config_.train_path, ": ", train_data.train_stats.Summary()));
  if (config_.max_train_pairs > 0 && train_data.train.size() > static_cast<size_t>(config_.max_train_pairs)) {
    train_data.train.resize(config_.max_train_pairs);
  }
  if (config_.max_eval_pairs > 0 && train_data.eval.size() > static_cast<size_t>(config_.max_eval_pairs)) {
    train_data.eval.resize(config_.max_eval_pairs);
  }
  return train_data;
}

absl::Status TrainerImpl::EncodeData(const TrainEvalData& data) {
  RETURN_IF_ERROR(EncodePairs(data.train, train_));
  RETURN_IF_ERROR(EncodePairs(data.eval, eval_));
  if (train_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "every training pair is longer than max_length ", encoding_.max_length));
  }
  if (share_prefixes()) {
    int64_t tokens = 0, row_tokens = 0;
    for (const EncodedPair& pair : train_) {
      tokens += static_cast<int64_t>(pair.chosen.size() + pair.rejected.size());
      row_tokens += SharedRowLength(pair);
    }
    Log(absl::StrCat("prefix sharing: each pair trains as one row, ",
                     absl::StrFormat("%.2f", static_cast<double>(row_tokens) / tokens),
                     " of its tokens computed"));
  }
  summary_.train_pairs = static_cast<int64_t>(train_.size());
  summary_.eval_pairs = static_cast<int64_t>(eval_.size());
  summary_.vocab_size = tokenizer_->vocab_size();
  return absl::OkStatus();
}

void TrainerImpl::BuildOptimizer(const StepPlan& plan) {
  schedule_.kind = config_.lr_scheduler;
  schedule_.peak = config_.learning_rate;
  schedule_.min_ratio = config_.min_lr_ratio;
  schedule_.total_steps = plan.total_steps;
  schedule_.warmup_steps = config_.warmup_steps > 0
                               ? config_.warmup_steps
                               : static_cast<int64_t>(std::ceil(config_.warmup_ratio * plan.total_steps));
  // The parameters are float32 (PrepareModel), so AdamW's moments are too. Only those that
  // train: with LoRA, the adapters and the reward head.
  parameters_.clear();
  for (const torch::Tensor& p : model_->module().parameters()) {
    if (p.requires_grad()) parameters_.push_back(p);
  }
  optimizer_ = std::make_unique<torch::optim::AdamW>(
      parameters_, torch::optim::AdamWOptions(config_.learning_rate)
                       .betas({config_.adam_beta1, config_.adam_beta2})
                       .eps(config_.adam_epsilon)
                       .weight_decay(config_.weight_decay));
}

absl::StatusOr<TrainerPosition> TrainerImpl::Resume() {
  TrainerPosition position;
  ASSIGN_OR_RETURN(std::optional<LoadedCheckpoint> resumed, LoadLatestCheckpoint(config_.run_dir, *model_));
  if (resumed.has_value()) {
    std::istringstream optimizer_bytes(resumed->optimizer_state);
    torch::load(*optimizer_, optimizer_bytes);
    position = resumed->position;
    resumed_end_ = resumed->end;
    summary_.resumed_from_step = position.step;
    Log(absl::StrCat("resumed from ", resumed->path, " at step ", position.step));
  }
  return position;
}

absl::StatusOr<double> TrainerImpl::TrainStep(const std::vector<std::vector<int64_t>>& epoch_batches,
                                              int64_t group_end, const TrainerPosition& position,
                                              LogWindow& window) {
  int64_t step_pairs = 0;  // over all ranks
  for (int64_t b = position.batch; b < group_end; ++b) step_pairs += epoch_batches[b].size();

  optimizer_->zero_grad();
  double step_loss = 0;
  for (int64_t b = position.batch; b < group_end; ++b) {
    // The step's last backward sums the gradients over the ranks as it produces them.
    if (overlap_allreduce_ && b == group_end - 1) group_->ArmGradientSum();
    const std::vector<int64_t> shard = Shard(epoch_batches[b]);
    if (shard.empty()) continue;  // a global batch smaller than the world
    if (callbacks_.before_micro_batch) callbacks_.before_micro_batch();
    torch::Tensor loss_sum, chosen, rejected;
    PaddingStats padding;
    {
      AutocastScope autocast_scope(autocast(), device_);
      PairRewards rewards = ForwardPairs(shard);
      chosen = rewards.chosen;
      rejected = rewards.rejected;
      padding = rewards.padding;
      auto pair_losses = -torch::log_sigmoid(chosen - rejected - rewards.margin);
      if (config_.center_rewards_coefficient != 0) {
        pair_losses = pair_losses + config_.center_rewards_coefficient * (chosen + rejected).pow(2);
      }
      loss_sum = pair_losses.sum();
    }
    // Weighted by pairs, so the step's loss is the mean over all its pairs whatever the
    // micro-batch sizes.
    (loss_sum / static_cast<double>(step_pairs)).backward();
    const double loss_value = loss_sum.item<double>();
    step_loss += loss_value;
    window.pairs.Add(chosen.detach(), rejected.detach(), loss_value, padding);
  }
  if (group_) {
    const auto sync_start = Clock::now();
    ASSIGN_OR_RETURN(step_loss, ReduceStep(step_loss));
    window.sync_seconds += std::chrono::duration<double>(Clock::now() - sync_start).count();
  }
  const double max_norm = config_.max_grad_norm > 0 ? config_.max_grad_norm
                                                    : std::numeric_limits<double>::infinity();
  const double grad_norm = torch::nn::utils::clip_grad_norm_(parameters_, max_norm);
  if (!std::isfinite(step_loss) || !std::isfinite(grad_norm)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "non-finite ", std::isfinite(step_loss) ? "gradient norm" : "loss", " at step ",
        position.step + 1, " (loss ", step_loss / step_pairs, ", grad norm ", grad_norm,
        "); the update was not applied and the last checkpoint is intact"));
  }
  const double lr = schedule_.At(position.step);
  for (auto& group : optimizer_->param_groups()) {
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
  }
  optimizer_->step();
  window.grad_norm_sum += grad_norm;
  ++window.steps;
  return lr;
}

TrainerImpl::PairRewards TrainerImpl::ForwardPairs(const std::vector<int64_t>& shard) {
  PairRewards out;
  if (share_prefixes()) {
    SharedBatchTensors t = CollateShared(train_, shard, device_);
    auto rewards = model_->ForwardShared(t.ids, t.groups).view({t.pairs, 2});
    out.chosen = rewards.select(1, 0);
    out.rejected = rewards.select(1, 1);
    out.margin = t.margin;
    out.padding = t.padding;
    return out;
  }
  BatchTensors t = Collate(train_, shard, pad_id_, device_);
  auto rewards = model_->Forward(t.ids, t.mask);
  out.chosen = rewards.slice(0, 0, t.pairs);
  out.rejected = rewards.slice(0, t.pairs);
  out.margin = t.margin;
  out.padding = t.padding;
  return out;
}

absl::Status TrainerImpl::ReportWindow(const StepPlan& plan, const TrainerPosition& position,
                                       int64_t batches_done_before_epoch, double lr,
                                       LogWindow& window) {
  if (group_) {
    // The window's sums over every rank's pairs; rank 0's clock times it.
    PairStats& p = window.pairs;
    std::vector<double> sums = {p.loss_sum,
                                static_cast<double>(p.correct),
                                p.margin_sum,
                                p.chosen_sum,
                                p.reward_sum,
                                p.reward_sq_sum,
                                static_cast<double>(p.pairs),
                                static_cast<double>(p.real_tokens),
                                static_cast<double>(p.padded_tokens)};
    std::vector<double> maxima = {p.reward_max, -p.reward_min};
    RETURN_IF_ERROR(group_->Sum(sums));
    RETURN_IF_ERROR(group_->Max(maxima));
    p.loss_sum = sums[0];
    p.correct = static_cast<int64_t>(sums[1]);
    p.margin_sum = sums[2];
    p.chosen_sum = sums[3];
    p.reward_sum = sums[4];
    p.reward_sq_sum = sums[5];
    p.pairs = static_cast<int64_t>(sums[6]);
    p.real_tokens = static_cast<int64_t>(sums[7]);
    p.padded_tokens = static_cast<int64_t>(sums[8]);
    p.reward_max = maxima[0];
    p.reward_min = -maxima[1];
  }
  int64_t batches_total = 0;
  for (const auto& e : plan.epochs) batches_total += static_cast<int64_t>(e.size());
  const double seconds =
      std::max(1e-9, std::chrono::duration<double>(Clock::now() - window.start).count());
  const PairStats& w = window.pairs;
  TrainStepMetrics m;
  m.step = position.step;
  m.total_steps = plan.total_steps;
  m.epoch = static_cast<double>(batches_done_before_epoch + position.batch) /
            static_cast<double>(std::max<int64_t>(1, batches_total)) * plan.epochs.size();
  m.loss = w.loss_sum / std::max<int64_t>(1, w.pairs);
  m.accuracy = static_cast<double>(w.correct) / std::max<int64_t>(1, w.pairs);
  m.margin = w.margin_sum / std::max<int64_t>(1, w.pairs);
  m.reward_mean = w.RewardMean();
  m.chosen_reward_mean = w.ChosenMean();
  m.rejected_reward_mean = w.RejectedMean();
  m.reward_min = w.reward_min;
  m.reward_max = w.reward_max;
  m.learning_rate = lr;
  m.grad_norm = window.grad_norm_sum / window.steps;
  m.tokens = w.real_tokens;
  m.pairs = w.pairs;
  m.pairs_per_second = w.pairs / seconds;
  m.sync_seconds = window.sync_seconds;
  m.window_seconds = seconds;
  m.tokens_per_second = w.real_tokens / seconds;
  m.padding_fraction =
      w.padded_tokens ? 1.0 - static_cast<double>(w.real_tokens) / w.padded_tokens : 0.0;
  if (callbacks_.on_step && is_main()) callbacks_.on_step(m);
  window = LogWindow();
  return absl::OkStatus();
}

absl::Status TrainerImpl::JoinGroup() {
  ASSIGN_OR_RETURN(RendezvousInfo info, RendezvousFromEnvironment(config_.world_size));
  ASSIGN_OR_RETURN(group_, DataParallelGroup::Connect(
                               info, absl::Seconds(config_.distributed_timeout_seconds)));
  Log(absl::StrCat("data parallel: ", info.world_size, " ranks, rendezvous at ", info.master_addr,
                   ":", info.port));
  return absl::OkStatus();
}

std::vector<int64_t> TrainerImpl::Shard(const std::vector<int64_t>& global_batch) const {
  if (!group_) return global_batch;
  const int64_t n = static_cast<int64_t>(global_batch.size());
  const int64_t begin = n * rank() / world(), end = n * (rank() + 1) / world();
  return std::vector<int64_t>(global_batch.begin() + begin, global_batch.begin() + end);
}

absl::StatusOr<double> TrainerImpl::ReduceStep(double local_loss) {
  std::vector<double> info(parameters_.size() + 2);
  for (size_t i = 0; i < parameters_.size(); ++i) info[i] = parameters_[i].grad().defined();
  info[parameters_.size()] = local_loss;
  info[parameters_.size() + 1] = cancelled() ? 1 : 0;
  // Overlapped, most buckets are summed already; the rest start now. The flags above were
  // taken first: the sum defines every gradient, zeros where no rank had one.
  if (overlap_allreduce_) RETURN_IF_ERROR(group_->FinishGradientSum());
  RETURN_IF_ERROR(group_->Sum(info));
  for (size_t i = 0; i < parameters_.size(); ++i) {
    if (overlap_allreduce_ && info[i] == 0) {
      parameters_[i].mutable_grad() = torch::Tensor();  // as without overlap: no update
    } else if (info[i] > 0 && !parameters_[i].grad().defined()) {
      parameters_[i].mutable_grad() = torch::zeros_like(parameters_[i]);
    }
  }
  any_rank_cancelled_ = info[parameters_.size() + 1] > 0;
  if (!overlap_allreduce_) RETURN_IF_ERROR(group_->SumGradients(parameters_));
  return info[parameters_.size()];
}

absl::Status TrainerImpl::RankZeroFirst(absl::string_view what,
                                        const std::function<absl::Status()>& fn) {
  if (!group_) return fn();
  absl::Status status = is_main() ? fn() : absl::OkStatus();
  std::vector<double> failed = {status.ok() ? 0.0 : 1.0};
  RETURN_IF_ERROR(group_->Sum(failed));
  if (!status.ok()) return status;
  if (failed[0] > 0) return absl::AbortedError(absl::StrCat("rank 0 failed to ", what));
  return is_main() ? absl::OkStatus() : fn();
}

absl::Status TrainerImpl::TrainLoop(const StepPlan& plan, TrainerPosition& position) {
  model_->module().train();
  LogWindow window;
  const int64_t epochs = static_cast<int64_t>(plan.epochs.size());
  int64_t batches_done_before_epoch = 0;
  for (int64_t e = 0; e < position.epoch && e < epochs; ++e) {
    batches_done_before_epoch += static_cast<int64_t>(plan.epochs[e].size());
  }
  while (position.step < plan.total_steps && position.epoch < epochs) {
    const auto& epoch_batches = plan.epochs[position.epoch];
    const int64_t group_end = std::min<int64_t>(
        position.batch + config_.gradient_accumulation_steps, epoch_batches.size());
    ASSIGN_OR_RETURN(const double lr, TrainStep(epoch_batches, group_end, position, window));

    ++position.step;
    position.batch = group_end;
    bool epoch_ended = false;
    if (position.batch >= static_cast<int64_t>(epoch_batches.size())) {
      batches_done_before_epoch += static_cast<int64_t>(epoch_batches.size());
      ++position.epoch;
      position.batch = 0;
      epoch_ended = true;
    }
    const bool last_step = position.step >= plan.total_steps || position.epoch >= epochs;
    if (position.step % config_.logging_steps == 0 || last_step) {
      RETURN_IF_ERROR(ReportWindow(plan, position, batches_done_before_epoch, lr, window));
    }
    // Without eval_steps, evaluation happens at the end of each epoch (and of the run).
    const bool eval_due =
        config_.eval_steps > 0 ? position.step % config_.eval_steps == 0 : epoch_ended;
    if (eval_due && !last_step && !eval_.empty()) {
      ASSIGN_OR_RETURN(EvalMetrics eval, Evaluate(position.step, eval_));
      if (callbacks_.on_eval && is_main()) callbacks_.on_eval(eval);
      CrashPoint("after_eval");
      window.start = Clock::now();
    }
    if (last_step) break;
    if (config_.save_steps > 0 && position.step % config_.save_steps == 0) {
      RETURN_IF_ERROR(SaveCheckpoint(position.step, position));
      window.start = Clock::now();
    }
    if (group_ ? any_rank_cancelled_ : cancelled()) {
      RETURN_IF_ERROR(SaveCheckpoint(position.step, position));
      return absl::CancelledError(absl::StrCat("cancelled at step ", position.step));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<TrainingResult> TrainerImpl::FinishAndSave(const TrainerPosition& position) {
  absl::StatusOr<TrainingResult> result = FinishOnThisRank(position);
  if (!group_) return result;
  // Rank 0 writes the model; another rank succeeds only once it has.
  std::vector<double> outcome = {is_main() && result.ok() ? 1.0 : 0.0, result.ok() ? 0.0 : 1.0};
  RETURN_IF_ERROR(group_->Sum(outcome));
  if (result.ok() && outcome[0] == 0) {
    return absl::AbortedError(absl::StrCat("rank 0 did not write the model (", outcome[1],
                                           " rank(s) failed at the end of the run)"));
  }
  return result;
}

absl::StatusOr<TrainingResult> TrainerImpl::FinishOnThisRank(const TrainerPosition& position) {
  EvalMetrics final_eval;
  final_eval.step = position.step;
  if (resumed_end_.has_value()) {
    // Evaluated and reported before the restart: only the model directory is left to write.
    const RunEnd& end = *resumed_end_;
    final_eval = end.final_eval;
    final_eval.step = position.step;
    if (fs::is_directory(config_.output_dir)) {
      // Written (atomically, whole: WriteModelDirectory) after that checkpoint, before the
      // restart; it may be registered already, so it is not written twice.
      Log(absl::StrCat(config_.output_dir, " was written before the restart; kept as it is"));
      TrainingResult result;
      result.output_dir = config_.output_dir;
      result.steps = position.step;
      result.final_eval = final_eval;
      result.reward_mean = end.reward_mean;
      result.reward_std = end.reward_std;
      return result;
    }
    return WriteOutput(position.step, final_eval, end.reward_mean, end.reward_std);
  }
  if (!eval_.empty()) {
    ASSIGN_OR_RETURN(final_eval, Evaluate(position.step, eval_));
    if (callbacks_.on_eval && is_main()) callbacks_.on_eval(final_eval);
    CrashPoint("after_final_eval");
  }
  // Normalisation statistics come from held-out pairs, or a sample of the training pairs.
  double reward_mean = final_eval.reward_mean, reward_std = final_eval.reward_std;
  if (eval_.empty()) {
    std::vector<EncodedPair> sample(train_.begin(),
                                    train_.begin() + std::min(train_.size(), kStatsSamplePairs));
    ASSIGN_OR_RETURN(EvalMetrics on_train, Evaluate(position.step, sample));
    reward_mean = on_train.reward_mean;
    reward_std = on_train.reward_std;
  }
  if (!(reward_std > 1e-12)) reward_std = 1.0;
  // The last checkpoint comes after the final eval and records it: a restart from it repeats
  // neither (a restart before it resumes from an earlier checkpoint, whose resume drops the
  // events after it, the final eval's included).
  RunEnd end;
  end.final_eval = final_eval;
  end.reward_mean = reward_mean;
  end.reward_std = reward_std;
  RETURN_IF_ERROR(SaveCheckpoint(position.step, position, end));
  return WriteOutput(position.step, final_eval, reward_mean, reward_std);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const TrainingConfig& config,
                                                         TrainerCallbacks callbacks) {
  RETURN_IF_ERROR(ValidateTrainingConfig(config));
  return std::unique_ptr<Trainer>(new TrainerImpl(config, std::move(callbacks)));
}

absl::Status TrainTokenizerForPairs(const std::vector<PreferencePair>& pairs,
                                    const TrainingConfig& config, const std::string& directory) {
  std::vector<std::string> texts;
  texts.reserve(pairs.size() * 3);
  for (const PreferencePair& pair : pairs) {
    texts.push_back(pair.prompt);
    texts.push_back(pair.chosen);
    texts.push_back(pair.rejected);
  }
  SentencePieceTokenizer::TrainOptions options;
  options.vocab_size = static_cast<int32_t>(config.vocab_size);
  options.hard_vocab_limit = false;
  options.model_type = config.tokenizer_type;
  // Llama's convention (add_bos_token only): TRL's concat rule appends the EOS to the text.
  options.tokenizer.add_bos = true;
  options.tokenizer.add_eos = false;
  ASSIGN_OR_RETURN(auto trained, SentencePieceTokenizer::Train(texts, options));
  return trained->SaveToDirectory(directory);
}

}  // namespace verdict
