#include "core/data/chat_format.h"

#include <cstring>
#include <filesystem>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/util/file_util.h"
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

constexpr ChatFormat kAllFormats[] = {ChatFormat::kHhRlhf, ChatFormat::kChatML,
                                      ChatFormat::kLlama2, ChatFormat::kQwen3,
                                      ChatFormat::kLlama3, ChatFormat::kLlama31,
                                      ChatFormat::kQwen2,  ChatFormat::kQwen25};

constexpr char kLlama3Bos[] = "<|begin_of_text|>";
constexpr char kLlama31SystemHeader[] =
    "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n";
constexpr char kQwen2DefaultSystem[] = "You are a helpful assistant.";
constexpr char kQwen25DefaultSystem[] =
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

absl::string_view AssistantOpener(ChatFormat format) {
  switch (format) {
    case ChatFormat::kHhRlhf:
      return "\n\nAssistant:";
    case ChatFormat::kChatML:
    case ChatFormat::kQwen3:
    case ChatFormat::kQwen2:
    case ChatFormat::kQwen25:
      return "<|im_start|>assistant\n";
    case ChatFormat::kLlama2:
      return "";
    case ChatFormat::kLlama3:
    case ChatFormat::kLlama31:
      return "<|start_header_id|>assistant<|end_header_id|>\n\n";
  }
  return "";
}

void AppendChatML(const ChatMessage& message, std::string* out);

