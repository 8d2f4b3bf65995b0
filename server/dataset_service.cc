#include "server/dataset_service.h"

#include <openssl/evp.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/data/dataset_inspection.h"
#include "core/data/preference_reader.h"
#include "core/model/input_rule.h"
#include "core/model/model_directory.h"
#include "core/tokenize/tokenizer.h"
#include "core/util/crash_point.h"
#include "core/util/status_macros.h"
#include "server/dataset_inspection_proto.h"
#include "server/path_resolver.h"
#include "server/proto_conversion.h"
#include "server/proto_time.h"
#include "server/status_conversion.h"
#include "server/unary_call.h"
#include "server/validation.h"

namespace verdict::server {
namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxChunkBytes = 2 << 20;

std::string NewDatasetId() {
  static std::mutex mutex;
  static std::mt19937_64 rng(std::random_device{}());
  std::lock_guard<std::mutex> lock(mutex);
  return absl::StrFormat("ds-%016x", rng());
}

bool IsLowerHex64(const std::string& text) {
  if (text.size() != 64) return false;
  for (char c : text) {
    if (!absl::ascii_isdigit(c) && !(c >= 'a' && c <= 'f')) return false;
  }
  return true;
}

class UploadReactor final : public grpc::ServerReadReactor<v1::UploadDatasetRequest> {
 public:
  UploadReactor(const ServerConfig& config, JobStore* store, grpc::CallbackServerContext* context,
                v1::Dataset* response)
      : config_(config), store_(store), context_(context), response_(response), id_(NewDatasetId()),
        digest_(EVP_MD_CTX_new()) {
    EVP_DigestInit_ex(digest_, EVP_sha256(), nullptr);
    StartRead(&request_);
  }

  ~UploadReactor() override {
    EVP_MD_CTX_free(digest_);
    if (!temp_path_.empty()) {
      std::error_code ignored;
      fs::remove(temp_path_, ignored);
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The client half-closed (every byte is here) or went away (nothing may be kept).
      if (ClientCancelled()) {
        Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the client cancelled the upload"));
        return;
      }
      Complete();
      return;
    }
    grpc::Status status = Consume();
    if (!status.ok()) {
      Finish(status);
      return;
    }
    StartRead(&request_);
  }

  // A failed read does not tell a half-close from a cancellation, and gRPC may report the
  // cancellation a moment after the read fails: Validate() asks again before storing.
  void OnCancel() override { cancelled_.store(true); }

  void OnDone() override {
    if (worker_.joinable()) {
      // gRPC may run OnDone inline, on the validating thread itself.
      if (worker_.get_id() == std::this_thread::get_id()) {
        worker_.detach();
      } else {
        worker_.join();
      }
    }
    delete this;
  }

 private:
  grpc::Status Consume() {
    if (request_.has_metadata()) {
      if (have_metadata_) return Invalid("metadata: sent twice");
      have_metadata_ = true;
      metadata_ = request_.metadata();
      if (metadata_.name().empty() || metadata_.name().size() > 256) {
        return Invalid("metadata.name: must be 1 to 256 bytes");
      }
      if (!metadata_.sha256().empty() && !IsLowerHex64(metadata_.sha256())) {
        return Invalid("metadata.sha256: must be 64 lowercase hex digits");
      }
      if (metadata_.expected_size_bytes() < 0) return Invalid("metadata.expected_size_bytes: must be >= 0");
      if (metadata_.expected_size_bytes() > config_.max_dataset_bytes) return TooLarge();
      std::error_code error;
      fs::create_directories(fs::path(DatasetFilePath(config_, id_)).parent_path(), error);
      temp_path_ = DatasetFilePath(config_, id_) + ".upload";
      file_.open(temp_path_, std::ios::binary | std::ios::trunc);
      if (!file_) return grpc::Status(grpc::StatusCode::INTERNAL, "cannot create the upload file");
      return grpc::Status::OK;
    }
    if (!have_metadata_) return Invalid("the first message must carry metadata");
    const std::string& chunk = request_.chunk();
    if (chunk.empty() || chunk.size() > kMaxChunkBytes) return Invalid("chunk: must be 1 byte to 2 MiB");
    size_ += static_cast<int64_t>(chunk.size());
    if (size_ > config_.max_dataset_bytes ||
        (metadata_.expected_size_bytes() > 0 && size_ > metadata_.expected_size_bytes())) {
      return size_ > config_.max_dataset_bytes
                 ? TooLarge()
                 : Invalid(absl::StrCat("more bytes than metadata.expected_size_bytes (",
                                        metadata_.expected_size_bytes(), ")"));
    }
    EVP_DigestUpdate(digest_, chunk.data(), chunk.size());
    file_.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    if (!file_) return grpc::Status(grpc::StatusCode::INTERNAL, "cannot write the upload file");
    CrashPoint("mid_upload");  // a chunk is in the temporary file, the upload not finished
    return grpc::Status::OK;
  }

