// train_bench: training throughput of the real Trainer on real hh-rlhf pairs, from scratch
// (a SentencePiece tokenizer trained on the data, a preset encoder), comparing length-grouped
// batches (A) with plain shuffled batches (B).
//
// What it prints:
//   1. the padding fraction of both batchings over one whole epoch (MakeBatches +
//      MeasurePadding on the encoded training split; no training involved);
//   2. short training runs, interleaved A B A B ..., each reporting pairs/s, real tokens/s,
//      padding fraction and MFU over its steps after the first (the first step pays one-off
//      allocation costs), and the medians per arm with their ratio.
//
// MFU = model FLOPs per second / peak FLOPs per second, where
//   model FLOPs per real token = 6 * N + 12 * layers * hidden * L   (encoders; 6 for decoders)
//     N = non-embedding parameters (embedding lookups are not matrix products), the 6 = forward
//     (2) + backward (4); the second term is attention's QK^T and AV products, forward and
//     backward, over a context of L tokens, L the token-weighted mean sequence length of the
//     training split (sum len^2 / sum len), halved for causal decoders;
//   padding tokens count as waste, not work, so padding lowers MFU;
//   peak = a dense float32 GEMM (torch::mm, gemm_size^3) measured in this process right before
//     each run, with the same LibTorch thread count.
// Alongside: the FLOPs the timed batches really execute (every row padded to its batch's
// longest, attention quadratic in the padded length; the batches recomputed with MakeBatches
// exactly as the trainer cuts them), per second and over the GEMM peak (HFU). Equal HFU with
// unequal MFU means one arm is slower because it computes more, not because it computes worse.
// "cpu" is the process's CPU seconds over the run's wall time: on a shared machine, how much
// of the 2 cores the run actually got.
//
//   train_bench                                   # encoder-tiny, 20 steps, 3 reps per arm
//   train_bench --preset=encoder-small --max_steps=8 --reps=2
#include <sys/resource.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "bench/bench_util.h"
#include "core/data/dataset_split.h"
#include "core/model/model_config.h"
#include "core/model/reward_model.h"
#include "core/tokenize/pair_encoding.h"
#include "core/tokenize/tokenizer.h"
#include "core/train/batching.h"
#include "core/train/trainer.h"
#include "core/util/status_macros.h"

ABSL_FLAG(std::string, data, "", "Training data; default: tests/data/hh-rlhf/helpful-base/test.jsonl.gz.");
ABSL_FLAG(std::string, preset, "encoder-tiny", "From-scratch architecture to train.");
ABSL_FLAG(int64_t, vocab_size, 4000, "Vocabulary of the SentencePiece tokenizer trained on the data.");
ABSL_FLAG(int64_t, batch_size, 16, "Pairs per batch.");
ABSL_FLAG(int64_t, max_length, 512, "Longest sequence in tokens (longer pairs are truncated).");
ABSL_FLAG(int64_t, max_steps, 20, "Optimizer steps per run.");
ABSL_FLAG(int, reps, 3, "Runs per arm; arms alternate A B A B ...");
ABSL_FLAG(int, gemm_size, 1024, "Side of the square float32 GEMM that measures the peak.");
ABSL_FLAG(int, threads, 0, "LibTorch intra-op threads (0: LibTorch's default).");

namespace verdict::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// Dense float32 GEMM throughput in GFLOP/s: the peak MFU is measured against.
double MeasureGemmGflops(int n) {
  torch::NoGradGuard no_grad;
  auto a = torch::randn({n, n});
  auto b = torch::randn({n, n});
  auto c = torch::mm(a, b);  // warm-up: thread pool, caches
  c = torch::mm(a, b);
  int iterations = 0;
  const auto start = Clock::now();
  double elapsed = 0;
  while (elapsed < 0.5 || iterations < 3) {
    c = torch::mm(a, b);
    ++iterations;
    elapsed = Seconds(start);
  }
  return 2.0 * n * n * static_cast<double>(n) * iterations / elapsed / 1e9;
}

struct ModelCost {
  int64_t parameters = 0;
  int64_t embedding_parameters = 0;
  double flops_per_token = 0;
  double context = 0;  // L in the attention term
  // Training FLOPs of one row of T tokens (padding included): linear * T + attention * T^2.
  double linear = 0;
  double attention = 0;
  double RowFlops(double tokens) const { return linear * tokens + attention * tokens * tokens; }
};

