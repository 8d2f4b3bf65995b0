// prefix_bench: what prefix sharing buys a decoder reward model, in scoring and in training,
// on real hh-rlhf prompts (multi-turn, long next to their responses).
//
//   1. Scoring, GRPO-shaped: each request is one prompt with `group` completions (the pair's
//      chosen and rejected responses and responses of other pairs), all requests submitted
//      at once to a DynamicBatcher (as concurrent clients would), drained; items/s with
//      ScoringSettings::share_prefixes on (A) and off (B), the same weights.
//   2. Training: the real Trainer on the same pairs (from scratch, `steps` optimizer steps,
//      batch_size pairs, length-grouped) with TrainingConfig::prefix_sharing on (A: one row
//      per pair, the prompt computed once, RewardModel::ForwardShared) or off (B: the stacked
//      padded [2B, T] rows); pairs/s over the steps after the first, from its step metrics.
// Arms alternate A B A B ...; medians and their ratio are printed.
//
//   prefix_bench                                        # decoder-small, 3 reps
//   prefix_bench --preset=decoder-tiny --prompts=64 --reps=5
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "bench/bench_util.h"
#include "core/data/dataset_split.h"
#include "core/model/model_config.h"
#include "core/model/reward_model.h"
#include "core/score/dynamic_batcher.h"
#include "core/score/scoring_model.h"
#include "core/tokenize/pair_encoding.h"
#include "core/train/batching.h"
#include "core/train/trainer.h"
#include "core/util/status_macros.h"

ABSL_FLAG(std::string, data, "", "Pairs; default: tests/data/hh-rlhf/helpful-base/test.jsonl.gz.");
ABSL_FLAG(std::string, preset, "decoder-small", "From-scratch decoder architecture.");
ABSL_FLAG(int64_t, vocab_size, 4000,
          "Vocabulary of the SentencePiece tokenizer trained on the data.");
ABSL_FLAG(int64_t, max_length, 1024, "Longest sequence in tokens (longer ones are truncated).");
ABSL_FLAG(int, prompts, 32, "Scoring: requests (prompts) per run.");
ABSL_FLAG(int, group, 8, "Scoring: completions per prompt.");
ABSL_FLAG(int64_t, max_batch_tokens, 2048,
          "Scoring: the batcher's padded-token budget (server default).");
ABSL_FLAG(int64_t, batch_size, 16, "Training: pairs per batch.");
ABSL_FLAG(int, steps, 8, "Training: optimizer steps per run (the first is not timed).");
ABSL_FLAG(int, reps, 3, "Runs per arm; arms alternate A B A B ...");
ABSL_FLAG(int, threads, 0, "LibTorch intra-op threads (0: LibTorch's default).");

namespace verdict::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

struct Data {
  std::string path, tokenizer_path;  // the pairs; the tokenizer trained on them
  std::unique_ptr<Tokenizer> tokenizer;
  ModelConfig model_config;
  std::vector<std::vector<std::vector<int32_t>>> requests;  // scoring: per prompt, its items
  std::vector<EncodedPair> pairs;                           // training
};

