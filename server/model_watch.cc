#include "server/model_watch.h"

#include <deque>
#include <vector>

#include "core/util/status_macros.h"
#include "server/status_conversion.h"

namespace verdict::server {

// One WatchModels call. The hub pushes changes under its own lock; the stream writes them one
// at a time. Finish is called once, under the stream's lock, and nothing is written after it.
class ModelWatchHub::Stream final : public grpc::ServerWriteReactor<v1::ModelChange> {
 public:
  explicit Stream(ModelWatchHub* hub) : hub_(hub) {}

  void Push(v1::ModelChange change) {
    absl::MutexLock lock(&mutex_);
    if (finished_) return;
    queue_.push_back(std::move(change));
    if (!writing_) WriteNextLocked();
  }
  void End(const grpc::Status& status) {
    absl::MutexLock lock(&mutex_);
    FinishLocked(status);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mutex_);
    writing_ = false;
    if (!ok) return FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "stream closed"));
    if (!queue_.empty()) WriteNextLocked();
  }
  void OnCancel() override {
    absl::MutexLock lock(&mutex_);
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the client cancelled"));
  }
  void OnDone() override {
    hub_->Remove(this);
    delete this;
  }

 private:
  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (finished_) return;
    current_ = std::move(queue_.front());
    queue_.pop_front();
    writing_ = true;
    StartWrite(&current_);
  }
  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (finished_) return;
    finished_ = true;
    queue_.clear();
    Finish(status);
  }

  ModelWatchHub* const hub_;
  absl::Mutex mutex_;
  std::deque<v1::ModelChange> queue_ ABSL_GUARDED_BY(mutex_);
  v1::ModelChange current_ ABSL_GUARDED_BY(mutex_);
  bool writing_ ABSL_GUARDED_BY(mutex_) = false;
  bool finished_ ABSL_GUARDED_BY(mutex_) = false;
};

namespace {

class FailedWatch final : public grpc::ServerWriteReactor<v1::ModelChange> {
 public:
  explicit FailedWatch(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

ModelWatchHub::~ModelWatchHub() { Close(); }

absl::StatusOr<ModelWatchHub::Reading> ModelWatchHub::Read() {
  Reading reading;
  PageRequest page;
  page.page_size = PageRequest::kMaxPageSize;
  do {
    ASSIGN_OR_RETURN(Page<v1::Model> listed, store_->ListModels("", page));
    for (v1::Model& model : listed.items) {
      for (const std::string& alias : model.aliases()) {
        reading.aliases[{model.name(), alias}] = model.version();
      }
      // Runtime state (loaded, device) is the serving side's, not the registry's.
      model.clear_loaded();
      model.clear_device();
      reading.versions[{model.name(), model.version()}] = std::move(model);
    }
    page.page_token = listed.next_page_token;
  } while (!page.page_token.empty());
  return reading;
}

grpc::ServerWriteReactor<v1::ModelChange>* ModelWatchHub::Watch() {
  absl::MutexLock read_lock(&read_mutex_);
  {
    absl::MutexLock lock(&mutex_);
    if (closed_) {
      return new FailedWatch(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is draining"));
    }
  }
  absl::StatusOr<Reading> reading = Read();
  if (!reading.ok()) return new FailedWatch(ToGrpcStatus(reading.status()));
  absl::MutexLock lock(&mutex_);
  if (closed_) {
    return new FailedWatch(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is draining"));
  }
  // The fresh reading is the newest: the open streams get its differences first, so the new
  // stream's snapshot and their view agree from here on.
  ApplyLocked(*std::move(reading));
  v1::ModelChange snapshot;
  snapshot.set_kind(v1::ModelChange::SNAPSHOT);
  for (const auto& [key, model] : last_.versions) *snapshot.add_models() = model;
  auto* stream = new Stream(this);
  stream->Push(std::move(snapshot));
  streams_.insert(stream);
  if (!poller_.joinable()) poller_ = std::thread([this] { PollLoop(); });
  return stream;
}

void ModelWatchHub::Poke() {
  absl::MutexLock lock(&mutex_);
  poke_ = true;
}

void ModelWatchHub::Close() {
  {
    absl::MutexLock lock(&mutex_);
    if (!closed_) {
      closed_ = true;
      for (Stream* stream : streams_) {
        stream->End(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is draining"));
      }
    }
  }
  if (poller_.joinable()) poller_.join();
}

void ModelWatchHub::Remove(Stream* stream) {
  absl::MutexLock lock(&mutex_);
  streams_.erase(stream);
}

namespace {

v1::ModelChange Change(v1::ModelChange::Kind kind, const std::string& name, int64_t version,
                       const std::string& alias = "") {
  v1::ModelChange change;
  change.set_kind(kind);
  change.set_name(name);
  change.set_version(version);
  change.set_alias(alias);
  return change;
}

}  // namespace

void ModelWatchHub::PollLoop() {
  while (true) {
    {
      absl::MutexLock lock(&mutex_);
      auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) { return closed_ || poke_; };
      mutex_.AwaitWithTimeout(absl::Condition(&wake), kPollInterval);
      if (closed_) return;
      poke_ = false;
    }
    absl::MutexLock read_lock(&read_mutex_);
    absl::StatusOr<Reading> reading = Read();
    if (!reading.ok()) continue;  // a transient store error: the next reading catches up
    absl::MutexLock lock(&mutex_);
    if (closed_) return;
    ApplyLocked(*std::move(reading));
  }
}

void ModelWatchHub::ApplyLocked(Reading reading) {
  std::vector<v1::ModelChange> changes;
  for (const auto& [key, model] : reading.versions) {
    if (last_.versions.count(key) == 0) {
      v1::ModelChange added = Change(v1::ModelChange::VERSION_ADDED, key.first, key.second);
      *added.add_models() = model;
      changes.push_back(std::move(added));
    }
  }
  for (const auto& [key, version] : reading.aliases) {
    auto old = last_.aliases.find(key);
    if (old == last_.aliases.end() || old->second != version) {
      changes.push_back(Change(v1::ModelChange::ALIAS_MOVED, key.first, version, key.second));
    }
  }
  for (const auto& [key, version] : last_.aliases) {
    if (reading.aliases.count(key) == 0) {
      changes.push_back(Change(v1::ModelChange::ALIAS_DELETED, key.first, version, key.second));
    }
  }
  for (const auto& [key, model] : last_.versions) {
    if (reading.versions.count(key) == 0) {
      changes.push_back(Change(v1::ModelChange::VERSION_DELETED, key.first, key.second));
    }
  }
  last_ = std::move(reading);
  for (const v1::ModelChange& change : changes) {
    for (Stream* stream : streams_) stream->Push(change);
  }
}

}  // namespace verdict::server
