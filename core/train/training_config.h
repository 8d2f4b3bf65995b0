// TrainingConfig: everything one reward-model training run takes, as typed values.
//
// The default member initialisers ARE verdict's defaults, in one place: the server fills an
// unset TrainingJobSpec field from a default-constructed TrainingConfig (and documents the same
// values in proto/verdict/v1/training.proto), and verdict-train's flags start from it. They
// follow TRL's RewardConfig (learning_rate 1e-4, max_length 1024) except where a comment says.
//
// ValidateTrainingConfig is the single authority for ranges and rules. Its errors are
// INVALID_ARGUMENT and start with the field's name ("learning_rate: must be in (0, 1], got
// -1"), so that the server can put the proto path in front (server/proto_conversion.cc holds
// the field-name -> proto-path table) and the CLI the flag.
//
// Torch-free on purpose: a command-line tool may include it just to print the defaults.
// Plain value type; thread-compatible.
#ifndef VERDICT_CORE_TRAIN_TRAINING_CONFIG_H_
#define VERDICT_CORE_TRAIN_TRAINING_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/data/chat_format.h"
#include "core/data/data_format.h"
#include "core/model/device.h"
#include "core/model/input_rule.h"
#include "core/model/model_directory.h"
#include "core/tokenize/pair_encoding.h"
#include "core/tokenize/sentencepiece_tokenizer.h"
#include "core/train/lr_schedule.h"

namespace verdict {

struct TrainingConfig {
  // --- model: a Hugging Face directory, or a from-scratch preset when empty
  std::string base_model_dir;
  std::string preset = "encoder-small";  // PresetNames() in core/model/model_config.h
  Device device;                          // cpu
  // kBFloat16: autocast compute, float32 parameters and AdamW state (trainer.h). kFloat16
  // is refused (it needs loss scaling, which verdict does not implement).
  Dtype dtype = Dtype::kFloat32;

  // --- tokenizer: the base model's, a .model file, or trained on the training data
  std::string tokenizer_path;  // a SentencePiece .model file, a vocab.txt or a model directory
  int64_t vocab_size = 8000;   // when training a tokenizer on the data
  SentencePieceModelType tokenizer_type = SentencePieceModelType::kUnigram;  // when training

  // --- data
  std::string train_path;       // .jsonl or .json, plain or gzip
  std::string eval_path;        // optional separate eval file
  double eval_fraction = 0.05;  // held out of train_path when eval_path is empty
  uint64_t split_seed = 42;     // seed of the eval_fraction draw
  int64_t max_train_pairs = 0;  // use at most this many training pairs (after the split); 0 = all
  int64_t max_eval_pairs = 0;   // evaluate on at most this many pairs; 0 = all
  ChatFormat chat_format = ChatFormat::kHhRlhf;  // for conversational rows
  DataFormat data_format = DataFormat::kAuto;    // container and layouts (data_format.h)
  // How a prompt and a response become the model's input (core/model/input_rule.h); recorded
  // in the model directory. concat is TRL's rule.
  InputRule input_rule = InputRule::kConcat;
  bool skip_invalid = false;    // skip and count malformed lines instead of failing

