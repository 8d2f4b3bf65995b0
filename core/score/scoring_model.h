// ScoringModel: one loaded reward model ready to serve scores — the network, its tokenizer and
// the encoding settings it was trained with, bundled so that text scored here is tokenized
// exactly as the trainer tokenized its eval pairs.
//
// A ScoringModel is immutable once built and is shared (std::shared_ptr) between the model
// registry, the DynamicBatcher that runs its forwards and the requests in flight; the last
// holder frees it, so a replaced version stays alive until its last request is done.
//
// Encoding: Encode(prompt, response) is EncodeInput() (core/model/input_rule.h) with the
// model's input rule, family, max_length and truncation policy (encoding.json of the model
// directory), so the reward of a text scored here equals the trainer's eval reward for it.
// EncodeConversation() renders messages with the model's chat format first. Scoring:
// ScoreEncoded() runs packed (encoders) or, for decoders, shared-prefix forwards of rows that
// share a prompt and length-sorted padded forwards of the rest, under inference mode; sequences must pass ValidateSequence() (the DynamicBatcher checks at
// Submit, so that one bad request never fails a batch shared with others).
//
// Thread safety: every method is const and may be called from any number of threads at once.
//
// Example:
//   ASSIGN_OR_RETURN(std::shared_ptr<ScoringModel> model,
//                    ScoringModel::Load("/models/helpful/3", ModelOptions{}));
//   ASSIGN_OR_RETURN(std::vector<int32_t> ids, model->Encode("\n\nHuman: Hi\n\nAssistant:",
//                                                           " Hello!"));
//   ASSIGN_OR_RETURN(std::vector<float> rewards, model->ScoreEncoded({ids}));
//   ASSIGN_OR_RETURN(std::vector<float> normalised, model->Normalize(rewards));
#ifndef VERDICT_CORE_SCORE_SCORING_MODEL_H_
#define VERDICT_CORE_SCORE_SCORING_MODEL_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/data/chat_format.h"
#include "core/model/input_rule.h"
#include "core/model/model_config.h"
#include "core/model/model_directory.h"
#include "core/model/reward_model.h"
#include "core/tokenize/pair_encoding.h"
#include "core/tokenize/tokenizer.h"

namespace verdict {

// How a model encodes text; Load() reads these from training_args.json.
struct ScoringSettings : EncodingSettings {
  // Absent (or with a std that is not > 0): Normalize() is unavailable.
  std::optional<RewardStats> reward_stats;
  // Not read from the directory, a serving choice: a decoder scores sequences that share a
  // prompt (their first token ids) with the prompt computed once (ScoreEncodedSpans).
  bool share_prefixes = true;
};

// ModelOptions::int8_linear for a loaded `model` (Load() calls it; so may whoever loads the
// parts itself): quantizes the weights of its packed forward's linear layers to int8.
// InvalidArgument for a decoder, a model not on the CPU or not float32. Before the model is
// shared between threads.
absl::Status QuantizeLinearsForCpuScoring(RewardModel& model, const ModelOptions& options);

class ScoringModel {
 public:
  // Loads a model directory (model_directory.h): config.json + weights (LoadRewardModel), the
  // tokenizer, its encoding settings (ReadEncodingSettings) and reward_stats.json when
  // present. Fails on
  // missing or malformed files, naming the file; float16 on the CPU is InvalidArgument.
  static absl::StatusOr<std::shared_ptr<ScoringModel>> Load(const std::string& dir,
                                                            const ModelOptions& options);

  // Builds one from parts (tests, tools). `tokenizer` may be null: such a model scores token
  // ids only, and Encode*() fail with FailedPrecondition.
  static absl::StatusOr<std::shared_ptr<ScoringModel>> Create(std::unique_ptr<RewardModel> model,
                                                              std::unique_ptr<Tokenizer> tokenizer,
                                                              const ScoringSettings& settings);

  ScoringModel(const ScoringModel&) = delete;
  ScoringModel& operator=(const ScoringModel&) = delete;

  // The token ids the model scores for `prompt` followed by `response` (either may be empty).
  // A text longer than max_length fails with InvalidArgument under the "drop" policy ("...
  // tokens, over max_length ..."), and is truncated as in training under "truncate".
  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view prompt,
                                              absl::string_view response) const;

  // A conversation ending with an assistant message: that message is the response, everything
  // before it the prompt, rendered with the model's chat format.
  absl::StatusOr<std::vector<int32_t>> EncodeConversation(
      absl::Span<const ChatMessage> messages) const;
  // An explicit prompt and response (the response must start with an assistant message), as
  // the trainer renders conversational rows that carry a "prompt".
  absl::StatusOr<std::vector<int32_t>> EncodeConversation(
      absl::Span<const ChatMessage> prompt, absl::Span<const ChatMessage> response) const;

  // A prompt and response already joined into one text, as OpenRLHF's remote reward requests
  // send them: encoded as a rendered conversation is (special tokens written in the text are
  // those tokens). FailedPrecondition for an encoder under the pair rule, whose text-pair
  // form needs the prompt and the response apart.
  absl::StatusOr<std::vector<int32_t>> EncodeJoined(absl::string_view text) const;

  // OK when ScoreEncoded() can score `ids`: not empty, every id inside the model's vocabulary,
  // no longer than the model's positions (encoders). InvalidArgument otherwise.
  absl::Status ValidateSequence(absl::Span<const int32_t> ids) const;

