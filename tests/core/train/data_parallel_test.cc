// Data-parallel training with real processes (data_parallel_worker) meeting over loopback
// through c10d's TCPStore and Gloo: 2 ranks x B follow 1 rank x 2B step for step, a killed
// group resumes from rank 0's checkpoint to the same end, and a rank that never arrives fails
// the other within the timeout with an error that names it. Gradients summed during backward
// (overlap_allreduce) equal, bit for bit, those summed after it.
#include "core/train/distributed.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <torch/torch.h>

#include "core/model/reward_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_paths.h"

extern char** environ;

namespace verdict {
namespace {

using ::testing::HasSubstr;
using ::verdict::testing::ScratchDir;

constexpr double kTolerance = 1e-5;

// A port nothing listens on now (the kernel's pick for an ephemeral bind).
int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// Starts the worker with `args`, this process's environment less the rendezvous variables plus
// `env`, stdout and stderr into `log`.
pid_t SpawnWorker(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
                  const std::string& log) {
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    const std::string name = entry.substr(0, entry.find('='));
    if (name == "MASTER_ADDR" || name == "MASTER_PORT" || name == "RANK" ||
        name == "WORLD_SIZE" || name == "LOCAL_RANK" || name == "VERDICT_TEST_KILL_AT") {
      continue;
    }
    env_strings.push_back(entry);
  }
  for (const auto& [name, value] : env) env_strings.push_back(name + "=" + value);
  std::vector<std::string> argv_strings = {DATA_PARALLEL_WORKER};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv_ptrs, env_ptrs;
  for (auto& s : argv_strings) argv_ptrs.push_back(s.data());
  argv_ptrs.push_back(nullptr);
  for (auto& s : env_strings) env_ptrs.push_back(s.data());
  env_ptrs.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = -1;
  const int error =
      posix_spawn(&pid, DATA_PARALLEL_WORKER, &actions, nullptr, argv_ptrs.data(), env_ptrs.data());
  posix_spawn_file_actions_destroy(&actions);
  EXPECT_EQ(error, 0) << "cannot start " << DATA_PARALLEL_WORKER;
  return pid;
}

// The wait status of `pid`.
int WaitFor(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

struct StepRecord {
  double loss = 0;
  int64_t pairs = 0;
};

// step -> its record; a step logged again after a restart keeps the later line.
std::map<int64_t, StepRecord> ReadLosses(const std::string& path) {
  std::map<int64_t, StepRecord> steps;
  std::ifstream in(path);
  int64_t step = 0;
  StepRecord record;
  while (in >> step >> record.loss >> record.pairs) steps[step] = record;
  return steps;
}

// Runs `world_size` ranks to completion; each rank's wait status.
std::vector<int> RunGroup(int world_size, const std::vector<std::string>& args,
                          const std::string& log_prefix,
                          std::map<std::string, std::string> extra_env = {}) {
  const int port = FreePort();
  std::vector<pid_t> pids;
  for (int rank = 0; rank < world_size; ++rank) {
    std::map<std::string, std::string> env = extra_env;
    env["MASTER_ADDR"] = "127.0.0.1";
    env["MASTER_PORT"] = std::to_string(port);
    env["RANK"] = std::to_string(rank);
    env["LOCAL_RANK"] = std::to_string(rank);
    env["WORLD_SIZE"] = std::to_string(world_size);
    pids.push_back(SpawnWorker(args, env, log_prefix + std::to_string(rank) + ".log"));
  }
  std::vector<int> statuses;
  for (pid_t pid : pids) statuses.push_back(WaitFor(pid));
  return statuses;
}

bool Succeeded(int status) { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }

void ExpectSameWeights(const std::string& dir_a, const std::string& dir_b,
                       double tolerance = kTolerance) {
  auto a = LoadRewardModel(dir_a, {});
  auto b = LoadRewardModel(dir_b, {});
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  auto params_b = (*b)->module().named_parameters();
  int compared = 0;
  for (const auto& item : (*a)->module().named_parameters()) {
    const torch::Tensor* other = params_b.find(item.key());
    ASSERT_NE(other, nullptr) << item.key();
    const double diff = (item.value() - *other).abs().max().item<double>();
    EXPECT_LE(diff, tolerance) << item.key();
    ++compared;
  }
  EXPECT_GT(compared, 10);
}

void ExpectSameSteps(const std::map<int64_t, StepRecord>& expected,
                     const std::map<int64_t, StepRecord>& actual) {
  ASSERT_EQ(actual.size(), expected.size());
  for (const auto& [step, record] : expected) {
    ASSERT_TRUE(actual.count(step)) << "step " << step;
    EXPECT_NEAR(actual.at(step).loss, record.loss, kTolerance) << "step " << step;
    EXPECT_EQ(actual.at(step).pairs, record.pairs) << "step " << step;
  }
}

// The single-process run with the doubled micro-batch, trained once for the suite.
class DataParallelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    reference_ = new ScratchDir();
    const int status = WaitFor(SpawnWorker(
        {"output=" + reference_->Path("model"), "batch_size=16", "world_size=1",
         "losses=" + reference_->Path("losses.txt")},
        {}, reference_->Path("log.txt")));
    ASSERT_TRUE(Succeeded(status)) << ReadFile(reference_->Path("log.txt"));
  }
  static void TearDownTestSuite() {
    delete reference_;
    reference_ = nullptr;
  }
  static ScratchDir* reference_;
};
ScratchDir* DataParallelTest::reference_ = nullptr;

