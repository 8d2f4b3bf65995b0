// EventHub: fans a job's MetricsEvents out to its live watchers (StreamMetrics streams).
//
// The training worker stores each event in the JobStore first, then publishes it here;
// publishing only hands the event to each subscriber's OnEvent, which must not block (a
// StreamMetrics reactor queues it, bounded, and falls back to reading the store when it lags).
// So a slow or stalled watcher never slows training or the other watchers.
//
// Close() (server shutdown) tells every subscriber that no more events will come (OnClosed),
// and refuses later subscriptions, so that streams end instead of holding the shutdown up.
//
// Thread safety: all methods may be called from any thread. OnEvent and OnClosed are called
// with the hub's lock held: a subscriber must not call back into the hub from them. Unsubscribe() returns only
// when no OnEvent call to that subscriber is running, so a subscriber may be destroyed right
// after it.
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
