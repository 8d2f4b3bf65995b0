#include "core/data/preference_reader.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "core/data/json_array_reader.h"
#include "core/util/status_macros.h"

namespace verdict {
namespace {

// Ordered: a message that lists a record's keys lists them as the file has them.
using Json = nlohmann::ordered_json;

constexpr absl::string_view kAssistantMarker = "\n\nAssistant:";

// The 1-based position of the first byte that is not well-formed UTF-8 (overlong forms,
// surrogates and code points past U+10FFFF included), or 0 when all of `text` is. Checked
// here rather than left to the JSON parser so the message names the byte.
size_t FirstInvalidUtf8Byte(absl::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    if (lead < 0x80) {
      ++i;
      continue;
    }
    size_t length;
    uint32_t code_point;
    uint32_t smallest;
    if ((lead & 0xE0) == 0xC0) {
      length = 2, code_point = lead & 0x1F, smallest = 0x80;
    } else if ((lead & 0xF0) == 0xE0) {
      length = 3, code_point = lead & 0x0F, smallest = 0x800;
    } else if ((lead & 0xF8) == 0xF0) {
      length = 4, code_point = lead & 0x07, smallest = 0x10000;
    } else {
      return i + 1;
    }
    if (i + length > text.size()) return i + 1;
    for (size_t k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) return i + 1;
      code_point = (code_point << 6) | (next & 0x3F);
    }
    if (code_point < smallest || code_point > 0x10FFFF ||
        (code_point >= 0xD800 && code_point <= 0xDFFF)) {
      return i + 1;
    }
    i += length;
  }
  return 0;
}

// Preference lines nest three deep (line, message list, message). The JSON parser builds every
// level it sees, so a line of a few megabytes of "[" would cost gigabytes: refuse deep lines
// before parsing them. Brackets inside strings do not count.
constexpr int kMaxJsonDepth = 32;

bool NestsDeeperThan(absl::string_view text, int limit) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

absl::Status Malformed(absl::string_view reason) { return absl::InvalidArgumentError(reason); }

// nlohmann's messages start with "[json.exception.parse_error.101] " and count lines within
// the text parsed, a line or an array element starting on line `line` of the file: keep what
// helps the reader, with lines counted in the file.
std::string DescribeJsonError(absl::string_view what, int64_t line) {
  if (size_t end = what.find("] ");
      absl::StartsWith(what, "[json.exception.") && end != absl::string_view::npos) {
    what.remove_prefix(end + 2);
  }
  std::string text(what);
  constexpr absl::string_view kAtLine = "at line ";
  const size_t at = text.find(kAtLine.data(), 0, kAtLine.size());
  if (at == std::string::npos) return text;
  const size_t number_start = at + kAtLine.size();
  size_t number_end = number_start;
  int64_t relative = 0;
  while (number_end < text.size() && absl::ascii_isdigit(text[number_end])) {
    relative = relative * 10 + (text[number_end++] - '0');
  }
  if (number_end == number_start) return text;
  if (relative == 1) {
    // On the record's first line columns count from the record's start: say so only then.
    return absl::StrReplaceAll(text, {{"at line 1, column ", "at column "}});
  }
  return absl::StrCat(text.substr(0, number_start), line + relative - 1, text.substr(number_end));
}

absl::StatusOr<Json> ParseJson(absl::string_view text, int64_t line) {
  try {
    return Json::parse(text.begin(), text.end());
  } catch (const Json::exception& e) {
    return Malformed(absl::StrCat("invalid JSON: ", DescribeJsonError(e.what(), line)));
  }
}