TEST_F(DataParallelTest, TwoRanksOfEightFollowOneRankOfSixteenStepForStep) {
  ASSERT_NE(reference_, nullptr);
  const auto expected = ReadLosses(reference_->Path("losses.txt"));
  ASSERT_EQ(expected.size(), 8u);  // 2 epochs of 7 micro-batches, 2 per step

  ScratchDir scratch;
  const auto statuses = RunGroup(
      2, {"output=" + scratch.Path("model"), "batch_size=8", "world_size=2",
          "losses=" + scratch.Path("losses.txt")},
      scratch.Path("rank"));
  for (size_t r = 0; r < statuses.size(); ++r) {
    ASSERT_TRUE(Succeeded(statuses[r])) << ReadFile(scratch.Path("rank" + std::to_string(r) + ".log"));
  }
  ExpectSameSteps(expected, ReadLosses(scratch.Path("losses.txt")));
  ExpectSameWeights(reference_->Path("model"), scratch.Path("model"));
  // Rank 0 alone wrote checkpoints and the model; the losses are logged once per step.
  EXPECT_TRUE(std::filesystem::exists(scratch.Path("model.run")));
}

TEST_F(DataParallelTest, AKilledGroupResumesFromRankZerosCheckpointToTheSameEnd) {
  ASSERT_NE(reference_, nullptr);
  ScratchDir scratch;
  const std::vector<std::string> args = {"output=" + scratch.Path("model"), "batch_size=8",
                                         "world_size=2", "losses=" + scratch.Path("losses.txt"),
                                         "save_steps=2", "eval_steps=4"};
  // Every rank is killed (SIGKILL) after the evaluation at step 4, before its checkpoint.
  const auto killed = RunGroup(2, args, scratch.Path("first"), {{"VERDICT_TEST_KILL_AT", "after_eval"}});
  for (int status : killed) {
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  }
  ASSERT_FALSE(std::filesystem::exists(scratch.Path("model")));

  const auto resumed = RunGroup(2, args, scratch.Path("second"));
  for (size_t r = 0; r < resumed.size(); ++r) {
    ASSERT_TRUE(Succeeded(resumed[r])) << ReadFile(scratch.Path("second" + std::to_string(r) + ".log"));
  }
  ExpectSameSteps(ReadLosses(reference_->Path("losses.txt")), ReadLosses(scratch.Path("losses.txt")));
  ExpectSameWeights(reference_->Path("model"), scratch.Path("model"));
}

TEST(DataParallelOverlapTest, OverlapOnAndOffGiveBitIdenticalLossesAndWeights) {
  ScratchDir scratch;
  std::map<int64_t, StepRecord> losses[2];
  for (int overlap : {0, 1}) {
    const std::string tag = std::to_string(overlap);
    const auto statuses = RunGroup(
        2, {"output=" + scratch.Path("model" + tag), "batch_size=8", "world_size=2",
            "losses=" + scratch.Path("losses" + tag + ".txt"), "overlap=" + tag},
        scratch.Path("overlap" + tag + "_rank"));
    for (size_t r = 0; r < statuses.size(); ++r) {
      ASSERT_TRUE(Succeeded(statuses[r]))
          << ReadFile(scratch.Path("overlap" + tag + "_rank" + std::to_string(r) + ".log"));
    }
    losses[overlap] = ReadLosses(scratch.Path("losses" + tag + ".txt"));
  }
  ASSERT_EQ(losses[0].size(), 8u);
  ASSERT_EQ(losses[1].size(), losses[0].size());
  for (const auto& [step, record] : losses[0]) {
    EXPECT_EQ(losses[1].at(step).loss, record.loss) << "step " << step;
  }
  // Two ranks: each element's sum is a + b whichever way the buckets are cut.
  ExpectSameWeights(scratch.Path("model0"), scratch.Path("model1"), /*tolerance=*/0.0);
}

