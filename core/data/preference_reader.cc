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
#include "core/util/status_macros.h"

namespace verdict {
namespace {

using Json = nlohmann::json;

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
// the text parsed, which here is always line 1: keep what helps the reader.
std::string DescribeJsonError(absl::string_view what) {
  if (size_t end = what.find("] ");
      absl::StartsWith(what, "[json.exception.") && end != absl::string_view::npos) {
    what.remove_prefix(end + 2);
  }
  return absl::StrReplaceAll(what, {{"at line 1, column ", "at column "}});
}

absl::StatusOr<Json> ParseJson(absl::string_view text) {
  try {
    return Json::parse(text.begin(), text.end());
  } catch (const Json::exception& e) {
    return Malformed(absl::StrCat("invalid JSON: ", DescribeJsonError(e.what())));
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

absl::StatusOr<PreferencePair> ParseLine(absl::string_view text, ChatFormat format) {
  if (size_t byte = FirstInvalidUtf8Byte(text); byte != 0) {
    return Malformed(absl::StrCat("invalid UTF-8 at byte ", byte));
  }
  if (NestsDeeperThan(text, kMaxJsonDepth)) {
    return Malformed(absl::StrCat("JSON nested deeper than ", kMaxJsonDepth, " levels"));
  }
  ASSIGN_OR_RETURN(Json line, ParseJson(text));
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
  RETURN_IF_ERROR(ParseMargin(line, &pair));
  if (chosen->is_string()) {
    if (prompt == nullptr) {
      SplitTranscripts(chosen->get_ref<const std::string&>(),
                       rejected->get_ref<const std::string&>(), &pair);
      return pair;
    }
    if (!prompt->is_string()) {
      return Malformed(absl::StrCat("\"prompt\" must be a string like \"chosen\" and ",
                                    "\"rejected\", got ", prompt->type_name()));
    }
    pair.prompt = prompt->get<std::string>();
    pair.chosen = chosen->get<std::string>();
    pair.rejected = rejected->get<std::string>();
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

}  // namespace

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

absl::Status PreferenceReader::Reject(int64_t line, absl::string_view reason) {
  if (!options_.skip_invalid) {
    error_ = absl::InvalidArgumentError(absl::StrCat(lines_->name(), ":", line, ": ", reason));
    return error_;
  }
  ++stats_.invalid_lines;
  if (stats_.first_invalid.size() < options_.max_reported_invalid) {
    stats_.first_invalid.push_back({line, std::string(reason)});
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> PreferenceReader::Next(PreferencePair* pair) {
  if (!error_.ok()) return error_;
  TextLine line;
  while (true) {
    absl::StatusOr<bool> more = lines_->Next(&line);
    if (!more.ok()) {
      error_ = more.status();
      return error_;
    }
    if (!*more) return false;
    ++stats_.lines;
    if (line.too_long) {
      RETURN_IF_ERROR(Reject(
          line.number, absl::StrCat("line is longer than ", options_.max_line_bytes, " bytes")));
      continue;
    }
    if (absl::StripAsciiWhitespace(line.text).empty()) {
      ++stats_.blank_lines;
      continue;
    }
    absl::StatusOr<PreferencePair> parsed = ParseLine(line.text, options_.chat_format);
    if (!parsed.ok()) {
      RETURN_IF_ERROR(Reject(line.number, parsed.status().message()));
      continue;
    }
    if (parsed->chosen == parsed->rejected) {
      ++stats_.identical_dropped;
      continue;
    }
    *pair = *std::move(parsed);
    pair->line = line.number;
    ++stats_.pairs;
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
