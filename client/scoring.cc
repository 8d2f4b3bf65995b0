#include "client/scoring.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/output.h"

namespace verdict::client {
namespace {

using Json = nlohmann::ordered_json;
using verdict::v1::ScoreItem;

constexpr absl::string_view kAssistantMarker = "\n\nAssistant:";

absl::Status Bad(absl::string_view problem) { return absl::InvalidArgumentError(problem); }

absl::StatusOr<std::vector<verdict::v1::ChatMessage>> ReadMessages(const Json& list,
                                                                   absl::string_view key) {
  if (!list.is_array()) {
    return Bad(absl::StrCat("\"", key, "\": expected a list of {\"role\", \"content\"} objects"));
  }
  std::vector<verdict::v1::ChatMessage> messages;
  for (size_t i = 0; i < list.size(); ++i) {
    const Json& m = list[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content") ||
        !m["content"].is_string()) {
      return Bad(
          absl::StrCat("\"", key, "\"[", i, "]: expected {\"role\": string, \"content\": string}"));
    }
    verdict::v1::ChatMessage message;
    message.set_role(m["role"].get<std::string>());
    message.set_content(m["content"].get<std::string>());
    messages.push_back(std::move(message));
  }
  return messages;
}

ScoreItem PromptResponseItem(std::string prompt, std::string response) {
  ScoreItem item;
  item.mutable_prompt_response()->set_prompt(std::move(prompt));
  item.mutable_prompt_response()->set_response(std::move(response));
  return item;
}

ScoreItem ConversationItem(const std::vector<verdict::v1::ChatMessage>& prompt,
                           const std::vector<verdict::v1::ChatMessage>& rest) {
  ScoreItem item;
  for (const auto& m : prompt) *item.mutable_conversation()->add_messages() = m;
  for (const auto& m : rest) *item.mutable_conversation()->add_messages() = m;
  return item;
}

absl::Status ParsePair(const Json& object, ScoreLine& line) {
  const Json& chosen = object["chosen"];
  const Json& rejected = object["rejected"];
  if (chosen.is_string() && rejected.is_string()) {
    if (object.contains("prompt")) {
      if (!object["prompt"].is_string()) {
        return Bad("\"prompt\": expected a string when \"chosen\" and \"rejected\" are strings");
      }
      const std::string prompt = object["prompt"].get<std::string>();
      line.items.push_back(PromptResponseItem(prompt, chosen.get<std::string>()));
      line.items.push_back(PromptResponseItem(prompt, rejected.get<std::string>()));
    } else {
      SplitPair split = SplitImplicitPrompt(chosen.get<std::string>(), rejected.get<std::string>());
      line.items.push_back(PromptResponseItem(split.prompt, std::move(split.chosen)));
      line.items.push_back(PromptResponseItem(std::move(split.prompt), std::move(split.rejected)));
    }
    return absl::OkStatus();
  }
  if (chosen.is_array() && rejected.is_array()) {
    std::vector<verdict::v1::ChatMessage> prompt;
    if (object.contains("prompt")) {
      absl::StatusOr<std::vector<verdict::v1::ChatMessage>> p =
          ReadMessages(object["prompt"], "prompt");
      if (!p.ok()) return p.status();
      prompt = *std::move(p);
    }
    absl::StatusOr<std::vector<verdict::v1::ChatMessage>> c = ReadMessages(chosen, "chosen");
    if (!c.ok()) return c.status();
    absl::StatusOr<std::vector<verdict::v1::ChatMessage>> r = ReadMessages(rejected, "rejected");
    if (!r.ok()) return r.status();
    line.items.push_back(ConversationItem(prompt, *c));
    line.items.push_back(ConversationItem(prompt, *r));
    return absl::OkStatus();
  }
  return Bad("\"chosen\" and \"rejected\": expected two strings or two message lists");
}

}  // namespace

absl::StatusOr<verdict::v1::ModelRef> ParseModelRef(absl::string_view text) {
  verdict::v1::ModelRef model;
  const size_t colon = text.rfind(':');
  const absl::string_view name = colon == absl::string_view::npos ? text : text.substr(0, colon);
  if (name.empty()) {
    return Bad(
        absl::StrCat("--model: expected NAME, NAME:VERSION or NAME:ALIAS, got '", text, "'"));
  }
  model.set_name(std::string(name));
  if (colon != absl::string_view::npos) {
    const absl::string_view selector = text.substr(colon + 1);
    int64_t version;
    if (selector.empty()) {
      return Bad(absl::StrCat("--model: nothing after ':' in '", text, "'"));
    } else if (absl::SimpleAtoi(selector, &version)) {
      if (version < 1) return Bad(absl::StrCat("--model: versions start at 1, got ", version));
      model.set_version(version);
    } else {
      model.set_alias(std::string(selector));
    }
  }
  return model;
}

std::string ModelRefToString(const verdict::v1::ModelRef& model) {
  switch (model.selector_case()) {
    case verdict::v1::ModelRef::kVersion:
      return absl::StrCat(model.name(), ":", model.version());
    case verdict::v1::ModelRef::kAlias:
      return absl::StrCat(model.name(), ":", model.alias());
    default:
      return model.name();
  }
}

SplitPair SplitImplicitPrompt(absl::string_view chosen, absl::string_view rejected) {
  const size_t limit = std::min(chosen.size(), rejected.size());
  size_t shared = 0;
  while (shared < limit && chosen[shared] == rejected[shared]) ++shared;
  const size_t marker = chosen.substr(0, shared).rfind(kAssistantMarker);
  const size_t cut = marker == absl::string_view::npos ? 0 : marker + kAssistantMarker.size();
  return {std::string(chosen.substr(0, cut)), std::string(chosen.substr(cut)),
          std::string(rejected.substr(cut))};
}

absl::StatusOr<ScoreLine> ParseScoreLine(absl::string_view text) {
  ScoreLine line;
  if (absl::StripAsciiWhitespace(text).empty()) return line;
  line.object = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (line.object.is_discarded()) return Bad("not valid JSON");
  if (!line.object.is_object()) return Bad("expected a JSON object");
  const Json& object = line.object;
  if (object.contains("chosen") || object.contains("rejected")) {
    if (!object.contains("chosen") || !object.contains("rejected")) {
      return Bad("a pair needs both \"chosen\" and \"rejected\"");
    }
    line.kind = ScoreLine::Kind::kPair;
    if (absl::Status s = ParsePair(object, line); !s.ok()) return s;
    return line;
  }
  line.kind = ScoreLine::Kind::kSingle;
  if (object.contains("messages")) {
    absl::StatusOr<std::vector<verdict::v1::ChatMessage>> messages =
        ReadMessages(object["messages"], "messages");
    if (!messages.ok()) return messages.status();
    line.items.push_back(ConversationItem({}, *messages));
    return line;
  }
  if (!object.contains("response") || !object["response"].is_string()) {
    return Bad("expected \"response\" (a string), \"messages\", or \"chosen\" and \"rejected\"");
  }
  std::string prompt;
  if (object.contains("prompt")) {
    if (!object["prompt"].is_string()) return Bad("\"prompt\": expected a string");
    prompt = object["prompt"].get<std::string>();
  }
  line.items.push_back(
      PromptResponseItem(std::move(prompt), object["response"].get<std::string>()));
  return line;
}

std::string RenderScoredLine(const ScoreLine& line, absl::Span<const double> scores) {
  if (line.kind == ScoreLine::Kind::kBlank) return "";
  Json object = line.object;
  if (line.kind == ScoreLine::Kind::kSingle) {
    object["score"] = scores[0];
  } else {
    object["chosen_score"] = scores[0];
    object["rejected_score"] = scores[1];
  }
  // Invalid UTF-8 was rejected by the parser, so dump() cannot throw on it.
  return object.dump(-1, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace);
}

absl::StatusOr<std::vector<double>> ScoreItems(Connection& connection,
                                               const std::vector<ScoreItem>& items,
                                               const ScoreOptions& options,
                                               verdict::v1::ModelRef* version_used) {
  std::vector<double> scores(items.size());
  const size_t per_request = static_cast<size_t>(std::max(options.items_per_request, 1));
  const size_t requests = (items.size() + per_request - 1) / per_request;
  std::atomic<size_t> next{0};
  absl::Mutex mutex;
  absl::Status first_error;        // guarded by mutex
  verdict::v1::ModelRef resolved;  // guarded by mutex

  auto worker = [&] {
    for (size_t r = next++; r < requests; r = next++) {
      {
        absl::MutexLock lock(&mutex);
        if (!first_error.ok()) return;
      }
      verdict::v1::ScoreBatchRequest request;
      *request.mutable_model() = options.model;
      request.mutable_options()->set_normalize(options.normalize);
      const size_t begin = r * per_request, end = std::min(items.size(), begin + per_request);
      for (size_t i = begin; i < end; ++i) *request.add_items() = items[i];
      verdict::v1::ScoreBatchResponse response;
      grpc::Status status;
      auto backoff = std::chrono::milliseconds(100);
      for (int attempt = 1;; ++attempt) {
        std::unique_ptr<grpc::ClientContext> context = connection.NewContext();
        status = connection.scoring().ScoreBatch(context.get(), request, &response);
        const bool retryable = status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED ||
                               status.error_code() == grpc::StatusCode::UNAVAILABLE;
        if (status.ok() || !retryable || attempt >= options.max_attempts) break;
        std::this_thread::sleep_for(backoff);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
      }
      absl::MutexLock lock(&mutex);
      if (!status.ok()) {
        if (first_error.ok()) first_error = FromGrpc(status);
        return;
      }
      if (static_cast<size_t>(response.scores_size()) != end - begin) {
        first_error = absl::InternalError(absl::StrCat(
            "the server returned ", response.scores_size(), " scores for ", end - begin, " items"));
        return;
      }
      std::copy(response.scores().begin(), response.scores().end(), scores.begin() + begin);
      resolved = response.model();
    }
  };
  const int threads = static_cast<int>(
      std::min<size_t>(requests, static_cast<size_t>(std::max(options.parallel, 1))));
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back(worker);
  worker();
  for (std::thread& t : pool) t.join();
  if (!first_error.ok()) return first_error;
  if (version_used != nullptr) *version_used = resolved;
  return scores;
}

}  // namespace verdict::client