// Leaf tensors of fixed values (no RNG: the two ranks are threads of this process).
torch::Tensor Param(std::vector<int64_t> shape, double phase, bool requires_grad = true) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return (torch::arange(n, torch::kFloat) * 0.37 + phase)
      .sin()
      .mul(0.2)
      .reshape(shape)
      .set_requires_grad(requires_grad);
}

struct RankGradients {
  std::vector<torch::Tensor> overlapped, plain;  // per parameter; undefined when none
  int buckets = 0, started_in_backward = 0;
  std::string error;
};

// One rank: two micro-batches (the second armed), its gradients summed with the hooks, then the
// same gradients computed again and summed after backward.
void RunOverlapRank(int rank, int port, RankGradients& out) {
  RendezvousInfo info;
  info.master_addr = "127.0.0.1";
  info.port = port;
  info.rank = rank;
  info.world_size = 2;
  auto group = DataParallelGroup::Connect(info, absl::Seconds(30));
  if (!group.ok()) {
    out.error = group.status().ToString();
    return;
  }
  // Listed first, so bucketed last (buckets run in reverse order): `unused_on_rank1` holds back
  // rank 1's last bucket until FinishGradientSum, `unused` has no gradient anywhere.
  std::vector<torch::Tensor> params = {Param({16}, 0.1), Param({8}, 0.2), Param({4}, 0.3, false),
                                       Param({64, 32}, 0.4), Param({32, 32}, 0.5),
                                       Param({32, 8}, 0.6), Param({8, 1}, 0.7)};
  const torch::Tensor &unused_on_rank1 = params[1], &frozen = params[2], &w0 = params[3],
                      &w1 = params[4], &w2 = params[5], &w3 = params[6];
  auto backward = [&](int micro) {
    const double frequency = 0.11 + 0.07 * rank + 0.05 * micro;
    const torch::Tensor x =
        (torch::arange(5 * 64, torch::kFloat) * frequency).cos().reshape({5, 64});
    torch::Tensor loss = x.mm(w0).tanh().mm(w1).tanh().mm(w2).tanh().mm(w3).pow(2).sum() +
                         frozen.sum();
    if (rank == 0) loss = loss + (unused_on_rank1 * x.slice(1, 0, 8)).sum();
    loss.backward();
  };
  auto clear = [&] {
    for (torch::Tensor& p : params) p.mutable_grad() = torch::Tensor();
  };
  auto snapshot = [&] {
    std::vector<torch::Tensor> grads;
    for (const torch::Tensor& p : params) {
      grads.push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
    }
    return grads;
  };
  // Small buckets, so that there are several.
  absl::Status status = (*group)->AttachGradientHooks(params, /*bucket_bytes=*/4096,
                                                      /*first_bucket_bytes=*/1024);
  if (status.ok()) {
    clear();
    backward(0);
    (*group)->ArmGradientSum();
    backward(1);
    status = (*group)->FinishGradientSum();
    out.overlapped = snapshot();
    out.buckets = (*group)->gradient_buckets();
    out.started_in_backward = (*group)->gradient_buckets_started_in_backward();
  }
  if (status.ok()) {
    // Unarmed: the hooks leave these backwards alone.
    clear();
    backward(0);
    backward(1);
    // As the trainer does: a gradient another rank has is zeros here.
    if (rank == 1) params[1].mutable_grad() = torch::zeros_like(params[1]);
    status = (*group)->SumGradients(params);
    out.plain = snapshot();
  }
  if (!status.ok()) out.error = status.ToString();
}

TEST(DataParallelOverlapTest, HookedBucketsSumAsSumGradientsDoesWithUnusedParameters) {
  const int port = FreePort();
  RankGradients ranks[2];
  std::thread other(RunOverlapRank, 1, port, std::ref(ranks[1]));
  RunOverlapRank(0, port, ranks[0]);
  other.join();
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(ranks[r].error, "") << "rank " << r;
    const RankGradients& g = ranks[r];
    ASSERT_EQ(g.overlapped.size(), 7u);
    ASSERT_EQ(g.plain.size(), 7u);
    // w3 | w2 | w1 | w0 | the two unused ones: all but the last started from the hooks, the
    // last (no gradient arrives for `unused`) in FinishGradientSum.
    EXPECT_EQ(g.buckets, 5) << "rank " << r;
    EXPECT_EQ(g.started_in_backward, 4) << "rank " << r;
    EXPECT_FALSE(g.overlapped[2].defined()) << "a frozen parameter gets no gradient";
    EXPECT_FALSE(g.plain[0].defined());
    ASSERT_TRUE(g.overlapped[0].defined());
    EXPECT_EQ(g.overlapped[0].abs().max().item<float>(), 0.0f) << "unused everywhere: zeros";
    for (size_t i : {1, 3, 4, 5, 6}) {
      ASSERT_TRUE(g.plain[i].defined()) << i;
      ASSERT_TRUE(g.overlapped[i].defined()) << i;
      EXPECT_TRUE(torch::equal(g.overlapped[i], g.plain[i])) << "rank " << r << " parameter " << i;
    }
    // The same sums on both ranks.
    EXPECT_TRUE(torch::equal(g.overlapped[3], ranks[0].overlapped[3]));
  }
}

