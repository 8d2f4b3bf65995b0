// EventHub: fans a job's MetricsEvents out to its live watchers (StreamMetrics streams).
//
// The training worker stores each event in the JobStore first, then publishes it here;
// publishing only hands the event to each subscriber's OnEvent, which must not block: a
// StreamMetrics reactor queues it (bounded) or, when it lags, only marks itself lagging and
// later catches up by reading the store on its own gRPC reaction, with no lock held. So a slow
// or stalled watcher -- or a slow store -- never slows training or the other watchers.
//
// Close() (server shutdown) tells every subscriber that no more events will come (OnClosed),
// and refuses later subscriptions, so that streams end instead of holding the shutdown up.
//
// Thread safety: all methods may be called from any thread. OnEvent and OnClosed are called
// with the hub's lock held: a subscriber must not call back into the hub from them, and may
// take only its own lock, briefly (never across a store read, a model load or a gRPC call
// that can block). Unsubscribe() returns only when no OnEvent call to that subscriber is
// running, so a subscriber may be destroyed right after it.
//
// Lock order (held-while-acquiring, outermost first):
//   JobManager::events_mutex_ -> EventHub::mutex_ -> subscriber's lock (e.g. the StreamMetrics
//   reactor's mutex_).
// Nothing is acquired under a subscriber's lock, and no lock of this chain is held across a
// JobStore call except events_mutex_ across the AppendEvents that precedes each Publish.
// Subscribe/Unsubscribe must be called without the subscriber's own lock held.
#ifndef VERDICT_SERVER_EVENT_HUB_H_
#define VERDICT_SERVER_EVENT_HUB_H_

#include <map>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "verdict/v1/training.pb.h"

namespace verdict::server {

class EventSubscriber {
 public:
  virtual ~EventSubscriber() = default;
  virtual void OnEvent(const v1::MetricsEvent& event) = 0;
  // The hub is closing: the subscriber should wind down (it still gets Unsubscribe).
  virtual void OnClosed() {}
};

class EventHub {
 public:
  // False (and no subscription) once the hub is closed.
  bool Subscribe(const std::string& job_id, EventSubscriber* subscriber);
  void Unsubscribe(const std::string& job_id, EventSubscriber* subscriber);
  void Publish(const std::string& job_id, const v1::MetricsEvent& event);
  int SubscriberCount(const std::string& job_id);
  // Calls OnClosed on every subscriber and refuses new ones. Idempotent.
  void Close();

 private:
  absl::Mutex mutex_;
  std::map<std::string, std::set<EventSubscriber*>> subscribers_ ABSL_GUARDED_BY(mutex_);
  bool closed_ ABSL_GUARDED_BY(mutex_) = false;
};

}  // namespace verdict::server

#endif  // VERDICT_SERVER_EVENT_HUB_H_
