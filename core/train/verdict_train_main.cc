// verdict-train: trains a reward model locally, without the server.
//
// Flags carry the names of `verdict submit`'s (client/commands/submit.cc), and their defaults
// are a default-constructed TrainingConfig's, i.e. the server's. Both spellings work:
// `--max-steps 6` as in `verdict submit`, and absl's `--max_steps 6` (absl flag names cannot
// hold dashes, so dashes in a flag's name are turned into underscores before absl parses the
// command line; `--no-group-by-length` becomes `--nogroup_by_length`). Metrics print one line
// per logging step.
//
//   verdict-train --train tests/data/hh-rlhf/helpful-base/test.jsonl.gz --output /tmp/rm \
//       --max-steps 100 --batch-size 8
//
// Data parallel: run one process per rank with the torchrun variables set (torchrun,
// PyTorchJob or an Indexed Job set them); --world-size defaults to WORLD_SIZE. Rank 0 prints
// and writes; --batch-size is per rank.
//
//   torchrun --nproc-per-node 2 --no-python verdict-train --train ... --output /shared/rm
//
// verdictd runs a data-parallel job's ranks this way too (server/rank_group.h): --config
// names the job's settings as JSON (training_args.json's keys, TrainingConfigFromJson) and
// --progress json makes rank 0 print each callback as a JSON line
// (core/train/progress_stream.h) for verdictd to record.
#include <csignal>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "core/train/progress_stream.h"
#include "core/train/trainer.h"
#include "core/util/build_info.h"

namespace {

const verdict::TrainingConfig& Defaults() {
  static const verdict::TrainingConfig* const defaults = new verdict::TrainingConfig();
  return *defaults;
}

std::string Name(absl::string_view name) { return std::string(name); }

// WORLD_SIZE as torchrun sets it, or the default; a malformed value is left for the trainer's
// rendezvous to report.
int64_t DefaultWorldSize() {
  const char* env = std::getenv("WORLD_SIZE");
  int64_t value = 0;
  if (env != nullptr && absl::SimpleAtoi(env, &value) && value >= 1) return value;
  return Defaults().world_size;
}

}  // namespace

// Data.
ABSL_FLAG(std::string, train, "", "Training data (.jsonl or .json, plain or gzip). Required.");
ABSL_FLAG(std::string, eval_file, "", "Separate eval data; default: hold out --eval-fraction.");
ABSL_FLAG(double, eval_fraction, Defaults().eval_fraction, "Share of --train held out for evaluation.");
ABSL_FLAG(int64_t, eval_max_pairs, Defaults().max_eval_pairs, "Evaluate on at most N pairs (0: all).");
ABSL_FLAG(int64_t, max_train_pairs, Defaults().max_train_pairs, "Train on at most N pairs (0: all).");
ABSL_FLAG(bool, skip_invalid, Defaults().skip_invalid, "Skip invalid lines instead of failing.");
ABSL_FLAG(std::string, chat_format, Name(verdict::ChatFormatName(Defaults().chat_format)),
          "hh (hh-rlhf), chatml or llama2, for conversational rows.");
ABSL_FLAG(std::string, data_format, Name(verdict::DataFormatName(Defaults().data_format)),
          "auto (detected), jsonl, json (a JSON array) or sharegpt (LLaMA-Factory).");
// Model.
ABSL_FLAG(std::string, output, "", "Directory for the trained model. Required.");
ABSL_FLAG(std::string, run_dir, "", "Checkpoints (resumed from if present); default: OUTPUT.run.");
ABSL_FLAG(std::string, preset, Defaults().preset, "From-scratch architecture when --base-model is empty.");
ABSL_FLAG(std::string, base_model, "", "Hugging Face model directory to start from.");
ABSL_FLAG(std::string, tokenizer, "", "SentencePiece .model / vocab.txt; default: the base model's or trained.");
ABSL_FLAG(int64_t, vocab_size, Defaults().vocab_size, "Vocabulary of a tokenizer trained on the data.");
ABSL_FLAG(std::string, input_rule, Name(verdict::InputRuleName(Defaults().input_rule)),
          "How prompt and response become input tokens: concat (TRL's), pair or chat.");