TEST(DataParallelRendezvousTest, ARankThatNeverArrivesFailsTheOthersWithinTheTimeout) {
  ScratchDir scratch;
  const auto start = std::chrono::steady_clock::now();
  const pid_t pid = SpawnWorker(
      {"output=" + scratch.Path("model"), "batch_size=8", "world_size=2", "timeout=2",
       "losses=" + scratch.Path("losses.txt")},
      {{"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", std::to_string(FreePort())}, {"RANK", "0"},
       {"WORLD_SIZE", "2"}},
      scratch.Path("rank0.log"));
  const int status = WaitFor(pid);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::string log = ReadFile(scratch.Path("rank0.log"));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << log;
  EXPECT_THAT(log, HasSubstr("rank 1 of 2 did not arrive"));
  EXPECT_THAT(log, HasSubstr("within 2 s"));
  EXPECT_LT(seconds, 30);
  EXPECT_FALSE(std::filesystem::exists(scratch.Path("model")));
}

TEST(DataParallelRendezvousTest, ARankWhoseMasterIsAbsentNamesTheAddressItCouldNotReach) {
  ScratchDir scratch;
  const int port = FreePort();
  const int status = WaitFor(SpawnWorker(
      {"output=" + scratch.Path("model"), "batch_size=8", "world_size=2", "timeout=2",
       "losses=" + scratch.Path("losses.txt")},
      {{"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", std::to_string(port)}, {"RANK", "1"},
       {"WORLD_SIZE", "2"}},
      scratch.Path("rank1.log")));
  const std::string log = ReadFile(scratch.Path("rank1.log"));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << log;
  EXPECT_THAT(log, HasSubstr("rank 1: cannot reach the rendezvous store at MASTER_ADDR:MASTER_PORT 127.0.0.1:" +
                             std::to_string(port)));
}

// The variables are read in this process: set and restored around each case.
class ScopedEnv {
 public:
  ScopedEnv(std::map<std::string, std::string> values) {
    for (const char* name : {"MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK"}) {
      if (const char* old = std::getenv(name)) saved_[name] = old;
      ::unsetenv(name);
    }
    for (const auto& [name, value] : values) ::setenv(name.c_str(), value.c_str(), 1);
  }
  ~ScopedEnv() {
    for (const char* name : {"MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK"}) {
      ::unsetenv(name);
    }
    for (const auto& [name, value] : saved_) ::setenv(name.c_str(), value.c_str(), 1);
  }

 private:
  std::map<std::string, std::string> saved_;
};

TEST(DataParallelRendezvousTest, TheEnvironmentErrorNamesTheMissingOrWrongVariable) {
  {
    ScopedEnv env({{"MASTER_ADDR", "10.0.0.1"}, {"RANK", "1"}});
    auto info = RendezvousFromEnvironment(2);
    ASSERT_FALSE(info.ok());
    EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(info.status().message(), HasSubstr("MASTER_PORT is not set"));
  }
  {
    ScopedEnv env({{"MASTER_ADDR", "10.0.0.1"}, {"MASTER_PORT", "29500"}, {"RANK", "2"}});
    auto info = RendezvousFromEnvironment(2);
    ASSERT_FALSE(info.ok());
    EXPECT_THAT(info.status().message(), HasSubstr("RANK: must be an integer in [0, 1]"));
  }
  {
    ScopedEnv env({{"MASTER_ADDR", "10.0.0.1"}, {"MASTER_PORT", "29500"}, {"RANK", "0"},
                   {"WORLD_SIZE", "4"}});
    auto info = RendezvousFromEnvironment(2);
    ASSERT_FALSE(info.ok());
    EXPECT_THAT(info.status().message(), HasSubstr("WORLD_SIZE: is 4 but world_size is configured as 2"));
  }
  {
    ScopedEnv env({{"MASTER_ADDR", "10.0.0.1"}, {"MASTER_PORT", "29500"}, {"RANK", "3"},
                   {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}});
    auto info = RendezvousFromEnvironment(4);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(info->master_addr, "10.0.0.1");
    EXPECT_EQ(info->port, 29500);
    EXPECT_EQ(info->rank, 3);
    EXPECT_EQ(info->world_size, 4);
    EXPECT_EQ(info->local_rank, 1);
  }
}

}  // namespace
}  // namespace verdict