absl::StatusOr<Data> Prepare(const ScratchDir& scratch) {
  std::string path = absl::GetFlag(FLAGS_data);
  if (path.empty()) path = DefaultDataDir() + "/hh-rlhf/helpful-base/test.jsonl.gz";
  TrainingConfig config;
  config.train_path = path;
  config.preset = absl::GetFlag(FLAGS_preset);
  config.vocab_size = absl::GetFlag(FLAGS_vocab_size);
  config.max_length = absl::GetFlag(FLAGS_max_length);
  config.truncation = TruncationPolicy::kTruncate;
  PreferenceDataSpec spec;
  spec.train_path = path;
  spec.eval_fraction = 0;
  spec.seed = 42;
  ASSIGN_OR_RETURN(TrainEvalData split, LoadTrainEvalData(spec));
  config.tokenizer_path = scratch.Path("tokenizer");
  RETURN_IF_ERROR(TrainTokenizerForPairs(split.train, config, config.tokenizer_path));
  Data data;
  data.path = path;
  data.tokenizer_path = config.tokenizer_path;
  ASSIGN_OR_RETURN(data.tokenizer, LoadTokenizerFromDirectory(config.tokenizer_path));
  ASSIGN_OR_RETURN(data.model_config,
                   PresetModelConfig(config.preset, data.tokenizer->vocab_size(), 0));
  const InputEncoding encoding = InputEncodingOf(data.model_config, EncodingOf(config));
  auto encode = [&](const PreferencePair& pair,
                    const std::string& response) -> absl::StatusOr<std::vector<int32_t>> {
    const TextOrigin origin = pair.conversational ? TextOrigin::kRendered : TextOrigin::kPlain;
    ASSIGN_OR_RETURN(PairEncoding e,
                     EncodeInput(*data.tokenizer, encoding, pair.prompt, response, origin));
    return std::move(e.ids);
  };
  const auto& all = split.train;
  for (const PreferencePair& pair : all) {
    ASSIGN_OR_RETURN(auto chosen, encode(pair, pair.chosen));
    ASSIGN_OR_RETURN(auto rejected, encode(pair, pair.rejected));
    data.pairs.push_back(EncodedPair{std::move(chosen), std::move(rejected), 0.0f});
  }
  const int group = absl::GetFlag(FLAGS_group);
  for (int p = 0; p < absl::GetFlag(FLAGS_prompts) && p < static_cast<int>(all.size()); ++p) {
    std::vector<std::vector<int32_t>> request;
    for (int c = 0; c < group; ++c) {
      // The pair's own two responses, then the responses of the pairs that follow.
      const PreferencePair& other = all[(p + c / 2) % all.size()];
      ASSIGN_OR_RETURN(auto ids, encode(all[p], c % 2 == 0 ? other.chosen : other.rejected));
      request.push_back(std::move(ids));
    }
    data.requests.push_back(std::move(request));
  }
  return data;
}

absl::StatusOr<double> ScoreOnce(std::shared_ptr<const ScoringModel> model, const Data& data) {
  DynamicBatcher::Options options;
  options.max_batch_tokens = absl::GetFlag(FLAGS_max_batch_tokens);
  ASSIGN_OR_RETURN(auto batcher, DynamicBatcher::Create(std::move(model), options));
  absl::Mutex mu;
  absl::Status failed;
  int64_t items = 0;
  const auto start = Clock::now();
  for (const auto& sequences : data.requests) {
    DynamicBatcher::Request request;
    request.sequences = sequences;
    items += static_cast<int64_t>(sequences.size());
    request.done = [&](absl::StatusOr<DynamicBatcher::Result> result) {
      absl::MutexLock lock(&mu);
      if (!result.ok()) failed = result.status();
    };
    RETURN_IF_ERROR(batcher->Submit(std::move(request)));
  }
  batcher->Drain();
  const double seconds = Seconds(start);
  RETURN_IF_ERROR(failed);
  return items / seconds;
}

// pairs/s of the real Trainer (TrainingConfig::prefix_sharing on or off) over its steps after
// the first, from its per-step metrics: each window is one step, from the end of the last.
absl::StatusOr<double> TrainOnce(const Data& data, const ScratchDir& scratch, bool share,
                                 int rep) {
  TrainingConfig config;
  config.train_path = data.path;
  config.tokenizer_path = data.tokenizer_path;
  config.preset = absl::GetFlag(FLAGS_preset);
  config.max_length = absl::GetFlag(FLAGS_max_length);
  config.truncation = TruncationPolicy::kTruncate;
  config.batch_size = absl::GetFlag(FLAGS_batch_size);
  config.max_steps = absl::GetFlag(FLAGS_steps);
  config.seed = 42 + rep;  // batches and initial weights differ by rep, not by arm
  // A small held-out set, so that the final evaluation (not timed) stays short.
  config.eval_fraction = 0.01;
  config.max_eval_pairs = 8;
  config.logging_steps = 1;
  config.save_steps = 0;
  config.prefix_sharing = share;
  const std::string name = absl::StrCat(share ? "shared-" : "padded-", rep);
  config.run_dir = scratch.Path(absl::StrCat("run-", name));
  config.output_dir = scratch.Path(absl::StrCat("model-", name));
  int64_t pairs = 0;
  double seconds = 0;
  TrainerCallbacks callbacks;
  callbacks.on_step = [&](const TrainStepMetrics& m) {
    if (m.step <= 1) return;
    pairs += m.pairs;
    seconds += m.window_seconds;
  };
  ASSIGN_OR_RETURN(auto trainer, Trainer::Create(config, callbacks));
  RETURN_IF_ERROR(trainer->Run().status());
  if (seconds <= 0) return absl::InternalError("no timed steps; raise --steps");
  return pairs / seconds;
}

