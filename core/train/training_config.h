// TrainingConfig: everything one reward-model training run takes, with TRL's RewardTrainer
// defaults where they make sense. The server maps a TrainingJobSpec onto this struct; the
// verdict-train tool maps flags onto it. Validate() checks every field and names the one at
// fault. Plain value type; thread-compatible.
#ifndef VERDICT_CORE_TRAIN_TRAINING_CONFIG_H_
#define VERDICT_CORE_TRAIN_TRAINING_CONFIG_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace verdict {

struct TrainingConfig {
  // --- model: a Hugging Face directory, or a from-scratch preset when empty
  std::string base_model_dir;
  std::string preset = "encoder-tiny";
  std::string device = "cpu";
  std::string dtype = "float32";

  // --- tokenizer: the base model's, a .model file, or trained on the training data
  std::string tokenizer_path;   // a SentencePiece .model file, a vocab.txt or a model directory
  int64_t vocab_size = 4000;    // when training a tokenizer on the data
  std::string tokenizer_type = "unigram";  // unigram | bpe, when training one

  // --- data
  std::string train_path;       // .jsonl or .jsonl.gz
  std::string eval_path;        // optional separate eval file
  double eval_fraction = 0.05;  // held out of train_path when eval_path is empty
  uint64_t split_seed = 42;     // seed of the eval_fraction draw
  int64_t max_train_pairs = 0;  // use at most this many training pairs (after the split); 0 = all
  int64_t max_eval_pairs = 0;   // evaluate on at most this many pairs; 0 = all
  std::string chat_format = "hh-rlhf";  // hh-rlhf | chatml | llama2, for conversational rows
  bool skip_invalid = false;    // skip and count malformed lines instead of failing

  // --- optimisation (AdamW with decoupled weight decay)
  double learning_rate = 1e-4;
  double weight_decay = 0.0;
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_epsilon = 1e-8;
  std::string lr_scheduler = "linear";  // constant | linear | cosine
  int64_t warmup_steps = 0;
  double warmup_ratio = 0.0;            // used when warmup_steps is 0
  int64_t batch_size = 16;              // pairs per micro-batch
  int64_t eval_batch_size = 0;          // pairs per evaluation batch; 0 = batch_size
  int64_t gradient_accumulation_steps = 1;
  double max_grad_norm = 1.0;           // 0 disables clipping
  double num_epochs = 1;                // may be fractional
  int64_t max_steps = 0;                // > 0 overrides num_epochs
  uint64_t seed = 42;
  int64_t max_length = 512;
  std::string truncation = "drop";      // drop (TRL) | truncate
  double center_rewards_coefficient = 0.0;
  int64_t max_batch_tokens = 0;         // padded-token budget per micro-batch; 0 = none
  bool group_by_length = true;

  // --- logging, evaluation, checkpoints
  int64_t logging_steps = 10;
  int64_t eval_steps = 0;        // 0: evaluate at the end only
  int64_t save_steps = 0;        // 0: checkpoint at the end only
  int64_t save_total_limit = 2;  // checkpoints kept

  // --- where things go
  std::string run_dir;     // checkpoints and the trained tokenizer; resumed from if present
  std::string output_dir;  // the final Hugging Face model directory
};

// Checks every field; the error names the first one at fault, e.g.
// "learning_rate must be > 0 and finite, got -1".
absl::Status ValidateTrainingConfig(const TrainingConfig& config);

// The config as JSON (saved as training_args.json beside a trained model).
std::string TrainingConfigToJson(const TrainingConfig& config);

}  // namespace verdict

#endif  // VERDICT_CORE_TRAIN_TRAINING_CONFIG_H_
