// Makes absl's synchronization visible to ThreadSanitizer when Abseil itself is not built with
// it (Debian's libabsl_synchronization.so is not). scripts/sanitize.sh tsan builds this file as
// a shared library and LD_PRELOADs it into the TSan test processes.
//
// Why: absl::Mutex is a futex-based lock implemented in libabsl_synchronization.so. TSan sees
// only what instrumented code and its pthread interceptors do, so it sees no lock and no
// unlock, and reports every pair of accesses made under one absl::Mutex from two threads as a
// race (measured: DynamicBatcher::Worker::Submit against the Await condition HasInboxOrStop).
//
// How: this library defines the public entry points of absl::Mutex, absl::CondVar,
// absl::Notification, absl::BlockingCounter and absl::Barrier under their own (mangled)
// names. Preloaded, its definitions come first in symbol lookup, so calls from verdict's code
// (absl::MutexLock's inline constructor calls Mutex::Lock), from gRPC and from Abseil's other
// libraries reach it; each one calls the real function (dlsym(RTLD_NEXT)) and tells TSan the
// happens-before edge the real one creates, with __tsan_acquire / __tsan_release on the
// object's address:
//   Lock, LockWhen*, TryLock (when it succeeds), the return of Await* and CondVar::Wait*
//     acquire (they end holding the mutex, after whoever held it before released it);
//   Unlock, and the start of Await* and CondVar::Wait* (which let the mutex go) release;
//   an Await/LockWhen condition is wrapped so that its evaluation acquires and releases: absl
//     evaluates a waiter's condition on whichever thread holds the mutex, often the unlocking
//     one, so the evaluation must be ordered with both that holder's and the waiter's accesses;
//   Notification::Notify, BlockingCounter::DecrementCount and Barrier::Block release before,
//     and WaitForNotification*, BlockingCounter::Wait and Barrier::Block acquire after.
// Every edge is one the real primitive guarantees, and all releases and acquires on a mutex
// happen while it is really held, so no race in verdict's code is hidden; what is lost is TSan's
// lock-order (deadlock) checking for absl::Mutex, and reader locks are treated as writer locks
// (two readers are ordered; verdict uses no reader locks). Not covered: the inline
// Notification::HasBeenNotified() (an atomic load in the header against a store in the
// library); verdict's tests use it only to decide whether to call Notify.
#include <dlfcn.h>

#include <cstring>

#include "absl/synchronization/barrier.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

// The TSan runtime (in the instrumented executable) provides these; weak so that a process
// without TSan that inherits LD_PRELOAD (a Python interpreter a test starts) still loads it.
extern "C" void __tsan_acquire(void* addr) __attribute__((weak));
extern "C" void __tsan_release(void* addr) __attribute__((weak));

namespace {

void Acquire(const void* addr) {
  if (__tsan_acquire != nullptr) __tsan_acquire(const_cast<void*>(addr));
}
void Release(const void* addr) {
  if (__tsan_release != nullptr) __tsan_release(const_cast<void*>(addr));
}

// The next definition (Abseil's) of the member function `ours`, found by its symbol name.
template <typename Pmf>
Pmf Real(Pmf ours) {
  static_assert(sizeof(Pmf) == 2 * sizeof(void*), "Itanium ABI member function pointer");
  void* address;
  std::memcpy(&address, &ours, sizeof(address));
  Dl_info info;
  void* real = nullptr;
  if (dladdr(address, &info) != 0 && info.dli_sname != nullptr) {
    real = dlsym(RTLD_NEXT, info.dli_sname);
  }
  if (real == nullptr) __builtin_trap();
  Pmf result;
  std::memset(&result, 0, sizeof(result));
  std::memcpy(&result, &real, sizeof(real));
  return result;
}

#define VERDICT_REAL(pmf)                 \
  ([]() {                                 \
    static const auto real = Real(pmf);   \
    return real;                          \
  }())

// A condition that tells TSan its evaluation happens while `mu` is held (by whichever thread
// absl evaluates it on).
struct AnnotatedCondition {
  const absl::Condition* condition;
  const absl::Mutex* mu;

