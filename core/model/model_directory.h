// A model directory: what a trained (or imported) reward model is on disk, in Hugging Face's
// layout plus verdict's side files. One place for its file names and for reading and writing
// each part:
//
//   config.json             the architecture (ModelConfig; model_config.h)
//   model.safetensors       the weights, float32 (or a sharded index; reward_model.h)
//   tokenizer files         whatever core/tokenize's SaveToDirectory writes and
//                           LoadTokenizerFromDirectory reads (tokenizer.model, vocab.txt, ...)
//   encoding.json           how text becomes the model's input (EncodingSettings: input rule,
//                           chat format, max_length, truncation); written by training and by
//                           the server's import
//   training_args.json      the training configuration (trained models only)
//   reward_stats.json       reward normalisation statistics (mean, std) and the final eval
//
// The trainer writes directories with WriteModelDirectory; ScoringModel and the server read
// them with the Read* functions. Free functions, thread-safe as long as two callers do not
// write the same directory at once.
#ifndef VERDICT_CORE_MODEL_MODEL_DIRECTORY_H_
#define VERDICT_CORE_MODEL_MODEL_DIRECTORY_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/data/chat_format.h"
#include "core/model/input_rule.h"
#include "core/model/model_config.h"
#include "core/tokenize/pair_encoding.h"
#include "core/tokenize/tokenizer.h"

namespace verdict {

class RewardModel;

inline constexpr char kModelConfigFile[] = "config.json";
inline constexpr char kModelWeightsFile[] = "model.safetensors";
inline constexpr char kModelWeightsIndexFile[] = "model.safetensors.index.json";
inline constexpr char kEncodingFile[] = "encoding.json";
inline constexpr char kTrainingArgsFile[] = "training_args.json";
inline constexpr char kRewardStatsFile[] = "reward_stats.json";

// Reward normalisation statistics saved with a trained model, and the evaluation they came
// with (informational; zero when unknown).
struct RewardStats {
  double mean = 0;
  double std = 1;
  int64_t pairs = 0;
  double eval_accuracy = 0;
  double eval_loss = 0;
};

// How a model encodes text (encoding.json). Defaults are those of a Hugging Face directory
// that records nothing.
struct EncodingSettings {
  InputRule input_rule = InputRule::kConcat;
  // Tokens per sequence, special tokens included; 0 for no limit. Encoders are further
  // limited by max_position_embeddings (EffectiveMaxLength).
  int64_t max_length = 512;
  TruncationPolicy truncation = TruncationPolicy::kTruncate;
  ChatFormat chat_format = ChatFormat::kHhRlhf;
};

// What EncodeInput() needs for a model of `config` with `settings`.
InputEncoding InputEncodingOf(const ModelConfig& config, const EncodingSettings& settings);

// `dir`/`file`.
std::string ModelFilePath(const std::string& dir, absl::string_view file);

// config.json. NotFound when absent; InvalidArgument naming the file when malformed.
absl::StatusOr<ModelConfig> ReadModelDirectoryConfig(const std::string& dir);

// The directory's encoding settings, from the first of:
//   encoding.json;
//   training_args.json (a directory trained before encoding.json existed): its max_length,
//     truncation and chat_format, and input rule "pair" unless it names one;
//   the defaults, with the chat format of tokenizer_config.json's chat_template when it is one
//     ChooseChatFormat() recognises (hh-rlhf otherwise).
// InvalidArgument naming the file and key when a key is malformed.
absl::StatusOr<EncodingSettings> ReadEncodingSettings(const std::string& dir);
// Whether the directory records its encoding (encoding.json, or training_args.json).
bool HasEncodingRecord(const std::string& dir);
// The chat format a directory implies when nobody names one: the one it records, else its chat
// template's (ChooseChatFormat), else hh-rlhf. InvalidArgument when it records none and its
// chat template is none of the known formats: that is reported, never guessed.
absl::StatusOr<ChatFormat> ImpliedChatFormat(const std::string& dir);
// Writes `dir`/encoding.json atomically.
absl::Status WriteEncodingSettings(const std::string& dir, const EncodingSettings& settings);
bool HasTrainingArgs(const std::string& dir);

// reward_stats.json; nullopt when the file is absent or its std is not > 0 (a model whose
// rewards did not spread still serves raw scores). InvalidArgument when malformed.
absl::StatusOr<std::optional<RewardStats>> ReadRewardStats(const std::string& dir);

// Everything a trained model directory holds besides the network and the tokenizer.
struct ModelDirectoryExtras {
  EncodingSettings encoding;  // written as encoding.json
  RewardStats reward_stats;
  std::string training_args_json;  // written as training_args.json
};

// Writes a complete model directory at `dir`: built in "<dir>.tmp" and renamed into place,
// so the directory is complete or absent; an existing `dir` is replaced.
absl::Status WriteModelDirectory(const std::string& dir, RewardModel& model,
                                 const Tokenizer& tokenizer, const ModelDirectoryExtras& extras);

}  // namespace verdict

#endif  // VERDICT_CORE_MODEL_MODEL_DIRECTORY_H_
