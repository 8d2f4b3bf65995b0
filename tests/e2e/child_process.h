// ChildProcess: a program the end-to-end tests run next to themselves (verdictd, prometheus,
// promtool), owned like any other resource.
//
// The child's stdout and stderr go to one log file that the test reads (to learn the ports a
// server picked, or to print when something goes wrong). The child never outlives its owner:
// the destructor kills it with SIGKILL and reaps it if it is still running, and the kernel
// kills it as well (PR_SET_PDEATHSIG) if the test process dies without running destructors,
// e.g. when CTest's timeout kills it.
//
// Thread safety: none; one thread owns the object. PR_SET_PDEATHSIG follows the thread that
// called Start(): the child is killed when that thread exits, so start children from the
// test's main thread.
//
// Example:
//   ChildProcess::Options options;
//   options.log_path = "/tmp/scratch/prometheus.log";
//   ASSIGN_OR_RETURN(auto server,
//                    ChildProcess::Start({"/usr/bin/prometheus", "--config.file=p.yml"}, options));
//   ...
//   absl::StatusOr<int> exit_code = server->Stop(SIGTERM, absl::Seconds(10));
#ifndef VERDICT_TESTS_E2E_CHILD_PROCESS_H_
#define VERDICT_TESTS_E2E_CHILD_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace verdict::testing {

class ChildProcess {
 public:
  struct Options {
    // Receives the child's stdout and stderr (created or truncated).
    std::string log_path;
    // The child's stdin; empty means /dev/null.
    std::string stdin_path;
  };

  // Runs argv[0] (a path; PATH is not searched) with `argv`. Fails if the log or stdin file
  // cannot be opened or fork fails; a program that cannot be executed exits 127 with the
  // reason in its log.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(const std::vector<std::string>& argv,
                                                             const Options& options);

  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  // SIGKILLs and reaps the child if it is still running.
  ~ChildProcess();

  pid_t pid() const { return pid_; }

  // Whether the child has not exited yet (reaps it if it has).
  bool Running();

  // Waits up to `timeout` for the child to exit. Returns its exit code, or 128 + N if signal N
  // killed it; DEADLINE_EXCEEDED if it is still running (it is left running).
  absl::StatusOr<int> Wait(absl::Duration timeout);

  // Sends `signal` and waits as Wait() does. On timeout the child is SIGKILLed and reaped, and
  // the result is DEADLINE_EXCEEDED. Returns the known exit code if the child had exited.
  absl::StatusOr<int> Stop(int signal, absl::Duration timeout);

  // Everything the child has written to its log so far.
  std::string Log() const;

  // Polls the log until a line contains `text` and returns that line; FAILED_PRECONDITION if
  // the child exits first, DEADLINE_EXCEEDED after `timeout` (both quote the log's tail).
  absl::StatusOr<std::string> WaitForLogLine(const std::string& text, absl::Duration timeout);

 private:
  ChildProcess(pid_t pid, std::string log_path) : pid_(pid), log_path_(std::move(log_path)) {}

  // Reaps the child without blocking; true if it has exited.
  bool Reap();
  // The last few lines of the log, for error messages.
  std::string LogTail() const;

  const pid_t pid_;
  const std::string log_path_;
  std::optional<int> exit_code_;  // set once reaped
};

}  // namespace verdict::testing

#endif  // VERDICT_TESTS_E2E_CHILD_PROCESS_H_
