// baseline_tool: our side of the Python baseline in bench/baseline/ (see its README.md).
//
// Two modes:
//   --mode=export --out=DIR   prepares what both arms share, from the trainer's own data path:
//       DIR/tokenizer/      a SentencePiece tokenizer trained on the training split (as
//                           train_bench trains it);
//       DIR/init/           a from-scratch preset model (or --base_model with a fresh head)
//                           saved by the real Trainer after one step at learning rate
//                           1e-30 (so its weights are the initial ones), with config.json,
//                           model.safetensors and the tokenizer;
//       DIR/pairs.jsonl     every training pair as token ids, {"chosen": [...], "rejected":
//                           [...]}, encoded exactly as the trainer encodes them;
//       DIR/items.jsonl     (prompt, chosen response, rejected response) texts of the first
//                           256 training pairs, the scoring load (load.py);
//       DIR/check.json      the pair indices of the trainer's first batch (plain shuffled,
//                           seed 42) and the loss the trainer reported for it: the Python
//                           loop must compute the same loss on the same weights and ids.
//   --mode=train --out=DIR    trains DIR/init with the real Trainer (length-grouped batches, as
//       shipped) for --max_steps steps and prints one line "RESULT pairs_per_second=..." over
//       the steps after the first, timed as train_bench times them; --keep=PATH keeps the
//       trained model directory (for the scoring arm).
//
//   baseline_tool --mode=export --out=/tmp/bl --preset=encoder-tiny --max_length=256
//   baseline_tool --mode=export --out=/tmp/bl --base_model=tests/data/models/stories260K-hf
//   baseline_tool --mode=train --out=/tmp/bl --max_steps=12 --seed=43
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "bench/bench_util.h"
#include "core/data/dataset_split.h"
#include "core/model/model_config.h"
#include "core/tokenize/pair_encoding.h"
#include "core/tokenize/tokenizer.h"
#include "core/train/batching.h"
#include "core/train/trainer.h"
#include "core/util/status_macros.h"

ABSL_FLAG(std::string, mode, "export", "export or train.");
ABSL_FLAG(std::string, out, "", "The shared directory (written by export, read by train).");
ABSL_FLAG(std::string, data, "",
          "Training data; default: tests/data/hh-rlhf/helpful-base/test.jsonl.gz.");
ABSL_FLAG(std::string, preset, "encoder-tiny", "From-scratch architecture (export).");
ABSL_FLAG(std::string, base_model, "",
          "A Hugging Face base directory to start from instead of --preset (export).");
ABSL_FLAG(int64_t, vocab_size, 4000, "Vocabulary of the SentencePiece tokenizer (export).");
ABSL_FLAG(int64_t, batch_size, 16, "Pairs per batch.");
ABSL_FLAG(int64_t, max_length, 256, "Longest sequence in tokens (longer pairs are truncated).");
ABSL_FLAG(int64_t, max_steps, 12, "Optimizer steps (train).");
ABSL_FLAG(int64_t, seed, 42, "Batch-order seed (train).");
ABSL_FLAG(double, learning_rate, 1e-4, "AdamW learning rate, decayed linearly to 0 (train).");
ABSL_FLAG(std::string, keep, "", "Where to keep the trained model directory (train).");

