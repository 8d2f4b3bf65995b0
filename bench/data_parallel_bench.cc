// data_parallel_bench: training throughput of the real Trainer with 1 process vs N
// data-parallel processes (c10d Gloo over loopback) on this machine, at the same global batch,
// and the share of a step that goes to summing gradients across ranks, with the sum overlapped
// with the backward pass (overlap_allreduce, the default) and after it.
//
// Each run starts its ranks as processes of this program (torchrun's variables set, the cores
// split evenly: --cores / N LibTorch threads per rank), trains --max_steps steps of
// --global_batch pairs on real hh-rlhf pairs with a preset encoder, and rank 0 reports from its
// on_step metrics, over the steps after the first (one-off allocation costs):
//   pairs/s      pairs of all ranks per wall second;
//   exposed sync the time rank 0 spends in the step's cross-rank sum after backward (gradients
//                in buckets, and the step's loss), waiting for the slower rank included: the
//                all-reduce time on the step's critical path. With overlap, the buckets that
//                started during backward cost only what is left of them when it ends.
// Runs alternate 1, N without overlap, N with overlap, 1, ...; medians per arm are printed last.
//
//   data_parallel_bench                          # encoder-tiny, 1 vs 2 processes, 3 reps
//   data_parallel_bench --preset=encoder-small --max_steps=8 --reps=2
//   data_parallel_bench --single_threads=1      # the 1-process arm on one thread
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/bench_util.h"
#include "core/train/trainer.h"

ABSL_FLAG(std::string, data, "", "Training data; default: tests/data/hh-rlhf/helpful-base/test.jsonl.gz.");
ABSL_FLAG(std::string, tokenizer, "", "Tokenizer; default: tests/data's sentencepiece-test model.");
ABSL_FLAG(std::string, preset, "encoder-tiny", "From-scratch architecture to train.");
ABSL_FLAG(int64_t, global_batch, 16, "Pairs per optimizer step over all ranks.");
ABSL_FLAG(int64_t, max_length, 256, "Longest sequence in tokens (longer pairs are truncated).");
ABSL_FLAG(int64_t, max_steps, 12, "Optimizer steps per run.");
ABSL_FLAG(int, processes, 2, "Ranks of the data-parallel arm (compared with 1 process).");
ABSL_FLAG(int, cores, 2, "Cores split among a run's ranks (LibTorch threads per rank).");
ABSL_FLAG(int, reps, 3, "Runs per arm.");
ABSL_FLAG(int, single_threads, 0,
          "Threads of the 1-process arm (0: --cores). 1 gives it the per-rank thread count, which "
          "on a loaded machine avoids OpenBLAS's spinning second thread.");
// Internal: set on the rank processes this program starts.
ABSL_FLAG(std::string, rank_result, "", "(internal) run one rank and write its numbers here.");
ABSL_FLAG(int, rank_world, 1, "(internal) the run's world size.");
ABSL_FLAG(int, rank_threads, 1, "(internal) LibTorch threads of each rank.");
ABSL_FLAG(bool, rank_overlap, true, "(internal) overlap_allreduce of the run.");

extern char** environ;