ABSL_FLAG(std::string, tokenizer_type, Name(verdict::TokenizerTypeName(Defaults().tokenizer_type)),
          "unigram or bpe: the kind of trained tokenizer.");
// Hyperparameters.
ABSL_FLAG(double, epochs, Defaults().num_epochs, "Passes over the data (may be fractional).");
ABSL_FLAG(int64_t, max_steps, Defaults().max_steps, "Stop after N steps (overrides --epochs; 0: off).");
ABSL_FLAG(double, lr, Defaults().learning_rate, "Peak learning rate.");
ABSL_FLAG(int64_t, batch_size, Defaults().batch_size, "Pairs per micro-batch.");
ABSL_FLAG(int64_t, eval_batch_size, Defaults().eval_batch_size, "Pairs per eval batch (0: --batch-size).");
ABSL_FLAG(int64_t, grad_accum, Defaults().gradient_accumulation_steps, "Micro-batches per optimizer step.");
ABSL_FLAG(int64_t, max_length, Defaults().max_length, "Longest sequence in tokens (capped at an encoder's positions).");
ABSL_FLAG(std::string, truncation, Name(verdict::TruncationPolicyName(Defaults().truncation)),
          "truncate or drop: what happens to a longer pair.");
ABSL_FLAG(int64_t, warmup_steps, Defaults().warmup_steps, "Linear warm-up steps.");
ABSL_FLAG(double, warmup_ratio, Defaults().warmup_ratio, "Warm-up as a fraction of all steps (when --warmup-steps is 0).");
ABSL_FLAG(double, min_lr_ratio, Defaults().min_lr_ratio,
          "Linear/cosine decay ends at this fraction of --lr (0: decays to 0).");
ABSL_FLAG(std::string, lr_scheduler, Name(verdict::LrScheduleKindName(Defaults().lr_scheduler)),
          "linear, cosine or constant.");
ABSL_FLAG(double, weight_decay, Defaults().weight_decay, "AdamW weight decay.");
ABSL_FLAG(double, max_grad_norm, Defaults().max_grad_norm, "Gradient clipping (0: off).");
ABSL_FLAG(double, center_rewards, Defaults().center_rewards_coefficient, "center_rewards_coefficient.");
ABSL_FLAG(int64_t, max_batch_tokens, Defaults().max_batch_tokens, "Token budget of a micro-batch (0: none).");
ABSL_FLAG(bool, group_by_length, Defaults().group_by_length, "Length-grouped batches.");
ABSL_FLAG(bool, prefix_sharing, Defaults().prefix_sharing,
          "Decoders: compute the prompt chosen and rejected share once per pair.");
ABSL_FLAG(bool, gradient_checkpointing, Defaults().gradient_checkpointing,
          "Recompute each transformer block in the backward pass (less activation memory).");
ABSL_FLAG(int64_t, lora_rank, Defaults().lora_rank,
          "LoRA adapters of this rank; the backbone frozen, the head trained (0: off).");
ABSL_FLAG(double, lora_alpha, Defaults().lora_alpha, "LoRA scale numerator (alpha / rank).");
ABSL_FLAG(std::vector<std::string>, lora_target_modules, Defaults().lora_target_modules,
          "Comma-separated layers to adapt (q_proj,v_proj,...; empty: all linear layers).");
ABSL_FLAG(uint64_t, seed, Defaults().seed, "Seed of everything random (and of the eval split).");
// Schedule.
ABSL_FLAG(int64_t, logging_steps, Defaults().logging_steps, "Print metrics every N steps.");
ABSL_FLAG(int64_t, eval_steps, Defaults().eval_steps, "Evaluate every N steps (0: at epoch ends).");
ABSL_FLAG(int64_t, save_steps, Defaults().save_steps, "Checkpoint every N steps (0: at the end only).");
ABSL_FLAG(int64_t, save_total_limit, Defaults().save_total_limit, "Checkpoints kept while running.");
ABSL_FLAG(int64_t, world_size, DefaultWorldSize(),
          "Data-parallel ranks (default: $WORLD_SIZE or 1); each rank is a process that finds "
          "the others through MASTER_ADDR, MASTER_PORT and RANK.");
