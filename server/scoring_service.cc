#include "server/scoring_service.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "core/data/chat_format.h"
#include "core/util/status_macros.h"
#include "server/proto_time.h"
#include "server/server_metrics.h"
#include "server/status_conversion.h"
#include "server/validation.h"

namespace verdict::server {
namespace {

absl::StatusOr<std::vector<int32_t>> EncodeItem(const ScoringModel& model, const v1::ScoreItem& item,
                                                int index, int64_t max_item_bytes) {
  const std::string field = absl::StrCat("items[", index, "]");
  switch (item.kind_case()) {
    case v1::ScoreItem::kPromptResponse: {
      const v1::PromptResponse& pair = item.prompt_response();
      if (static_cast<int64_t>(pair.prompt().size() + pair.response().size()) > max_item_bytes) {
        return absl::InvalidArgumentError(absl::StrCat(field, ": more than ", max_item_bytes, " bytes of text"));
      }
      auto ids = model.Encode(pair.prompt(), pair.response());
      if (!ids.ok()) return absl::Status(ids.status().code(), absl::StrCat(field, ": ", ids.status().message()));
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
      if (bytes > max_item_bytes) {
        return absl::InvalidArgumentError(absl::StrCat(field, ": more than ", max_item_bytes, " bytes of text"));
      }
      if (chat.back().role != ChatRole::kAssistant) {
        return absl::InvalidArgumentError(absl::StrCat(
            field, ".conversation.messages: the last message must be an assistant message"));
      }
      auto ids = model.EncodeConversation(chat);
      if (!ids.ok()) return absl::Status(ids.status().code(), absl::StrCat(field, ".conversation: ", ids.status().message()));
      return ids;
    }
    case v1::ScoreItem::KIND_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat(field, ": set prompt_response or conversation"));
}

}  // namespace

void ScoringService::CountRefusal(const std::string& model, const std::string& version,
                                  ScoringRejection reason) const {
  if (metrics_ != nullptr) metrics_->RecordScoringRejected(model, version, reason);
}

grpc::ServerUnaryReactor* ScoringService::ScoreBatch(grpc::CallbackServerContext* context,
                                                     const v1::ScoreBatchRequest* request,
                                                     v1::ScoreBatchResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const absl::Time arrival = absl::Now();
  if (grpc::Status auth = auth_->Check(*context); !auth.ok()) {
    CountRefusal("", "", ScoringRejection::kUnauthenticated);
    reactor->Finish(auth);
    return reactor;
  }
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
    reactor->Finish(ToGrpcStatus(valid));
    return reactor;
  }
  // Runs now when the version is loaded, else on the registry's loader thread once it is:
  // this thread never waits for a load.
  registry_->AcquireAsync(request->model(), "",
                          [this, context, request, response, reactor,
                           arrival](absl::StatusOr<std::shared_ptr<LoadedModel>> loaded) {
                            Continue(context, request, response, reactor, arrival,
                                     std::move(loaded));
                          });
  return reactor;
}

void ScoringService::Continue(grpc::CallbackServerContext* context,
                              const v1::ScoreBatchRequest* request,
                              v1::ScoreBatchResponse* response, grpc::ServerUnaryReactor* reactor,
                              absl::Time arrival,
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
    reactor->Finish(ToGrpcStatus(status));
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
    reactor->Finish(ToGrpcStatus(status));
    return;
  }

  response->mutable_model()->set_name(loaded->info.name());
  response->mutable_model()->set_version(loaded->info.version());
  response->set_normalized(request->options().normalize());
  if (context->deadline() != std::chrono::system_clock::time_point::max()) {
    work.deadline = absl::FromChrono(context->deadline());
  }
  work.is_cancelled = [context] { return context->IsCancelled(); };
  const bool normalize = request->options().normalize();
  const absl::Duration tokenizing = absl::Now() - arrival;
  // The callback keeps the version alive until the scores are back, whatever happens to it
  // in the registry meanwhile.
  work.done = [context, reactor, response, loaded, normalize,
               tokenizing](absl::StatusOr<DynamicBatcher::Result> result) {
    if (!result.ok()) {
      reactor->Finish(ToGrpcStatus(result.status()));
      return;
    }
    std::vector<float> scores = result->scores;
    if (normalize) {
      auto normalized = loaded->batcher->model().Normalize(scores);
      if (!normalized.ok()) {
        reactor->Finish(ToGrpcStatus(normalized.status()));
        return;
      }
      scores = std::move(*normalized);
    }
    for (float score : scores) response->add_scores(score);
    const absl::Duration queue_time = tokenizing + result->queue_time;
    SetDuration(queue_time, response->mutable_queue_time());
    SetDuration(result->compute_time, response->mutable_compute_time());
    context->AddTrailingMetadata("verdict-queue-time-us", absl::StrCat(absl::ToInt64Microseconds(queue_time)));
    context->AddTrailingMetadata("verdict-compute-time-us",
                                 absl::StrCat(absl::ToInt64Microseconds(result->compute_time)));
    reactor->Finish(grpc::Status::OK);
  };
  // The batcher counts its own refusals (queue full, shutting down, invalid sequences).
  absl::Status submitted = loaded->batcher->Submit(std::move(work));
  if (!submitted.ok()) {
    reactor->Finish(ToGrpcStatus(submitted));
    return;
  }
  loaded->ReportQueueDepth();
}

}  // namespace verdict::server