// The value under `key`, or nullptr when it is missing or null.
const Json* Find(const Json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::StatusOr<std::vector<ChatMessage>> ParseMessages(const Json& list, absl::string_view key) {
  std::vector<ChatMessage> messages;
  messages.reserve(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    const Json& item = list[i];
    const std::string where = absl::StrCat("\"", key, "\"[", i, "]");
    if (!item.is_object()) {
      return Malformed(absl::StrCat(where, " must be an object with \"role\" and \"content\", got ",
                                    item.type_name()));
    }
    const Json* role = Find(item, "role");
    const Json* content = Find(item, "content");
    if (role == nullptr || !role->is_string()) {
      return Malformed(absl::StrCat(where, ".role must be a string"));
    }
    if (content == nullptr || !content->is_string()) {
      return Malformed(absl::StrCat(where, ".content must be a string"));
    }
    absl::StatusOr<ChatRole> parsed_role = ParseChatRole(role->get_ref<const std::string&>());
    if (!parsed_role.ok()) {
      return Malformed(absl::StrCat(where, ".role: ", parsed_role.status().message()));
    }
    messages.push_back({*parsed_role, content->get<std::string>()});
  }
  return messages;
}

bool SameMessage(const ChatMessage& a, const ChatMessage& b) {
  return a.role == b.role && a.content == b.content;
}

// hh-rlhf transcripts: the prompt is what both share, up to the assistant turn where they part.
void SplitTranscripts(const std::string& chosen, const std::string& rejected,
                      PreferencePair* pair) {
  const size_t shared =
      std::mismatch(chosen.begin(), chosen.begin() + std::min(chosen.size(), rejected.size()),
                    rejected.begin())
          .first -
      chosen.begin();
  const size_t marker = absl::string_view(chosen.data(), shared).rfind(kAssistantMarker);
  const size_t cut = marker == absl::string_view::npos ? 0 : marker + kAssistantMarker.size();
  pair->prompt = chosen.substr(0, cut);
  pair->chosen = chosen.substr(cut);
  pair->rejected = rejected.substr(cut);
}

absl::Status RenderConversations(absl::Span<const ChatMessage> prompt,
                                 absl::Span<const ChatMessage> chosen,
                                 absl::Span<const ChatMessage> rejected, ChatFormat format,
                                 PreferencePair* pair) {
  absl::StatusOr<PromptAndResponse> chosen_text = RenderPromptAndResponse(prompt, chosen, format);
  if (!chosen_text.ok()) {
    return Malformed(absl::StrCat("\"chosen\": ", chosen_text.status().message()));
  }
  absl::StatusOr<PromptAndResponse> rejected_text =
      RenderPromptAndResponse(prompt, rejected, format);
  if (!rejected_text.ok()) {
    return Malformed(absl::StrCat("\"rejected\": ", rejected_text.status().message()));
  }
  pair->prompt = std::move(chosen_text->prompt);
  pair->chosen = std::move(chosen_text->response);
  pair->rejected = std::move(rejected_text->response);
  pair->conversational = true;
  return absl::OkStatus();
}

// Conversations without a prompt: the prompt is the messages both share, cut back to end
// before an assistant message that both have at the same place.
absl::Status SplitConversations(const std::vector<ChatMessage>& chosen,
                                const std::vector<ChatMessage>& rejected, ChatFormat format,
                                PreferencePair* pair) {
  const size_t both = std::min(chosen.size(), rejected.size());
  size_t shared = 0;
  while (shared < both && SameMessage(chosen[shared], rejected[shared])) ++shared;
  std::optional<size_t> split;
  for (size_t k = std::min(shared + 1, both); k-- > 0;) {
    if (chosen[k].role == ChatRole::kAssistant && rejected[k].role == ChatRole::kAssistant) {
      split = k;
      break;
    }
  }
  if (!split) {
    return Malformed(
        "\"chosen\" and \"rejected\" must part at an assistant message: the messages before it "
        "are the prompt");
  }
  absl::Span<const ChatMessage> chosen_span(chosen);
  absl::Span<const ChatMessage> rejected_span(rejected);
  return RenderConversations(chosen_span.first(*split), chosen_span.subspan(*split),
                             rejected_span.subspan(*split), format, pair);
}

absl::Status ParseMargin(const Json& line, PreferencePair* pair) {
  const Json* margin = Find(line, "margin");
  if (margin == nullptr) return absl::OkStatus();
  if (!margin->is_number()) {
    return Malformed(absl::StrCat("\"margin\" must be a number, got ", margin->type_name()));
  }
  const double value = margin->get<double>();
  if (!std::isfinite(value)) return Malformed("\"margin\" must be finite");
  pair->margin = value;
  return absl::OkStatus();
}

// The optional "subset" key (null counts as absent), with the margin: both are per-record
// extras every layout accepts.
absl::Status ParseExtras(const Json& line, PreferencePair* pair) {
  RETURN_IF_ERROR(ParseMargin(line, pair));
  const Json* subset = Find(line, "subset");
  if (subset == nullptr) return absl::OkStatus();
  if (!subset->is_string()) {
    return Malformed(absl::StrCat("\"subset\" must be a string, got ", subset->type_name()));
  }
  pair->subset = subset->get<std::string>();
  return absl::OkStatus();
}

// The explicit-prompt, implicit-prompt and conversational layouts: "chosen" and "rejected" are
// strings or message lists.
absl::StatusOr<PreferencePair> ParseStandard(const Json& line, ChatFormat format) {
  if (!line.is_object()) {
    return Malformed(absl::StrCat("expected a JSON object, got ", line.type_name()));
  }
  const Json* chosen = Find(line, "chosen");
  const Json* rejected = Find(line, "rejected");
  const Json* prompt = Find(line, "prompt");
  if (chosen == nullptr) return Malformed("missing \"chosen\"");
  if (rejected == nullptr) return Malformed("missing \"rejected\"");
  for (const auto& [key, value] : {std::pair{"chosen", chosen}, std::pair{"rejected", rejected}}) {
    if (!value->is_string() && !value->is_array()) {
      return Malformed(absl::StrCat("\"", key, "\" must be a string or a list of messages, got ",
                                    value->type_name()));
    }
  }
  if (chosen->is_string() != rejected->is_string()) {
    return Malformed("\"chosen\" and \"rejected\" must both be strings or both be message lists");
  }

  PreferencePair pair;
  pair.layout = PreferenceLayout::kConversational;
  RETURN_IF_ERROR(ParseExtras(line, &pair));
  if (chosen->is_string()) {
    if (prompt == nullptr) {
      SplitTranscripts(chosen->get_ref<const std::string&>(),
                       rejected->get_ref<const std::string&>(), &pair);
      pair.layout = PreferenceLayout::kImplicitPrompt;
      return pair;
    }
    if (!prompt->is_string()) {
      return Malformed(absl::StrCat("\"prompt\" must be a string like \"chosen\" and ",
                                    "\"rejected\", got ", prompt->type_name()));
    }
    pair.prompt = prompt->get<std::string>();
    pair.chosen = chosen->get<std::string>();
    pair.rejected = rejected->get<std::string>();
    pair.layout = PreferenceLayout::kExplicitPrompt;
    return pair;
  }

  ASSIGN_OR_RETURN(std::vector<ChatMessage> chosen_messages, ParseMessages(*chosen, "chosen"));
  ASSIGN_OR_RETURN(std::vector<ChatMessage> rejected_messages,
                   ParseMessages(*rejected, "rejected"));
  if (prompt == nullptr) {
    RETURN_IF_ERROR(SplitConversations(chosen_messages, rejected_messages, format, &pair));
    return pair;
  }
  if (!prompt->is_array()) {
    return Malformed(absl::StrCat("\"prompt\" must be a list of messages like \"chosen\" and ",
                                  "\"rejected\", got ", prompt->type_name()));
  }
  ASSIGN_OR_RETURN(std::vector<ChatMessage> prompt_messages, ParseMessages(*prompt, "prompt"));
  RETURN_IF_ERROR(
      RenderConversations(prompt_messages, chosen_messages, rejected_messages, format, &pair));
  return pair;
}

// LLaMA-Factory's ShareGPT role tags (its dataset_info.json defaults) and the OpenAI names.
absl::StatusOr<ChatRole> ShareGptRole(absl::string_view from) {
  if (from == "human" || from == "user") return ChatRole::kUser;
  if (from == "gpt" || from == "assistant") return ChatRole::kAssistant;
  if (from == "system") return ChatRole::kSystem;
  return Malformed(
      absl::StrCat("role \"", from, "\" is not supported (human, user, gpt, assistant, system)"));
}

absl::StatusOr<ChatMessage> ParseShareGptMessage(const Json& item, absl::string_view where) {
  if (!item.is_object()) {
    return Malformed(absl::StrCat(where, " must be an object with \"from\" and \"value\", got ",
                                  item.type_name()));
  }
  const Json* from = Find(item, "from");
  const Json* value = Find(item, "value");
  if (from == nullptr || !from->is_string()) {
    return Malformed(absl::StrCat(where, ".from must be a string"));
  }
  if (value == nullptr || !value->is_string()) {
    return Malformed(absl::StrCat(where, ".value must be a string"));
  }
  absl::StatusOr<ChatRole> role = ShareGptRole(from->get_ref<const std::string&>());
  if (!role.ok()) return Malformed(absl::StrCat(where, ".from: ", role.status().message()));
  return ChatMessage{*role, value->get<std::string>()};
}

// LLaMA-Factory's ShareGPT preference record: the conversation (after an optional "system") is
// the prompt, "chosen" and "rejected" the two assistant replies to it. Rendered exactly as a
// conversational record with that prompt.
absl::StatusOr<PreferencePair> ParseShareGpt(const Json& record, ChatFormat format) {
  const Json* conversations = Find(record, "conversations");
  if (conversations == nullptr || !conversations->is_array()) {
    return Malformed(
        absl::StrCat("\"conversations\" must be a list of {\"from\", \"value\"} messages, got ",
                     conversations == nullptr ? "null" : conversations->type_name()));
  }
  std::vector<ChatMessage> prompt;
  if (const Json* system = Find(record, "system"); system != nullptr) {
    if (!system->is_string()) {
      return Malformed(absl::StrCat("\"system\" must be a string, got ", system->type_name()));
    }
    // LLaMA-Factory treats an empty system prompt as none.
    if (!system->get_ref<const std::string&>().empty()) {
      prompt.push_back({ChatRole::kSystem, system->get<std::string>()});
    }
  }
  for (size_t i = 0; i < conversations->size(); ++i) {
    ASSIGN_OR_RETURN(
        ChatMessage message,
        ParseShareGptMessage((*conversations)[i], absl::StrCat("\"conversations\"[", i, "]")));
    if (message.role == ChatRole::kSystem && !prompt.empty()) {
      return Malformed(absl::StrCat("\"conversations\"[", i,
                                    "]: a system message may only come first (and not together "
                                    "with a \"system\" key)"));
    }
    prompt.push_back(std::move(message));
  }
  std::vector<ChatMessage> responses[2];
  const char* const keys[2] = {"chosen", "rejected"};
  for (int k = 0; k < 2; ++k) {
    const Json* response = Find(record, keys[k]);
    if (response == nullptr) return Malformed(absl::StrCat("missing \"", keys[k], "\""));
    ASSIGN_OR_RETURN(ChatMessage message,
                     ParseShareGptMessage(*response, absl::StrCat("\"", keys[k], "\"")));
    if (message.role != ChatRole::kAssistant) {
      return Malformed(absl::StrCat("\"", keys[k], "\".from must be \"gpt\": it is a response"));
    }
    responses[k].push_back(std::move(message));
  }
  PreferencePair pair;
  pair.layout = PreferenceLayout::kShareGpt;
  RETURN_IF_ERROR(ParseExtras(record, &pair));
  RETURN_IF_ERROR(RenderConversations(prompt, responses[0], responses[1], format, &pair));
  return pair;
}

// The string of `key`, "" when it is absent or null; Malformed when it is another type.
absl::StatusOr<std::string> OptionalString(const Json& record, const char* key) {
  const Json* value = Find(record, key);
  if (value == nullptr) return std::string();
  if (!value->is_string()) {
    return Malformed(absl::StrCat("\"", key, "\" must be a string, got ", value->type_name()));
  }
  return value->get<std::string>();
}

// LLaMA-Factory's alpaca preference record: {"instruction", "input", "chosen", "rejected"} with
// optional "system" and "history" ([[query, response], ...] earlier turns). The user turn is
// the instruction and the input joined by a newline, as LLaMA-Factory writes it; "chosen" and
// "rejected" are the assistant replies. Rendered as a conversational record with that prompt.
absl::StatusOr<PreferencePair> ParseAlpaca(const Json& record, ChatFormat format) {
  std::vector<ChatMessage> prompt;
  ASSIGN_OR_RETURN(std::string system, OptionalString(record, "system"));
  if (!system.empty()) prompt.push_back({ChatRole::kSystem, std::move(system)});
  if (const Json* history = Find(record, "history"); history != nullptr) {
    if (!history->is_array()) {
      return Malformed(absl::StrCat("\"history\" must be a list of [query, response] pairs, got ",
                                    history->type_name()));
    }
    for (size_t i = 0; i < history->size(); ++i) {
      const Json& turn = (*history)[i];
      if (!turn.is_array() || turn.size() != 2 || !turn[0].is_string() || !turn[1].is_string()) {
        return Malformed(
            absl::StrCat("\"history\"[", i, "] must be a [query, response] pair of strings"));
      }
      prompt.push_back({ChatRole::kUser, turn[0].get<std::string>()});
      prompt.push_back({ChatRole::kAssistant, turn[1].get<std::string>()});
    }
  }
  const Json* instruction = Find(record, "instruction");
  if (!instruction->is_string()) {
    return Malformed(
        absl::StrCat("\"instruction\" must be a string, got ", instruction->type_name()));
  }
  ASSIGN_OR_RETURN(std::string input, OptionalString(record, "input"));
  std::string query = instruction->get<std::string>();
  if (!input.empty()) query = query.empty() ? input : absl::StrCat(query, "\n", input);
  prompt.push_back({ChatRole::kUser, std::move(query)});
  std::vector<ChatMessage> responses[2];
  const char* const keys[2] = {"chosen", "rejected"};
  for (int k = 0; k < 2; ++k) {
    const Json* response = Find(record, keys[k]);
    if (response == nullptr) return Malformed(absl::StrCat("missing \"", keys[k], "\""));
    if (!response->is_string()) {
      return Malformed(absl::StrCat("\"", keys[k], "\" must be a string (an alpaca reply), got ",
                                    response->type_name()));
    }
    responses[k].push_back({ChatRole::kAssistant, response->get<std::string>()});
  }
  PreferencePair pair;
  pair.layout = PreferenceLayout::kAlpaca;
  RETURN_IF_ERROR(ParseExtras(record, &pair));
  RETURN_IF_ERROR(RenderConversations(prompt, responses[0], responses[1], format, &pair));
  return pair;
}

enum class Layout { kNone, kStandard, kShareGpt, kAlpaca };

Layout DetectLayout(const Json& record) {
  if (!record.is_object()) return Layout::kNone;
  // A ShareGPT or alpaca record without responses is supervised fine-tuning data, not
  // preference data.
  if (Find(record, "chosen") == nullptr && Find(record, "rejected") == nullptr) {
    return Layout::kNone;
  }
  if (Find(record, "conversations") != nullptr) return Layout::kShareGpt;
  // Read as an hh-rlhf transcript, an alpaca record would silently lose its instruction.
  if (Find(record, "instruction") != nullptr) return Layout::kAlpaca;
  return Layout::kStandard;
}

// What a record that is not preference data is, for the wrong-format message.
std::string DescribeValue(const Json& value) {
  if (!value.is_object()) {
    return value.is_null() ? "null" : absl::StrCat("a JSON ", value.type_name());
  }
  if (value.empty()) return "an empty JSON object";
  constexpr size_t kMaxKeys = 8;
  std::vector<std::string> keys;
  for (auto it = value.begin(); it != value.end() && keys.size() < kMaxKeys; ++it) {
    keys.push_back(absl::StrCat("\"", it.key(), "\""));
  }
  if (value.size() > kMaxKeys) keys.push_back("...");
  return absl::StrCat("a JSON object with ", value.size() == 1 ? "key " : "keys ",
                      absl::StrJoin(keys, ", "));
}

std::string Accepted(DataFormat format) {
  constexpr absl::string_view kStandard =
      "{\"prompt\": str, \"chosen\": str, \"rejected\": str} (explicit prompt); "
      "{\"chosen\": str, \"rejected\": str} (hh-rlhf transcripts, implicit prompt); "
      "{\"chosen\": [{\"role\", \"content\"}, ...], \"rejected\": [...]} with an optional "
      "\"prompt\": [...] (conversational); ";
  constexpr absl::string_view kShareGpt =
      "{\"conversations\": [{\"from\", \"value\"}, ...], \"chosen\": {\"from\": \"gpt\", "
      "\"value\"}, \"rejected\": {...}} with an optional \"system\" (LLaMA-Factory ShareGPT)";
  constexpr absl::string_view kAlpaca =
      "; {\"instruction\": str, \"input\": str, \"chosen\": str, \"rejected\": str} with optional "
      "\"system\" and \"history\" (LLaMA-Factory alpaca)";
  absl::string_view containers =
      "JSON Lines (one record per line) or a JSON array of records, plain or gzip";
  if (format == DataFormat::kJsonl) containers = "JSON Lines (one record per line), plain or gzip";
  if (format == DataFormat::kJson) containers = "a JSON array of records, plain or gzip";
  if (format == DataFormat::kShareGpt) {
    return absl::StrCat(containers, ", each record ", kShareGpt);
  }
  return absl::StrCat(containers, ", each record one of ", kStandard, kShareGpt, kAlpaca);
}

// One record: a JSON Lines line or a JSON array element starting on line `line`. Sets
// `*unrecognised` to what the record is when it is not recognisably preference data (in the
// layouts `options.format` accepts); leaves it empty otherwise, valid or not.
absl::StatusOr<PreferencePair> ParseRecord(absl::string_view text, int64_t line,
                                           const PreferenceReaderOptions& options, bool in_array,
                                           std::string* unrecognised) {
  if (size_t byte = FirstInvalidUtf8Byte(text); byte != 0) {
    const std::string reason = absl::StrCat("invalid UTF-8 at byte ", byte);
    *unrecognised = absl::StrCat(reason, " (not a text file?)");
    return Malformed(reason);
  }
  if (NestsDeeperThan(text, kMaxJsonDepth)) {
    const std::string reason = absl::StrCat("JSON nested deeper than ", kMaxJsonDepth, " levels");
    *unrecognised = reason;
    return Malformed(reason);
  }
  absl::StatusOr<Json> record = ParseJson(text, line);
  if (!record.ok()) {
    *unrecognised = std::string(record.status().message());
    if (!in_array && absl::StrContains(*unrecognised, "unexpected end of input")) {
      absl::StrAppend(unrecognised,
                      " (a JSON document spread over several lines is not JSON Lines)");
    }
    return record.status();
  }
  const Layout layout = DetectLayout(*record);
  if (options.format == DataFormat::kShareGpt) {
    if (layout != Layout::kShareGpt) {
      *unrecognised = DescribeValue(*record);
      if (!record->is_object()) {
        return Malformed(absl::StrCat("expected a JSON object, got ", record->type_name()));
      }
      return Malformed("missing \"conversations\" (format sharegpt)");
    }
    return ParseShareGpt(*record, options.chat_format);
  }
  if (layout == Layout::kNone) *unrecognised = DescribeValue(*record);
  if (layout == Layout::kShareGpt) return ParseShareGpt(*record, options.chat_format);
  if (layout == Layout::kAlpaca) return ParseAlpaca(*record, options.chat_format);
  return ParseStandard(*record, options.chat_format);
}

}  // namespace