  static bool Eval(AnnotatedCondition* self) {
    Acquire(self->mu);
    const bool result = self->condition->Eval();
    Release(self->mu);
    return result;
  }
};

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

// ---- Mutex: locking and unlocking
void Mutex::Lock() {
  (this->*VERDICT_REAL(&Mutex::Lock))();
  Acquire(this);
}

void Mutex::ReaderLock() {
  (this->*VERDICT_REAL(&Mutex::ReaderLock))();
  Acquire(this);
}

bool Mutex::TryLock() {
  const bool locked = (this->*VERDICT_REAL(&Mutex::TryLock))();
  if (locked) Acquire(this);
  return locked;
}

bool Mutex::ReaderTryLock() {
  const bool locked = (this->*VERDICT_REAL(&Mutex::ReaderTryLock))();
  if (locked) Acquire(this);
  return locked;
}

void Mutex::Unlock() {
  Release(this);
  (this->*VERDICT_REAL(&Mutex::Unlock))();
}

void Mutex::ReaderUnlock() {
  Release(this);
  (this->*VERDICT_REAL(&Mutex::ReaderUnlock))();
}

// ---- Mutex: conditions
#define VERDICT_WRAP(cond)                      \
  AnnotatedCondition annotated{&(cond), this}; \
  const Condition wrapped(&AnnotatedCondition::Eval, &annotated)

void Mutex::Await(const Condition& cond) {
  VERDICT_WRAP(cond);
  Release(this);
  (this->*VERDICT_REAL(&Mutex::Await))(wrapped);
  Acquire(this);
}

bool Mutex::AwaitWithTimeout(const Condition& cond, absl::Duration timeout) {
  VERDICT_WRAP(cond);
  Release(this);
  const bool result = (this->*VERDICT_REAL(&Mutex::AwaitWithTimeout))(wrapped, timeout);
  Acquire(this);
  return result;
}

bool Mutex::AwaitWithDeadline(const Condition& cond, absl::Time deadline) {
  VERDICT_WRAP(cond);
  Release(this);
  const bool result = (this->*VERDICT_REAL(&Mutex::AwaitWithDeadline))(wrapped, deadline);
  Acquire(this);
  return result;
}

void Mutex::LockWhen(const Condition& cond) {
  VERDICT_WRAP(cond);
  (this->*VERDICT_REAL(&Mutex::LockWhen))(wrapped);
  Acquire(this);
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  VERDICT_WRAP(cond);
  (this->*VERDICT_REAL(&Mutex::ReaderLockWhen))(wrapped);
  Acquire(this);
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, absl::Duration timeout) {
  VERDICT_WRAP(cond);
  const bool result = (this->*VERDICT_REAL(&Mutex::LockWhenWithTimeout))(wrapped, timeout);
  Acquire(this);
  return result;
}

bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond, absl::Duration timeout) {
  VERDICT_WRAP(cond);
  const bool result =
      (this->*VERDICT_REAL(&Mutex::ReaderLockWhenWithTimeout))(wrapped, timeout);
  Acquire(this);
  return result;
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, absl::Time deadline) {
  VERDICT_WRAP(cond);
  const bool result = (this->*VERDICT_REAL(&Mutex::LockWhenWithDeadline))(wrapped, deadline);
  Acquire(this);
  return result;
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, absl::Time deadline) {
  VERDICT_WRAP(cond);
  const bool result =
      (this->*VERDICT_REAL(&Mutex::ReaderLockWhenWithDeadline))(wrapped, deadline);
  Acquire(this);
  return result;
}

#undef VERDICT_WRAP

// ---- CondVar: waiting releases the mutex and takes it again.
void CondVar::Wait(Mutex* mu) {
  Release(mu);
  (this->*VERDICT_REAL(&CondVar::Wait))(mu);
  Acquire(mu);
}

bool CondVar::WaitWithTimeout(Mutex* mu, absl::Duration timeout) {
  Release(mu);
  const bool result = (this->*VERDICT_REAL(&CondVar::WaitWithTimeout))(mu, timeout);
  Acquire(mu);
  return result;
}

bool CondVar::WaitWithDeadline(Mutex* mu, absl::Time deadline) {
  Release(mu);
  const bool result = (this->*VERDICT_REAL(&CondVar::WaitWithDeadline))(mu, deadline);
  Acquire(mu);
  return result;
}

// ---- Notification, BlockingCounter, Barrier
void Notification::Notify() {
  Release(this);
  (this->*VERDICT_REAL(&Notification::Notify))();
}

void Notification::WaitForNotification() const {
  (this->*VERDICT_REAL(&Notification::WaitForNotification))();
  Acquire(this);
}

bool Notification::WaitForNotificationWithTimeout(absl::Duration timeout) const {
  const bool notified =
      (this->*VERDICT_REAL(&Notification::WaitForNotificationWithTimeout))(timeout);
  if (notified) Acquire(this);
  return notified;
}

bool Notification::WaitForNotificationWithDeadline(absl::Time deadline) const {
  const bool notified =
      (this->*VERDICT_REAL(&Notification::WaitForNotificationWithDeadline))(deadline);
  if (notified) Acquire(this);
  return notified;
}

bool BlockingCounter::DecrementCount() {
  Release(this);
  return (this->*VERDICT_REAL(&BlockingCounter::DecrementCount))();
}

void BlockingCounter::Wait() {
  (this->*VERDICT_REAL(&BlockingCounter::Wait))();
  Acquire(this);
}

bool Barrier::Block() {
  Release(this);
  const bool result = (this->*VERDICT_REAL(&Barrier::Block))();
  Acquire(this);
  return result;
}

ABSL_NAMESPACE_END
}  // namespace absl