absl::StatusOr<ModelCost> EstimateModelCost(const std::string& preset, const Tokenizer& tokenizer,
                                            const std::vector<EncodedPair>& pairs) {
  const int32_t pad = tokenizer.special_tokens().pad;
  ASSIGN_OR_RETURN(ModelConfig config, PresetModelConfig(preset, tokenizer.vocab_size(), pad >= 0 ? pad : 0));
  ASSIGN_OR_RETURN(std::unique_ptr<RewardModel> model, CreateRewardModel(config, ModelOptions{}));
  ModelCost cost;
  for (const auto& [name, tensor] : model->StateDict()) {
    cost.parameters += tensor.numel();
    if (absl::StrContains(name, "embeddings") || absl::StrContains(name, "embed_tokens")) {
      cost.embedding_parameters += tensor.numel();
    }
  }
  double sum_len = 0, sum_len_sq = 0;
  for (const EncodedPair& pair : pairs) {
    for (const auto* seq : {&pair.chosen, &pair.rejected}) {
      sum_len += seq->size();
      sum_len_sq += static_cast<double>(seq->size()) * seq->size();
    }
  }
  cost.context = sum_len > 0 ? sum_len_sq / sum_len : 0;
  const double attention_factor = config.family == ModelFamily::kEncoder ? 12.0 : 6.0;
  cost.linear = 6.0 * (cost.parameters - cost.embedding_parameters);
  cost.attention = attention_factor * config.num_layers * config.hidden_size;
  cost.flops_per_token = cost.linear + cost.attention * cost.context;
  return cost;
}

struct EpochPadding {
  int64_t batches = 0;
  PaddingStats stats;
};

EpochPadding MeasureEpochPadding(const std::vector<EncodedPair>& pairs, bool group_by_length,
                                 int64_t batch_size) {
  BatchingOptions options;
  options.batch_size = batch_size;
  options.group_by_length = group_by_length;
  EpochPadding out;
  for (const auto& batch : MakeBatches(pairs, options, 0)) {
    const PaddingStats s = MeasurePadding(pairs, batch);
    out.stats.real_tokens += s.real_tokens;
    out.stats.padded_tokens += s.padded_tokens;
    ++out.batches;
  }
  return out;
}

struct RunResult {
  bool grouped = false;
  double pairs_per_second = 0;
  double tokens_per_second = 0;  // real tokens
  double padding_fraction = 0;
  double gemm_gflops = 0;
  double mfu = 0;
  double executed_gflops = 0;  // FLOPs the timed batches ran, padding included, per second
  double hfu = 0;              // executed_gflops / GEMM
  double cpu_share = 0;        // process CPU seconds / wall seconds over the run
  double loss = 0;
  double wall_seconds = 0;
  double load = 0;
};

