// EncodePair: the token sequence a reward model scores for one (prompt, response) text.
//
// How special tokens frame the text (PairFraming):
//   kTextPair     the text-pair form: [CLS] prompt [SEP] response [SEP], each part encoded
//                 alone (<s> / </s> stand in for a vocabulary without [CLS] / [SEP]).
//   kJoined       `tokenizer(prompt + response)`: the joined text inside the tokenizer's own
//                 single-sequence frame (BERT [CLS] ... [SEP]; Llama <s> ...; Qwen nothing).
//   kJoinedWithEos  TRL's reward input, `tokenizer(prompt + response + eos_token)`: kJoined
//                 with the EOS token appended to the text unless it already ends with one
//                 (nothing is appended when the vocabulary has no EOS, as for BERT).
//   kAsRendered   the text already holds its special tokens (a chat template wrote them), as
//                 `apply_chat_template(..., tokenize=True)` encodes it: nothing is added.
// Which framing a model uses is its input rule (core/model/input_rule.h); this file knows
// framings only, so that tokenization does not depend on the model code.
//
// With max_length set, a pair that is too long is either truncated (the prompt loses tokens
// from its start first, then the response loses tokens from its end; special tokens stay) or
// dropped (an OutOfRange status that says how long the pair is). Thread-compatible: pure
// function.
#ifndef VERDICT_CORE_TOKENIZE_PAIR_ENCODING_H_
#define VERDICT_CORE_TOKENIZE_PAIR_ENCODING_H_

#include <cstdint>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "core/tokenize/tokenizer.h"

namespace verdict {

// How a pair is framed in special tokens and tokenized (see above).
enum class PairFraming { kTextPair, kJoined, kJoinedWithEos, kAsRendered };

enum class TruncationPolicy { kTruncate, kDrop };

struct PairEncodingOptions {
  PairFraming framing = PairFraming::kJoinedWithEos;
  int64_t max_length = 0;  // 0: no limit
  TruncationPolicy policy = TruncationPolicy::kTruncate;
};

struct PairEncoding {
  std::vector<int32_t> ids;
  // Tokens before the response starts (special tokens included).
  size_t prompt_length = 0;
  bool truncated = false;
};

absl::StatusOr<PairEncoding> EncodePair(const Tokenizer& tokenizer, absl::string_view prompt,
                                        absl::string_view response,
                                        const PairEncodingOptions& options);

// "truncate", "drop" and back.
absl::StatusOr<TruncationPolicy> ParseTruncationPolicy(absl::string_view name);
inline absl::string_view TruncationPolicyName(TruncationPolicy policy) {
  return policy == TruncationPolicy::kDrop ? "drop" : "truncate";
}

}  // namespace verdict

#endif  // VERDICT_CORE_TOKENIZE_PAIR_ENCODING_H_