absl::string_view PreferenceLayoutName(PreferenceLayout layout) {
  switch (layout) {
    case PreferenceLayout::kExplicitPrompt:
      return "explicit prompt";
    case PreferenceLayout::kImplicitPrompt:
      return "hh-rlhf transcripts";
    case PreferenceLayout::kConversational:
      return "conversational";
    case PreferenceLayout::kShareGpt:
      return "sharegpt";
    case PreferenceLayout::kAlpaca:
      return "alpaca";
  }
  return "unknown";
}

std::string ReadStats::Summary() const {
  std::vector<std::string> notes;
  if (identical_dropped > 0) notes.push_back(absl::StrCat(identical_dropped, " identical dropped"));
  if (invalid_lines > 0) notes.push_back(absl::StrCat(invalid_lines, " invalid skipped"));
  if (blank_lines > 0) notes.push_back(absl::StrCat(blank_lines, " blank"));
  std::string summary = absl::StrCat(pairs, pairs == 1 ? " pair" : " pairs", " from ", lines,
                                     lines == 1 ? " line" : " lines");
  if (!notes.empty()) absl::StrAppend(&summary, " (", absl::StrJoin(notes, ", "), ")");
  if (!first_invalid.empty()) {
    absl::StrAppend(&summary, "; first invalid: line ", first_invalid.front().line, ": ",
                    first_invalid.front().reason);
  }
  return summary;
}

