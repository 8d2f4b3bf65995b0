#include "server/model_service.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/model/reward_model.h"
#include "core/util/status_macros.h"
#include "server/path_resolver.h"
#include "server/status_conversion.h"
#include "server/unary_call.h"
#include "server/validation.h"

namespace verdict::server {
grpc::ServerUnaryReactor* ModelService::ImportModel(grpc::CallbackServerContext* context,
                                                    const v1::ImportModelRequest* request,
                                                    v1::Model* response) {
  if (grpc::Status auth = auth_->Check(*context); !auth.ok()) return FinishUnary(context, auth);
  std::string dir;
  absl::Status status = [&]() -> absl::Status {
    RETURN_IF_ERROR(ValidateModelName("name", request->name()));
    if (!request->alias().empty()) RETURN_IF_ERROR(ValidateAlias("alias", request->alias(), false));
    if (!v1::TruncationPolicy_IsValid(request->truncation())) return absl::InvalidArgumentError("truncation: unknown value");
    if (!v1::ChatFormat_IsValid(request->chat_format())) return absl::InvalidArgumentError("chat_format: unknown value");
    if (!v1::InputRule_IsValid(request->input_rule())) {
      return absl::InvalidArgumentError("input_rule: unknown value");
    }
    ASSIGN_OR_RETURN(dir, ResolveUnderRoot(config_.model_dir, request->path(), "path"));
    return absl::OkStatus();
  }();
  if (!status.ok()) return FinishUnary(context, status);
  // The copy and the check that the directory loads take seconds: they run on the registry's
  // loader thread, which finishes the RPC.
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  registry_->ImportAsync(
      *request, dir, [this, request, response, reactor](absl::StatusOr<v1::Model> imported) {
        absl::Status status = [&]() -> absl::Status {
          ASSIGN_OR_RETURN(v1::Model model, std::move(imported));
          if (!request->alias().empty()) {
            ASSIGN_OR_RETURN(model,
                             store_->SetAlias(model.name(), request->alias(), model.version()));
          }
          registry_->Decorate(model);
          *response = std::move(model);
          return absl::OkStatus();
        }();
        reactor->Finish(ToGrpcStatus(status));
      });
  return reactor;
}

grpc::ServerUnaryReactor* ModelService::ListModels(grpc::CallbackServerContext* context,
                                                   const v1::ListModelsRequest* request,
                                                   v1::ListModelsResponse* response) {
  return ServeUnary(context, *auth_, [&]() -> absl::Status {
    if (!request->name().empty()) RETURN_IF_ERROR(ValidateModelName("name", request->name()));
    if (request->page_size() < 0) {
      return absl::InvalidArgumentError(absl::StrCat("page_size: must be >= 0, got ", request->page_size()));
    }
    PageRequest page;
    page.page_size = request->page_size();
    page.page_token = request->page_token();
    ASSIGN_OR_RETURN(Page<v1::Model> listed, store_->ListModels(request->name(), page));
    for (v1::Model& model : listed.items) {
      registry_->Decorate(model);
      if (request->loaded_only() && !model.loaded()) continue;
      *response->add_models() = std::move(model);
    }
    response->set_next_page_token(listed.next_page_token);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* ModelService::GetModel(grpc::CallbackServerContext* context,
                                                 const v1::GetModelRequest* request,
                                                 v1::Model* response) {
  return ServeUnary(context, *auth_, [&]() -> absl::Status {
    RETURN_IF_ERROR(ValidateModelRef("model", request->model()));
    ASSIGN_OR_RETURN(v1::Model model, store_->GetModel(request->model()));
    registry_->Decorate(model);
    *response = std::move(model);
    return absl::OkStatus();
  });
}

absl::Status ModelService::CheckAliasGate(const v1::SetModelAliasRequest& request) {
  const double threshold = request.require_accuracy();
  if (!(threshold >= 0 && threshold <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("require_accuracy: must be in [0, 1], got ", threshold));
  }
  if (threshold == 0) {
    if (!request.eval_dataset_id().empty()) {
      return absl::InvalidArgumentError(
          "eval_dataset_id: set only with require_accuracy (the gate's threshold)");
    }
    return absl::OkStatus();
  }
  if (request.eval_dataset_id().empty()) {
    return absl::InvalidArgumentError(
        "eval_dataset_id: required with require_accuracy (the dataset whose evaluation gates "
        "the move)");
  }
  RETURN_IF_ERROR(ValidateId("eval_dataset_id", request.eval_dataset_id()));
  // An unknown version is NOT_FOUND before the gate speaks of its evaluations.
  RETURN_IF_ERROR(store_->GetModelVersion(request.name(), request.version()).status());
  // Checked before the move, not in its transaction: evaluations are only ever added, so a
  // result recorded in between can only be one this check did not see.
  absl::StatusOr<v1::EvaluationResult> evaluation =
      store_->FindEvaluation(request.name(), request.version(), request.eval_dataset_id());
  if (absl::IsNotFound(evaluation.status())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "alias \"", request.alias(), "\" not moved: ", request.name(), " version ",
        request.version(), " has no evaluation on dataset ", request.eval_dataset_id(),
        " (require_accuracy ", threshold, "); run EvaluateModel (verdict eval) on it first"));
  }
  RETURN_IF_ERROR(evaluation.status());
  if (evaluation->accuracy() < threshold) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "alias \"%s\" not moved: %s version %d has accuracy %.4f on dataset %s (%d pairs, "
        "job %s), below require_accuracy %.4f",
        request.alias(), request.name(), request.version(), evaluation->accuracy(),
        request.eval_dataset_id(), evaluation->pairs(), evaluation->job_id(), threshold));
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* ModelService::SetModelAlias(grpc::CallbackServerContext* context,
                                                      const v1::SetModelAliasRequest* request,
                                                      v1::Model* response) {
  return ServeUnary(context, *auth_, [&]() -> absl::Status {
    RETURN_IF_ERROR(ValidateModelName("name", request->name()));
    if (request->version() < 1) {
      return absl::InvalidArgumentError(absl::StrCat("version: must be >= 1, got ", request->version()));
    }
    RETURN_IF_ERROR(ValidateAlias("alias", request->alias(), /*allow_latest=*/false));
    RETURN_IF_ERROR(CheckAliasGate(*request));
    ASSIGN_OR_RETURN(v1::Model model, store_->SetAlias(request->name(), request->alias(), request->version()));
    registry_->Decorate(model);
    *response = std::move(model);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* ModelService::DeleteModelAlias(grpc::CallbackServerContext* context,
                                                         const v1::DeleteModelAliasRequest* request,
                                                         v1::Model* response) {
  return ServeUnary(context, *auth_, [&]() -> absl::Status {
    RETURN_IF_ERROR(ValidateModelName("name", request->name()));
    RETURN_IF_ERROR(ValidateAlias("alias", request->alias(), /*allow_latest=*/false));
    ASSIGN_OR_RETURN(v1::Model model, store_->DeleteAlias(request->name(), request->alias()));
    registry_->Decorate(model);
    *response = std::move(model);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* ModelService::LoadModel(grpc::CallbackServerContext* context,
                                                  const v1::LoadModelRequest* request,
                                                  v1::Model* response) {
  if (grpc::Status auth = auth_->Check(*context); !auth.ok()) return FinishUnary(context, auth);
  absl::Status status = [&]() -> absl::Status {
    RETURN_IF_ERROR(ValidateModelRef("model", request->model()));
    if (!request->device().empty()) {
      if (auto device = ParseDevice(request->device()); !device.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("device: ", device.status().message()));
      }
    }
    return absl::OkStatus();
  }();
  if (!status.ok()) return FinishUnary(context, status);
  // Finished by the registry's loader thread when a load was needed: never waits here.
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  registry_->AcquireAsync(request->model(), request->device(),
                          [response, reactor](absl::StatusOr<std::shared_ptr<LoadedModel>> loaded) {
                            if (loaded.ok()) *response = (*loaded)->info;
                            reactor->Finish(ToGrpcStatus(loaded.status()));
                          });
  return reactor;
}

grpc::ServerUnaryReactor* ModelService::UnloadModel(grpc::CallbackServerContext* context,
                                                    const v1::UnloadModelRequest* request,
                                                    v1::Model* response) {
  return ServeUnary(context, *auth_, [&]() -> absl::Status {
    RETURN_IF_ERROR(ValidateModelRef("model", request->model()));
    ASSIGN_OR_RETURN(*response, registry_->Unload(request->model()));
    return absl::OkStatus();
  });
}

}  // namespace verdict::server
