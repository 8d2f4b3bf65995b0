// Test helpers that run real processes: a command with its exit code and output
// (RunCommand), and a verdictd server on a free loopback port with its own state directory
// (ServerProcess).
//
// Thread-compatible: one test thread drives them.
#ifndef VERDICT_TESTS_CLIENT_SUBPROCESS_H_
#define VERDICT_TESTS_CLIENT_SUBPROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

namespace verdict::testing {

struct CommandResult {
  int exit_code = -1;  // 128 + signal number if it was killed by a signal
  std::string out;
  std::string err;
};

// Runs argv[0] (a path) with the arguments, feeding `input` on stdin, with extra environment
// variables ("NAME=value") added to the test's own. Waits at most `timeout_seconds`, then
// kills it (exit_code 128 + SIGKILL).
CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& input = "",
                         const std::vector<std::string>& extra_env = {},
                         double timeout_seconds = 120);

// A process started in the background with stdout and stderr appended to a file.
class BackgroundProcess {
 public:
  BackgroundProcess(const std::vector<std::string>& argv, const std::string& log_path,
                    const std::vector<std::string>& extra_env = {});
  ~BackgroundProcess();  // SIGKILL if still running
  BackgroundProcess(const BackgroundProcess&) = delete;
  BackgroundProcess& operator=(const BackgroundProcess&) = delete;

  pid_t pid() const { return pid_; }
  // Sends `signal` and waits up to `timeout_seconds` for the exit; returns the exit code
  // (128 + signal if killed by one), or -1 if it is still running.
  int Stop(int signal, double timeout_seconds);
  // Waits up to `timeout_seconds` for the process to end by itself; exit code or -1.
  int Wait(double timeout_seconds);
  bool running() const { return pid_ > 0; }

 private:
  pid_t pid_ = -1;
};

// verdictd on 127.0.0.1 with --state_dir, --data_dir and --model_dir under `root`.
class ServerProcess {
 public:
  // Starts verdictd (VERDICTD_PATH) and waits until it listens. `port` 0 lets the server pick
  // one. `extra_flags` are appended. Fails the current test (ADD_FAILURE) if it does not
  // start within 60 s; address() is then empty.
  ServerProcess(const std::string& root, int port = 0,
                const std::vector<std::string>& extra_flags = {});
  ~ServerProcess();  // SIGTERM, then SIGKILL

  const std::string& address() const { return address_; }  // "127.0.0.1:PORT"
  int port() const { return port_; }
  std::string data_dir() const { return root_ + "/data"; }
  std::string model_dir() const { return root_ + "/models"; }
  std::string state_dir() const { return root_ + "/state"; }
  std::string log() const;  // everything the server printed so far
  // SIGTERM and wait for a clean exit; returns its exit code.
  int Stop();

 private:
  std::string root_;
  std::string log_path_;
  std::string address_;
  int port_ = 0;
  std::unique_ptr<BackgroundProcess> process_;
};

// A TCP port on 127.0.0.1 that nothing listens on right now.
int FreeLoopbackPort();

}  // namespace verdict::testing

#endif  // VERDICT_TESTS_CLIENT_SUBPROCESS_H_