absl::StatusOr<std::unique_ptr<PreferenceReader>> PreferenceReader::OpenFile(
    const std::string& path, const PreferenceReaderOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<LineReader> lines,
                   LineReader::OpenFile(path, options.max_line_bytes));
  return std::unique_ptr<PreferenceReader>(new PreferenceReader(std::move(lines), options));
}

std::unique_ptr<PreferenceReader> PreferenceReader::FromString(
    std::string contents, std::string name, const PreferenceReaderOptions& options) {
  return std::unique_ptr<PreferenceReader>(new PreferenceReader(
      LineReader::FromString(std::move(contents), std::move(name), options.max_line_bytes),
      options));
}

PreferenceReader::PreferenceReader(std::unique_ptr<LineReader> lines,
                                   const PreferenceReaderOptions& options)
    : lines_(std::move(lines)), options_(options) {}

PreferenceReader::~PreferenceReader() = default;

absl::Status PreferenceReader::WrongFormat(int64_t line, absl::string_view found) const {
  return absl::InvalidArgumentError(
      absl::StrCat(lines_->name(), ":", line, ": not preference data",
                   options_.format == DataFormat::kAuto
                       ? ""
                       : absl::StrCat(" in format ", DataFormatName(options_.format)),
                   ": found ", found, ". Accepted: ", Accepted(options_.format)));
}

