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
// The formats below write, byte for byte, what the model's Hugging Face chat template renders
// (checked against Qwen3's real template in tests/data/tokenizers/qwen3/expected.json). Special
// tokens are written as text: tokenizer.json matches them as added tokens.
//   kQwen3   Qwen3's thinking template: ChatML, where an assistant turn's content may hold
//            "<think>{reasoning}</think>{answer}". Assistant turns after the last user message
//            are written "<|im_start|>assistant\n<think>\n{reasoning}\n</think>\n\n{answer}"
//            when they are the final turn (an empty think block when there is no reasoning)
//            or have reasoning; every other assistant turn is written with its answer only.
//            A user message that is only a "<tool_response>...</tool_response>" does not
//            count as the last user message, as in the template. (No tools, and no
//            reasoning_content field: the template's other inputs are not modelled.)
//   kQwen2   ChatML with Qwen2's default system message "You are a helpful assistant." when
//            the conversation has none.
//   kQwen25  ChatML with Qwen2.5's default system message "You are Qwen, created by Alibaba
//            Cloud. You are a helpful assistant." when the conversation has none.
//   kLlama3  Llama 3 (3.0): "<|begin_of_text|>" then per message
//            "<|start_header_id|>{role}<|end_header_id|>\n\n{content, trimmed}<|eot_id|>".
//            The prompt ends "<|start_header_id|>assistant<|end_header_id|>\n\n".
//            "<|begin_of_text|>" is text here, as the template writes it; a tokenizer whose
//            post-processor also adds BOS gives two, exactly as transformers does.
//   kLlama31 Llama 3.1 / 3.3: kLlama3 with a system turn always present,
//            "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n{system}"
//            (the template's default date; no tools).
// Templates trim like Jinja's `trim` (Python's str.strip()).
//
// In every format a system message may only be the first message; hh-rlhf, chatml and llama2
// write content as given (no trimming). Pure functions: thread-safe.
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

// Values are stable (stored settings name formats by name, but keep the order anyway).
enum class ChatFormat { kHhRlhf, kChatML, kLlama2, kQwen3, kLlama3, kLlama31, kQwen2, kQwen25 };

enum class ChatRole { kSystem, kUser, kAssistant };

struct ChatMessage {
  ChatRole role = ChatRole::kUser;
  std::string content;
};

struct PromptAndResponse {
  std::string prompt;
  std::string response;
};

// "hh-rlhf", "chatml", "llama2", "qwen3", "llama3", "llama3.1", "qwen2", "qwen2.5" and back.
absl::StatusOr<ChatFormat> ParseChatFormat(absl::string_view name);
absl::string_view ChatFormatName(ChatFormat format);

// Whether the format writes its special tokens as text (chatml, the Qwen and Llama 3 formats),
// so that the rendered text is the model's whole input; hh-rlhf and llama2 write none.
bool ChatFormatWritesSpecialTokens(ChatFormat format);

// "system", "user", "assistant" (the names chat datasets use) and back.
absl::StatusOr<ChatRole> ParseChatRole(absl::string_view name);
absl::string_view ChatRoleName(ChatRole role);

// The whole conversation as text. InvalidArgumentError when the messages break the format's
// rules (a system message that is not first; for kLlama2, roles that do not alternate).
absl::StatusOr<std::string> RenderChat(absl::Span<const ChatMessage> messages, ChatFormat format);

struct ChatRenderOptions {
  // Append the assistant turn's opener, as a template's add_generation_prompt does.
  bool add_generation_prompt = false;
  // kQwen3 only: false writes the empty think block after the opener, as Qwen3's template
  // does with enable_thinking=False.
  bool enable_thinking = true;
};
absl::StatusOr<std::string> RenderChat(absl::Span<const ChatMessage> messages, ChatFormat format,
                                       const ChatRenderOptions& options);

// The named format whose Hugging Face chat template `chat_template` is (the text of
// tokenizer_config.json's "chat_template"). The rule, on the template's text:
//   contains "<|im_start|>", "<think>" and "last_query_index"         -> qwen3
//   contains "<|im_start|>" and "You are Qwen, created by Alibaba Cloud" -> qwen2.5
//   contains "<|im_start|>system\nYou are a helpful assistant.<|im_end|>" -> qwen2
//   contains "<|im_start|>" and "<|im_end|>", and none of "<think>", "tool", "You are",
//     "system_message", "date"                                       -> chatml
//   contains "<|start_header_id|>" and "Cutting Knowledge Date: December 2023" and
//     "26 Jul 2024", and not "strftime_now"                          -> llama3.1
//   contains "<|start_header_id|>", "<|eot_id|>" and "bos_token", and none of "Cutting
//     Knowledge", "system_message", "date", "tool", "You are"        -> llama3
//   contains "[INST]" and "<<SYS>>"                                   -> llama2 (this project's
//     llama2 format: BOS / EOS are tokens, not text; see kLlama2)
// Anything else is InvalidArgument naming what was recognised (a template that reads today's
// date through strftime_now, such as Llama 3.2's, is refused: its output changes by the day).
absl::StatusOr<ChatFormat> ChatFormatFromTemplate(absl::string_view chat_template);

// The chat format of a Hugging Face model directory: `explicit_name` when it is not empty
// (ParseChatFormat), else ChatFormatFromTemplate() on `model_dir`/chat_template.jinja (where
// transformers since 4.43 saves the template) or tokenizer_config.json's "chat_template" (a
// string, or a list of {"name", "template"} where "default" is used). NotFound when there is no
// template and no name.
absl::StatusOr<ChatFormat> ChooseChatFormat(const std::string& model_dir,
                                            absl::string_view explicit_name);

// `prompt` followed by the assistant turn's opener, and the text that `response` adds after
// it. `response` must start with an assistant message.
absl::StatusOr<PromptAndResponse> RenderPromptAndResponse(absl::Span<const ChatMessage> prompt,
                                                          absl::Span<const ChatMessage> response,
                                                          ChatFormat format);

}  // namespace verdict

#endif  // VERDICT_CORE_DATA_CHAT_FORMAT_H_
