#include "core/tokenize/pair_encoding.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"

namespace verdict {
namespace {

// The special tokens the framing wraps a pair in, resolved against what the vocabulary has.
struct PairFrame {
  std::vector<int32_t> before_prompt;
  std::vector<int32_t> between;  // after the prompt, before the response
  std::vector<int32_t> after_response;
};

absl::StatusOr<PairFrame> FrameFor(const Tokenizer& tokenizer, PairFraming framing) {
  PairFrame frame;
  switch (framing) {
    case PairFraming::kTextPair: {
      const SpecialTokens& special = tokenizer.special_tokens();
      // SentencePiece vocabularies trained for encoders may have no [CLS]/[SEP]; BOS/EOS stand
      // in for them, as in ALBERT-style models.
      const int32_t cls = special.cls >= 0 ? special.cls : special.bos;
      const int32_t sep = special.sep >= 0 ? special.sep : special.eos;
      if (cls < 0 || sep < 0) {
        return absl::FailedPreconditionError(
            "text-pair encoding needs [CLS] and [SEP] (or <s> and </s>) in the vocabulary");
      }
      frame.before_prompt = {cls};
      frame.between = {sep};
      frame.after_response = {sep};
      break;
    }
    case PairFraming::kJoined:
    case PairFraming::kJoinedWithEos: {
      SequenceFrame single = tokenizer.single_sequence_frame();
      for (int32_t id : single.prefix) {
        if (id < 0) {
          return absl::FailedPreconditionError("the tokenizer adds a BOS it does not have");
        }
      }
      for (int32_t id : single.suffix) {
        if (id < 0) {
          return absl::FailedPreconditionError("the tokenizer adds an EOS it does not have");
        }
      }
      frame.before_prompt = std::move(single.prefix);
      frame.after_response = std::move(single.suffix);
      break;
    }
    case PairFraming::kAsRendered:
      break;
  }
  return frame;
}

}  // namespace

absl::StatusOr<TruncationPolicy> ParseTruncationPolicy(absl::string_view name) {
  if (name == "truncate") return TruncationPolicy::kTruncate;
  if (name == "drop") return TruncationPolicy::kDrop;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown truncation policy \"", name, "\" (want \"truncate\" or \"drop\")"));
}

absl::StatusOr<PairEncoding> EncodePair(const Tokenizer& tokenizer, absl::string_view prompt,
                                        absl::string_view response,
                                        const PairEncodingOptions& options) {
  ASSIGN_OR_RETURN(PairFrame frame, FrameFor(tokenizer, options.framing));
  std::vector<int32_t> prompt_ids, response_ids;
  if (options.framing == PairFraming::kTextPair) {
    ASSIGN_OR_RETURN(prompt_ids, tokenizer.Encode(prompt));
    ASSIGN_OR_RETURN(response_ids, tokenizer.Encode(response));
  } else {
    // One text, as TRL concatenates prompt and response before tokenizing: pieces may span
    // the join.
    ASSIGN_OR_RETURN(SplitEncoding split, tokenizer.EncodeConcatenated(prompt, response));
    prompt_ids.assign(split.ids.begin(), split.ids.begin() + split.first_length);
    response_ids.assign(split.ids.begin() + split.first_length, split.ids.end());
  }
  if (options.framing == PairFraming::kJoinedWithEos) {
    // TRL appends eos_token to the text unless the text already ends with it; the EOS then
    // belongs to the frame, so truncation keeps it.
    const int32_t eos = tokenizer.special_tokens().eos;
    const std::vector<int32_t>& last_part = response_ids.empty() ? prompt_ids : response_ids;
    if (eos >= 0 && (last_part.empty() || last_part.back() != eos)) {
      frame.after_response.insert(frame.after_response.begin(), eos);
    }
  }

  const size_t special_count =
      frame.before_prompt.size() + frame.between.size() + frame.after_response.size();
  const size_t total = special_count + prompt_ids.size() + response_ids.size();
  PairEncoding out;
  if (options.max_length > 0 && total > static_cast<size_t>(options.max_length)) {
    if (options.policy == TruncationPolicy::kDrop) {
      return absl::OutOfRangeError(absl::StrCat("pair is ", total, " tokens, over max_length ",
                                                options.max_length, " (policy drop)"));
    }
    const size_t budget = static_cast<size_t>(options.max_length);
    if (budget <= special_count) {
      return absl::InvalidArgumentError(absl::StrCat("max_length ", options.max_length,
                                                     " leaves no room beside ", special_count,
                                                     " special tokens"));
    }
    size_t excess = total - budget;
    // The prompt's start matters least: the end of a dialogue is what the response answers.
    // Keep at least one response token so a pair is never scored on its prompt alone (an
    // empty response has none to keep).
    const size_t from_prompt = std::min(excess, prompt_ids.size());
    prompt_ids.erase(prompt_ids.begin(), prompt_ids.begin() + from_prompt);
    excess -= from_prompt;
    if (excess > 0 && excess >= response_ids.size()) {
      return absl::OutOfRangeError(absl::StrCat("max_length ", options.max_length,
                                                " cannot hold any of the response"));
    }
    response_ids.resize(response_ids.size() - excess);
    out.truncated = true;
  }

  out.ids.reserve(total);
  out.ids.insert(out.ids.end(), frame.before_prompt.begin(), frame.before_prompt.end());
  out.ids.insert(out.ids.end(), prompt_ids.begin(), prompt_ids.end());
  out.ids.insert(out.ids.end(), frame.between.begin(), frame.between.end());
  out.prompt_length = out.ids.size();
  out.ids.insert(out.ids.end(), response_ids.begin(), response_ids.end());
  out.ids.insert(out.ids.end(), frame.after_response.begin(), frame.after_response.end());
  return out;
}

}  // namespace verdict