absl::Status PreferenceReader::Start() {
  ASSIGN_OR_RETURN(int first, lines_->SkipLeadingSpace());
  stats_.lines = stats_.blank_lines = lines_->line_number();
  const bool array = options_.format == DataFormat::kJson ||
                     (options_.format != DataFormat::kJsonl && first == '[');
  if (!array) return absl::OkStatus();
  if (first != '[') {
    return WrongFormat(
        lines_->line_number() + 1,
        first < 0
            ? std::string("no JSON array: the file holds only whitespace")
            : absl::StrCat("no JSON array: the file starts with ",
                           first >= 0x20 && first < 0x7f
                               ? absl::StrCat("'", std::string(1, static_cast<char>(first)), "'")
                               : absl::StrCat("byte ", first),
                           ", not '['"));
  }
  array_ = std::make_unique<JsonArrayReader>(lines_.get(), options_.max_line_bytes);
  stats_.json_array = true;
  return absl::OkStatus();
}

absl::StatusOr<bool> PreferenceReader::NextRecord(Record* record) {
  if (array_ != nullptr) {
    JsonElement element;
    ASSIGN_OR_RETURN(bool more, array_->Next(&element));
    stats_.lines = array_->lines();
    if (!more) return false;
    *record = {element.text, element.line, element.index, element.too_long};
    return true;
  }
  TextLine line;
  ASSIGN_OR_RETURN(bool more, lines_->Next(&line));
  if (!more) return false;
  ++stats_.lines;
  *record = {line.text, line.number, 0, line.too_long};
  return true;
}