ABSL_FLAG(int64_t, distributed_timeout, Defaults().distributed_timeout_seconds,
          "Seconds a rank waits for the others at rendezvous and in each collective.");
ABSL_FLAG(bool, overlap_allreduce, Defaults().overlap_allreduce,
          "Sum gradients across ranks while the backward pass runs (off: after it).");
ABSL_FLAG(std::string, config, "",
          "Every training setting from this JSON file (a model's training_args.json); the "
          "other flags are then ignored but --output, --run-dir and --world-size.");
ABSL_FLAG(std::string, progress, "text",
          "text (a line per logging step) or json (rank 0 prints each event as a JSON line, "
          "then the result; what verdictd reads from its ranks).");
ABSL_FLAG(std::string, device, verdict::DeviceName(Defaults().device), "cpu, cuda or cuda:N.");
ABSL_FLAG(std::string, dtype, Name(verdict::DtypeName(Defaults().dtype)), "float32 or bfloat16.");

namespace {

// `--max-steps=6` -> `--max_steps=6`, `--no-skip-invalid` -> `--noskip_invalid`; values and
// everything after a bare `--` are left alone.
std::vector<std::string> UnderscoreFlagNames(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  for (size_t i = 1; i < args.size(); ++i) {
    std::string& arg = args[i];
    if (arg == "--") break;
    if (arg.size() < 3 || arg[0] != '-' || arg[1] != '-') continue;
    const size_t end = std::min(arg.find('='), arg.size());
    std::string name = arg.substr(2, end - 2);
    if (name.rfind("no-", 0) == 0) name = "no" + name.substr(3);
    arg = absl::StrCat("--", absl::StrReplaceAll(name, {{"-", "_"}}), arg.substr(end));
  }
  return args;
}

template <typename T>
bool Parse(absl::string_view flag, const std::string& text,
           absl::StatusOr<T> (*parse)(absl::string_view), T* out) {
  absl::StatusOr<T> value = parse(text);
  if (!value.ok()) {
    std::cerr << "verdict-train: --" << flag << ": " << value.status().message() << "\n";
    return false;
  }
  *out = *value;
  return true;
}

// `verdict submit` calls the hh-rlhf format "hh" (the proto's CHAT_FORMAT_HH).
absl::StatusOr<verdict::ChatFormat> ParseChatFormatFlag(absl::string_view name) {
  if (name == "hh") return verdict::ChatFormat::kHhRlhf;
  return verdict::ParseChatFormat(name);
}

// The config --config names, with the paths and --world-size from the flags; false after
// printing the problem.
bool ConfigFromFile(verdict::TrainingConfig& c) {
  const std::string path = absl::GetFlag(FLAGS_config);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) {
    std::cerr << "verdict-train: --config: cannot read " << path << "\n";
    return false;
  }
  absl::StatusOr<verdict::TrainingConfig> read = verdict::TrainingConfigFromJson(text.str());
  if (!read.ok()) {
    std::cerr << "verdict-train: --config " << path << ": " << read.status().message() << "\n";
    return false;
  }
  c = *std::move(read);
  c.output_dir = absl::GetFlag(FLAGS_output);
  c.run_dir = absl::GetFlag(FLAGS_run_dir).empty() ? c.output_dir + ".run" : absl::GetFlag(FLAGS_run_dir);
  c.world_size = absl::GetFlag(FLAGS_world_size);
  return true;
}

