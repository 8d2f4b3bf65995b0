#include "server/rank_group.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "core/train/progress_stream.h"
#include "core/util/status_macros.h"

extern char** environ;

namespace verdict::server {
namespace {

namespace fs = std::filesystem;

// A port nothing listens on now, for rank 0's c10d store (the kernel's pick for an ephemeral
// bind on loopback; another process could take it before rank 0 does, which fails the
// rendezvous of this attempt with a message naming the address).
absl::StatusOr<int> FreeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(addr);
  const bool bound = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
                     ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) == 0;
  const int error = errno;
  ::close(fd);
  if (!bound) return absl::InternalError(absl::StrCat("no free loopback port: ", std::strerror(error)));
  return ntohs(addr.sin_port);
}

struct Rank {
  pid_t pid = -1;
  bool running = false;
  int status = 0;             // waitpid's, once it has ended
  bool killed_by_us = false;  // SIGKILLed by the group (after another rank failed, or a cancel)
  std::string log;            // its stderr
};

bool EndedWell(const Rank& rank) { return WIFEXITED(rank.status) && WEXITSTATUS(rank.status) == 0; }

// This process's environment without the variables a rank gets from the group (and without
// test crash points, which are verdictd's), plus `extra`, which replaces any of the same name.
std::vector<std::string> RankEnvironment(const std::vector<std::string>& extra) {
  auto set_by_group = [&extra](absl::string_view name) {
    if (name == "MASTER_ADDR" || name == "MASTER_PORT" || name == "RANK" ||
        name == "WORLD_SIZE" || name == "LOCAL_RANK" || name == "VERDICT_TEST_KILL_AT") {
      return true;
    }
    return std::any_of(extra.begin(), extra.end(), [name](const std::string& entry) {
      return absl::StartsWith(entry, absl::StrCat(name, "="));
    });
  };
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const absl::string_view entry = *e;
    if (!set_by_group(entry.substr(0, entry.find('=')))) env.emplace_back(entry);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

// Starts `argv` with `env`, stdout on `stdout_fd` (the log when -1) and stderr on the log.
// Between fork and exec only async-signal-safe calls: the server has many threads.
absl::StatusOr<pid_t> SpawnRank(std::vector<std::string> argv, std::vector<std::string> env,
                                int stdout_fd, const std::string& log_path) {
  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return absl::InternalError(absl::StrCat("cannot open ", log_path, ": ", std::strerror(errno)));
  }
  std::vector<char*> argv_ptrs, env_ptrs;
  for (std::string& s : argv) argv_ptrs.push_back(s.data());
  argv_ptrs.push_back(nullptr);
  for (std::string& s : env) env_ptrs.push_back(s.data());
  env_ptrs.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Dies with the thread that started it (verdictd killed: no rank left behind).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    // Its own process group: a terminal's Ctrl-C reaches verdictd, which decides for the ranks.
    ::setpgid(0, 0);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd < 0 || ::dup2(null_fd, 0) < 0 || ::dup2(stdout_fd >= 0 ? stdout_fd : log_fd, 1) < 0 ||
        ::dup2(log_fd, 2) < 0) {
      ::_exit(127);
    }
    ::close_range(3, ~0U, 0);  // none of the server's sockets, files or locks
    // The server's mask and ignored signals would survive exec: SIGTERM must reach the trainer.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction default_action = {};
    default_action.sa_handler = SIG_DFL;
    ::sigaction(SIGPIPE, &default_action, nullptr);
    ::sigaction(SIGTERM, &default_action, nullptr);
    ::sigaction(SIGINT, &default_action, nullptr);
    ::execve(argv_ptrs[0], argv_ptrs.data(), env_ptrs.data());
    ::_exit(127);
  }
  const int fork_error = errno;
  ::close(log_fd);
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(fork_error)));
  return pid;
}

// The last non-empty line of a rank's log, without verdict-train's prefix.
std::string LastLogLine(const std::string& path) {
  std::ifstream in(path);
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty()) last = line;
  }
  return std::string(absl::StripPrefix(last, "verdict-train: "));
}

std::string DescribeEnd(int status) {
  if (WIFSIGNALED(status)) {
    return absl::StrCat("was killed by signal ", WTERMSIG(status), " (", strsignal(WTERMSIG(status)),
                        ")");
  }
  return absl::StrCat("exited with code ", WEXITSTATUS(status));
}