double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
         (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

// The FLOPs the timed steps (2..max_steps) execute: every row padded to its batch's longest,
// attention over the padded length. The batches are the trainer's own (MakeBatches with the
// run's seed, epoch 0).
double ExecutedFlopsOfTimedSteps(const std::vector<EncodedPair>& pairs, const TrainingConfig& config,
                                 const ModelCost& cost) {
  BatchingOptions options;
  options.batch_size = config.batch_size;
  options.max_batch_tokens = config.max_batch_tokens;
  options.group_by_length = config.group_by_length;
  options.seed = config.seed;
  double flops = 0;
  int64_t step = 0, epoch = 0;
  while (step < config.max_steps) {
    for (const auto& batch : MakeBatches(pairs, options, epoch)) {
      if (++step > config.max_steps) break;
      if (step == 1) continue;
      const PaddingStats padding = MeasurePadding(pairs, batch);
      const double rows = 2.0 * batch.size();
      flops += rows * cost.RowFlops(padding.padded_tokens / rows);
    }
    ++epoch;
  }
  return flops;
}

absl::StatusOr<RunResult> TrainOnce(const TrainingConfig& base, bool grouped, int rep,
                                    const ScratchDir& scratch, const ModelCost& cost,
                                    const std::vector<EncodedPair>& encoded) {
  RunResult r;
  r.grouped = grouped;
  r.load = LoadAverage();
  r.gemm_gflops = MeasureGemmGflops(absl::GetFlag(FLAGS_gemm_size));

  TrainingConfig config = base;
  config.group_by_length = grouped;
  config.seed = 42 + rep;  // each rep sees other batches; both arms of a rep the same model init
  const std::string name = absl::StrFormat("%s-%d", grouped ? "grouped" : "plain", rep);
  config.run_dir = scratch.Path(name + ".run");
  config.output_dir = scratch.Path(name + ".model");

  int64_t pairs = 0, real = 0;
  double padded = 0, seconds = 0;
  TrainerCallbacks callbacks;
  callbacks.on_step = [&](const TrainStepMetrics& m) {
    r.loss = m.loss;
    if (m.step == 1) return;  // one-off costs
    pairs += m.pairs;
    real += m.tokens;
    padded += m.tokens / std::max(1e-9, 1.0 - m.padding_fraction);
    seconds += m.pairs / std::max(1e-9, m.pairs_per_second);
  };
  const auto start = Clock::now();
  const double cpu_start = CpuSeconds();
  ASSIGN_OR_RETURN(auto trainer, Trainer::Create(config, callbacks));
  ASSIGN_OR_RETURN(TrainingResult result, trainer->Run());
  r.wall_seconds = Seconds(start);
  r.cpu_share = (CpuSeconds() - cpu_start) / r.wall_seconds;
  if (seconds <= 0) return absl::InternalError("no timed steps; raise --max_steps");
  r.pairs_per_second = pairs / seconds;
  r.tokens_per_second = real / seconds;
  r.padding_fraction = padded > 0 ? 1.0 - real / padded : 0;
  r.mfu = r.tokens_per_second * cost.flops_per_token / (r.gemm_gflops * 1e9);
  r.executed_gflops = ExecutedFlopsOfTimedSteps(encoded, config, cost) / seconds / 1e9;
  r.hfu = r.executed_gflops / r.gemm_gflops;
  std::error_code ignored;
  fs::remove_all(config.run_dir, ignored);
  fs::remove_all(config.output_dir, ignored);
  return r;
}

absl::Status Run() {
  if (absl::GetFlag(FLAGS_threads) > 0) at::set_num_threads(absl::GetFlag(FLAGS_threads));
  std::string data = absl::GetFlag(FLAGS_data);
  if (data.empty()) data = DefaultDataDir() + "/hh-rlhf/helpful-base/test.jsonl.gz";
  std::cout << "train_bench: " << DescribeMachine() << "\n";
  std::cout << absl::StrFormat("data %s, preset %s, batch %d pairs, max_length %d (truncate), %d steps/run\n",
                               data, absl::GetFlag(FLAGS_preset), absl::GetFlag(FLAGS_batch_size),
                               absl::GetFlag(FLAGS_max_length), absl::GetFlag(FLAGS_max_steps));
  ScratchDir scratch("train");

  // The trainer's own data preparation, done once here: the same split, the same tokenizer
  // options, the same encoding. Every run then loads this tokenizer instead of retraining it.
  TrainingConfig config;
  config.train_path = data;
  config.eval_fraction = 0.05;
  config.split_seed = 42;
  config.max_eval_pairs = 16;  // the final evaluation is not what is measured
  config.preset = absl::GetFlag(FLAGS_preset);
  config.vocab_size = absl::GetFlag(FLAGS_vocab_size);
  config.batch_size = absl::GetFlag(FLAGS_batch_size);
  config.max_length = absl::GetFlag(FLAGS_max_length);
  config.truncation = TruncationPolicy::kTruncate;
  config.max_steps = absl::GetFlag(FLAGS_max_steps);
  config.logging_steps = 1;
  config.save_steps = 0;
  config.learning_rate = 1e-4;

  PreferenceDataSpec spec;
  spec.train_path = data;
  spec.eval_fraction = config.eval_fraction;
  spec.seed = config.split_seed;
  ASSIGN_OR_RETURN(TrainEvalData split, LoadTrainEvalData(spec));
  auto start = Clock::now();
  config.tokenizer_path = scratch.Path("tokenizer");
  RETURN_IF_ERROR(TrainTokenizerForPairs(split.train, config, config.tokenizer_path));
  const double tokenizer_seconds = Seconds(start);
  ASSIGN_OR_RETURN(auto tokenizer, LoadTokenizerFromDirectory(config.tokenizer_path));

  ASSIGN_OR_RETURN(ModelConfig preset_config, PresetModelConfig(config.preset, tokenizer->vocab_size(), 0));
  // As the trainer encodes.
  const InputEncoding encoding = InputEncodingOf(preset_config, EncodingOf(config));
  std::vector<EncodedPair> pairs;
  for (const PreferencePair& pair : split.train) {
    const TextOrigin origin = pair.conversational ? TextOrigin::kRendered : TextOrigin::kPlain;
    ASSIGN_OR_RETURN(PairEncoding chosen,
                     EncodeInput(*tokenizer, encoding, pair.prompt, pair.chosen, origin));
    ASSIGN_OR_RETURN(PairEncoding rejected,
                     EncodeInput(*tokenizer, encoding, pair.prompt, pair.rejected, origin));
    pairs.push_back(EncodedPair{std::move(chosen.ids), std::move(rejected.ids), 0.0f});
  }
  std::cout << absl::StrFormat("tokenizer: %d pieces trained on %d train pairs in %.1f s\n",
                               tokenizer->vocab_size(), split.train.size(), tokenizer_seconds);

  // 1. Padding over a whole epoch.
  std::cout << "\n== padding over one epoch (MakeBatches + MeasurePadding, batch "
            << config.batch_size << ")\n";
  for (bool grouped : {true, false}) {
    const EpochPadding p = MeasureEpochPadding(pairs, grouped, config.batch_size);
    std::cout << absl::StrFormat(
        "%-22s batches %4d  real tokens %9d  padded tokens %9d  padding fraction %.3f\n",
        grouped ? "length-grouped (A)" : "plain shuffled (B)", p.batches, p.stats.real_tokens,
        p.stats.padded_tokens, p.stats.padding_fraction());
  }

  // 2. Training runs.
  ASSIGN_OR_RETURN(ModelCost cost, EstimateModelCost(config.preset, *tokenizer, pairs));
  std::cout << absl::StrFormat(
      "\n== training runs, A = length-grouped, B = plain shuffled, A B A B ...\n"
      "model %s: %d parameters (%d in embeddings); FLOPs/real token = 6*%d + attention(L=%.0f) "
      "= %.3g\n",
      config.preset, cost.parameters, cost.embedding_parameters,
      cost.parameters - cost.embedding_parameters, cost.context, cost.flops_per_token);
  std::cout << "run          pairs/s  tokens/s  padding  GEMM GFLOP/s     MFU  exec GFLOP/s     HFU  "
               "loss    wall s  cpu   load\n";
  std::vector<RunResult> results;
  for (int rep = 0; rep < absl::GetFlag(FLAGS_reps); ++rep) {
    for (bool grouped : {true, false}) {
      ASSIGN_OR_RETURN(RunResult r, TrainOnce(config, grouped, rep, scratch, cost, pairs));
      std::cout << absl::StrFormat(
                       "%s rep %d  %7.2f  %8.0f   %.3f      %7.1f  %5.2f%%      %7.1f  %5.2f%%  "
                       "%.4f  %6.1f  %3.0f%%  %.2f\n",
                       grouped ? "A" : "B", rep, r.pairs_per_second, r.tokens_per_second,
                       r.padding_fraction, r.gemm_gflops, 100 * r.mfu, r.executed_gflops,
                       100 * r.hfu, r.loss, r.wall_seconds, 100 * r.cpu_share, r.load)
                << std::flush;
      results.push_back(r);
    }
  }
  auto median_of = [&](bool grouped, double RunResult::*field) {
    std::vector<double> v;
    for (const RunResult& r : results) {
      if (r.grouped == grouped) v.push_back(r.*field);
    }
    return Median(v);
  };
  std::cout << "\n== medians\n";
  for (bool grouped : {true, false}) {
    std::cout << absl::StrFormat(
        "%-22s pairs/s %7.2f  tokens/s %8.0f  padding %.3f  GEMM %.1f GFLOP/s  MFU %.2f%%  "
        "executed %.1f GFLOP/s  HFU %.2f%%\n",
        grouped ? "length-grouped (A)" : "plain shuffled (B)",
        median_of(grouped, &RunResult::pairs_per_second),
        median_of(grouped, &RunResult::tokens_per_second),
        median_of(grouped, &RunResult::padding_fraction), median_of(grouped, &RunResult::gemm_gflops),
        100 * median_of(grouped, &RunResult::mfu), median_of(grouped, &RunResult::executed_gflops),
        100 * median_of(grouped, &RunResult::hfu));
  }
  std::cout << absl::StrFormat(
      "A/B ratio: pairs/s %.2fx  tokens/s %.2fx  MFU %.2fx\n",
      median_of(true, &RunResult::pairs_per_second) / median_of(false, &RunResult::pairs_per_second),
      median_of(true, &RunResult::tokens_per_second) / median_of(false, &RunResult::tokens_per_second),
      median_of(true, &RunResult::mfu) / median_of(false, &RunResult::mfu));
  std::cout << "after: " << DescribeMachine() << "\n";
  return absl::OkStatus();
}

}  // namespace
}  // namespace verdict::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "train_bench: training pairs/s, tokens/s, padding and MFU, length-grouped vs plain batches.");
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = verdict::bench::Run();
  if (!status.ok()) {
    std::cerr << "train_bench: " << status << "\n";
    return 1;
  }
  return 0;
}