// The config the flags describe; false after printing the problem.
bool ConfigFromFlags(verdict::TrainingConfig& c) {
  if (!absl::GetFlag(FLAGS_config).empty()) return ConfigFromFile(c);
  c.train_path = absl::GetFlag(FLAGS_train);
  c.eval_path = absl::GetFlag(FLAGS_eval_file);
  c.eval_fraction = c.eval_path.empty() ? absl::GetFlag(FLAGS_eval_fraction) : 0.0;
  c.max_eval_pairs = absl::GetFlag(FLAGS_eval_max_pairs);
  c.max_train_pairs = absl::GetFlag(FLAGS_max_train_pairs);
  c.skip_invalid = absl::GetFlag(FLAGS_skip_invalid);
  c.output_dir = absl::GetFlag(FLAGS_output);
  c.run_dir = absl::GetFlag(FLAGS_run_dir).empty() ? c.output_dir + ".run" : absl::GetFlag(FLAGS_run_dir);
  c.base_model_dir = absl::GetFlag(FLAGS_base_model);
  c.preset = absl::GetFlag(FLAGS_preset);
  c.tokenizer_path = absl::GetFlag(FLAGS_tokenizer);
  c.vocab_size = absl::GetFlag(FLAGS_vocab_size);
  c.num_epochs = absl::GetFlag(FLAGS_epochs);
  c.max_steps = absl::GetFlag(FLAGS_max_steps);
  c.learning_rate = absl::GetFlag(FLAGS_lr);
  c.batch_size = absl::GetFlag(FLAGS_batch_size);
  c.eval_batch_size = absl::GetFlag(FLAGS_eval_batch_size);
  c.gradient_accumulation_steps = absl::GetFlag(FLAGS_grad_accum);
  c.max_length = absl::GetFlag(FLAGS_max_length);
  c.warmup_steps = absl::GetFlag(FLAGS_warmup_steps);
  c.warmup_ratio = absl::GetFlag(FLAGS_warmup_ratio);
  c.min_lr_ratio = absl::GetFlag(FLAGS_min_lr_ratio);
  c.weight_decay = absl::GetFlag(FLAGS_weight_decay);
  c.max_grad_norm = absl::GetFlag(FLAGS_max_grad_norm);
  c.center_rewards_coefficient = absl::GetFlag(FLAGS_center_rewards);
  c.max_batch_tokens = absl::GetFlag(FLAGS_max_batch_tokens);
  c.group_by_length = absl::GetFlag(FLAGS_group_by_length);
  c.prefix_sharing = absl::GetFlag(FLAGS_prefix_sharing);
  c.gradient_checkpointing = absl::GetFlag(FLAGS_gradient_checkpointing);
  c.lora_rank = absl::GetFlag(FLAGS_lora_rank);
  c.lora_alpha = absl::GetFlag(FLAGS_lora_alpha);
  c.lora_target_modules = absl::GetFlag(FLAGS_lora_target_modules);
  c.seed = absl::GetFlag(FLAGS_seed);
  c.split_seed = c.seed;  // as the server does by default
  c.logging_steps = absl::GetFlag(FLAGS_logging_steps);
  c.eval_steps = absl::GetFlag(FLAGS_eval_steps);
  c.save_steps = absl::GetFlag(FLAGS_save_steps);
  c.save_total_limit = absl::GetFlag(FLAGS_save_total_limit);
  c.world_size = absl::GetFlag(FLAGS_world_size);
  c.distributed_timeout_seconds = absl::GetFlag(FLAGS_distributed_timeout);
  c.overlap_allreduce = absl::GetFlag(FLAGS_overlap_allreduce);
  return Parse("chat-format", absl::GetFlag(FLAGS_chat_format), &ParseChatFormatFlag,
               &c.chat_format) &&
         Parse("data-format", absl::GetFlag(FLAGS_data_format), &verdict::ParseDataFormat,
               &c.data_format) &&
         Parse("tokenizer-type", absl::GetFlag(FLAGS_tokenizer_type), &verdict::ParseTokenizerType,
               &c.tokenizer_type) &&
         Parse("truncation", absl::GetFlag(FLAGS_truncation), &verdict::ParseTruncationPolicy,
               &c.truncation) &&
         Parse("lr-scheduler", absl::GetFlag(FLAGS_lr_scheduler), &verdict::ParseLrScheduleKind,
               &c.lr_scheduler) &&
         Parse("input-rule", absl::GetFlag(FLAGS_input_rule), &verdict::ParseInputRule,
               &c.input_rule) &&
         Parse("device", absl::GetFlag(FLAGS_device), &verdict::ParseDeviceName, &c.device) &&
         Parse("dtype", absl::GetFlag(FLAGS_dtype), &verdict::ParseDtypeName, &c.dtype);
}