class Supervisor {
 public:
  Supervisor(std::vector<Rank> ranks, int progress_fd, const TrainerCallbacks& callbacks,
             const Cancellable& cancel, absl::Duration grace)
      : ranks_(std::move(ranks)),
        progress_fd_(progress_fd),
        callbacks_(callbacks),
        cancel_(cancel),
        grace_(grace) {}

  ~Supervisor() {
    // Nothing outlives the group, whatever happened.
    KillRunning();
    for (Rank& rank : ranks_) {
      if (rank.running) ::waitpid(rank.pid, &rank.status, 0);
    }
    if (progress_fd_ >= 0) ::close(progress_fd_);
  }

  absl::StatusOr<TrainingResult> Run() {
    absl::Time kill_at = absl::InfiniteFuture();
    bool terminated = false;
    while (true) {
      ReadProgress();
      Reap();
      const bool any_running = std::any_of(ranks_.begin(), ranks_.end(),
                                           [](const Rank& r) { return r.running; });
      if (!any_running && progress_fd_ < 0) break;
      if (!any_running) continue;  // the rest of rank 0's output, up to end of file
      // One rank failed: no peer waits for it. (After a cancel the ranks end with CANCELLED one
      // by one, rank 0 last, after its checkpoint: they get the grace period instead.)
      if (first_failed_ >= 0 && !terminated) KillRunning();
      if (cancel_.cancelled() && !terminated) {
        terminated = true;
        for (Rank& rank : ranks_) {
          if (rank.running) ::kill(rank.pid, SIGTERM);
        }
        kill_at = absl::Now() + grace_;
      }
      if (absl::Now() > kill_at) KillRunning();
    }
    return Outcome();
  }

 private:
  // Reads what rank 0 has written (waiting up to 100 ms for it) and replays whole lines.
  void ReadProgress() {
    if (progress_fd_ < 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      return;
    }
    pollfd p{progress_fd_, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) return;
    char buffer[1 << 16];
    const ssize_t n = ::read(progress_fd_, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) return;
    if (n <= 0) {
      ::close(progress_fd_);
      progress_fd_ = -1;
      return;
    }
    pending_.append(buffer, static_cast<size_t>(n));
    size_t newline;
    while ((newline = pending_.find('\n')) != std::string::npos) {
      const std::string line = pending_.substr(0, newline);
      pending_.erase(0, newline + 1);
      // A line that is not progress (a library writing to stdout) is not the trainer's.
      ReadProgressLine(line, callbacks_, end_).IgnoreError();
    }
  }

  void Reap() {
    for (size_t i = 0; i < ranks_.size(); ++i) {
      Rank& rank = ranks_[i];
      if (!rank.running || ::waitpid(rank.pid, &rank.status, WNOHANG) != rank.pid) continue;
      rank.running = false;
      if (first_failed_ < 0 && !EndedWell(rank) && !rank.killed_by_us) {
        first_failed_ = static_cast<int>(i);
      }
    }
  }

  void KillRunning() {
    Reap();  // a rank that already died is not one we killed
    for (Rank& rank : ranks_) {
      if (!rank.running || rank.killed_by_us) continue;
      ::kill(rank.pid, SIGKILL);
      rank.killed_by_us = true;
    }
  }

  absl::StatusOr<TrainingResult> Outcome() {
    const int world = static_cast<int>(ranks_.size());
    if (std::all_of(ranks_.begin(), ranks_.end(), EndedWell)) {
      if (end_.result.has_value()) return *std::move(end_.result);
      return absl::InternalError("rank 0 ended without reporting a result");
    }
    // Our SIGTERM may have ended a rank before its trainer could take it.
    if (cancel_.cancelled()) {
      if (absl::IsCancelled(end_.error)) return end_.error;
      return absl::CancelledError("cancelled; the ranks were stopped");
    }
    // A rank killed from outside (OOM killer, an operator): the run itself was sound and may
    // resume from its checkpoint.
    for (int i = 0; i < world; ++i) {
      const Rank& rank = ranks_[i];
      if (!rank.killed_by_us && WIFSIGNALED(rank.status)) {
        return absl::UnavailableError(absl::StrCat("rank ", i, " of ", world, " (pid ", rank.pid,
                                                   ") ", DescribeEnd(rank.status),
                                                   "; the other ranks were stopped"));
      }
    }
    if (!end_.error.ok() && first_failed_ <= 0) return end_.error;
    const int failed = std::max(first_failed_, 0);
    const std::string last = LastLogLine(ranks_[failed].log);
    return absl::InternalError(absl::StrCat("rank ", failed, " of ", world, " ",
                                            DescribeEnd(ranks_[failed].status),
                                            last.empty() ? "" : ": ", last));
  }

