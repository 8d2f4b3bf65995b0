// ModelService: the model registry over gRPC (ImportModel, ListModels, GetModel,
// SetModelAlias, DeleteModelAlias, DeleteModelVersion, LoadModel, UnloadModel, DownloadModel,
// WatchModels through a ModelWatchHub). Versions and
// aliases are stored in the JobStore; loading goes through the ModelRegistry. ImportModel
// (copy + check load) and LoadModel run their slow part on the registry's loader thread, which
// finishes the RPC: no gRPC thread waits for a load. DownloadModel streams a version's files
// one bounded chunk at a time (one chunk in memory per stream, read when the previous one is
// sent), so exporting a 7B model costs no more memory than a small one. Thread safety: as gRPC
// calls it.
#ifndef VERDICT_SERVER_MODEL_SERVICE_H_
#define VERDICT_SERVER_MODEL_SERVICE_H_

#include "server/auth.h"
#include "server/job_store.h"
#include "server/model_registry.h"
#include "server/model_watch.h"
#include "server/server_config.h"
#include "verdict/v1/models.grpc.pb.h"

namespace verdict::server {

class ModelService final : public v1::ModelService::CallbackService {
 public:
  ModelService(const ServerConfig& config, JobStore* store, ModelRegistry* registry,
               const Authenticator* auth, ModelWatchHub* watch)
      : config_(config), store_(store), registry_(registry), auth_(auth), watch_(watch) {}

  grpc::ServerUnaryReactor* ImportModel(grpc::CallbackServerContext* context,
                                        const v1::ImportModelRequest* request,
                                        v1::Model* response) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) override;
  grpc::ServerUnaryReactor* GetModel(grpc::CallbackServerContext* context,
                                     const v1::GetModelRequest* request,
                                     v1::Model* response) override;
  grpc::ServerUnaryReactor* SetModelAlias(grpc::CallbackServerContext* context,
                                          const v1::SetModelAliasRequest* request,
                                          v1::Model* response) override;
  grpc::ServerUnaryReactor* DeleteModelAlias(grpc::CallbackServerContext* context,
                                             const v1::DeleteModelAliasRequest* request,
                                             v1::Model* response) override;
  grpc::ServerUnaryReactor* LoadModel(grpc::CallbackServerContext* context,
                                      const v1::LoadModelRequest* request,
                                      v1::Model* response) override;
  grpc::ServerUnaryReactor* UnloadModel(grpc::CallbackServerContext* context,
                                        const v1::UnloadModelRequest* request,
                                        v1::Model* response) override;
  grpc::ServerWriteReactor<v1::ModelChunk>* DownloadModel(
      grpc::CallbackServerContext* context, const v1::DownloadModelRequest* request) override;
  grpc::ServerUnaryReactor* DeleteModelVersion(grpc::CallbackServerContext* context,
                                               const v1::DeleteModelVersionRequest* request,
                                               v1::Model* response) override;
  grpc::ServerWriteReactor<v1::ModelChange>* WatchModels(
      grpc::CallbackServerContext* context, const v1::WatchModelsRequest* request) override;

 private:
  // SetModelAlias's optional gate (require_accuracy, eval_dataset_id): OK without one or when
  // the version's newest evaluation on the dataset reaches the threshold; FAILED_PRECONDITION
  // saying what was found otherwise.
  absl::Status CheckAliasGate(const v1::SetModelAliasRequest& request);

  const ServerConfig config_;
  JobStore* const store_;
  ModelRegistry* const registry_;
  const Authenticator* const auth_;
  ModelWatchHub* const watch_;
};

}  // namespace verdict::server

#endif  // VERDICT_SERVER_MODEL_SERVICE_H_