// The running trainer, for the signal handler: SIGTERM or SIGINT asks it to stop after the
// current step with a checkpoint (every rank stops at the same step; the trainer reduces the
// request across ranks), as torchrun and verdictd stop their workers. A second signal kills.
std::atomic<verdict::Trainer*> running_trainer{nullptr};

extern "C" void CancelOnSignal(int) {
  if (verdict::Trainer* trainer = running_trainer.load()) trainer->Cancel();
}

void CancelOnTermination() {
  struct sigaction action = {};
  action.sa_handler = &CancelOnSignal;
  action.sa_flags = SA_RESETHAND;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
}

}  // namespace

int main(int argc, char** argv) {
  verdict::SetUpProgramUsage(
      "verdict-train",
      "pairwise reward-model training without the server.\n"
      "Usage: verdict-train --train FILE --output DIR [--flag value ...]\n"
      "Flags take the names of `verdict submit` (--max-steps or --max_steps).",
      "core/train/verdict_train_main.cc");
  std::vector<std::string> args = UnderscoreFlagNames(argc, argv);
  std::vector<char*> arg_pointers;
  for (std::string& arg : args) arg_pointers.push_back(arg.data());
  absl::ParseCommandLine(static_cast<int>(arg_pointers.size()), arg_pointers.data());
  verdict::TrainingConfig c;
  if (!ConfigFromFlags(c)) return 2;
  const std::string progress = absl::GetFlag(FLAGS_progress);
  if (progress != "text" && progress != "json") {
    std::cerr << "verdict-train: --progress: must be text or json, got " << progress << "\n";
    return 2;
  }
  const char* rank = std::getenv("RANK");
  const bool rank_zero = c.world_size <= 1 || rank == nullptr || std::string(rank) == "0";

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
    if (m.sync_seconds > 0) {
      std::cout << absl::StrFormat("  all-reduce %.1f%% of the window\n",
                                   100 * m.sync_seconds / m.window_seconds);
    }
  };
  callbacks.on_eval = [](const verdict::EvalMetrics& m) {
    std::cout << absl::StrFormat("eval @%d: loss %.4f acc %.3f reward %.3f±%.3f over %d pairs (%.1f s)\n",
                                 m.step, m.loss, m.accuracy, m.reward_mean, m.reward_std, m.pairs, m.seconds);
  };
  callbacks.on_log = [](const std::string& line) { std::cout << line << "\n"; };
  if (progress == "json") callbacks = verdict::ProgressLineCallbacks(std::cout);
  auto trainer = verdict::Trainer::Create(c, callbacks);
  if (!trainer.ok()) {
    std::cerr << "verdict-train: " << trainer.status().message() << "\n";
    if (progress == "json" && rank_zero) std::cout << verdict::ProgressErrorLine(trainer.status()) << std::endl;
    return 2;
  }
  running_trainer.store(trainer->get());
  CancelOnTermination();
  auto result = (*trainer)->Run();
  running_trainer.store(nullptr);
  if (!result.ok()) {
    std::cerr << "verdict-train: " << result.status().message() << "\n";
    if (progress == "json" && rank_zero) std::cout << verdict::ProgressErrorLine(result.status()) << std::endl;
    return 1;
  }
  if (progress == "json") {
    if (rank_zero) std::cout << verdict::ProgressResultLine(*result) << std::endl;
  } else if (!rank_zero) {
    std::cout << "rank " << rank << " done; rank 0 wrote " << result->output_dir << "\n";
  } else {
    std::cout << "model written to " << result->output_dir << " (eval accuracy "
              << result->final_eval.accuracy << ")\n";
  }
  return 0;
}
