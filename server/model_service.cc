#include "server/model_service.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/model/reward_model.h"
#include "core/util/status_macros.h"
#include "server/path_resolver.h"
#include "server/status_conversion.h"
#include "server/unary_call.h"
#include "server/validation.h"

namespace verdict::server {
namespace {

namespace fs = std::filesystem;

constexpr int32_t kDefaultChunkBytes = 1 << 20;
constexpr int32_t kMinChunkBytes = 4096;
constexpr int32_t kMaxChunkBytes = 4 << 20;

using DigestPtr = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;

DigestPtr NewSha256() {
  DigestPtr digest(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(digest.get(), EVP_sha256(), nullptr);
  return digest;
}

std::string FinishHex(EVP_MD_CTX* digest) {
  unsigned char bytes[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(digest, bytes, &length);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes), length));
}

// The regular files under `dir`, relative and sorted. Links are refused rather than followed:
// a version's directory is written by the server itself, so a link in it can only be damage
// or an attempt to read outside it.
absl::StatusOr<std::vector<std::string>> ListVersionFiles(const fs::path& dir) {
  std::error_code error;
  if (!fs::is_directory(fs::symlink_status(dir, error))) {
    return absl::DataLossError(absl::StrCat("the version's directory ", dir.string(),
                                            " is missing or not a directory"));
  }
  std::vector<std::string> files;
  for (fs::recursive_directory_iterator it(dir, error), end; !error && it != end;
       it.increment(error)) {
    const fs::file_status status = it->symlink_status(error);
    if (error) break;
    const std::string relative = it->path().lexically_relative(dir).generic_string();
    if (fs::is_directory(status)) continue;
    if (!fs::is_regular_file(status)) {
      return absl::DataLossError(absl::StrCat(
          "the version's directory holds ", relative,
          ", which is not a regular file (links are not followed)"));
    }
    files.push_back(relative);
  }
  if (error) {
    return absl::DataLossError(
        absl::StrCat("cannot list the version's directory ", dir.string(), ": ", error.message()));
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Sends a version's files chunk by chunk: the next chunk is read when the previous one has
// been written, so one chunk per stream is in memory. The reads are short (one chunk from a
// local file) and run on the gRPC thread that reports the write done.
class DownloadReactor final : public grpc::ServerWriteReactor<v1::ModelChunk> {
 public:
  DownloadReactor(v1::Model model, fs::path dir, std::vector<std::string> files,
                  int32_t chunk_bytes)
      : dir_(std::move(dir)),
        files_(std::move(files)),
        chunk_bytes_(chunk_bytes),
        file_digest_(nullptr, EVP_MD_CTX_free) {
    *chunk_.mutable_model() = std::move(model);
    SendNext(/*first=*/true);
  }
  ~DownloadReactor() override {
    if (fd_ >= 0) close(fd_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the stream was closed"));
    SendNext(/*first=*/false);
  }
  void OnDone() override { delete this; }

 private:
  void SendNext(bool first) {
    if (!first) chunk_.clear_model();
    if (next_file_ == files_.size() && fd_ < 0) {
      if (first) {
        // A version with no files cannot have been registered; say so rather than send nothing.
        return Finish(ToGrpcStatus(absl::DataLossError("the version's directory is empty")));
      }
      return Finish(grpc::Status::OK);
    }
    if (absl::Status status = FillChunk(); !status.ok()) return Finish(ToGrpcStatus(status));
    StartWrite(&chunk_);
  }

  absl::Status FillChunk() {
    if (fd_ < 0) {
      path_ = files_[next_file_++];
      const fs::path full = dir_ / path_;
      fd_ = open(full.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
      struct stat info;
      if (fd_ < 0 || fstat(fd_, &info) != 0 || !S_ISREG(info.st_mode)) {
        return absl::DataLossError(absl::StrCat("cannot read ", path_, " of the version"));
      }
      size_ = info.st_size;
      offset_ = 0;
      file_digest_ = NewSha256();
    }
    const int64_t want = std::min<int64_t>(chunk_bytes_, size_ - offset_);
    std::string* data = chunk_.mutable_data();
    data->resize(want);
    int64_t got = 0;
    while (got < want) {
      const ssize_t n = pread(fd_, data->data() + got, want - got, offset_ + got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        return absl::DataLossError(
            absl::StrCat("cannot read ", path_, " of the version at byte ", offset_ + got));
      }
      got += n;
    }
    EVP_DigestUpdate(file_digest_.get(), data->data(), data->size());
    DigestPtr chunk_digest = NewSha256();
    EVP_DigestUpdate(chunk_digest.get(), data->data(), data->size());
    chunk_.set_path(path_);
    chunk_.set_offset(offset_);
    chunk_.set_sha256(FinishHex(chunk_digest.get()));
    offset_ += want;
    const bool last = offset_ == size_;
    chunk_.set_last_chunk(last);
    chunk_.clear_file_size_bytes();
    chunk_.clear_file_sha256();
    if (last) {
      chunk_.set_file_size_bytes(size_);
      chunk_.set_file_sha256(FinishHex(file_digest_.get()));
      close(fd_);
      fd_ = -1;
    }
    return absl::OkStatus();
  }

  const fs::path dir_;
  const std::vector<std::string> files_;
  const int32_t chunk_bytes_;
  size_t next_file_ = 0;
  // The file being sent: its descriptor (-1 between files), path, size, next offset, digest.
  int fd_ = -1;
  std::string path_;
  int64_t size_ = 0;
  int64_t offset_ = 0;
  DigestPtr file_digest_;
  v1::ModelChunk chunk_;
};

class FailedDownload final : public grpc::ServerWriteReactor<v1::ModelChunk> {
 public:
  explicit FailedDownload(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

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
          watch_->Poke();
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
    watch_->Poke();
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
    watch_->Poke();
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

grpc::ServerWriteReactor<v1::ModelChunk>* ModelService::DownloadModel(
    grpc::CallbackServerContext* context, const v1::DownloadModelRequest* request) {
  if (grpc::Status auth = auth_->Check(*context); !auth.ok()) return new FailedDownload(auth);
  int32_t chunk_bytes = kDefaultChunkBytes;
  absl::StatusOr<v1::Model> model = [&]() -> absl::StatusOr<v1::Model> {
    RETURN_IF_ERROR(ValidateModelRef("model", request->model()));
    if (request->chunk_size_bytes() != 0) {
      if (request->chunk_size_bytes() < kMinChunkBytes ||
          request->chunk_size_bytes() > kMaxChunkBytes) {
        return absl::InvalidArgumentError(
            absl::StrCat("chunk_size_bytes: must be 0 or in [", kMinChunkBytes, ", ",
                         kMaxChunkBytes, "], got ", request->chunk_size_bytes()));
      }
      chunk_bytes = request->chunk_size_bytes();
    }
    return store_->GetModel(request->model());
  }();
  if (!model.ok()) return new FailedDownload(ToGrpcStatus(model.status()));
  registry_->Decorate(*model);
  const fs::path dir = fs::path(config_.state_dir) / model->storage_path();
  absl::StatusOr<std::vector<std::string>> files = ListVersionFiles(dir);
  if (!files.ok()) return new FailedDownload(ToGrpcStatus(files.status()));
  return new DownloadReactor(*std::move(model), dir, *std::move(files), chunk_bytes);
}

grpc::ServerUnaryReactor* ModelService::DeleteModelVersion(
    grpc::CallbackServerContext* context, const v1::DeleteModelVersionRequest* request,
    v1::Model* response) {
  return ServeUnary(context, *auth_, [&]() -> absl::Status {
    RETURN_IF_ERROR(ValidateModelName("name", request->name()));
    if (request->version() < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("version: must be >= 1, got ", request->version()));
    }
    // Refused while an alias points at it (checked again, atomically, by the store). Out of
    // memory first (requests scoring with it finish; Unload resolves through the store), then
    // out of the registry, then off the disk.
    ASSIGN_OR_RETURN(v1::Model model, store_->GetModelVersion(request->name(), request->version()));
    v1::ModelRef ref;
    ref.set_name(model.name());
    ref.set_version(model.version());
    if (model.aliases().empty()) RETURN_IF_ERROR(registry_->Unload(ref).status());
    ASSIGN_OR_RETURN(model, store_->DeleteModelVersion(request->name(), request->version()));
    watch_->Poke();
    if (!model.storage_path().empty()) {
      std::error_code error;
      fs::remove_all(fs::path(config_.state_dir) / model.storage_path(), error);
    }
    *response = std::move(model);
    return absl::OkStatus();
  });
}

grpc::ServerWriteReactor<v1::ModelChange>* ModelService::WatchModels(
    grpc::CallbackServerContext* context, const v1::WatchModelsRequest* /*request*/) {
  if (grpc::Status auth = auth_->Check(*context); !auth.ok()) {
    class Failed final : public grpc::ServerWriteReactor<v1::ModelChange> {
     public:
      explicit Failed(const grpc::Status& status) { Finish(status); }
      void OnDone() override { delete this; }
    };
    return new Failed(auth);
  }
  return watch_->Watch();
}

}  // namespace verdict::server