  void Complete() {
    if (!have_metadata_) {
      Finish(Invalid("no metadata received"));
      return;
    }
    file_.flush();
    file_.close();
    if (size_ == 0) {
      Finish(Invalid("the file is empty"));
      return;
    }
    if (metadata_.expected_size_bytes() > 0 && size_ != metadata_.expected_size_bytes()) {
      Finish(Invalid(absl::StrCat("received ", size_, " bytes, metadata.expected_size_bytes says ",
                                  metadata_.expected_size_bytes())));
      return;
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    EVP_DigestFinal_ex(digest_, digest, &length);
    const std::string hex = absl::BytesToHexString(
        absl::string_view(reinterpret_cast<const char*>(digest), length));
    if (!metadata_.sha256().empty() && hex != metadata_.sha256()) {
      Finish(grpc::Status(grpc::StatusCode::DATA_LOSS,
                          absl::StrCat("sha256 of the received bytes is ", hex, ", metadata says ",
                                       metadata_.sha256())));
      return;
    }
    // Parsing the whole file is real work: keep it off gRPC's threads.
    worker_ = std::thread([this, hex] { Finish(Validate(hex)); });
  }

  grpc::Status Validate(const std::string& sha256) {
    PreferenceReaderOptions options;
    options.skip_invalid = metadata_.skip_invalid();
    // Any accepted file (JSON Lines or a JSON array, any record layout): a job that names a
    // DataOptions.format holds the dataset to it when it reads it.
    options.format = DataFormat::kAuto;
    auto reader = PreferenceReader::OpenFile(temp_path_, options);
    if (!reader.ok()) return ToGrpcStatus(reader.status());
    PreferencePair pair;
    int64_t with_margin = 0;
    while (true) {
      auto next = (*reader)->Next(&pair);
      if (!next.ok()) {
        // Not the temporary file's name: "line N: problem" (the client names its file), or
        // the bare problem when it has no line (a damaged gzip stream).
        const std::string message =
            WithoutFileName(std::string(next.status().message()), temp_path_);
        return grpc::Status(static_cast<grpc::StatusCode>(next.status().code()), message);
      }
      if (!*next) break;
      if (pair.margin.has_value()) ++with_margin;
    }
    const ReadStats& stats = (*reader)->stats();
    if (stats.pairs == 0) return Invalid("the file holds no valid preference pair");
    if (ClientCancelled()) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "the client cancelled the upload");
    }
    v1::Dataset dataset;
    dataset.set_id(id_);
    dataset.set_name(metadata_.name());
    dataset.set_size_bytes(size_);
    dataset.set_sha256(sha256);
    std::ifstream in(temp_path_, std::ios::binary);
    char magic[2] = {0, 0};
    in.read(magic, 2);
    dataset.set_gzip(static_cast<unsigned char>(magic[0]) == 0x1f && static_cast<unsigned char>(magic[1]) == 0x8b);
    dataset.set_pairs(stats.pairs);
    dataset.set_invalid_lines(stats.invalid_lines);
    dataset.set_identical_pairs_dropped(stats.identical_dropped);
    dataset.set_pairs_with_margin(with_margin);
    dataset.set_skip_invalid(metadata_.skip_invalid());
    SetTimestamp(absl::Now(), dataset.mutable_create_time());
    std::error_code error;
    fs::rename(temp_path_, DatasetFilePath(config_, id_), error);
    if (error) return grpc::Status(grpc::StatusCode::INTERNAL, "cannot store the dataset: " + error.message());
    temp_path_.clear();
    // The file is in place, the dataset not yet registered: the start-up sweep removes a
    // dataset file no registered dataset names.
    CrashPoint("upload_stored");
    absl::Status stored = store_->CreateDataset(dataset);
    if (!stored.ok()) {
      fs::remove(DatasetFilePath(config_, id_), error);
      return ToGrpcStatus(stored);
    }
    *response_ = dataset;
    return grpc::Status::OK;
  }

  bool ClientCancelled() const { return cancelled_.load() || context_->IsCancelled(); }

