// verdict-train: trains a reward model locally, without the server. Flags map one to one onto
// TrainingConfig; metrics print one line per logging step.
//
//   verdict-train --train tests/data/hh-rlhf/helpful-base/test.jsonl.gz --output /tmp/rm
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "core/train/trainer.h"

ABSL_FLAG(std::string, train, "", "Training data (.jsonl or .jsonl.gz). Required.");
ABSL_FLAG(std::string, eval, "", "Separate eval data; default: hold out --eval_fraction of --train.");
ABSL_FLAG(double, eval_fraction, 0.05, "Share of --train held out for evaluation.");
ABSL_FLAG(std::string, output, "", "Directory for the trained model (Hugging Face layout). Required.");
ABSL_FLAG(std::string, run_dir, "", "Checkpoints (resumed from if present); default: OUTPUT.run.");
ABSL_FLAG(std::string, base_model, "", "Hugging Face model directory to start from.");
ABSL_FLAG(std::string, preset, "encoder-tiny", "From-scratch architecture when --base_model is empty.");
ABSL_FLAG(std::string, tokenizer, "", "SentencePiece .model / vocab.txt; default: the base model's or trained.");
ABSL_FLAG(int64_t, vocab_size, 4000, "Vocabulary of a tokenizer trained on the data.");
ABSL_FLAG(double, lr, 1e-4, "Peak learning rate.");
ABSL_FLAG(double, weight_decay, 0.0, "AdamW weight decay.");
ABSL_FLAG(std::string, lr_scheduler, "linear", "constant, linear or cosine.");
ABSL_FLAG(double, warmup_ratio, 0.0, "Share of the steps spent warming up.");
ABSL_FLAG(int64_t, batch_size, 16, "Pairs per micro-batch.");
ABSL_FLAG(int64_t, grad_accum, 1, "Micro-batches per optimizer step.");
ABSL_FLAG(double, epochs, 1, "Epochs (may be fractional).");
ABSL_FLAG(int64_t, max_steps, 0, "Stop after this many steps (overrides --epochs).");
ABSL_FLAG(int64_t, max_length, 512, "Longest sequence in tokens.");
ABSL_FLAG(std::string, truncation, "truncate", "truncate or drop.");
ABSL_FLAG(int64_t, max_batch_tokens, 0, "Padded-token budget per micro-batch (0: none).");
ABSL_FLAG(bool, group_by_length, true, "Length-grouped batches.");
ABSL_FLAG(double, center_rewards, 0.0, "center_rewards_coefficient.");
ABSL_FLAG(int64_t, logging_steps, 10, "Print metrics every N steps.");
ABSL_FLAG(int64_t, eval_steps, 0, "Evaluate every N steps (0: at epoch ends).");
ABSL_FLAG(int64_t, save_steps, 0, "Checkpoint every N steps (0: at the end).");
ABSL_FLAG(uint64_t, seed, 42, "Seed of everything random.");
ABSL_FLAG(std::string, device, "cpu", "cpu, cuda or cuda:N.");
ABSL_FLAG(std::string, dtype, "float32", "float32 or bfloat16.");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("verdict-train: pairwise reward-model training without the server.");
  absl::ParseCommandLine(argc, argv);
  verdict::TrainingConfig c;
  c.train_path = absl::GetFlag(FLAGS_train);
  c.eval_path = absl::GetFlag(FLAGS_eval);
  c.eval_fraction = c.eval_path.empty() ? absl::GetFlag(FLAGS_eval_fraction) : 0.0;
  c.output_dir = absl::GetFlag(FLAGS_output);
  c.run_dir = absl::GetFlag(FLAGS_run_dir).empty() ? c.output_dir + ".run" : absl::GetFlag(FLAGS_run_dir);
  c.base_model_dir = absl::GetFlag(FLAGS_base_model);
  c.preset = absl::GetFlag(FLAGS_preset);
  c.tokenizer_path = absl::GetFlag(FLAGS_tokenizer);
  c.vocab_size = absl::GetFlag(FLAGS_vocab_size);
  c.learning_rate = absl::GetFlag(FLAGS_lr);
  c.weight_decay = absl::GetFlag(FLAGS_weight_decay);
  c.lr_scheduler = absl::GetFlag(FLAGS_lr_scheduler);
  c.warmup_ratio = absl::GetFlag(FLAGS_warmup_ratio);
  c.batch_size = absl::GetFlag(FLAGS_batch_size);
  c.gradient_accumulation_steps = absl::GetFlag(FLAGS_grad_accum);
  c.num_epochs = absl::GetFlag(FLAGS_epochs);
  c.max_steps = absl::GetFlag(FLAGS_max_steps);
  c.max_length = absl::GetFlag(FLAGS_max_length);
  c.truncation = absl::GetFlag(FLAGS_truncation);
  c.max_batch_tokens = absl::GetFlag(FLAGS_max_batch_tokens);
  c.group_by_length = absl::GetFlag(FLAGS_group_by_length);
  c.center_rewards_coefficient = absl::GetFlag(FLAGS_center_rewards);
  c.logging_steps = absl::GetFlag(FLAGS_logging_steps);
  c.eval_steps = absl::GetFlag(FLAGS_eval_steps);
  c.save_steps = absl::GetFlag(FLAGS_save_steps);
  c.seed = absl::GetFlag(FLAGS_seed);
  c.split_seed = c.seed;
  c.device = absl::GetFlag(FLAGS_device);
  c.dtype = absl::GetFlag(FLAGS_dtype);

  verdict::TrainerCallbacks callbacks;
  callbacks.on_start = [](const verdict::DataSummary& s) {
    std::cout << absl::StrFormat(
        "data: %d train / %d eval pairs (%d invalid lines, %d identical, %d too long, %d truncated); "
        "vocab %d; %d parameters; %d steps%s\n",
        s.train_pairs, s.eval_pairs, s.invalid_lines, s.identical_dropped, s.too_long_dropped,
        s.truncated, s.vocab_size, s.parameters, s.total_steps,
        s.resumed_from_step > 0 ? absl::StrFormat(" (resumed at %d)", s.resumed_from_step) : "");
  };
  callbacks.on_step = [](const verdict::TrainStepMetrics& m) {
    std::cout << absl::StrFormat(
        "step %d/%d epoch %.2f loss %.4f acc %.3f margin %.3f lr %.2e grad %.3f | %.1f pairs/s "
        "%.0f tokens/s padding %.1f%%\n",
        m.step, m.total_steps, m.epoch, m.loss, m.accuracy, m.margin, m.learning_rate, m.grad_norm,
        m.pairs_per_second, m.tokens_per_second, 100 * m.padding_fraction);
  };
  callbacks.on_eval = [](const verdict::EvalMetrics& m) {
    std::cout << absl::StrFormat("eval @%d: loss %.4f acc %.3f reward %.3f±%.3f over %d pairs (%.1f s)\n",
                                 m.step, m.loss, m.accuracy, m.reward_mean, m.reward_std, m.pairs, m.seconds);
  };
  callbacks.on_log = [](const std::string& line) { std::cout << line << "\n"; };
  auto trainer = verdict::Trainer::Create(c, callbacks);
  if (!trainer.ok()) {
    std::cerr << "verdict-train: " << trainer.status().message() << "\n";
    return 2;
  }
  auto result = (*trainer)->Run();
  if (!result.ok()) {
    std::cerr << "verdict-train: " << result.status().message() << "\n";
    return 1;
  }
  std::cout << "model written to " << result->output_dir << " (eval accuracy "
            << result->final_eval.accuracy << ")\n";
  return 0;
}
