// Thread budgets per role (issue 16: scoring next to training on the same CPU).
//
// LibTorch's CPU parallelism has two layers here. Its own kernels split work over OpenMP
// threads; Debian's LibTorch is built with OpenMP (libgomp), whose thread count is a setting
// of the calling thread, so each role sets its own on the threads that run it (a training job's
// worker thread, a model's scoring thread). Matrix products go to OpenBLAS, whose pthread
// build keeps one pool and one thread count for the whole process: two callers that each fan
// out over every core oversubscribe it, and its idle threads spin.
// at::set_num_threads() is no use per role: it also rewrites the process-wide default that
// every thread starting later copies.
//
// Thread safety: SetIntraOpThreadsOfThisThread affects the calling thread only;
// SetBlasThreads the whole process (call it at start, before work runs).
#ifndef VERDICT_CORE_SCORE_THREAD_BUDGET_H_
#define VERDICT_CORE_SCORE_THREAD_BUDGET_H_

#include "absl/status/status.h"

namespace verdict {

// LibTorch's intra-op threads for work the calling thread runs from now on (its forwards and,
// on the CPU, its backward passes, which LibTorch runs on the calling thread). threads > 0.
void SetIntraOpThreadsOfThisThread(int threads);

// LibTorch's intra-op threads of the calling thread.
int IntraOpThreadsOfThisThread();

// Lowers the calling thread's CPU scheduling priority to `nice` (Linux: a thread's nice value
// is its own, and threads it starts inherit it), so that when it and threads at the default
// priority both want a core, the kernel gives the core to those (at nice 19 a thread gets
// ~1.5 % of a core a nice-0 thread also wants) while it still uses every idle cycle. Raising
// it back needs privileges, so only a thread that keeps this role for life should call it.
// nice in [0, 19].
absl::Status LowerPriorityOfThisThread(int nice);

// OpenBLAS's thread count, process-wide. False (and nothing changed) when the BLAS this
// process loaded is not OpenBLAS. threads > 0.
bool SetBlasThreads(int threads);

// OpenBLAS's thread count; -1 when the BLAS is not OpenBLAS.
int BlasThreads();

}  // namespace verdict

#endif  // VERDICT_CORE_SCORE_THREAD_BUDGET_H_