  static grpc::Status Invalid(const std::string& message) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message);
  }
  grpc::Status TooLarge() const {
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        absl::StrCat("dataset larger than the server's limit of ",
                                     config_.max_dataset_bytes, " bytes"));
  }

  const ServerConfig& config_;
  JobStore* const store_;
  grpc::CallbackServerContext* const context_;
  v1::Dataset* const response_;
  const std::string id_;
  v1::UploadDatasetRequest request_;
  v1::UploadDatasetMetadata metadata_;
  bool have_metadata_ = false;
  int64_t size_ = 0;
  std::string temp_path_;
  std::ofstream file_;
  EVP_MD_CTX* digest_;
  std::thread worker_;
  std::atomic<bool> cancelled_{false};
};

// Longest max_length an inspection accepts, and most invalid records it lists.
constexpr int32_t kMaxInspectLength = 1 << 20;
constexpr int32_t kMaxListedInvalid = 10000;
constexpr int32_t kDefaultListedInvalid = 100;

// A model's tokenizer and input encoding, enough to count the tokens of a pair as the model
// scores it (ScoringModel::Encode), without loading its weights.
struct PairTokenCounter {
  std::unique_ptr<Tokenizer> tokenizer;
  InputEncoding encoding;  // max_length 0: lengths are measured before truncation

  absl::StatusOr<int64_t> operator()(const PreferencePair& pair) const {
    const TextOrigin origin = pair.conversational ? TextOrigin::kRendered : TextOrigin::kPlain;
    size_t longest = 0;
    for (const std::string* response : {&pair.chosen, &pair.rejected}) {
      absl::StatusOr<PairEncoding> encoded =
          EncodeInput(*tokenizer, encoding, pair.prompt, *response, origin);
      if (!encoded.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("line ", pair.line, ": ", encoded.status().message()));
      }
      longest = std::max(longest, encoded->ids.size());
    }
    return static_cast<int64_t>(longest);
  }
};

// Runs an inspection on a thread of its own and finishes the call from there.
class InspectReactor final : public grpc::ServerUnaryReactor {
 public:
  explicit InspectReactor(std::function<absl::Status()> work)
      : worker_([this, work = std::move(work)] { Finish(ToGrpcStatus(work())); }) {}

  void OnDone() override {
    // gRPC may run OnDone inline, on the worker itself.
    if (worker_.get_id() == std::this_thread::get_id()) {
      worker_.detach();
    } else {
      worker_.join();
    }
    delete this;
  }

 private:
  std::thread worker_;
};

