// ModelWatchHub: ModelService.WatchModels. The registry changes through several doors (the
// ModelService RPCs, a training job registering its model, an evaluation), so rather than hook
// each, one thread reads the whole registry from the JobStore every kPollInterval (a few rows:
// versions are few), diffs it against the previous reading and fans the differences out to
// every open WatchModels stream as ModelChange messages. A new stream first gets a SNAPSHOT of
// the last reading, taken under the same lock as the fan-out, so it misses nothing and sees
// nothing twice. Poke() reads again at once (after a change made through the API).
//
// Each stream keeps its own queue and has at most one write in flight; a stream whose client
// stops reading only grows its queue by the (rare) registry changes.
//
// Thread safety: all methods from any thread. The poller starts with the first watcher, and
// the destructor (or Close) ends every stream with UNAVAILABLE and joins it.
#ifndef VERDICT_SERVER_MODEL_WATCH_H_
#define VERDICT_SERVER_MODEL_WATCH_H_

#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/job_store.h"
#include "verdict/v1/models.pb.h"

namespace verdict::server {

class ModelWatchHub {
 public:
  static constexpr absl::Duration kPollInterval = absl::Milliseconds(250);

  explicit ModelWatchHub(JobStore* store) : store_(store) {}
  ~ModelWatchHub();
  ModelWatchHub(const ModelWatchHub&) = delete;
  ModelWatchHub& operator=(const ModelWatchHub&) = delete;

  // A reactor for one WatchModels call: SNAPSHOT first, then the changes.
  grpc::ServerWriteReactor<v1::ModelChange>* Watch();
  // Reads the registry now rather than at the next interval.
  void Poke();
  // Ends every stream (UNAVAILABLE) and refuses new ones; stops the poller.
  void Close();

  class Stream;

 private:
  using Key = std::pair<std::string, int64_t>;
  struct Reading {
    std::map<Key, v1::Model> versions;
    std::map<std::pair<std::string, std::string>, int64_t> aliases;  // (name, alias) -> version
  };
  absl::StatusOr<Reading> Read();
  void PollLoop();
  // Sends the differences between last_ and `reading` to every stream; `reading` becomes last_.
  void ApplyLocked(Reading reading) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void Remove(Stream* stream);

  JobStore* const store_;
  // Held across a Read() and the fan-out of its differences, so readings apply in order.
  // Taken before mutex_.
  absl::Mutex read_mutex_;
  absl::Mutex mutex_;
  bool closed_ ABSL_GUARDED_BY(mutex_) = false;
  bool poke_ ABSL_GUARDED_BY(mutex_) = false;
  Reading last_ ABSL_GUARDED_BY(mutex_);
  std::set<Stream*> streams_ ABSL_GUARDED_BY(mutex_);
  std::thread poller_;  // started with the first watcher
};

}  // namespace verdict::server

#endif  // VERDICT_SERVER_MODEL_WATCH_H_