namespace verdict::bench {
namespace {

namespace fs = std::filesystem;

// The settings both modes share, as train_bench sets them.
TrainingConfig BaseConfig(const std::string& data) {
  TrainingConfig config;
  config.train_path = data;
  config.eval_fraction = 0.05;
  config.split_seed = 42;
  config.max_eval_pairs = 16;  // the final evaluation is not what is measured
  config.batch_size = absl::GetFlag(FLAGS_batch_size);
  config.max_length = absl::GetFlag(FLAGS_max_length);
  config.truncation = TruncationPolicy::kTruncate;
  config.logging_steps = 1;
  config.save_steps = 0;
  return config;
}

absl::Status WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.close();
  if (!out) return absl::InternalError("cannot write " + path);
  return absl::OkStatus();
}

absl::Status Export(const std::string& data, const std::string& out) {
  fs::create_directories(out);
  TrainingConfig config = BaseConfig(data);
  config.preset = absl::GetFlag(FLAGS_preset);
  config.vocab_size = absl::GetFlag(FLAGS_vocab_size);

  PreferenceDataSpec spec;
  spec.train_path = data;
  spec.eval_fraction = config.eval_fraction;
  spec.seed = config.split_seed;
  ASSIGN_OR_RETURN(TrainEvalData split, LoadTrainEvalData(spec));
  const std::string base = absl::GetFlag(FLAGS_base_model);
  std::unique_ptr<Tokenizer> tokenizer;
  ModelConfig model_config;
  if (base.empty()) {
    config.tokenizer_path = out + "/tokenizer";
    RETURN_IF_ERROR(TrainTokenizerForPairs(split.train, config, config.tokenizer_path));
    ASSIGN_OR_RETURN(tokenizer, LoadTokenizerFromDirectory(config.tokenizer_path));
    ASSIGN_OR_RETURN(model_config, PresetModelConfig(config.preset, tokenizer->vocab_size(), 0));
  } else {
    // A Hugging Face base (e.g. stories260K-hf): its tokenizer and architecture, a fresh head.
    config.base_model_dir = base;
    ASSIGN_OR_RETURN(tokenizer, LoadTokenizerFromDirectory(base));
    ASSIGN_OR_RETURN(model_config, LoadModelConfig(base + "/config.json"));
  }

  // The trainer's encoding (as train_bench reproduces it).
  const InputEncoding encoding = InputEncodingOf(model_config, EncodingOf(config));
  std::vector<EncodedPair> pairs;
  std::string pairs_jsonl, items_jsonl;
  for (size_t i = 0; i < split.train.size(); ++i) {
    const PreferencePair& pair = split.train[i];
    const TextOrigin origin = pair.conversational ? TextOrigin::kRendered : TextOrigin::kPlain;
    ASSIGN_OR_RETURN(PairEncoding chosen,
                     EncodeInput(*tokenizer, encoding, pair.prompt, pair.chosen, origin));
    ASSIGN_OR_RETURN(PairEncoding rejected,
                     EncodeInput(*tokenizer, encoding, pair.prompt, pair.rejected, origin));
    pairs_jsonl += nlohmann::json{{"chosen", chosen.ids}, {"rejected", rejected.ids}}.dump() + "\n";
    if (i < 256) {
      items_jsonl +=
          nlohmann::json{
              {"prompt", pair.prompt}, {"response", pair.chosen}, {"rejected", pair.rejected}}
              .dump() +
          "\n";
    }
    pairs.push_back(EncodedPair{std::move(chosen.ids), std::move(rejected.ids), 0.0f});
  }
  RETURN_IF_ERROR(WriteFile(out + "/pairs.jsonl", pairs_jsonl));
  RETURN_IF_ERROR(WriteFile(out + "/items.jsonl", items_jsonl));

  // One real trainer step at learning rate ~0 on plain shuffled batches: the saved model holds
  // the initial weights, and the step's loss is the trainer's loss on its first batch.
  config.group_by_length = false;
  config.seed = 42;
  config.max_steps = 1;
  // The settings refuse 0; 1e-30 moves no float32 weight (each changes by at most ~lr).
  config.learning_rate = 1e-30;
  config.run_dir = out + "/init.run";
  config.output_dir = out + "/init";
  TrainStepMetrics first;  // the rewards' statistics make the check sharper than the loss,
                           // which is ~log 2 for any near-zero initial rewards
  TrainerCallbacks callbacks;
  callbacks.on_step = [&](const TrainStepMetrics& m) {
    if (m.step == 1) first = m;
  };
  ASSIGN_OR_RETURN(auto trainer, Trainer::Create(config, callbacks));
  ASSIGN_OR_RETURN(TrainingResult result, trainer->Run());
  (void)result;
  fs::remove_all(config.run_dir);

  BatchingOptions options;
  options.batch_size = config.batch_size;
  options.group_by_length = false;
  options.seed = config.seed;
  const std::vector<std::vector<int64_t>> batches = MakeBatches(pairs, options, 0);
  if (batches.empty()) return absl::FailedPreconditionError("no training batches");
  RETURN_IF_ERROR(WriteFile(out + "/check.json",
                            nlohmann::json{{"batch", batches[0]},
                                           {"loss", first.loss},
                                           {"chosen_reward_mean", first.chosen_reward_mean},
                                           {"rejected_reward_mean", first.rejected_reward_mean},
                                           {"reward_min", first.reward_min},
                                           {"reward_max", first.reward_max}}
                                .dump() + "\n"));
  std::cout << absl::StrFormat(
      "baseline_tool: %d train pairs, preset %s, tokenizer %d pieces; trainer's first-batch "
      "loss %.6f; wrote %s\n",
      pairs.size(), base.empty() ? config.preset : base, tokenizer->vocab_size(), first.loss,
      out);
  return absl::OkStatus();
}

absl::Status Train(const std::string& data, const std::string& out) {
  TrainingConfig config = BaseConfig(data);
  config.base_model_dir = out + "/init";
  config.max_steps = absl::GetFlag(FLAGS_max_steps);
  config.seed = absl::GetFlag(FLAGS_seed);
  config.learning_rate = absl::GetFlag(FLAGS_learning_rate);
  ScratchDir scratch("baseline_train");
  config.run_dir = scratch.Path("run");
  config.output_dir = absl::GetFlag(FLAGS_keep).empty() ? scratch.Path("model")
                                                        : absl::GetFlag(FLAGS_keep);
  int64_t pairs = 0;
  double seconds = 0, loss = 0, padding_sum = 0;
  TrainerCallbacks callbacks;
  callbacks.on_step = [&](const TrainStepMetrics& m) {
    loss = m.loss;
    if (m.step == 1) return;  // one-off costs, as train_bench
    pairs += m.pairs;
    seconds += m.pairs / std::max(1e-9, m.pairs_per_second);
    padding_sum += m.padding_fraction;
  };
  ASSIGN_OR_RETURN(auto trainer, Trainer::Create(config, callbacks));
  ASSIGN_OR_RETURN(TrainingResult result, trainer->Run());
  (void)result;
  if (seconds <= 0) return absl::InternalError("no timed steps; raise --max_steps");
  std::cout << absl::StrFormat(
      "RESULT pairs_per_second=%.3f pairs=%d seconds=%.2f padding=%.3f last_loss=%.4f load=%.2f\n",
      pairs / seconds, pairs, seconds, padding_sum / std::max<int64_t>(1, config.max_steps - 1),
      loss, LoadAverage());
  return absl::OkStatus();
}

absl::Status Run() {
  std::string data = absl::GetFlag(FLAGS_data);
  if (data.empty()) data = DefaultDataDir() + "/hh-rlhf/helpful-base/test.jsonl.gz";
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) return absl::InvalidArgumentError("--out is required");
  if (absl::GetFlag(FLAGS_mode) == "export") return Export(data, out);
  if (absl::GetFlag(FLAGS_mode) == "train") return Train(data, out);
  return absl::InvalidArgumentError("--mode must be export or train");
}

}  // namespace
}  // namespace verdict::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "baseline_tool: shared ids and initial weights for bench/baseline, and our training arm.");
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = verdict::bench::Run();
  if (!status.ok()) {
    std::cerr << "baseline_tool: " << status << "\n";
    return 1;
  }
  return 0;
}