  // --- optimisation (AdamW with decoupled weight decay)
  double learning_rate = 1e-4;
  double weight_decay = 0.0;
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_epsilon = 1e-8;
  LrScheduleKind lr_scheduler = LrScheduleKind::kLinear;
  double min_lr_ratio = 0.0;             // linear/cosine decay to min_lr_ratio * learning_rate
  int64_t warmup_steps = 0;
  double warmup_ratio = 0.0;             // used when warmup_steps is 0
  int64_t batch_size = 8;                // pairs per micro-batch (per_device_train_batch_size)
  int64_t eval_batch_size = 0;           // pairs per evaluation batch; 0 = batch_size
  int64_t gradient_accumulation_steps = 1;
  double max_grad_norm = 1.0;            // 0 disables clipping
  double num_epochs = 1;                 // may be fractional (Hugging Face's default is 3)
  int64_t max_steps = 0;                 // > 0 overrides num_epochs
  uint64_t seed = 42;
  // Encoders are further capped at their positions (EffectiveMaxLength in model_config.h).
  int64_t max_length = 1024;
  TruncationPolicy truncation = TruncationPolicy::kTruncate;  // TRL drops (kDrop)
  double center_rewards_coefficient = 0.0;
  int64_t max_batch_tokens = 0;          // padded-token budget per micro-batch; 0 = none
  bool group_by_length = true;           // Hugging Face's default is false
  // Decoders (RewardModel::shares_prefixes()): each pair trains as one row, the tokens chosen
  // and rejected begin with computed once (forward and backward), then each response; the
  // loss and gradients are those of the two sequences alone. No effect on encoders.
  bool prefix_sharing = true;
  // Recompute each transformer block in the backward pass instead of keeping its activations
  // (RewardModel::set_gradient_checkpointing): about one more forward per step for activation
  // memory that no longer grows with each block's intermediates. Same gradients.
  bool gradient_checkpointing = false;
  // LoRA (core/model/lora.h; PEFT's LoraConfig): adapters of rank lora_rank on the backbone's
  // linear layers named in lora_target_modules (empty: all of them), scaled by
  // lora_alpha / lora_rank; the backbone is frozen and the reward head trains in full. The saved
  // model has the adapters merged in. 0: off, every parameter trains.
  int64_t lora_rank = 0;
  double lora_alpha = 16;  // PEFT's default is 8; 16 is TRL's reward-modelling example
  std::vector<std::string> lora_target_modules;

  // --- logging, evaluation, checkpoints
  int64_t logging_steps = 10;
  int64_t eval_steps = 0;        // 0: evaluate at the end of each epoch only
  int64_t save_steps = 500;      // 0: checkpoint at the end only
  int64_t save_total_limit = 2;  // checkpoints kept

  // --- data parallelism (core/train/distributed.h): world_size processes, each training on
  // its slice of every global batch of world_size * batch_size pairs (and, with a budget,
  // world_size * max_batch_tokens tokens), so that W ranks x batch_size B follow the same
  // steps as 1 rank x W*B. Ranks meet through the torchrun variables (MASTER_ADDR, ...).
  int64_t world_size = 1;
  // Bounds the rendezvous and every collective: a rank that never arrives or dies fails the
  // others after this long instead of hanging them.
  int64_t distributed_timeout_seconds = 300;
  // Sums the gradients in buckets while the step's last backward runs (hooks on the gradient
  // accumulators, as c10d's Reducer does) instead of after it. Same result; off only to measure.
  bool overlap_allreduce = true;

  // --- where things go
  std::string run_dir;     // checkpoints and the trained tokenizer; resumed from if present
  std::string output_dir;  // the final model directory (core/model/model_directory.h)
};

// Every rule on the settings, i.e. every field but the three paths (train_path, run_dir,
// output_dir), which a caller may fill later. The error names the first field at fault.
absl::Status ValidateTrainingSettings(const TrainingConfig& config);

// ValidateTrainingSettings, and the paths must be set.
absl::Status ValidateTrainingConfig(const TrainingConfig& config);

// The encoding settings a model trained with `config` records (its encoding.json).
EncodingSettings EncodingOf(const TrainingConfig& config);

// The config as JSON (saved as training_args.json beside a trained model); enums by name.
std::string TrainingConfigToJson(const TrainingConfig& config);

// The config TrainingConfigToJson wrote (or any subset of its keys; a missing key keeps the
// default). The paths run_dir and output_dir, which that JSON leaves out, stay empty for the
// caller to set. INVALID_ARGUMENT names an unknown key or a value of the wrong type or name;
// the values are not validated (ValidateTrainingConfig does that).
absl::StatusOr<TrainingConfig> TrainingConfigFromJson(absl::string_view json);

// "unigram" | "bpe".
absl::StatusOr<SentencePieceModelType> ParseTokenizerType(absl::string_view name);
absl::string_view TokenizerTypeName(SentencePieceModelType type);

}  // namespace verdict

#endif  // VERDICT_CORE_TRAIN_TRAINING_CONFIG_H_