  // Rewards for `sequences`, in their order, under inference mode; each equals (1e-5) the
  // reward of that sequence scored alone. An encoder runs one packed forward (no padding,
  // RewardModel::ForwardPacked). A decoder, with settings' share_prefixes, first scores the
  // rows that share a prompt of at least kMinSharedPrefix tokens (PlanSharedPrefixes: the G
  // completions of one prompt) with RewardModel::ForwardShared, each prompt computed once;
  // the other rows run in right-padded forwards of rows sorted by length, cut where padding
  // or width would grow (so per-item cost does not grow with the number of sequences).
  // Each sequence must pass ValidateSequence(); LibTorch errors (out of memory, ...) come
  // back as Internal / ResourceExhausted statuses. An empty list gives an empty result.
  absl::StatusOr<std::vector<float>> ScoreEncoded(
      const std::vector<std::vector<int32_t>>& sequences) const;
  // The same over views, for callers (the batcher) whose rows live in different requests.
  absl::StatusOr<std::vector<float>> ScoreEncodedSpans(
      absl::Span<const absl::Span<const int32_t>> sequences) const;

  // The tokens the forwards of ScoreEncodedSpans(sequences) compute, padding included: the
  // real tokens for a packed encoder; for a decoder, each shared prompt once plus every
  // continuation, and rows × longest row of each padded forward of the other rows. What a
  // scoring batcher's token budget counts, so that a GRPO group (one prompt, G completions)
  // costs what it computes, not G padded copies of the prompt. Cheap next to a forward: no
  // tensor work, O(n log n) over the token ids. 0 for an empty list.
  int64_t ForwardTokens(absl::Span<const absl::Span<const int32_t>> sequences) const;

  // (r - mean) / std with the saved statistics; FailedPrecondition when there are none.
  absl::StatusOr<std::vector<float>> Normalize(absl::Span<const float> raw) const;

  // The shortest prompt (in tokens) worth computing once for the rows that share it.
  static constexpr int64_t kMinSharedPrefix = 16;
  bool can_normalize() const { return settings_.reward_stats.has_value(); }

  ModelFamily family() const { return model_->config().family; }
  const ModelConfig& config() const { return model_->config(); }
  const ScoringSettings& settings() const { return settings_; }
  // The max_length Encode() applies (settings' max_length, clamped for encoders).
  int64_t max_length() const { return encoding_.max_length; }
  // Longest sequence a forward accepts (MaxSequenceLength of the config; 0: none).
  int64_t max_sequence_length() const { return MaxSequenceLength(config()); }
  int32_t pad_id() const { return pad_id_; }
  int64_t parameter_count() const { return parameter_count_; }
  // Null for a model built without a tokenizer.
  const Tokenizer* tokenizer() const { return tokenizer_.get(); }
  std::string device() const { return device_.str(); }

  // For evaluation jobs, which score preference pairs with the trainer's own batched forward
  // (core/train/pair_evaluation.h): the encoding of one side of a pair exactly as Encode()
  // does it (`origin` kRendered for conversational pairs), with the too-long OutOfRange of
  // EncodeInput kept; and the model and its device. The model may only be used under
  // inference mode, as ScoreEncoded does.
  absl::StatusOr<PairEncoding> EncodePairSide(absl::string_view prompt,
                                              absl::string_view response,
                                              TextOrigin origin) const;
  RewardModel& reward_model() const { return *model_; }
  const c10::Device& torch_device() const { return device_; }

 private:
  ScoringModel(std::unique_ptr<RewardModel> model, std::unique_ptr<Tokenizer> tokenizer,
               const ScoringSettings& settings);

  // ScoreEncodedSpans' two ways, inside its inference mode and error handling: one packed
  // forward; or one padded forward of the rows `rows_of_chunk`, written to `scores` by index.
  absl::StatusOr<std::vector<float>> ScorePacked(
      absl::Span<const absl::Span<const int32_t>> sequences) const;
  // The rows of `sequences` that share prompts, scored into `scores` by index; the others
  // are left in `rest`.
  absl::Status ScoreSharedPrefixes(absl::Span<const absl::Span<const int32_t>> sequences,
                                   std::vector<float>& scores, std::vector<uint32_t>& rest) const;
  absl::Status ScorePaddedChunk(absl::Span<const absl::Span<const int32_t>> sequences,
                                absl::Span<const uint32_t> rows_of_chunk,
                                std::vector<float>& scores) const;

  absl::StatusOr<std::vector<int32_t>> EncodeText(absl::string_view prompt,
                                                  absl::string_view response,
                                                  TextOrigin origin) const;

  // Forward() is called from several threads at once under inference mode, which the
  // RewardModel contract allows; nothing else touches the model after construction.
  std::unique_ptr<RewardModel> model_;
  std::unique_ptr<const Tokenizer> tokenizer_;
  ScoringSettings settings_;
  InputEncoding encoding_;
  int32_t pad_id_ = 0;
  c10::Device device_ = c10::Device(c10::kCPU);
  int64_t parameter_count_ = 0;
};

// Reads the encoding settings and reward statistics a trained model directory holds
// (training_args.json, reward_stats.json); defaults for the files that are absent.
absl::StatusOr<ScoringSettings> ReadScoringSettings(const std::string& dir);

}  // namespace verdict

#endif  // VERDICT_CORE_SCORE_SCORING_MODEL_H_