  std::vector<Rank> ranks_;
  int progress_fd_;
  const TrainerCallbacks& callbacks_;
  const Cancellable& cancel_;
  const absl::Duration grace_;
  std::string pending_;
  ProgressEnd end_;
  int first_failed_ = -1;  // the first rank seen ending badly on its own
};

}  // namespace

std::string TrainWorkerBesideSelf() {
  std::error_code error;
  const fs::path self = fs::read_symlink("/proc/self/exe", error);
  if (error) return "verdict-train";
  return (self.parent_path() / "verdict-train").string();
}

absl::StatusOr<TrainingResult> RunRankGroup(const TrainingConfig& config,
                                            const RankGroupOptions& options,
                                            const TrainerCallbacks& callbacks,
                                            const Cancellable& cancel) {
  if (::access(options.binary.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "world_size ", config.world_size, " runs verdict-train, but ", options.binary,
        " is not an executable (install it beside verdictd, or set --train_worker_binary)"));
  }
  const fs::path ranks_dir = fs::path(config.run_dir) / "ranks";
  std::error_code error;
  fs::create_directories(ranks_dir, error);
  if (error) {
    return absl::InternalError(absl::StrCat("cannot create ", ranks_dir.string(), ": ", error.message()));
  }
  const std::string config_path = (ranks_dir / "config.json").string();
  {
    std::ofstream out(config_path, std::ios::trunc);
    out << TrainingConfigToJson(config);
    if (!out.flush()) return absl::InternalError(absl::StrCat("cannot write ", config_path));
  }
  ASSIGN_OR_RETURN(const int port, FreeLoopbackPort());

  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  // The cores are shared: each rank gets its share of LibTorch's threads (unless the operator
  // set OMP_NUM_THREADS for verdictd, which the ranks keep).
  const int cores = std::max(1u, std::thread::hardware_concurrency());
  const int threads = std::max<int>(1, cores / static_cast<int>(config.world_size));
  const bool keep_threads = std::getenv("OMP_NUM_THREADS") != nullptr;

  std::vector<Rank> ranks(static_cast<size_t>(config.world_size));
  absl::Status spawned = absl::OkStatus();
  for (int i = 0; i < config.world_size; ++i) {
    Rank& rank = ranks[i];
    rank.log = (ranks_dir / absl::StrCat("rank-", i, ".log")).string();
    std::vector<std::string> extra = {
        "MASTER_ADDR=127.0.0.1",
        absl::StrCat("MASTER_PORT=", port),
        absl::StrCat("RANK=", i),
        absl::StrCat("LOCAL_RANK=", i),
        absl::StrCat("WORLD_SIZE=", config.world_size),
    };
    if (!keep_threads) extra.push_back(absl::StrCat("OMP_NUM_THREADS=", threads));
    std::vector<std::string> argv = {options.binary,
                                     "--config=" + config_path,
                                     "--output=" + config.output_dir,
                                     "--run_dir=" + config.run_dir,
                                     absl::StrCat("--world_size=", config.world_size),
                                     "--progress=json"};
    absl::StatusOr<pid_t> pid =
        SpawnRank(std::move(argv), RankEnvironment(extra), i == 0 ? pipe_fds[1] : -1, rank.log);
    if (!pid.ok()) {
      spawned = pid.status();
      break;
    }
    rank.pid = *pid;
    rank.running = true;
  }
  ::close(pipe_fds[1]);
  Supervisor group(std::move(ranks), pipe_fds[0], callbacks, cancel, options.grace);
  if (!spawned.ok()) return spawned;  // the group's destructor stops the ranks started
  return group.Run();
}

}  // namespace verdict::server
