#include "tests/client/subprocess.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <thread>

#include "gtest/gtest.h"

extern char** environ;

namespace verdict::testing {
namespace {

using Clock = std::chrono::steady_clock;

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  for (std::string& s : strings) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  return pointers;
}

std::vector<std::string> Environment(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
  for (const std::string& add : extra) {
    const std::string name = add.substr(0, add.find('=') + 1);
    env.erase(std::remove_if(env.begin(), env.end(),
                             [&](const std::string& s) { return s.rfind(name, 0) == 0; }),
              env.end());
    env.push_back(add);
  }
  return env;
}

int DecodeWaitStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// Waits for `pid` until `deadline`; the exit code, or -1 if it is still running.
int WaitUntil(pid_t pid, Clock::time_point deadline) {
  while (true) {
    int status = 0;
    const pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) return DecodeWaitStatus(status);
    if (done < 0) return -1;
    if (Clock::now() >= deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& input,
                         const std::vector<std::string>& extra_env, double timeout_seconds) {
  CommandResult result;
  int in_pipe[2], out_pipe[2], err_pipe[2];
  if (pipe(in_pipe) != 0 || pipe(out_pipe) != 0 || pipe(err_pipe) != 0) {
    ADD_FAILURE() << "pipe: " << std::strerror(errno);
    return result;
  }
  std::vector<std::string> args = argv;
  std::vector<std::string> env = Environment(extra_env);
  std::vector<char*> c_args = CStrings(args);
  std::vector<char*> c_env = CStrings(env);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(in_pipe[0], STDIN_FILENO);
    dup2(out_pipe[1], STDOUT_FILENO);
    dup2(err_pipe[1], STDERR_FILENO);
    for (int fd : {in_pipe[0], in_pipe[1], out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) {
      close(fd);
    }
    execve(c_args[0], c_args.data(), c_env.data());
    _exit(127);
  }
  close(in_pipe[0]);
  close(out_pipe[1]);
  close(err_pipe[1]);
  // A child that exits before reading all its input must not kill the test with SIGPIPE.
  signal(SIGPIPE, SIG_IGN);
  fcntl(in_pipe[1], F_SETFL, O_NONBLOCK);
  size_t written = 0;
  if (input.empty()) close(in_pipe[1]);
  bool in_open = !input.empty(), out_open = true, err_open = true;
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(timeout_seconds));
  char buffer[65536];
  while ((out_open || err_open) && Clock::now() < deadline) {
    std::vector<pollfd> fds;
    if (out_open) fds.push_back({out_pipe[0], POLLIN, 0});
    if (err_open) fds.push_back({err_pipe[0], POLLIN, 0});
    if (in_open) fds.push_back({in_pipe[1], POLLOUT, 0});
    if (poll(fds.data(), fds.size(), 100) < 0 && errno != EINTR) break;
    for (const pollfd& p : fds) {
      if (p.revents == 0) continue;
      if (p.fd == in_pipe[1]) {
        const ssize_t n = write(in_pipe[1], input.data() + written, input.size() - written);
        if (n > 0) written += static_cast<size_t>(n);
        if (n < 0 && errno != EAGAIN) written = input.size();
        if (written == input.size()) {
          close(in_pipe[1]);
          in_open = false;
        }
        continue;
      }
      const ssize_t n = read(p.fd, buffer, sizeof(buffer));
      if (n > 0) {
        (p.fd == out_pipe[0] ? result.out : result.err).append(buffer, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        (p.fd == out_pipe[0] ? out_open : err_open) = false;
      }
    }
  }
  if (in_open) close(in_pipe[1]);
  close(out_pipe[0]);
  close(err_pipe[0]);
  result.exit_code = WaitUntil(pid, deadline);
  if (result.exit_code == -1) {
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    result.exit_code = 128 + SIGKILL;
    ADD_FAILURE() << argv[0] << " did not finish within " << timeout_seconds << " s";
  }
  return result;
}

BackgroundProcess::BackgroundProcess(const std::vector<std::string>& argv,
                                     const std::string& log_path,
                                     const std::vector<std::string>& extra_env) {
  std::vector<std::string> args = argv;
  std::vector<std::string> env = Environment(extra_env);
  std::vector<char*> c_args = CStrings(args);
  std::vector<char*> c_env = CStrings(env);
  const int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  pid_ = fork();
  if (pid_ == 0) {
    const int null_in = open("/dev/null", O_RDONLY);
    dup2(null_in, STDIN_FILENO);
    dup2(log, STDOUT_FILENO);
    dup2(log, STDERR_FILENO);
    execve(c_args[0], c_args.data(), c_env.data());
    _exit(127);
  }
  close(log);
}

BackgroundProcess::~BackgroundProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
}

int BackgroundProcess::Stop(int signal, double timeout_seconds) {
  if (pid_ <= 0) return -1;
  kill(pid_, signal);
  return Wait(timeout_seconds);
}

int BackgroundProcess::Wait(double timeout_seconds) {
  if (pid_ <= 0) return -1;
  const int code =
      WaitUntil(pid_, Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                         std::chrono::duration<double>(timeout_seconds)));
  if (code != -1) pid_ = -1;
  return code;
}

ServerProcess::ServerProcess(const std::string& root, int port,
                             const std::vector<std::string>& extra_flags)
    : root_(root), log_path_(root + "/verdictd.log") {
  std::filesystem::create_directories(data_dir());
  std::filesystem::create_directories(model_dir());
  std::vector<std::string> argv = {VERDICTD_PATH,
                                   "--host=127.0.0.1",
                                   "--port=" + std::to_string(port),
                                   "--metrics_port=-1",
                                   "--state_dir=" + state_dir(),
                                   "--data_dir=" + data_dir(),
                                   "--model_dir=" + model_dir(),
                                   "--drain_grace_seconds=5"};
  argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
  // A restarted server appends to the log of the one before it: read only what this one writes.
  const size_t log_start = log().size();
  process_ = std::make_unique<BackgroundProcess>(argv, log_path_);
  const std::regex listening("listening on 127\\.0\\.0\\.1:([0-9]+)");
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  int exit_code = -1;
  while (Clock::now() < deadline) {
    std::smatch match;
    const std::string text = log().substr(log_start);
    if (std::regex_search(text, match, listening)) {
      port_ = std::stoi(match[1]);
      address_ = "127.0.0.1:" + std::to_string(port_);
      return;
    }
    if ((exit_code = process_->Wait(0)) != -1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ADD_FAILURE() << "verdictd did not start (exit code " << exit_code << "); its output:\n"
                << log().substr(log_start);
}

ServerProcess::~ServerProcess() {
  if (process_ && process_->running()) process_->Stop(SIGTERM, 15);
}

std::string ServerProcess::log() const {
  std::ifstream in(log_path_);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

int ServerProcess::Stop() { return process_->Stop(SIGTERM, 30); }

int FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  const int port = ntohs(address.sin_port);
  close(fd);
  return port;
}

}  // namespace verdict::testing
