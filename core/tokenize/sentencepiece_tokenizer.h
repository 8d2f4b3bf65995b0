// SentencePieceTokenizer: a SentencePiece `.model` (Llama-family, or trained here), behaving
// as Hugging Face's LlamaTokenizer with `legacy: true` does on the same file.
//
// Special tokens come from the model: unk / bos / eos / pad as the model defines them, cls /
// sep where the vocabulary has the pieces "[CLS]" / "[SEP]". Whether a decoder sequence gets
// BOS / EOS is configuration (tokenizer_config.json's add_bos_token / add_eos_token), not part
// of the model, so it comes in through Options.
//
// Train() learns a vocabulary in memory from texts. Trained models are deterministic (same
// texts and options, byte-identical model), reserve pad=0, unk=1, bos=2, eos=3 (pad 0 because
// Hugging Face sequence classifiers find the last real token through the pad id), and use byte
// fallback, so no text is ever unrepresentable. They normalise nothing (the "identity" rule,
// whitespace kept as written) because transformers' fast Llama tokenizer, converted from the
// slow one, ignores a model's normaliser: with none, both agree on every text.
//
// sentencepiece itself runs in the module libverdict_sentencepiece.so, loaded on first use
// (sentencepiece_module.h says why and where it is looked for). Load(), FromSerializedProto()
// and Train() fail with FailedPrecondition when it cannot be loaded.
//
// Example:
//   SentencePieceTokenizer::TrainOptions options;
//   options.vocab_size = 4000;
//   ASSIGN_OR_RETURN(auto tokenizer, SentencePieceTokenizer::Train(texts, options));
//   ASSIGN_OR_RETURN(std::vector<int32_t> ids, tokenizer->Encode("Hello world"));
//   RETURN_IF_ERROR(tokenizer->SaveToDirectory(model_dir));
//
// Thread safety: immutable once built; every const method may be called from any number of
// threads at once. Train() sets sentencepiece's process-wide log level: do not run two
// trainings at the same moment.
#ifndef VERDICT_CORE_TOKENIZE_SENTENCEPIECE_TOKENIZER_H_
#define VERDICT_CORE_TOKENIZE_SENTENCEPIECE_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/tokenize/tokenizer.h"

namespace verdict {

namespace sentencepiece_backend {
class SentencePieceBackend;
}  // namespace sentencepiece_backend

// What tokenizer_config.json says about a model; the defaults are LlamaTokenizer's.
struct SentencePieceOptions {
  bool add_bos = true;
  bool add_eos = false;
  // Overrides the model's pad id with this piece's id (it must be in the vocabulary).
  // Llama 2 defines no pad; fine-tunes often name one in tokenizer_config.json.
  std::optional<std::string> pad_token;
  // Written to tokenizer_config.json when known; 0: unknown.
  int64_t model_max_length = 0;
};

enum class SentencePieceModelType { kUnigram, kBpe };

struct SentencePieceTrainOptions {
  int32_t vocab_size = 8000;
  SentencePieceModelType model_type = SentencePieceModelType::kUnigram;
  // Share of characters the vocabulary must cover; the rarest rest fall back to bytes.
  double character_coverage = 0.9995;
  // Longer sentences (lines) are left out of training, as sentencepiece does.
  int32_t max_sentence_length = 4192;
  // Train on at most this many sentences, taken evenly spaced through the input so that the
  // choice is deterministic; 0: all.
  int64_t max_sentences = 0;
  // true: a vocab_size the text cannot fill is an InvalidArgument error that says how large
  // it may be. false: accept a smaller vocabulary than asked for.
  bool hard_vocab_limit = true;
  // Print sentencepiece's training log to stderr.
  bool verbose = false;
  // Options of the trained tokenizer.
  SentencePieceOptions tokenizer;
};

class SentencePieceTokenizer : public Tokenizer {
 public:
  using Options = SentencePieceOptions;
  using ModelType = SentencePieceModelType;
  using TrainOptions = SentencePieceTrainOptions;

  ~SentencePieceTokenizer() override;

  static absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> Load(
      const std::string& model_path, const Options& options = Options());

  // `serialized_model`: the bytes of a `.model` file (a serialized ModelProto).
  static absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> FromSerializedProto(
      absl::string_view serialized_model, const Options& options = Options());

  // Trains on `texts`; each text is split into lines, and each non-empty line is one training
  // sentence (as it would be in a sentencepiece input file). Fails with InvalidArgument on
  // bad options, no text, invalid UTF-8, or a vocab_size the text cannot fill (see
  // TrainOptions::hard_vocab_limit).
  static absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> Train(
      const std::vector<std::string>& texts, const TrainOptions& options);

  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text) const override;
  absl::StatusOr<SplitEncoding> EncodeConcatenated(absl::string_view first,
                                                   absl::string_view second) const override;
  // Skips bos / eos / unk / pad and control pieces, and ids outside the vocabulary.
  std::string Decode(const std::vector<int32_t>& ids) const override;
  const SpecialTokens& special_tokens() const override { return special_; }
  // BOS before when add_bos, EOS after when add_eos.
  SequenceFrame single_sequence_frame() const override;
  int64_t vocab_size() const override;
  // Writes tokenizer.model, tokenizer_config.json (LlamaTokenizer) and special_tokens_map.json,
  // creating `dir` if needed.
  absl::Status SaveToDirectory(const std::string& dir) const override;

  // The piece with `id` ("▁Hello", "<0x0A>"); empty for an id outside the vocabulary.
  std::string IdToPiece(int32_t id) const;
  // The bytes of the model, as tokenizer.model holds them.
  std::string SerializedModel() const;
  const Options& options() const { return options_; }

 private:
  SentencePieceTokenizer(std::unique_ptr<sentencepiece_backend::SentencePieceBackend> backend,
                         const Options& options, const SpecialTokens& special);

  std::unique_ptr<sentencepiece_backend::SentencePieceBackend> backend_;
  Options options_;
  SpecialTokens special_;
};

}  // namespace verdict

#endif  // VERDICT_CORE_TOKENIZE_SENTENCEPIECE_TOKENIZER_H_