namespace {

struct RunNumbers {
  int64_t pairs = 0;
  double seconds = 0;
  double sync_seconds = 0;
};

int RunRank() {
  const int world = absl::GetFlag(FLAGS_rank_world);
  torch::set_num_threads(absl::GetFlag(FLAGS_rank_threads));
  const std::string data_dir = verdict::bench::DefaultDataDir();
  verdict::TrainingConfig config;
  config.train_path = absl::GetFlag(FLAGS_data).empty()
                          ? data_dir + "/hh-rlhf/helpful-base/test.jsonl.gz"
                          : absl::GetFlag(FLAGS_data);
  config.tokenizer_path = absl::GetFlag(FLAGS_tokenizer).empty()
                              ? data_dir + "/tokenizers/sentencepiece-test/test_model.model"
                              : absl::GetFlag(FLAGS_tokenizer);
  config.preset = absl::GetFlag(FLAGS_preset);
  config.max_length = absl::GetFlag(FLAGS_max_length);
  config.max_steps = absl::GetFlag(FLAGS_max_steps);
  config.batch_size = absl::GetFlag(FLAGS_global_batch) / world;
  config.world_size = world;
  config.overlap_allreduce = absl::GetFlag(FLAGS_rank_overlap);
  config.max_eval_pairs = 16;
  config.logging_steps = 1;
  config.save_steps = 0;
  const std::string scratch = std::filesystem::path(absl::GetFlag(FLAGS_rank_result)).parent_path();
  config.output_dir = scratch + "/model";
  config.run_dir = scratch + "/run";
  RunNumbers numbers;
  verdict::TrainerCallbacks callbacks;
  callbacks.on_step = [&](const verdict::TrainStepMetrics& m) {
    if (m.step == 1) return;
    numbers.pairs += m.pairs;
    numbers.seconds += m.window_seconds;
    numbers.sync_seconds += m.sync_seconds;
  };
  auto trainer = verdict::Trainer::Create(config, callbacks);
  absl::Status status = trainer.status();
  if (status.ok()) status = (*trainer)->Run().status();
  if (!status.ok()) {
    std::cerr << "rank: " << status << "\n";
    return 1;
  }
  if (numbers.pairs > 0) {
    std::ofstream(absl::GetFlag(FLAGS_rank_result))
        << numbers.pairs << " " << numbers.seconds << " " << numbers.sync_seconds << "\n";
  }
  return 0;
}

// One run of `world` ranks; rank 0's numbers.
absl::StatusOr<RunNumbers> RunGroup(int world, bool overlap, int port) {
  char dir_template[] = "/tmp/verdict-dp-bench-XXXXXX";
  const std::string dir = mkdtemp(dir_template);
  const std::string result = dir + "/rank0.txt";
  const int threads = world == 1 && absl::GetFlag(FLAGS_single_threads) > 0
                          ? absl::GetFlag(FLAGS_single_threads)
                          : std::max(1, absl::GetFlag(FLAGS_cores) / world);
  std::vector<pid_t> pids;
  for (int rank = 0; rank < world; ++rank) {
    std::vector<std::string> args = {
        "/proc/self/exe",
        absl::StrCat("--rank_result=", rank == 0 ? result : dir + "/other.txt"),
        absl::StrCat("--rank_world=", world), absl::StrCat("--rank_threads=", threads),
        absl::StrCat("--rank_overlap=", overlap)};
    args.push_back(absl::StrCat("--data=", absl::GetFlag(FLAGS_data)));
    args.push_back(absl::StrCat("--tokenizer=", absl::GetFlag(FLAGS_tokenizer)));
    args.push_back(absl::StrCat("--preset=", absl::GetFlag(FLAGS_preset)));
    args.push_back(absl::StrCat("--global_batch=", absl::GetFlag(FLAGS_global_batch)));
    args.push_back(absl::StrCat("--max_length=", absl::GetFlag(FLAGS_max_length)));
    args.push_back(absl::StrCat("--max_steps=", absl::GetFlag(FLAGS_max_steps)));
    args.push_back(absl::StrCat("--cores=", absl::GetFlag(FLAGS_cores)));
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; ++e) env.push_back(*e);
    env.push_back("MASTER_ADDR=127.0.0.1");
    env.push_back(absl::StrCat("MASTER_PORT=", port));
    env.push_back(absl::StrCat("RANK=", rank));
    env.push_back(absl::StrCat("WORLD_SIZE=", world));
    // OpenBLAS (pthreads) reads OMP_NUM_THREADS too.
    env.push_back(absl::StrCat("OMP_NUM_THREADS=", threads));
    std::vector<char*> argv, envp;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    pid_t pid = -1;
    if (posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv.data(), envp.data()) != 0) {
      return absl::InternalError("cannot start a rank");
    }
    pids.push_back(pid);
  }
  bool ok = true;
  for (pid_t pid : pids) {
    int status = 0;
    waitpid(pid, &status, 0);
    ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  RunNumbers numbers;
  std::ifstream in(result);
  in >> numbers.pairs >> numbers.seconds >> numbers.sync_seconds;
  std::filesystem::remove_all(dir);
  if (!ok || numbers.seconds <= 0) return absl::InternalError("a rank failed (see its stderr)");
  return numbers;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (!absl::GetFlag(FLAGS_rank_result).empty()) return RunRank();
  std::cout << verdict::bench::DescribeMachine() << "\n";
  const int n = absl::GetFlag(FLAGS_processes);
  std::cout << absl::StrFormat(
      "%s, global batch %d pairs, max_length %d, %d steps (first excluded), %d cores split "
      "among the ranks\n",
      absl::GetFlag(FLAGS_preset), absl::GetFlag(FLAGS_global_batch),
      absl::GetFlag(FLAGS_max_length), absl::GetFlag(FLAGS_max_steps), absl::GetFlag(FLAGS_cores));
  // Arms: 1 process; N processes, gradients summed after backward; N, overlapped with it.
  const char* names[3] = {"1 process", "sum after backward", "sum during backward"};
  std::vector<double> rate[3], share[3], sync_ms[3];
  const int steps_timed = static_cast<int>(absl::GetFlag(FLAGS_max_steps)) - 1;
  int port = 29700 + static_cast<int>(getpid() % 200);
  for (int rep = 0; rep < absl::GetFlag(FLAGS_reps); ++rep) {
    for (int arm = 0; arm < 3; ++arm) {
      const int world = arm == 0 ? 1 : n;
      absl::StatusOr<RunNumbers> run = RunGroup(world, arm == 2, port++);
      if (!run.ok()) {
        std::cerr << run.status() << "\n";
        return 1;
      }
      rate[arm].push_back(run->pairs / run->seconds);
      share[arm].push_back(run->sync_seconds / run->seconds);
      sync_ms[arm].push_back(1000 * run->sync_seconds / steps_timed);
      std::cout << absl::StrFormat("  %-24s %d x %d thread(s): %.1f pairs/s, %.1f ms/step, exposed "
                                   "sync %.1f ms/step = %.1f%% of the step (load %.2f)\n",
                                   names[arm], world,
                                   world == 1 && absl::GetFlag(FLAGS_single_threads) > 0
                                       ? absl::GetFlag(FLAGS_single_threads)
                                       : std::max(1, absl::GetFlag(FLAGS_cores) / world),
                                   rate[arm].back(), 1000 * run->seconds / steps_timed,
                                   sync_ms[arm].back(), 100 * share[arm].back(),
                                   verdict::bench::LoadAverage());
    }
  }
  const double one = verdict::bench::Median(rate[0]);
  std::cout << absl::StrFormat("median: 1 process %.1f pairs/s\n", one);
  for (int arm = 1; arm < 3; ++arm) {
    const double many = verdict::bench::Median(rate[arm]);
    std::cout << absl::StrFormat(
        "median: %d processes, %s: %.1f pairs/s (x%.2f), exposed sync %.1f ms/step, %.1f%% of "
        "the step\n",
        n, arm == 1 ? "sum after backward" : "sum during backward", many, many / one,
        verdict::bench::Median(sync_ms[arm]), 100 * verdict::bench::Median(share[arm]));
  }
  return 0;
}
