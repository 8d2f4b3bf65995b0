#include "server/batch_scoring.h"

#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/data/chat_format.h"
#include "core/util/compute_priority.h"
#include "core/util/status_macros.h"
#include "server/proto_time.h"
#include "server/validation.h"

namespace verdict::server {
namespace {

absl::Status WithField(const std::string& field, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(field, ": ", status.message()));
}

absl::Status TooManyBytes(const std::string& field, int64_t max_item_bytes) {
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": more than ", max_item_bytes, " bytes of text"));
}

absl::StatusOr<std::vector<int32_t>> EncodeItem(const ScoringModel& model, const v1::ScoreItem& item,
                                                int index, int64_t max_item_bytes) {
  const std::string field = absl::StrCat("items[", index, "]");
  switch (item.kind_case()) {
    case v1::ScoreItem::kPromptResponse: {
      const v1::PromptResponse& pair = item.prompt_response();
      if (static_cast<int64_t>(pair.prompt().size() + pair.response().size()) > max_item_bytes) {
        return TooManyBytes(field, max_item_bytes);
      }
      auto ids = model.Encode(pair.prompt(), pair.response());
      if (!ids.ok()) return WithField(field, ids.status());
      return ids;
    }
    case v1::ScoreItem::kText: {
      if (static_cast<int64_t>(item.text().size()) > max_item_bytes) {
        return TooManyBytes(field, max_item_bytes);
      }
      auto ids = model.EncodeJoined(item.text());
      if (!ids.ok()) return WithField(absl::StrCat(field, ".text"), ids.status());
      return ids;
    }
    case v1::ScoreItem::kConversation: {
      const auto& messages = item.conversation().messages();
      if (messages.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(field, ".conversation.messages: must not be empty"));
      }
      std::vector<ChatMessage> chat;
      int64_t bytes = 0;
      for (int i = 0; i < messages.size(); ++i) {
        auto role = ParseChatRole(messages[i].role());
        if (!role.ok()) {
          return absl::InvalidArgumentError(absl::StrCat(field, ".conversation.messages[", i,
                                                         "].role: must be one of system, user, assistant, got \"",
                                                         messages[i].role(), "\""));
        }
        bytes += static_cast<int64_t>(messages[i].content().size());
        chat.push_back({*role, messages[i].content()});
      }
      if (bytes > max_item_bytes) return TooManyBytes(field, max_item_bytes);
      if (chat.back().role != ChatRole::kAssistant) {
        return absl::InvalidArgumentError(absl::StrCat(
            field, ".conversation.messages: the last message must be an assistant message"));
      }
      auto ids = model.EncodeConversation(chat);
      if (!ids.ok()) return WithField(absl::StrCat(field, ".conversation"), ids.status());
      return ids;
    }
    case v1::ScoreItem::KIND_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat(field, ": set prompt_response, conversation or text"));
}

}  // namespace

void BatchScoring::CountRefusal(const std::string& model, const std::string& version,
                                ScoringRejection reason) const {
  if (metrics_ != nullptr) metrics_->RecordScoringRejected(model, version, reason);
}

void BatchScoring::CountRefused(ScoringRejection reason) const { CountRefusal("", "", reason); }

void BatchScoring::Score(const v1::ScoreBatchRequest* request, v1::ScoreBatchResponse* response,
                         ScoringCall call) const {
  absl::Status valid = [&]() -> absl::Status {
    RETURN_IF_ERROR(ValidateModelRef("model", request->model()));
    if (request->items().empty()) return absl::InvalidArgumentError("items: must not be empty");
    if (request->items_size() > config_.max_items_per_request) {
      return absl::InvalidArgumentError(absl::StrCat("items: at most ", config_.max_items_per_request,
                                                     " per request, got ", request->items_size()));
    }
    return absl::OkStatus();
  }();
  if (!valid.ok()) {
    CountRefusal("", "", ScoringRejection::kInvalid);
    call.done(valid);
    return;
  }
  if (priority_ != nullptr) {
    // In flight until the reply: tokenizing, queueing and the forward all want the cores.
    auto in_flight = std::make_shared<std::optional<ComputePriority::Scoring>>();
    in_flight->emplace(*priority_);
    call.done = [in_flight, done = std::move(call.done)](absl::Status status) {
      done(status);
      in_flight->reset();
    };
  }
  // Runs now when the version is loaded, else on the registry's loader thread once it is:
  // this thread never waits for a load.
  registry_->AcquireAsync(
      request->model(), "",
      [this, request, response, call = std::move(call)](
          absl::StatusOr<std::shared_ptr<LoadedModel>> loaded) mutable {
        Continue(request, response, std::move(call), std::move(loaded));
      });
}

