// Tokenizer: text <-> token ids, the way the Hugging Face tokenizer of a model family does it.
//
// Three implementations: TokenizerJson (a Hugging Face `tokenizer.json` with byte-level BPE),
// SentencePieceTokenizer (a `.model` file, loaded or trained) and WordPieceTokenizer (a
// BERT-family `vocab.txt`). Reward models consume pairs through
// EncodePair() in pair_encoding.h, which adds the family's special tokens.
//
// Thread safety: a constructed Tokenizer is immutable; all const methods may be called from
// any number of threads at once.
#ifndef VERDICT_CORE_TOKENIZE_TOKENIZER_H_
#define VERDICT_CORE_TOKENIZE_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace verdict {

// Ids of the special tokens; -1 where the vocabulary has no such token.
struct SpecialTokens {
  int32_t bos = -1;  // <s>
  int32_t eos = -1;  // </s>
  int32_t cls = -1;  // [CLS]
  int32_t sep = -1;  // [SEP]
  int32_t pad = -1;  // [PAD] / <pad>
  int32_t unk = -1;  // [UNK] / <unk>
  // Whether the model's own tokenizer adds BOS / EOS around a sequence (decoder families read
  // this from tokenizer_config.json's add_bos_token / add_eos_token).
  bool add_bos = true;
  bool add_eos = true;
};

// The result of encoding `first + second` as one text.
struct SplitEncoding {
  std::vector<int32_t> ids;
  // ids[0, first_length) came from `first`, the rest from `second`. A token that straddles
  // the boundary counts as part of `first` (WordPiece: the pieces of a word that straddles it
  // count as `second`'s).
  size_t first_length = 0;
};

// The special tokens transformers' `tokenizer(text)` puts around one sequence: BERT's
// [CLS] ... [SEP], Llama's <s> ..., none for Qwen.
struct SequenceFrame {
  std::vector<int32_t> prefix;
  std::vector<int32_t> suffix;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Plain encoding of `text`, without special tokens. Fails only on invalid UTF-8.
  virtual absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text) const = 0;

  // Encodes the concatenation `first + second` as one text (pieces may span the join) and
  // reports which tokens came from which part.
  virtual absl::StatusOr<SplitEncoding> EncodeConcatenated(absl::string_view first,
                                                           absl::string_view second) const = 0;

  // Ids back to text; special tokens are skipped.
  virtual std::string Decode(const std::vector<int32_t>& ids) const = 0;

  virtual const SpecialTokens& special_tokens() const = 0;
  // What `tokenizer(text)` adds around Encode(text) (its post-processor, or add_bos_token /
  // add_eos_token).
  virtual SequenceFrame single_sequence_frame() const = 0;
  virtual int64_t vocab_size() const = 0;

  // Writes the files a Hugging Face model directory holds for this tokenizer
  // (tokenizer.model or vocab.txt, plus tokenizer_config.json and special_tokens_map.json).
  virtual absl::Status SaveToDirectory(const std::string& dir) const = 0;
};

// Loads the tokenizer of a Hugging Face model directory, honouring tokenizer_config.json where
// present. Like transformers' fast tokenizers it takes the first of: tokenizer.json
// (TokenizerJson), tokenizer.model (SentencePiece), vocab.txt (WordPiece). A tokenizer.json
// that TokenizerJson refuses as unsupported (Unimplemented) gives way to tokenizer.model or
// vocab.txt when one is there.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizerFromDirectory(const std::string& dir);

}  // namespace verdict

#endif  // VERDICT_CORE_TOKENIZE_TOKENIZER_H_
