// EncodePair: the token sequence a reward model scores for one (prompt, response) pair.
//
//   encoder layout: [CLS] prompt [SEP] response [SEP]
//   decoder layout: <s> prompt response </s>   (BOS / EOS as the tokenizer's config says)
//
// The layout follows the model family (core/model's PairLayoutOf(ModelFamily)); this file
// knows layouts only, so that tokenization does not depend on the model code.
//
// With max_length set, a pair that is too long is either truncated (the prompt loses tokens
// from its start first, then the response loses tokens from its end) or dropped (an
// OutOfRange status that says how long the pair is). Thread-compatible: pure function.
#ifndef VERDICT_CORE_TOKENIZE_PAIR_ENCODING_H_
#define VERDICT_CORE_TOKENIZE_PAIR_ENCODING_H_

#include <cstdint>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "core/tokenize/tokenizer.h"

namespace verdict {

// How a pair is framed in special tokens and tokenized (see above).
enum class PairLayout { kEncoder, kDecoder };

enum class TruncationPolicy { kTruncate, kDrop };

struct PairEncodingOptions {
  PairLayout layout = PairLayout::kEncoder;
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
