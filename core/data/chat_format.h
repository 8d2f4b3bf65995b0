// ChatFormat: how a conversation of role-tagged messages becomes the text a reward model reads.
//
// Conversational preference data (TRL's "conversational" layout) stores messages, not text.
// Each format writes a conversation as the concatenation of its messages' turns and splits it
// into a prompt and a response such that prompt + response is the whole conversation's text:
// the prompt ends with the assistant turn's opener and the response is what the assistant turn
// (and any later turns) add.
//
//   kHhRlhf  "\n\nHuman: {user}" and "\n\nAssistant: {assistant}": Anthropic's hh-rlhf
//            transcript layout, the default because the bundled data uses it. A system message
//            is written as it is, before the first turn. The prompt ends "\n\nAssistant:" and
//            the response is " {assistant}": the space stays with the response, exactly as
//            the implicit-prompt reader splits an hh-rlhf transcript (and as TRL does).
//   kChatML  "<|im_start|>{role}\n{content}<|im_end|>\n" per message. The prompt ends
//            "<|im_start|>assistant\n" and the response is "{assistant}<|im_end|>\n", as TRL
//            splits the output of a ChatML chat template.
//   kLlama2  "[INST] {user} [/INST] {assistant}", turns joined by a space, a system message
//            folded into the first user turn as "<<SYS>>\n{system}\n<</SYS>>\n\n"; user and
//            assistant must alternate, starting with the user. The prompt ends "[/INST]" and
//            the response is " {assistant}". Unlike the Hugging Face template, no "<s>"/"</s>"
//            is written as text between turns: BOS/EOS are tokens that core/tokenize adds, and
//            a sentencepiece tokenizer would split the text "</s>" into ordinary pieces.
//
// In every format a system message may only be the first message, and content is written as
// given (no trimming). Pure functions: thread-safe.
//
// Example:
//   ASSIGN_OR_RETURN(PromptAndResponse text,
//                    RenderPromptAndResponse({{ChatRole::kUser, "Hi"}},
//                                            {{ChatRole::kAssistant, "Hello!"}},
//                                            ChatFormat::kHhRlhf));
//   // text.prompt == "\n\nHuman: Hi\n\nAssistant:", text.response == " Hello!"
#ifndef VERDICT_CORE_DATA_CHAT_FORMAT_H_
#define VERDICT_CORE_DATA_CHAT_FORMAT_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace verdict {

enum class ChatFormat { kHhRlhf, kChatML, kLlama2 };

enum class ChatRole { kSystem, kUser, kAssistant };

struct ChatMessage {
  ChatRole role = ChatRole::kUser;
  std::string content;
};

struct PromptAndResponse {
  std::string prompt;
  std::string response;
};

// "hh-rlhf", "chatml", "llama2" and back.
absl::StatusOr<ChatFormat> ParseChatFormat(absl::string_view name);
absl::string_view ChatFormatName(ChatFormat format);

// "system", "user", "assistant" (the names chat datasets use) and back.
absl::StatusOr<ChatRole> ParseChatRole(absl::string_view name);
absl::string_view ChatRoleName(ChatRole role);

// The whole conversation as text. InvalidArgumentError when the messages break the format's
// rules (a system message that is not first; for kLlama2, roles that do not alternate).
absl::StatusOr<std::string> RenderChat(absl::Span<const ChatMessage> messages, ChatFormat format);

// `prompt` followed by the assistant turn's opener, and the text that `response` adds after
// it. `response` must start with an assistant message.
absl::StatusOr<PromptAndResponse> RenderPromptAndResponse(absl::Span<const ChatMessage> prompt,
                                                          absl::Span<const ChatMessage> response,
                                                          ChatFormat format);

}  // namespace verdict

#endif  // VERDICT_CORE_DATA_CHAT_FORMAT_H_
