#include "core/data/chat_format.h"

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"

namespace verdict {
namespace {

absl::Status CheckOrder(absl::Span<const ChatMessage> messages, ChatFormat format) {
  for (size_t i = 1; i < messages.size(); ++i) {
    if (messages[i].role == ChatRole::kSystem) {
      return absl::InvalidArgumentError(
          absl::StrCat("message ", i, " is a system message; only the first message may be one"));
    }
  }
  if (format != ChatFormat::kLlama2) return absl::OkStatus();
  size_t first_turn = 0;
  if (!messages.empty() && messages[0].role == ChatRole::kSystem) {
    if (messages.size() == 1 || messages[1].role != ChatRole::kUser) {
      return absl::InvalidArgumentError(
          "llama2 needs a user message right after the system message");
    }
    first_turn = 1;
  }
  for (size_t i = first_turn; i < messages.size(); ++i) {
    ChatRole expected = (i - first_turn) % 2 == 0 ? ChatRole::kUser : ChatRole::kAssistant;
    if (messages[i].role != expected) {
      return absl::InvalidArgumentError(absl::StrCat(
          "llama2 needs user and assistant messages to alternate, starting with the user; "
          "message ",
          i, " is ", ChatRoleName(messages[i].role)));
    }
  }
  return absl::OkStatus();
}

absl::string_view AssistantOpener(ChatFormat format) {
  switch (format) {
    case ChatFormat::kHhRlhf:
      return "\n\nAssistant:";
    case ChatFormat::kChatML:
      return "<|im_start|>assistant\n";
    case ChatFormat::kLlama2:
      return "";
  }
  return "";
}

void AppendHhRlhf(const ChatMessage& message, std::string* out) {
  switch (message.role) {
    case ChatRole::kSystem:
      absl::StrAppend(out, message.content);
      break;
    case ChatRole::kUser:
      absl::StrAppend(out, "\n\nHuman: ", message.content);
      break;
    case ChatRole::kAssistant:
      absl::StrAppend(out, AssistantOpener(ChatFormat::kHhRlhf), " ", message.content);
      break;
  }
}

void AppendChatML(const ChatMessage& message, std::string* out) {
  absl::StrAppend(out, "<|im_start|>", ChatRoleName(message.role), "\n", message.content,
                  "<|im_end|>\n");
}

// Assumes CheckOrder passed: [system] user assistant user ...
void AppendLlama2(absl::Span<const ChatMessage> messages, std::string* out) {
  absl::string_view system;
  bool has_system = !messages.empty() && messages[0].role == ChatRole::kSystem;
  if (has_system) {
    system = messages[0].content;
    messages.remove_prefix(1);
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& message = messages[i];
    if (message.role == ChatRole::kAssistant) {
      absl::StrAppend(out, " ", message.content);
      continue;
    }
    absl::StrAppend(out, i == 0 ? "" : " ", "[INST] ");
    if (i == 0 && has_system) absl::StrAppend(out, "<<SYS>>\n", system, "\n<</SYS>>\n\n");
    absl::StrAppend(out, message.content, " [/INST]");
  }
}

}  // namespace

absl::StatusOr<ChatFormat> ParseChatFormat(absl::string_view name) {
  for (ChatFormat format : {ChatFormat::kHhRlhf, ChatFormat::kChatML, ChatFormat::kLlama2}) {
    if (name == ChatFormatName(format)) return format;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown chat format \"", name, "\"; expected \"hh-rlhf\", \"chatml\" or \"llama2\""));
}

absl::string_view ChatFormatName(ChatFormat format) {
  switch (format) {
    case ChatFormat::kHhRlhf:
      return "hh-rlhf";
    case ChatFormat::kChatML:
      return "chatml";
    case ChatFormat::kLlama2:
      return "llama2";
  }
  return "unknown";
}

absl::StatusOr<ChatRole> ParseChatRole(absl::string_view name) {
  for (ChatRole role : {ChatRole::kSystem, ChatRole::kUser, ChatRole::kAssistant}) {
    if (name == ChatRoleName(role)) return role;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown role \"", name, "\"; expected \"system\", \"user\" or \"assistant\""));
}

absl::string_view ChatRoleName(ChatRole role) {
  switch (role) {
    case ChatRole::kSystem:
      return "system";
    case ChatRole::kUser:
      return "user";
    case ChatRole::kAssistant:
      return "assistant";
  }
  return "unknown";
}

absl::StatusOr<std::string> RenderChat(absl::Span<const ChatMessage> messages, ChatFormat format) {
  RETURN_IF_ERROR(CheckOrder(messages, format));
  std::string text;
  switch (format) {
    case ChatFormat::kHhRlhf:
      for (const ChatMessage& message : messages) AppendHhRlhf(message, &text);
      break;
    case ChatFormat::kChatML:
      for (const ChatMessage& message : messages) AppendChatML(message, &text);
      break;
    case ChatFormat::kLlama2:
      AppendLlama2(messages, &text);
      break;
  }
  return text;
}

absl::StatusOr<PromptAndResponse> RenderPromptAndResponse(absl::Span<const ChatMessage> prompt,
                                                          absl::Span<const ChatMessage> response,
                                                          ChatFormat format) {
  if (response.empty()) return absl::InvalidArgumentError("the response has no messages");
  if (response[0].role != ChatRole::kAssistant) {
    return absl::InvalidArgumentError(absl::StrCat("the response must start with an assistant ",
                                                   "message, not a ",
                                                   ChatRoleName(response[0].role), " message"));
  }
  // The response is defined as what the whole conversation's text adds after the prompt, so
  // prompt + response always equals the conversation rendered in one piece.
  std::vector<ChatMessage> conversation(prompt.begin(), prompt.end());
  conversation.insert(conversation.end(), response.begin(), response.end());
  ASSIGN_OR_RETURN(std::string whole, RenderChat(conversation, format));
  ASSIGN_OR_RETURN(std::string head, RenderChat(prompt, format));
  absl::StrAppend(&head, AssistantOpener(format));
  if (whole.compare(0, head.size(), head) != 0) {
    return absl::InternalError("the rendered prompt is not a prefix of the conversation");
  }
  PromptAndResponse result;
  result.response = whole.substr(head.size());
  result.prompt = std::move(head);
  return result;
}

}  // namespace verdict
