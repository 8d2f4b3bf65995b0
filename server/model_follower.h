// ModelFollower: what makes a scoring replica (verdictd --role=scoring) follow the control
// plane's model registry. One thread keeps a ModelService.WatchModels stream open to the
// control plane and, for every alias the replica serves (--serve_models; empty: every alias
// the control plane has, "latest" included), whenever the alias points at a version the
// replica does not serve yet:
//   1. downloads the version (DownloadModel) into a temporary directory under
//      <state_dir>/model-cache, checking every chunk's and file's sha256 (ModelDirectoryWriter),
//      and renames it to <state_dir>/model-cache/<name>/<version> -- a cached version is reused;
//   2. adds it to the ReplicaModelStore and loads it (the ModelRegistry), so that no request
//      waits for the load;
//   3. only then points the alias at it in the ReplicaModelStore: requests resolve their
//      version when they arrive, so the ones in flight finish on the old version and the next
//      ones score with the new -- the same zero-failed-request hot swap as a single server;
//   4. unloads the versions no served alias points at any more.
// A version the control plane deletes leaves the cache too. When the stream breaks (the
// control plane restarts or is unreachable) the replica keeps serving what it has and
// reconnects with exponential backoff (kMinBackoff .. kMaxBackoff); each new stream starts
// from a SNAPSHOT, so nothing missed in between is lost.
//
// Thread safety: Start and Stop from one thread; the work runs on the follower's own thread.
#ifndef VERDICT_SERVER_MODEL_FOLLOWER_H_
#define VERDICT_SERVER_MODEL_FOLLOWER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/model_registry.h"
#include "server/replica_store.h"
#include "verdict/v1/models.grpc.pb.h"

namespace verdict {
class Logger;
}  // namespace verdict

namespace verdict::server {

class ModelFollower {
 public:
  static constexpr absl::Duration kMinBackoff = absl::Milliseconds(100);
  static constexpr absl::Duration kMaxBackoff = absl::Seconds(5);

  struct Options {
    std::string control_plane;  // gRPC target, e.g. dns:///verdict-control:50051
    std::string token;          // bearer token sent to it; empty: none
    // (name, alias) pairs served; empty: every alias the control plane has.
    std::vector<std::pair<std::string, std::string>> serve;
    std::string state_dir;  // the cache is <state_dir>/model-cache
    std::string device;     // where versions load; empty: the server's default
    int64_t max_message_bytes = 64 << 20;
  };

  ModelFollower(Options options, ReplicaModelStore* store, ModelRegistry* registry,
                Logger* logger);
  ~ModelFollower();  // Stop()
  ModelFollower(const ModelFollower&) = delete;
  ModelFollower& operator=(const ModelFollower&) = delete;

  // Removes the temporary directories of downloads a crash interrupted, then starts following.
  void Start();
  // Cancels the stream or download in progress and joins the thread. A load in progress is
  // waited for.
  void Stop();

 private:
  using Key = std::pair<std::string, int64_t>;
  void Run();
  // One stream, from connecting until it breaks. OK when stopped.
  absl::Status FollowOnce(bool* received);
  // Applies one message to the control plane's view, then brings the replica in line.
  void Apply(const v1::ModelChange& change);
  void Reconcile();
  absl::Status Serve(const std::string& name, const std::string& alias, int64_t version);
  // The version's directory in the cache, downloading it first if it is not there.
  absl::StatusOr<std::string> EnsureCached(const v1::Model& model);
  // Sets up `context` for a call to the control plane; false once stopping.
  bool BeginCall(grpc::ClientContext* context);
  void EndCall();
  bool Stopping();

  const Options options_;
  ReplicaModelStore* const store_;
  ModelRegistry* const registry_;
  Logger* const logger_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ModelService::Stub> stub_;

  // The control plane's registry as the stream has told it (follower thread only).
  std::map<Key, v1::Model> versions_;
  std::map<std::pair<std::string, std::string>, int64_t> aliases_;
  // The aliases this follower has set in the ReplicaModelStore.
  std::set<std::pair<std::string, std::string>> served_;

  absl::Mutex mutex_;
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
  grpc::ClientContext* active_ ABSL_GUARDED_BY(mutex_) = nullptr;  // the call to cancel on Stop
  std::thread thread_;
};

}  // namespace verdict::server

#endif  // VERDICT_SERVER_MODEL_FOLLOWER_H_
