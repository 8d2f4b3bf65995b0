// TokenizerJson: a Hugging Face `tokenizer.json` (the `tokenizers` library's format) with a
// byte-level BPE model, as Llama 3, Qwen2/Qwen3, GPT-2 and RoBERTa ship it. Encodes and decodes
// the way transformers' fast tokenizer does on the same files.
//
// The pipeline, in Hugging Face's order:
//   1. added tokens (`added_tokens`) are found in the raw text first, leftmost-longest, and
//      never split: those with `normalized: false` in the raw text, the others in each
//      normalised piece; `lstrip` / `rstrip` absorb the whitespace next to a match and
//      `single_word` refuses a match inside a word;
//   2. the normaliser runs on the text between them (`NFC`, or a `Sequence` of NFC);
//   3. the pre-tokeniser cuts it into words: `Split` with a regex (run by PCRE2 in UTF + UCP
//      mode, so `\p{L}`, `\p{N}`, `\s` and `(?!\S)` mean what they mean in the Rust library's
//      Oniguruma) and `ByteLevel` (bytes mapped to GPT-2's printable characters; its own GPT-2
//      regex when `use_regex` is true; `add_prefix_space`), alone or in a `Sequence`;
//   4. BPE merges each word (merges as "a b" strings or ["a", "b"] pairs; `ignore_merges`);
//   5. the post-processor adds special tokens: `TemplateProcessing` (its `single` template),
//      `RobertaProcessing` / `BertProcessing` (cls A sep), `ByteLevel` (nothing), or a
//      `Sequence` of these.
// Decoding maps tokens back to bytes (the `ByteLevel` decoder) and replaces invalid UTF-8 with
// U+FFFD as Rust's from_utf8_lossy does.
//
// Anything else is refused by name when the file is loaded (Unimplemented), never approximated: a
// `WordPiece`, `Unigram` or `WordLevel` model, BPE with `byte_fallback`, `dropout`, a subword
// prefix or an end-of-word suffix, and normalisers, pre-tokenisers, post-processors and decoders of
// other types (Metaspace, Replace, Lowercase, ...).
//
// Special tokens: bos / eos / pad / unk / cls / sep come from tokenizer_config.json's
// `*_token` fields (strings or AddedToken objects), then from the post-processor (a special
// token before `$A` in the single template is the BOS, one after it the EOS; Roberta's and
// Bert's cls / sep). add_bos / add_eos say whether the post-processor adds them, as
// EncodeWithSpecialTokens() does.
//
// Example:
//   ASSIGN_OR_RETURN(auto tokenizer, TokenizerJson::LoadFromDirectory(dir));
//   ASSIGN_OR_RETURN(std::vector<int32_t> ids, tokenizer->EncodeWithSpecialTokens(text));
//
// Thread safety: immutable once loaded; every const method may be called from any number of
// threads at once.
#ifndef VERDICT_CORE_TOKENIZE_TOKENIZER_JSON_H_
#define VERDICT_CORE_TOKENIZE_TOKENIZER_JSON_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/tokenize/tokenizer.h"

namespace verdict {

class TokenizerJson : public Tokenizer {
 public:
  ~TokenizerJson() override;

  // Loads `dir`/tokenizer.json, with `dir`/tokenizer_config.json and special_tokens_map.json
  // where present. Unimplemented names the file and the unsupported component; InvalidArgument
  // a malformed file or field.
  static absl::StatusOr<std::unique_ptr<TokenizerJson>> LoadFromDirectory(const std::string& dir);

  // `tokenizer_json`: the text of a tokenizer.json; `tokenizer_config`: the text of a
  // tokenizer_config.json, or empty. `origin` names them in errors.
  static absl::StatusOr<std::unique_ptr<TokenizerJson>> FromStrings(
      absl::string_view tokenizer_json, absl::string_view tokenizer_config,
      absl::string_view origin = "tokenizer.json");

  // Without the post-processor's special tokens (added tokens written in the text are still
  // matched, as transformers does with split_special_tokens false).
  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text) const override;
  // transformers' `tokenizer(text)["input_ids"]`: Encode() inside the post-processor's single
  // template.
  absl::StatusOr<std::vector<int32_t>> EncodeWithSpecialTokens(absl::string_view text) const;
  // Encodes `first + second` as one text; a token counts as `first`'s when it starts before
  // the join (in the normalised text).
  absl::StatusOr<SplitEncoding> EncodeConcatenated(absl::string_view first,
                                                   absl::string_view second) const override;
  // Skips tokens marked special (added tokens with `special: true`) and unknown ids.
  std::string Decode(const std::vector<int32_t>& ids) const override;
  // transformers' decode(ids, skip_special_tokens=...) without clean-up of spaces.
  std::string Decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const;

  const SpecialTokens& special_tokens() const override;
  // The post-processor's single template.
  SequenceFrame single_sequence_frame() const override;
  // The largest id + 1 (vocabulary and added tokens).
  int64_t vocab_size() const override;
  // Writes tokenizer.json byte for byte as loaded, and tokenizer_config.json (as loaded, or a
  // minimal one naming the special tokens).
  absl::Status SaveToDirectory(const std::string& dir) const override;

  // The token string of `id` (byte-level characters for vocabulary entries, the content for
  // added tokens); empty for an unknown id.
  std::string IdToToken(int32_t id) const;
  // The id of a vocabulary entry or added token; -1 when there is none.
  int32_t TokenToId(absl::string_view token) const;

  class Impl;

 private:
  explicit TokenizerJson(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace verdict

#endif  // VERDICT_CORE_TOKENIZE_TOKENIZER_JSON_H_
