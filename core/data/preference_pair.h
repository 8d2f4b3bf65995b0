// PreferencePair: one human preference judgement, as every reader in core/data produces it.
//
// `chosen` and `rejected` hold the responses only: the prompt they share is in `prompt`, never
// repeated in front of them. Whatever layout the source used (explicit prompt, full hh-rlhf
// transcripts, chat messages), a model scores `prompt + chosen` against `prompt + rejected`.
// A plain value type: thread-compatible.
#ifndef VERDICT_CORE_DATA_PREFERENCE_PAIR_H_
#define VERDICT_CORE_DATA_PREFERENCE_PAIR_H_

#include <cstdint>
#include <optional>
#include <string>

namespace verdict {

// The record layout a pair was read from (see preference_reader.h), for reports such as
// `verdict datasets inspect`.
enum class PreferenceLayout {
  kExplicitPrompt,  // {"prompt", "chosen", "rejected"} strings
  kImplicitPrompt,  // {"chosen", "rejected"} hh-rlhf transcripts
  kConversational,  // message lists
  kShareGpt,        // LLaMA-Factory ShareGPT
  kAlpaca,          // LLaMA-Factory alpaca
};
inline constexpr int kPreferenceLayoutCount = 5;

struct PreferencePair {
  std::string prompt;
  std::string chosen;    // the preferred response, without the prompt
  std::string rejected;  // the other response, without the prompt
  // How strongly `chosen` is preferred, when the data says so (TRL's `margin` column); the
  // trainer subtracts it inside the Bradley–Terry loss.
  std::optional<double> margin;
  // Whether the texts are a conversation rendered with the reader's chat format (a chat
  // template may have written special tokens into them) rather than text as given.
  bool conversational = false;
  PreferenceLayout layout = PreferenceLayout::kExplicitPrompt;
  // Which part of a dataset the record belongs to (its "subset" key, e.g. "helpful-base"),
  // empty when the record has none; evaluations report accuracy per subset.
  std::string subset;
  int64_t line = 0;  // 1-based line in the source it was read from
};

}  // namespace verdict

#endif  // VERDICT_CORE_DATA_PREFERENCE_PAIR_H_