// Python's str.isspace() for one code point at `text[i]`; sets `*length` to its UTF-8 length.
bool PythonSpaceAt(absl::string_view text, size_t i, size_t* length) {
  const auto byte = [&](size_t k) { return static_cast<uint8_t>(text[k]); };
  const uint8_t lead = byte(i);
  char32_t c = lead;
  *length = 1;
  if (lead >= 0xF0 && i + 3 < text.size()) {
    *length = 4;
    c = ((lead & 0x07) << 18) | ((byte(i + 1) & 0x3F) << 12) | ((byte(i + 2) & 0x3F) << 6) |
        (byte(i + 3) & 0x3F);
  } else if (lead >= 0xE0 && i + 2 < text.size()) {
    *length = 3;
    c = ((lead & 0x0F) << 12) | ((byte(i + 1) & 0x3F) << 6) | (byte(i + 2) & 0x3F);
  } else if (lead >= 0xC0 && i + 1 < text.size()) {
    *length = 2;
    c = ((lead & 0x1F) << 6) | (byte(i + 1) & 0x3F);
  }
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

// Jinja's `trim` filter: Python's str.strip().
absl::string_view JinjaTrim(absl::string_view text) {
  size_t begin = 0, length = 0;
  while (begin < text.size() && PythonSpaceAt(text, begin, &length)) begin += length;
  size_t end = text.size();
  while (end > begin) {
    size_t start = end - 1;
    while (start > begin && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
    if (!PythonSpaceAt(text, start, &length) || start + length != end) break;
    end = start;
  }
  return text.substr(begin, end - begin);
}

absl::string_view StripNewlinesLeft(absl::string_view text) {
  while (!text.empty() && text.front() == '\n') text.remove_prefix(1);
  return text;
}

absl::string_view StripNewlinesRight(absl::string_view text) {
  while (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  return text;
}

// Qwen3's template; CheckOrder passed, so a system message can only be first.
void AppendQwen3(absl::Span<const ChatMessage> messages, std::string* out) {
  if (messages.empty()) return;
  // The last user message that is not only a tool response ("last_query_index").
  size_t last_query = messages.size() - 1;
  for (size_t i = messages.size(); i-- > 0;) {
    const std::string& content = messages[i].content;
    if (messages[i].role == ChatRole::kUser &&
        !(absl::StartsWith(content, "<tool_response>") &&
          absl::EndsWith(content, "</tool_response>"))) {
      last_query = i;
      break;
    }
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& message = messages[i];
    if (message.role != ChatRole::kAssistant) {
      absl::StrAppend(out, "<|im_start|>", ChatRoleName(message.role), "\n", message.content,
                      "<|im_end|>\n");
      continue;
    }
    absl::string_view content = message.content;
    absl::string_view reasoning;
    const size_t close = content.find("</think>");
    if (close != absl::string_view::npos) {
      // content.split('</think>')[-1].lstrip('\n') and
      // content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n')
      absl::string_view before = StripNewlinesRight(content.substr(0, close));
      const size_t open = before.rfind("<think>");
      if (open != absl::string_view::npos) before.remove_prefix(open + strlen("<think>"));
      reasoning = StripNewlinesLeft(before);
      content = StripNewlinesLeft(content.substr(content.rfind("</think>") + strlen("</think>")));
    }
    absl::StrAppend(out, "<|im_start|>assistant\n");
    if (i > last_query && (i + 1 == messages.size() || !reasoning.empty())) {
      absl::StrAppend(out, "<think>\n", StripNewlinesLeft(StripNewlinesRight(reasoning)),
                      "\n</think>\n\n", StripNewlinesLeft(content));
    } else {
      absl::StrAppend(out, content);
    }
    absl::StrAppend(out, "<|im_end|>\n");
  }
}

// Qwen2 / Qwen2.5: ChatML with a default system message.
void AppendQwenWithDefaultSystem(absl::Span<const ChatMessage> messages,
                                 absl::string_view default_system, bool always, std::string* out) {
  const bool has_system = !messages.empty() && messages[0].role == ChatRole::kSystem;
  // Qwen2's template writes its default only inside the loop (so not for no messages);
  // Qwen2.5's writes it before the loop.
  if (!has_system && (always || !messages.empty())) {
    absl::StrAppend(out, "<|im_start|>system\n", default_system, "<|im_end|>\n");
  }
  for (const ChatMessage& message : messages) AppendChatML(message, out);
}

void AppendLlama3(absl::Span<const ChatMessage> messages, bool llama31, std::string* out) {
  const auto turn = [&](absl::string_view role, absl::string_view content) {
    absl::StrAppend(out, "<|start_header_id|>", role, "<|end_header_id|>\n\n", content,
                    "<|eot_id|>");
  };
  if (llama31) {
    absl::StrAppend(out, kLlama3Bos);
    absl::string_view system;
    if (!messages.empty() && messages[0].role == ChatRole::kSystem) {
      system = JinjaTrim(messages[0].content);
      messages.remove_prefix(1);
    }
    turn("system", absl::StrCat(kLlama31SystemHeader, system));
  } else if (!messages.empty()) {
    absl::StrAppend(out, kLlama3Bos);
  }
  for (const ChatMessage& message : messages) {
    turn(ChatRoleName(message.role), JinjaTrim(message.content));
  }
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

std::string FormatNames() {
  std::vector<std::string> names;
  for (ChatFormat format : kAllFormats) names.push_back(std::string(ChatFormatName(format)));
  return absl::StrJoin(names, ", ");
}

}  // namespace

absl::StatusOr<ChatFormat> ParseChatFormat(absl::string_view name) {
  for (ChatFormat format : kAllFormats) {
    if (name == ChatFormatName(format)) return format;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown chat format \"", name, "\"; expected one of ", FormatNames()));
}

absl::string_view ChatFormatName(ChatFormat format) {
  switch (format) {
    case ChatFormat::kHhRlhf:
      return "hh-rlhf";
    case ChatFormat::kChatML:
      return "chatml";
    case ChatFormat::kLlama2:
      return "llama2";
    case ChatFormat::kQwen3:
      return "qwen3";
    case ChatFormat::kLlama3:
      return "llama3";
    case ChatFormat::kLlama31:
      return "llama3.1";
    case ChatFormat::kQwen2:
      return "qwen2";
    case ChatFormat::kQwen25:
      return "qwen2.5";
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

bool ChatFormatWritesSpecialTokens(ChatFormat format) {
  return format != ChatFormat::kHhRlhf && format != ChatFormat::kLlama2;
}

absl::StatusOr<std::string> RenderChat(absl::Span<const ChatMessage> messages, ChatFormat format) {
  return RenderChat(messages, format, ChatRenderOptions());
}

absl::StatusOr<std::string> RenderChat(absl::Span<const ChatMessage> messages, ChatFormat format,
                                       const ChatRenderOptions& options) {
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
    case ChatFormat::kQwen3:
      AppendQwen3(messages, &text);
      break;
    case ChatFormat::kQwen2:
      AppendQwenWithDefaultSystem(messages, kQwen2DefaultSystem, /*always=*/false, &text);
      break;
    case ChatFormat::kQwen25:
      AppendQwenWithDefaultSystem(messages, kQwen25DefaultSystem, /*always=*/true, &text);
      break;
    case ChatFormat::kLlama3:
      AppendLlama3(messages, /*llama31=*/false, &text);
      break;
    case ChatFormat::kLlama31:
      AppendLlama3(messages, /*llama31=*/true, &text);
      break;
  }
  if (options.add_generation_prompt) {
    absl::StrAppend(&text, AssistantOpener(format));
    if (format == ChatFormat::kQwen3 && !options.enable_thinking) {
      absl::StrAppend(&text, "<think>\n\n</think>\n\n");
    }
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
    // E.g. a prompt that ends with an assistant turn, which qwen3 writes with a think block
    // only while it is the last turn.
    return absl::InvalidArgumentError(absl::StrCat(
        "in chat format ", ChatFormatName(format),
        " the prompt does not render the same alone as at the start of the whole conversation"));
  }
  PromptAndResponse result;
  result.response = whole.substr(head.size());
  result.prompt = std::move(head);
  return result;
}

absl::StatusOr<ChatFormat> ChatFormatFromTemplate(absl::string_view chat_template) {
  const auto has = [&](absl::string_view marker) {
    return absl::StrContains(chat_template, marker);
  };
  const auto has_any = [&](std::initializer_list<absl::string_view> markers) {
    for (absl::string_view marker : markers) {
      if (has(marker)) return true;
    }
    return false;
  };
  if (has("strftime_now")) {
    return absl::InvalidArgumentError(
        "the chat template writes today's date (strftime_now, as Llama 3.2's does), so its "
        "output changes by the day; name a chat format explicitly (e.g. llama3.1)");
  }
  if (has("<|im_start|>")) {
    if (has("<think>") && has("last_query_index")) return ChatFormat::kQwen3;
    if (has("You are Qwen, created by Alibaba Cloud")) return ChatFormat::kQwen25;
    if (has("<|im_start|>system\\nYou are a helpful assistant.<|im_end|>")) {
      return ChatFormat::kQwen2;
    }
    if (has("<|im_end|>") &&
        !has_any({"<think>", "tool", "You are", "system_message", "date"})) {
      return ChatFormat::kChatML;
    }
  }
  if (has("<|start_header_id|>")) {
    if (has("Cutting Knowledge Date: December 2023") && has("26 Jul 2024")) {
      return ChatFormat::kLlama31;
    }
    if (has("<|eot_id|>") && has("bos_token") &&
        !has_any({"Cutting Knowledge", "system_message", "date", "tool", "You are"})) {
      return ChatFormat::kLlama3;
    }
  }
  if (has("[INST]") && has("<<SYS>>")) return ChatFormat::kLlama2;
  std::vector<absl::string_view> seen;
  for (absl::string_view marker : {"<|im_start|>", "<|start_header_id|>", "[INST]", "<think>",
                                   "tool", "You are"}) {
    if (has(marker)) seen.push_back(marker);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "the chat template is none of the known ones (", FormatNames(), ")",
      seen.empty() ? std::string() : absl::StrCat("; it mentions ", absl::StrJoin(seen, ", ")),
      "; name a chat format explicitly"));
}

absl::StatusOr<ChatFormat> ChooseChatFormat(const std::string& model_dir,
                                            absl::string_view explicit_name) {
  if (!explicit_name.empty()) return ParseChatFormat(explicit_name);
  std::error_code error;
  const std::string jinja = (std::filesystem::path(model_dir) / "chat_template.jinja").string();
  if (std::filesystem::is_regular_file(jinja, error)) {
    ASSIGN_OR_RETURN(std::string chat_template, ReadFileToString(jinja));
    absl::StatusOr<ChatFormat> format = ChatFormatFromTemplate(chat_template);
    if (!format.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(jinja, ": ", format.status().message()));
    }
    return format;
  }
  const std::string path = (std::filesystem::path(model_dir) / "tokenizer_config.json").string();
  if (!std::filesystem::is_regular_file(path, error)) {
    return absl::NotFoundError(absl::StrCat(model_dir, " has no tokenizer_config.json, so no "
                                            "chat template; name a chat format (",
                                            FormatNames(), ")"));
  }
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  const nlohmann::json config = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a JSON object"));
  }
  auto it = config.find("chat_template");
  std::string chat_template;
  if (it != config.end() && it->is_string()) {
    chat_template = it->get<std::string>();
  } else if (it != config.end() && it->is_array()) {
    // transformers' named templates: [{"name": "default", "template": "..."}, ...]
    for (const nlohmann::json& entry : *it) {
      if (entry.is_object() && entry.value("name", "") == "default" &&
          entry.contains("template") && entry["template"].is_string()) {
        chat_template = entry["template"].get<std::string>();
      }
    }
  } else if (it != config.end() && !it->is_null()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": \"chat_template\" must be a string or a list of named templates"));
  }
  if (chat_template.empty()) {
    return absl::NotFoundError(absl::StrCat(path, " has no (default) chat_template; name a chat "
                                            "format (", FormatNames(), ")"));
  }
  absl::StatusOr<ChatFormat> format = ChatFormatFromTemplate(chat_template);
  if (!format.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", format.status().message()));
  }
  return format;
}

}  // namespace verdict