absl::Status PreferenceReader::Reject(const Record& record, absl::string_view reason,
                                      absl::string_view unrecognised) {
  if (!unrecognised.empty() && !recognised_) {
    // Nothing so far says this is preference data: say what the file is, not what this
    // record lacks.
    std::string found(unrecognised);
    if (array_ != nullptr) absl::StrAppend(&found, " (element ", record.index, " of the array)");
    if (!options_.skip_invalid) {
      error_ = WrongFormat(record.line, found);
      return error_;
    }
    if (first_unrecognised_.empty()) {
      first_unrecognised_ = std::move(found);
      first_unrecognised_line_ = record.line;
    }
  }
  if (!options_.skip_invalid) {
    error_ =
        absl::InvalidArgumentError(absl::StrCat(lines_->name(), ":", record.line, ": ", reason));
    return error_;
  }
  ++stats_.invalid_lines;
  if (stats_.first_invalid.size() < options_.max_reported_invalid) {
    stats_.first_invalid.push_back({record.line, std::string(reason)});
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> PreferenceReader::Next(PreferencePair* pair) {
  if (!error_.ok()) return error_;
  if (!started_) {
    started_ = true;
    if (absl::Status started = Start(); !started.ok()) {
      error_ = started;
      return error_;
    }
  }
  Record record;
  while (true) {
    absl::StatusOr<bool> more = NextRecord(&record);
    if (!more.ok()) {
      error_ = more.status();
      return error_;
    }
    if (!*more) {
      if (!recognised_ && !first_unrecognised_.empty()) {
        // skip_invalid skipped every record, and none looked like preference data.
        error_ = WrongFormat(first_unrecognised_line_, first_unrecognised_);
        return error_;
      }
      return false;
    }
    if (record.too_long) {
      const std::string reason =
          absl::StrCat(array_ != nullptr ? "array element" : "line", " is longer than ",
                       options_.max_line_bytes, " bytes");
      RETURN_IF_ERROR(Reject(record, reason, reason));
      continue;
    }
    if (array_ == nullptr && absl::StripAsciiWhitespace(record.text).empty()) {
      ++stats_.blank_lines;
      continue;
    }
    std::string unrecognised;
    absl::StatusOr<PreferencePair> parsed =
        ParseRecord(record.text, record.line, options_, array_ != nullptr, &unrecognised);
    if (!parsed.ok()) {
      RETURN_IF_ERROR(Reject(record, parsed.status().message(), unrecognised));
      if (unrecognised.empty()) recognised_ = true;
      continue;
    }
    recognised_ = true;
    if (parsed->chosen == parsed->rejected) {
      ++stats_.identical_dropped;
      continue;
    }
    *pair = *std::move(parsed);
    pair->line = record.line;
    ++stats_.pairs;
    ++stats_.pairs_by_layout[static_cast<int>(pair->layout)];
    return true;
  }
}

namespace {

absl::StatusOr<PreferenceData> ReadAll(PreferenceReader& reader) {
  PreferenceData data;
  PreferencePair pair;
  while (true) {
    ASSIGN_OR_RETURN(bool more, reader.Next(&pair));
    if (!more) break;
    data.pairs.push_back(std::move(pair));
  }
  data.stats = reader.stats();
  return data;
}

}  // namespace

absl::StatusOr<PreferenceData> ReadPreferenceFile(const std::string& path,
                                                  const PreferenceReaderOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<PreferenceReader> reader,
                   PreferenceReader::OpenFile(path, options));
  return ReadAll(*reader);
}

absl::StatusOr<PreferenceData> ReadPreferenceString(std::string contents, std::string name,
                                                    const PreferenceReaderOptions& options) {
  return ReadAll(*PreferenceReader::FromString(std::move(contents), std::move(name), options));
}

}  // namespace verdict