class RejectedUpload final : public grpc::ServerReadReactor<v1::UploadDatasetRequest> {
 public:
  explicit RejectedUpload(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

std::string DatasetFilePath(const ServerConfig& config, const std::string& dataset_id) {
  return (fs::path(config.state_dir) / "datasets" / (dataset_id + ".jsonl")).string();
}

DatasetService::DatasetService(const ServerConfig& config, JobStore* store, const Authenticator* auth)
    : config_(config), store_(store), auth_(auth) {}

grpc::ServerReadReactor<v1::UploadDatasetRequest>* DatasetService::UploadDataset(
    grpc::CallbackServerContext* context, v1::Dataset* response) {
  if (grpc::Status auth = auth_->Check(*context); !auth.ok()) return new RejectedUpload(auth);
  return new UploadReactor(config_, store_, context, response);
}

grpc::ServerUnaryReactor* DatasetService::GetDataset(grpc::CallbackServerContext* context,
                                                     const v1::GetDatasetRequest* request,
                                                     v1::Dataset* response) {
  return ServeUnary(context, *auth_, [&]() -> absl::Status {
    RETURN_IF_ERROR(ValidateId("dataset_id", request->dataset_id()));
    ASSIGN_OR_RETURN(*response, store_->GetDataset(request->dataset_id()));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* DatasetService::ListDatasets(grpc::CallbackServerContext* context,
                                                       const v1::ListDatasetsRequest* request,
                                                       v1::ListDatasetsResponse* response) {
  return ServeUnary(context, *auth_, [&]() -> absl::Status {
    if (request->page_size() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("page_size: must be >= 0, got ", request->page_size()));
    }
    PageRequest page;
    page.page_size = request->page_size();
    page.page_token = request->page_token();
    ASSIGN_OR_RETURN(Page<v1::Dataset> listed, store_->ListDatasets(page));
    for (v1::Dataset& dataset : listed.items) *response->add_datasets() = std::move(dataset);
    response->set_next_page_token(listed.next_page_token);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* DatasetService::DeleteDataset(grpc::CallbackServerContext* context,
                                                        const v1::DeleteDatasetRequest* request,
                                                        google::protobuf::Empty*) {
  return ServeUnary(context, *auth_, [&]() -> absl::Status {
    RETURN_IF_ERROR(ValidateId("dataset_id", request->dataset_id()));
    RETURN_IF_ERROR(store_->DeleteDataset(request->dataset_id()));
    std::error_code ignored;  // the stored row is gone: an unreadable file is only disk space
    fs::remove(DatasetFilePath(config_, request->dataset_id()), ignored);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* DatasetService::InspectDataset(grpc::CallbackServerContext* context,
                                                         const v1::InspectDatasetRequest* request,
                                                         v1::DatasetInspection* response) {
  if (grpc::Status denied = auth_->Check(*context); !denied.ok()) {
    return FinishUnary(context, denied);
  }
  // Checks and look-ups that answer at once (SQLite reads, path checks) stay on this thread;
  // reading the file and loading the tokenizer go to the worker.
  std::string path;
  absl::Status checked = [&]() -> absl::Status {
    switch (request->source_case()) {
      case v1::InspectDatasetRequest::kDatasetId:
        RETURN_IF_ERROR(ValidateId("dataset_id", request->dataset_id()));
        RETURN_IF_ERROR(store_->GetDataset(request->dataset_id()).status());
        path = DatasetFilePath(config_, request->dataset_id());
        break;
      case v1::InspectDatasetRequest::kPath: {
        ASSIGN_OR_RETURN(path, ResolveFileUnderRoot(config_.data_dir, request->path(), "path"));
        break;
      }
      case v1::InspectDatasetRequest::SOURCE_NOT_SET:
        return absl::InvalidArgumentError("source: set dataset_id or path");
    }
    if (request->max_length() < 0 || request->max_length() > kMaxInspectLength) {
      return absl::InvalidArgumentError(absl::StrCat("max_length: must be in [0, ",
                                                     kMaxInspectLength, "], got ",
                                                     request->max_length()));
    }
    if (request->max_length() > 0 && !request->has_model()) {
      return absl::InvalidArgumentError(
          "max_length: counts tokens, so it needs a model to count them with");
    }
    if (request->max_invalid_lines() < 0 || request->max_invalid_lines() > kMaxListedInvalid) {
      return absl::InvalidArgumentError(absl::StrCat("max_invalid_lines: must be in [0, ",
                                                     kMaxListedInvalid, "], got ",
                                                     request->max_invalid_lines()));
    }
    if (request->has_model()) RETURN_IF_ERROR(ValidateModelRef("model", request->model()));
    return absl::OkStatus();
  }();
  if (!checked.ok()) return FinishUnary(context, checked);
  std::optional<v1::Model> model;
  if (request->has_model()) {
    absl::StatusOr<v1::Model> found = store_->GetModel(request->model());
    if (!found.ok()) return FinishUnary(context, found.status());
    model = *std::move(found);
  }
  InspectionOptions options;
  options.max_invalid_reported = static_cast<size_t>(
      request->max_invalid_lines() > 0 ? request->max_invalid_lines() : kDefaultListedInvalid);
  const int64_t requested_max_length = request->max_length();
  return new InspectReactor([this, path, model, options, requested_max_length,
                             response]() mutable -> absl::Status {
    if (model.has_value()) {
      const std::string dir = (fs::path(config_.state_dir) / model->storage_path()).string();
      auto unreadable = [&](const absl::Status& status) {
        return absl::DataLossError(absl::StrCat("model ", model->name(), " version ",
                                                model->version(), ": ", status.message()));
      };
      ASSIGN_OR_RETURN(const ScoringSettings settings, ScoringSettingsOf(*model));
      absl::StatusOr<ModelConfig> config = ReadModelDirectoryConfig(dir);
      if (!config.ok()) return unreadable(config.status());
      absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = LoadTokenizerFromDirectory(dir);
      if (!tokenizer.ok()) return unreadable(tokenizer.status());
      auto counter = std::make_shared<PairTokenCounter>();
      counter->tokenizer = *std::move(tokenizer);
      counter->encoding = InputEncodingOf(*config, settings);
      options.max_length =
          requested_max_length > 0 ? requested_max_length : counter->encoding.max_length;
      counter->encoding.max_length = 0;
      options.reader.chat_format = settings.chat_format;
      options.pair_tokens = [counter](const PreferencePair& pair) { return (*counter)(pair); };
    }
    ASSIGN_OR_RETURN(DatasetInspection report, InspectPreferenceFile(path, options));
    // Messages say "line N: ..." rather than the server's path, as a rejected upload does.
    report.stopped = WithoutFileName(report.stopped, path);
    *response = InspectionToProto(report);
    if (model.has_value()) {
      response->mutable_lengths()->set_model(model->name());
      response->mutable_lengths()->set_version(model->version());
    }
    return absl::OkStatus();
  });
}

}  // namespace verdict::server
