#include "server/model_follower.h"

#include <unistd.h>

#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "client/model_download.h"
#include "core/util/status_macros.h"
#include "server/logging.h"
#include "server/validation.h"

namespace verdict::server {
namespace {

namespace fs = std::filesystem;

constexpr char kCacheDir[] = "model-cache";

absl::Status FromGrpc(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

std::string CachePath(const std::string& name, int64_t version) {
  return (fs::path(kCacheDir) / name / absl::StrCat(version)).string();
}

}  // namespace

ModelFollower::ModelFollower(Options options, ReplicaModelStore* store, ModelRegistry* registry,
                             Logger* logger)
    : options_(std::move(options)), store_(store), registry_(registry), logger_(logger) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(options_.max_message_bytes));
  // A control plane that vanishes without closing the connection (a node lost) is noticed by
  // keepalive pings rather than never; the server permits pings this often (server.cc).
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Reconnect promptly after a control plane restart; FollowOnce's own backoff paces retries.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, absl::ToInt64Milliseconds(kMaxBackoff));
  channel_ = grpc::CreateCustomChannel(options_.control_plane, grpc::InsecureChannelCredentials(),
                                       args);
  stub_ = v1::ModelService::NewStub(channel_);
}

ModelFollower::~ModelFollower() { Stop(); }

void ModelFollower::Start() {
  // Downloads a crash interrupted (the state directory is locked: none is in progress).
  std::error_code error;
  const fs::path cache = fs::path(options_.state_dir) / kCacheDir;
  for (fs::directory_iterator it(cache, error), end; !error && it != end; it.increment(error)) {
    if (it->path().filename().string().rfind(".download-", 0) == 0) {
      std::error_code ignored;
      fs::remove_all(it->path(), ignored);
    }
  }
  thread_ = std::thread([this] { Run(); });
}

