// Thread budgets as LibTorch really applies them: per-thread intra-op counts (its OpenMP
// build), per-thread scheduling priority, OpenBLAS's process-wide count.
#include "core/score/thread_budget.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cerrno>
#include <thread>

namespace verdict {
namespace {

int ThisThreadNice() {
  errno = 0;
  return getpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)));
}

// What LibTorch's kernels see on the calling thread after running one.
int ThreadsAfterAKernel() {
  (void)torch::ones({1 << 18}).mul_(2).sum().item<float>();
  return at::get_num_threads();
}

TEST(ThreadBudgetTest, IntraOpThreadsAreSetPerThreadAndSurviveLibTorchsLazyInit) {
  const int main_threads = ThreadsAfterAKernel();
  int one = 0, three = 0;
  // Fresh threads, whose first LibTorch kernel would otherwise reset their count.
  std::thread a([&] {
    SetIntraOpThreadsOfThisThread(1);
    one = ThreadsAfterAKernel();
  });
  std::thread b([&] {
    SetIntraOpThreadsOfThisThread(3);
    three = ThreadsAfterAKernel();
  });
  a.join();
  b.join();
  EXPECT_EQ(one, 1);
  EXPECT_EQ(three, 3);
  EXPECT_EQ(ThreadsAfterAKernel(), main_threads);
  EXPECT_EQ(IntraOpThreadsOfThisThread(), main_threads);
}

TEST(ThreadBudgetTest, LowersTheCallingThreadsPriorityOnly) {
  const int main_nice = ThisThreadNice();
  int lowered = -100;
  std::thread worker([&] {
    ASSERT_TRUE(LowerPriorityOfThisThread(19).ok());
    lowered = ThisThreadNice();
  });
  worker.join();
  EXPECT_EQ(lowered, 19);
  EXPECT_EQ(ThisThreadNice(), main_nice);
  EXPECT_FALSE(LowerPriorityOfThisThread(20).ok());
  EXPECT_FALSE(LowerPriorityOfThisThread(-1).ok());
}

TEST(ThreadBudgetTest, SetsOpenBlasThreadsWhereTheBlasIsOpenBlas) {
  const int before = BlasThreads();
  if (before < 0) GTEST_SKIP() << "the BLAS here is not OpenBLAS";
  ASSERT_TRUE(SetBlasThreads(1));
  EXPECT_EQ(BlasThreads(), 1);
  // Matrix products still run (on the calling thread).
  auto a = torch::randn({64, 64});
  EXPECT_TRUE(torch::allclose(torch::mm(a, torch::eye(64)), a));
  ASSERT_TRUE(SetBlasThreads(before));
  EXPECT_EQ(BlasThreads(), before);
}

}  // namespace
}  // namespace verdict
