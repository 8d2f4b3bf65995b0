#include "server/event_hub.h"

namespace verdict::server {

bool EventHub::Subscribe(const std::string& job_id, EventSubscriber* subscriber) {
  absl::MutexLock lock(&mutex_);
  if (closed_) return false;
  subscribers_[job_id].insert(subscriber);
  return true;
}

void EventHub::Close() {
  absl::MutexLock lock(&mutex_);
  if (closed_) return;
  closed_ = true;
  for (auto& [job_id, subscribers] : subscribers_) {
    for (EventSubscriber* subscriber : subscribers) subscriber->OnClosed();
  }
}

void EventHub::Unsubscribe(const std::string& job_id, EventSubscriber* subscriber) {
  absl::MutexLock lock(&mutex_);
  auto it = subscribers_.find(job_id);
  if (it == subscribers_.end()) return;
  it->second.erase(subscriber);
  if (it->second.empty()) subscribers_.erase(it);
}

void EventHub::Publish(const std::string& job_id, const v1::MetricsEvent& event) {
  absl::MutexLock lock(&mutex_);
  auto it = subscribers_.find(job_id);
  if (it == subscribers_.end()) return;
  for (EventSubscriber* subscriber : it->second) subscriber->OnEvent(event);
}

int EventHub::SubscriberCount(const std::string& job_id) {
  absl::MutexLock lock(&mutex_);
  auto it = subscribers_.find(job_id);
  return it == subscribers_.end() ? 0 : static_cast<int>(it->second.size());
}

}  // namespace verdict::server
