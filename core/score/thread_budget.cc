#include "core/score/thread_budget.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <omp.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <torch/torch.h>

namespace verdict {

void SetIntraOpThreadsOfThisThread(int threads) {
  // LibTorch sets a thread's OpenMP count once, lazily, at the thread's first parallel kernel
  // (from the process-wide default), which would undo a setting made before it. Run one
  // inside LibTorch now (its copy of the lazy flag), and the inline one compiled here.
  at::internal::lazy_init_num_threads();
  {
    c10::InferenceMode inference;
    (void)torch::ones({1 << 16}).add_(1).sum().item<float>();
  }
  omp_set_num_threads(threads);
}

int IntraOpThreadsOfThisThread() { return at::get_num_threads(); }

namespace {

// Looked up at run time: the BLAS is whichever libblas.so.3 the system points at.
template <typename Fn>
Fn* OpenBlasFunction(const char* name) {
  return reinterpret_cast<Fn*>(dlsym(RTLD_DEFAULT, name));
}

}  // namespace

absl::Status LowerPriorityOfThisThread(int nice) {
  if (nice < 0 || nice > 19) return absl::InvalidArgumentError("nice must be in [0, 19]");
  // PRIO_PROCESS with a thread id sets that thread only (Linux's per-thread nice).
  if (setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), nice) != 0) {
    return absl::ErrnoToStatus(errno, "setpriority");
  }
  return absl::OkStatus();
}

bool SetBlasThreads(int threads) {
  auto* set = OpenBlasFunction<void(int)>("openblas_set_num_threads");
  if (set == nullptr) return false;
  set(threads);
  return true;
}

int BlasThreads() {
  auto* get = OpenBlasFunction<int()>("openblas_get_num_threads");
  return get == nullptr ? -1 : get();
}

}  // namespace verdict
