// WordPieceTokenizer: a BERT-family `vocab.txt`, tokenizing as Hugging Face's BertTokenizer
// (the Python one) does: the same ids for the same text.
//
// Encoding, step by step:
//   1. The special tokens [CLS] [SEP] [PAD] [UNK] [MASK], written verbatim (case matters),
//      are cut out of the text and kept whole.
//   2. Basic tokenization of the rest: drop NUL, U+FFFD and control characters; whitespace
//      becomes a space; spaces go around CJK ideographs; with do_lower_case, each word is
//      lower-cased and stripped of accents (NFD, then the Mn marks removed); words split on
//      whitespace and around every punctuation character (Unicode P*, plus the ASCII symbol
//      ranges BERT counts as punctuation, such as `$`, `+`, `^`, `|`).
//   3. WordPiece: greedy longest match first, continuations prefixed with `##`; a word with no
//      match, or longer than 100 characters, becomes [UNK].
//
// EncodeConcatenated() encodes the joined text, as `tokenizer(first + second)` does; text pairs
// in BERT's [CLS] A [SEP] B [SEP] form encode the two parts with Encode() each.
//
// Example:
//   ASSIGN_OR_RETURN(auto tokenizer, WordPieceTokenizer::Load(dir + "/vocab.txt"));
//   ASSIGN_OR_RETURN(std::vector<int32_t> ids, tokenizer->Encode("Héllo, world!"));
//   // ids: hello , world !
//
// Thread safety: immutable once built; every const method may be called from any number of
// threads at once.
#ifndef VERDICT_CORE_TOKENIZE_WORDPIECE_TOKENIZER_H_
#define VERDICT_CORE_TOKENIZE_WORDPIECE_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/tokenize/tokenizer.h"

namespace verdict {

// What tokenizer_config.json says; the defaults are bert-base-uncased's.
struct WordPieceOptions {
  // Lower-case and strip accents (BertTokenizer ties strip_accents to this by default).
  bool do_lower_case = true;
  // Written back to tokenizer_config.json ("DistilBertTokenizer" for DistilBERT models).
  std::string tokenizer_class = "BertTokenizer";
  // Written to tokenizer_config.json when known; 0: unknown.
  int64_t model_max_length = 0;
};

class WordPieceTokenizer : public Tokenizer {
 public:
  using Options = WordPieceOptions;

  // Words longer than this many characters become [UNK] (BERT's max_input_chars_per_word).
  static constexpr size_t kMaxCharsPerWord = 100;

  // `vocab_path`: one token per line, the id being the line number (from 0).
  static absl::StatusOr<std::unique_ptr<WordPieceTokenizer>> Load(
      const std::string& vocab_path, const Options& options = Options());

  // `tokens[i]` has id i. The vocabulary must hold [UNK].
  static absl::StatusOr<std::unique_ptr<WordPieceTokenizer>> FromTokens(
      std::vector<std::string> tokens, const Options& options = Options());

  // InvalidArgument on invalid UTF-8.
  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text) const override;
  absl::StatusOr<SplitEncoding> EncodeConcatenated(absl::string_view first,
                                                   absl::string_view second) const override;
  // Joins the tokens with spaces, glues `##` continuations to what precedes them, skips the
  // special tokens and ids outside the vocabulary, and tidies spaces before punctuation as
  // BertTokenizer.decode does by default ("hello , world" -> "hello, world").
  std::string Decode(const std::vector<int32_t>& ids) const override;
  const SpecialTokens& special_tokens() const override { return special_; }
  // [CLS] ... [SEP].
  SequenceFrame single_sequence_frame() const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(tokens_.size()); }
  // Writes vocab.txt, tokenizer_config.json and special_tokens_map.json, creating `dir` if
  // needed.
  absl::Status SaveToDirectory(const std::string& dir) const override;

  // The token with `id`; empty for an id outside the vocabulary.
  std::string IdToToken(int32_t id) const;
  // -1 when `token` is not in the vocabulary.
  int32_t TokenToId(absl::string_view token) const;
  const Options& options() const { return options_; }

 private:
  WordPieceTokenizer(std::vector<std::string> tokens,
                     absl::flat_hash_map<std::string, int32_t> ids, const Options& options);

  // Appends the ids of `text`, which holds no special token, to `ids`.
  void EncodePlainText(absl::string_view text, std::vector<int32_t>* ids) const;
  void EncodeWord(const std::u32string& word, std::vector<int32_t>* ids) const;

  std::vector<std::string> tokens_;
  absl::flat_hash_map<std::string, int32_t> ids_;
  Options options_;
  SpecialTokens special_;
  int32_t mask_ = -1;
  // The special tokens the vocabulary has, kept whole when they appear in text.
  std::vector<std::pair<std::string, int32_t>> unsplittable_;
};

}  // namespace verdict

#endif  // VERDICT_CORE_TOKENIZE_WORDPIECE_TOKENIZER_H_