absl::Status Run() {
  if (absl::GetFlag(FLAGS_threads) > 0) at::set_num_threads(absl::GetFlag(FLAGS_threads));
  std::cout << "prefix_bench: " << DescribeMachine() << "\n";
  ScratchDir scratch("prefix");
  ASSIGN_OR_RETURN(Data data, Prepare(scratch));

  int64_t items = 0, tokens = 0, unique_tokens = 0;
  for (const auto& request : data.requests) {
    std::vector<absl::Span<const int32_t>> spans(request.begin(), request.end());
    for (const auto& s : request) tokens += static_cast<int64_t>(s.size());
    items += static_cast<int64_t>(request.size());
    // Tokens left to compute once each prompt is shared.
    int64_t shared = request.front().size();
    for (const auto& s : request) {
      const auto m =
          std::mismatch(s.begin(), s.end(), request.front().begin(), request.front().end());
      shared = std::min<int64_t>(shared, m.first - s.begin());
    }
    unique_tokens += shared;
    for (const auto& s : request) unique_tokens += static_cast<int64_t>(s.size()) - shared;
  }
  int64_t pair_tokens = 0, pair_unique = 0;
  for (const EncodedPair& pair : data.pairs) {
    pair_tokens += static_cast<int64_t>(pair.chosen.size() + pair.rejected.size());
    pair_unique +=
        static_cast<int64_t>(pair.chosen.size() + pair.rejected.size()) - SharedPrefixLength(pair);
  }
  std::cout << absl::StrFormat(
      "preset %s, %d prompts x %d completions: %d items, mean %.0f tokens, %.2f of the tokens "
      "left once prompts are shared; %d training pairs, mean %.0f tokens a side, %.2f left\n",
      absl::GetFlag(FLAGS_preset), data.requests.size(), absl::GetFlag(FLAGS_group), items,
      static_cast<double>(tokens) / items, static_cast<double>(unique_tokens) / tokens,
      data.pairs.size(), pair_tokens / (2.0 * data.pairs.size()),
      static_cast<double>(pair_unique) / pair_tokens);

  // Two scoring models on the same weights (same seed), sharing on and off.
  std::shared_ptr<const ScoringModel> scoring[2];
  for (int arm = 0; arm < 2; ++arm) {
    ModelOptions options;
    options.seed = 7;
    ASSIGN_OR_RETURN(auto model, CreateRewardModel(data.model_config, options));
    ScoringSettings settings;
    settings.share_prefixes = arm == 0;
    ASSIGN_OR_RETURN(scoring[arm], ScoringModel::Create(std::move(model), nullptr, settings));
  }
  std::vector<double> score_rate[2], train_rate[2];
  std::cout << "\nrun        scoring items/s  training pairs/s  load\n";
  for (int rep = 0; rep < absl::GetFlag(FLAGS_reps); ++rep) {
    for (int arm = 0; arm < 2; ++arm) {
      ASSIGN_OR_RETURN(const double items_per_second, ScoreOnce(scoring[arm], data));
      ASSIGN_OR_RETURN(const double pairs_per_second, TrainOnce(data, scratch, arm == 0, rep));
      score_rate[arm].push_back(items_per_second);
      train_rate[arm].push_back(pairs_per_second);
      std::cout << absl::StrFormat("%s rep %d  %15.1f  %16.2f  %.2f\n", arm == 0 ? "A" : "B", rep,
                                   items_per_second, pairs_per_second, LoadAverage())
                << std::flush;
    }
  }
  std::cout << absl::StrFormat(
      "\nmedians: scoring items/s shared (A) %.1f, unshared (B) %.1f, A/B %.2fx; training "
      "pairs/s shared %.2f, unshared %.2f, A/B %.2fx\n",
      Median(score_rate[0]), Median(score_rate[1]), Median(score_rate[0]) / Median(score_rate[1]),
      Median(train_rate[0]), Median(train_rate[1]), Median(train_rate[0]) / Median(train_rate[1]));
  std::cout << "after: " << DescribeMachine() << "\n";
  return absl::OkStatus();
}

}  // namespace
}  // namespace verdict::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "prefix_bench: decoder scoring items/s and training pairs/s with and without prefix "
      "sharing.");
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = verdict::bench::Run();
  if (!status.ok()) {
    std::cerr << "prefix_bench: " << status << "\n";
    return 1;
  }
  return 0;
}