void BatchScoring::Continue(const v1::ScoreBatchRequest* request, v1::ScoreBatchResponse* response,
                            ScoringCall call,
                            absl::StatusOr<std::shared_ptr<LoadedModel>> acquired) const {
  if (!acquired.ok()) {
    const absl::Status& status = acquired.status();
    switch (status.code()) {
      case absl::StatusCode::kNotFound:
        CountRefusal("", "", ScoringRejection::kModelNotFound);
        break;
      case absl::StatusCode::kUnavailable:
        CountRefusal(request->model().name(), "", ScoringRejection::kShuttingDown);
        break;
      default:
        // The name resolved, so it is one of the server's (a bounded label).
        CountRefusal(request->model().name(),
                     request->model().version() > 0 ? absl::StrCat(request->model().version()) : "",
                     ScoringRejection::kLoadFailed);
    }
    call.done(status);
    return;
  }
  std::shared_ptr<LoadedModel> loaded = std::move(*acquired);
  DynamicBatcher::Request work;
  absl::Status status = [&]() -> absl::Status {
    const ScoringModel& model = loaded->batcher->model();
    if (request->options().normalize() && !model.can_normalize()) {
      return absl::FailedPreconditionError(absl::StrCat("model ", loaded->label,
                                                        " has no reward statistics to normalize with"));
    }
    work.sequences.reserve(request->items_size());
    for (int i = 0; i < request->items_size(); ++i) {
      ASSIGN_OR_RETURN(std::vector<int32_t> ids, EncodeItem(model, request->items(i), i, config_.max_item_bytes));
      response->add_token_counts(static_cast<int32_t>(ids.size()));
      work.sequences.push_back(std::move(ids));
    }
    return absl::OkStatus();
  }();
  if (!status.ok()) {
    CountRefusal(loaded->info.name(), absl::StrCat(loaded->info.version()),
                 ScoringRejection::kInvalid);
    call.done(status);
    return;
  }

  response->mutable_model()->set_name(loaded->info.name());
  response->mutable_model()->set_version(loaded->info.version());
  response->set_normalized(request->options().normalize());
  work.deadline = call.deadline;
  work.is_cancelled = std::move(call.is_cancelled);
  const bool normalize = request->options().normalize();
  const absl::Duration tokenizing = absl::Now() - call.arrival;
  // The callback keeps the version alive until the scores are back, whatever happens to it
  // in the registry meanwhile. `done` is shared: the batcher may be refusing the request (and
  // the refusal must still reach the caller) after this callback was moved into it.
  auto done = std::make_shared<std::function<void(absl::Status)>>(std::move(call.done));
  work.done = [done, response, loaded, normalize,
               tokenizing](absl::StatusOr<DynamicBatcher::Result> result) {
    if (!result.ok()) {
      (*done)(result.status());
      return;
    }
    std::vector<float> scores = result->scores;
    if (normalize) {
      auto normalized = loaded->batcher->model().Normalize(scores);
      if (!normalized.ok()) {
        (*done)(normalized.status());
        return;
      }
      scores = std::move(*normalized);
    }
    for (float score : scores) response->add_scores(score);
    SetDuration(tokenizing + result->queue_time, response->mutable_queue_time());
    SetDuration(result->compute_time, response->mutable_compute_time());
    (*done)(absl::OkStatus());
  };
  // The batcher counts its own refusals (queue full, shutting down, invalid sequences).
  absl::Status submitted = loaded->batcher->Submit(std::move(work));
  if (!submitted.ok()) {
    (*done)(submitted);
    return;
  }
  loaded->ReportQueueDepth();
}

}  // namespace verdict::server