void ModelFollower::Stop() {
  {
    absl::MutexLock lock(&mutex_);
    stopping_ = true;
    if (active_ != nullptr) active_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
}

bool ModelFollower::Stopping() {
  absl::MutexLock lock(&mutex_);
  return stopping_;
}

bool ModelFollower::BeginCall(grpc::ClientContext* context) {
  if (!options_.token.empty()) {
    context->AddMetadata("authorization", absl::StrCat("Bearer ", options_.token));
  }
  absl::MutexLock lock(&mutex_);
  if (stopping_) return false;
  active_ = context;
  return true;
}

void ModelFollower::EndCall() {
  absl::MutexLock lock(&mutex_);
  active_ = nullptr;
}

void ModelFollower::Run() {
  absl::Duration backoff = kMinBackoff;
  while (!Stopping()) {
    bool received = false;
    absl::Status status = FollowOnce(&received);
    if (Stopping()) break;
    if (received) backoff = kMinBackoff;  // it was up: retry soon
    logger_->Warning("replica.control_plane_lost")
        .With("control_plane", options_.control_plane)
        .With("error", status)
        .With("retry_in_ms", absl::ToInt64Milliseconds(backoff))
        .With("serving", "the versions loaded so far");
    absl::MutexLock lock(&mutex_);
    mutex_.AwaitWithTimeout(absl::Condition(&stopping_), backoff);
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

absl::Status ModelFollower::FollowOnce(bool* received) {
  grpc::ClientContext context;
  if (!BeginCall(&context)) return absl::OkStatus();
  std::unique_ptr<grpc::ClientReader<v1::ModelChange>> reader =
      stub_->WatchModels(&context, v1::WatchModelsRequest());
  v1::ModelChange change;
  while (reader->Read(&change)) {
    if (!*received) {
      logger_->Info("replica.following").With("control_plane", options_.control_plane);
    }
    *received = true;
    EndCall();  // a download in Apply sets its own context; Stop cancels that one
    Apply(change);
    if (!BeginCall(&context)) {
      context.TryCancel();
      break;
    }
  }
  EndCall();
  return FromGrpc(reader->Finish());
}

void ModelFollower::Apply(const v1::ModelChange& change) {
  switch (change.kind()) {
    case v1::ModelChange::SNAPSHOT:
      versions_.clear();
      aliases_.clear();
      for (const v1::Model& model : change.models()) {
        versions_[{model.name(), model.version()}] = model;
        for (const std::string& alias : model.aliases()) {
          aliases_[{model.name(), alias}] = model.version();
        }
      }
      break;
    case v1::ModelChange::VERSION_ADDED:
      for (const v1::Model& model : change.models()) {
        versions_[{model.name(), model.version()}] = model;
      }
      break;
    case v1::ModelChange::ALIAS_MOVED:
      aliases_[{change.name(), change.alias()}] = change.version();
      break;
    case v1::ModelChange::ALIAS_DELETED:
      aliases_.erase({change.name(), change.alias()});
      break;
    case v1::ModelChange::VERSION_DELETED:
      versions_.erase({change.name(), change.version()});
      break;
    default:
      return;  // a kind from a newer control plane: nothing this replica knows to do
  }
  Reconcile();
}

void ModelFollower::Reconcile() {
  // What should be served: (name, alias) -> version on the control plane.
  std::map<std::pair<std::string, std::string>, int64_t> wanted;
  if (options_.serve.empty()) {
    wanted = aliases_;
  } else {
    for (const auto& key : options_.serve) {
      auto it = aliases_.find(key);
      if (it != aliases_.end()) wanted[key] = it->second;
    }
  }
  for (const auto& [key, version] : wanted) {
    if (store_->ServedVersion(key.first, key.second) == version) continue;
    if (absl::Status served = Serve(key.first, key.second, version); !served.ok()) {
      logger_->Error("replica.switch_failed")
          .With("model", key.first).With("alias", key.second).With("version", version)
          .With("error", served)
          .With("serving", store_->ServedVersion(key.first, key.second));
    }
  }
  // Aliases the control plane removed stop being served here too (a replica that merely cannot
  // reach the control plane never gets here: it keeps everything).
  for (auto it = served_.begin(); it != served_.end();) {
    if (wanted.count(*it) > 0) {
      ++it;
      continue;
    }
    store_->RemoveServedAlias(it->first, it->second);
    logger_->Info("replica.alias_dropped").With("model", it->first).With("alias", it->second);
    it = served_.erase(it);
  }
  // Versions no served alias points at: out of memory and out of the replica's registry (their
  // last requests finish on them). Their files stay cached unless the control plane deleted
  // the version.
  for (const auto& [name, version] : store_->Versions()) {
    if (store_->IsReferenced(name, version)) continue;
    v1::ModelRef ref;
    ref.set_name(name);
    ref.set_version(version);
    registry_->Unload(ref).IgnoreError();
    store_->RemoveVersion(name, version);
    logger_->Info("replica.version_dropped").With("model", name).With("version", version);
    if (versions_.count({name, version}) == 0) {
      std::error_code error;
      fs::remove_all(fs::path(options_.state_dir) / CachePath(name, version), error);
    }
  }
}

absl::Status ModelFollower::Serve(const std::string& name, const std::string& alias,
                                  int64_t version) {
  auto it = versions_.find({name, version});
  if (it == versions_.end()) {
    return absl::NotFoundError("the control plane named a version it did not describe");
  }
  RETURN_IF_ERROR(ValidateModelName("model name from the control plane", name));
  ASSIGN_OR_RETURN(std::string path, EnsureCached(it->second));
  v1::Model cached = it->second;
  cached.set_storage_path(path);
  cached.clear_loaded();
  cached.clear_device();
  store_->PutVersion(cached);
  // Loaded before the alias moves, so no request waits for the load.
  v1::ModelRef ref;
  ref.set_name(name);
  ref.set_version(version);
  const absl::Time start = absl::Now();
  absl::StatusOr<std::shared_ptr<LoadedModel>> loaded = registry_->Acquire(ref, options_.device);
  if (!loaded.ok()) {
    if (!store_->IsReferenced(name, version)) store_->RemoveVersion(name, version);
    return loaded.status();
  }
  const int64_t previous = store_->ServedVersion(name, alias);
  store_->SetServedAlias(name, alias, version);
  served_.insert({name, alias});
  logger_->Info("replica.alias_switched")
      .With("model", name).With("alias", alias).With("from_version", previous)
      .With("version", version)
      .With("load_ms", absl::ToInt64Milliseconds(absl::Now() - start));
  return absl::OkStatus();
}

absl::StatusOr<std::string> ModelFollower::EnsureCached(const v1::Model& model) {
  const std::string relative = CachePath(model.name(), model.version());
  const fs::path final_dir = fs::path(options_.state_dir) / relative;
  std::error_code error;
  // Only a whole, verified download is ever renamed to this name.
  if (fs::is_directory(fs::symlink_status(final_dir, error))) return relative;
  const fs::path temp = fs::path(options_.state_dir) / kCacheDir /
                        absl::StrCat(".download-", model.name(), "-", model.version(), "-", getpid());
  fs::remove_all(temp, error);
  fs::create_directories(temp, error);
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create ", temp.string(), ": ", error.message()));
  }
  absl::Status status = [&]() -> absl::Status {
    grpc::ClientContext context;
    if (!BeginCall(&context)) return absl::CancelledError("stopping");
    v1::DownloadModelRequest request;
    request.mutable_model()->set_name(model.name());
    request.mutable_model()->set_version(model.version());
    std::unique_ptr<grpc::ClientReader<v1::ModelChunk>> reader =
        stub_->DownloadModel(&context, request);
    client::ModelDirectoryWriter writer(temp.string());
    v1::ModelChunk chunk;
    absl::Status written = absl::OkStatus();
    while (written.ok() && reader->Read(&chunk)) written = writer.Write(chunk);
    if (!written.ok()) context.TryCancel();
    const grpc::Status finished = reader->Finish();
    EndCall();
    RETURN_IF_ERROR(written);
    RETURN_IF_ERROR(FromGrpc(finished));
    RETURN_IF_ERROR(writer.Finish());
    fs::create_directories(final_dir.parent_path(), error);
    fs::rename(temp, final_dir, error);
    if (error) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot move the download to ", final_dir.string(), ": ", error.message()));
    }
    logger_->Info("replica.version_cached")
        .With("model", model.name()).With("version", model.version())
        .With("files", writer.files()).With("bytes", writer.bytes());
    return absl::OkStatus();
  }();
  if (!status.ok()) {
    fs::remove_all(temp, error);
    return status;
  }
  return relative;
}

}  // namespace verdict::server
