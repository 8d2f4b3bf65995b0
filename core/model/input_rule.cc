#include "core/model/input_rule.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"

namespace verdict {

absl::StatusOr<InputRule> ParseInputRule(absl::string_view name) {
  if (name == "concat") return InputRule::kConcat;
  if (name == "pair") return InputRule::kPair;
  if (name == "chat") return InputRule::kChat;
  return absl::InvalidArgumentError(absl::StrCat("unknown input rule \"", name,
                                                 "\" (want \"concat\", \"pair\" or \"chat\")"));
}

absl::string_view InputRuleName(InputRule rule) {
  switch (rule) {
    case InputRule::kConcat:
      return "concat";
    case InputRule::kPair:
      return "pair";
    case InputRule::kChat:
      return "chat";
  }
  return "unknown";
}

PairFraming FramingOf(const InputEncoding& encoding, TextOrigin origin) {
  if (encoding.rule == InputRule::kPair) {
    return encoding.encoder ? PairFraming::kTextPair : PairFraming::kJoined;
  }
  const bool rendered = origin == TextOrigin::kRendered || encoding.rule == InputRule::kChat;
  return rendered && ChatFormatWritesSpecialTokens(encoding.chat_format)
             ? PairFraming::kAsRendered
             : PairFraming::kJoinedWithEos;
}

absl::StatusOr<PairEncoding> EncodeInput(const Tokenizer& tokenizer, const InputEncoding& encoding,
                                         absl::string_view prompt, absl::string_view response,
                                         TextOrigin origin) {
  PairEncodingOptions options;
  options.framing = FramingOf(encoding, origin);
  options.max_length = encoding.max_length;
  options.policy = encoding.truncation;
  if (encoding.rule != InputRule::kChat || origin == TextOrigin::kRendered) {
    return EncodePair(tokenizer, prompt, response, options);
  }
  std::vector<ChatMessage> turns;
  if (!prompt.empty()) turns.push_back({ChatRole::kUser, std::string(prompt)});
  const ChatMessage answer{ChatRole::kAssistant, std::string(response)};
  ASSIGN_OR_RETURN(PromptAndResponse text,
                   RenderPromptAndResponse(turns, {&answer, 1}, encoding.chat_format));
  return EncodePair(tokenizer, text.prompt, text.response, options);
}

}  // namespace verdict
