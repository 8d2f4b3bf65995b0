// DatasetService: uploads (client streaming, chunked, size-limited, sha256-checked, validated
// before acceptance), listing, lookup and deletion of preference datasets. Files live in
// <state_dir>/datasets/<id>.jsonl, metadata in the JobStore.
//
// An upload is written to a temporary file as it streams; only once every byte has arrived,
// the size and digest match and the content parses as preference data is it renamed into
// place and recorded, so a broken upload leaves nothing behind. Validation of the finished
// file runs on a thread of its own, never on gRPC's; so does InspectDataset's read of a
// whole file (and its tokenization, with a model).
//
// Thread safety: handlers are called from gRPC's threads; all shared state is in the store.
#ifndef VERDICT_SERVER_DATASET_SERVICE_H_
#define VERDICT_SERVER_DATASET_SERVICE_H_

#include <string>

#include "server/auth.h"
#include "server/job_store.h"
#include "server/server_config.h"
#include "verdict/v1/datasets.grpc.pb.h"

namespace verdict::server {

// Where an uploaded dataset's bytes are kept.
std::string DatasetFilePath(const ServerConfig& config, const std::string& dataset_id);

class DatasetService final : public v1::DatasetService::CallbackService {
 public:
  DatasetService(const ServerConfig& config, JobStore* store, const Authenticator* auth);

  grpc::ServerReadReactor<v1::UploadDatasetRequest>* UploadDataset(
      grpc::CallbackServerContext* context, v1::Dataset* response) override;
  grpc::ServerUnaryReactor* GetDataset(grpc::CallbackServerContext* context,
                                       const v1::GetDatasetRequest* request,
                                       v1::Dataset* response) override;
  grpc::ServerUnaryReactor* ListDatasets(grpc::CallbackServerContext* context,
                                         const v1::ListDatasetsRequest* request,
                                         v1::ListDatasetsResponse* response) override;
  grpc::ServerUnaryReactor* DeleteDataset(grpc::CallbackServerContext* context,
                                          const v1::DeleteDatasetRequest* request,
                                          google::protobuf::Empty* response) override;
  grpc::ServerUnaryReactor* InspectDataset(grpc::CallbackServerContext* context,
                                           const v1::InspectDatasetRequest* request,
                                           v1::DatasetInspection* response) override;

 private:
  const ServerConfig config_;
  JobStore* const store_;
  const Authenticator* const auth_;
};

}  // namespace verdict::server

#endif  // VERDICT_SERVER_DATASET_SERVICE_H_
