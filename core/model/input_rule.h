// InputRule: how a reward model's input tokens are built from a prompt and a response. Every
// model directory records its rule (encoding.json; model_directory.h), so that a model scores
// exactly the inputs it was trained on:
//
//   concat  TRL's RewardTrainer: `tokenizer(prompt + response + eos_token)` for plain text (the
//           tokenizer's own special tokens around the joined text, EOS appended unless the text
//           ends with it or the vocabulary has none), and for a conversation the chat
//           template's rendering as it stands (`apply_chat_template(..., tokenize=True)`).
//           The default for training and for imports, as TRL trains.
//   pair    verdict's rule before input rules existed, kept for the directories it wrote:
//           encoders read BERT's text-pair form [CLS] prompt [SEP] response [SEP]; decoders
//           `tokenizer(prompt + response)` (no EOS appended).
//   chat    every item is a conversation: a plain prompt and response become one user turn and
//           one assistant turn (no user turn for an empty prompt), rendered with the model's
//           chat format, then encoded as concat encodes conversations.
//
// A conversation rendered with a format that writes no special tokens of its own (hh-rlhf,
// llama2) is plain text to the tokenizer, so concat and chat frame it as plain text.
//
// Pure functions: thread-safe.
#ifndef VERDICT_CORE_MODEL_INPUT_RULE_H_
#define VERDICT_CORE_MODEL_INPUT_RULE_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/data/chat_format.h"
#include "core/tokenize/pair_encoding.h"
#include "core/tokenize/tokenizer.h"

namespace verdict {

// Values are stable (settings store rules by name, but keep the order anyway).
enum class InputRule { kConcat, kPair, kChat };

// "concat", "pair", "chat" and back.
absl::StatusOr<InputRule> ParseInputRule(absl::string_view name);
absl::string_view InputRuleName(InputRule rule);

// Where the text of an item came from.
enum class TextOrigin {
  kPlain,     // a prompt and a response as given
  kRendered,  // a conversation rendered with the model's chat format (RenderPromptAndResponse)
};

// Everything that decides a model's input tokens besides the text.
struct InputEncoding {
  InputRule rule = InputRule::kConcat;
  bool encoder = false;  // an encoder family (text pairs in BERT's form under kPair)
  ChatFormat chat_format = ChatFormat::kHhRlhf;
  int64_t max_length = 0;  // 0: no limit
  TruncationPolicy truncation = TruncationPolicy::kTruncate;
};

// How EncodePair frames an item of `origin` under `encoding` (see above).
PairFraming FramingOf(const InputEncoding& encoding, TextOrigin origin);

// The tokens of one item: EncodePair() with FramingOf(), after rendering plain text as a
// conversation under kChat. Errors as EncodePair's, or InvalidArgument when kChat cannot render
// the text in the chat format.
absl::StatusOr<PairEncoding> EncodeInput(const Tokenizer& tokenizer, const InputEncoding& encoding,
                                         absl::string_view prompt, absl::string_view response,
                                         TextOrigin origin);

}  // namespace verdict

#endif  // VERDICT_CORE_MODEL_INPUT_RULE_H_
