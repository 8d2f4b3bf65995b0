#include "tests/e2e/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace verdict::testing {
namespace {

constexpr absl::Duration kPollInterval = absl::Milliseconds(20);

int ExitCodeOf(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return -1;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(
    const std::vector<std::string>& argv, const Options& options) {
  if (argv.empty()) return absl::InvalidArgumentError("ChildProcess: empty argv");
  // Everything the child needs is prepared before fork: after it, in a process with gRPC's
  // threads, only async-signal-safe calls are allowed.
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  const std::string stdin_path = options.stdin_path.empty() ? "/dev/null" : options.stdin_path;
  const int in = ::open(stdin_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) {
    return absl::NotFoundError(
        absl::StrCat("cannot open ", stdin_path, ": ", std::strerror(errno)));
  }
  const int out = ::open(options.log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0) {
    ::close(in);
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create ", options.log_path, ": ", std::strerror(errno)));
  }
  const char exec_failed[] = "ChildProcess: exec failed\n";
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Die with the thread that started us, even if it never gets to run a destructor.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    // gRPC and gtest may have blocked or ignored signals the child must see.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    ::signal(SIGINT, SIG_DFL);
    ::dup2(in, STDIN_FILENO);
    ::dup2(out, STDOUT_FILENO);
    ::dup2(out, STDERR_FILENO);
    ::execv(args[0], args.data());
    (void)!::write(STDERR_FILENO, exec_failed, sizeof(exec_failed) - 1);
    ::_exit(127);
  }
  const int fork_errno = errno;
  ::close(in);
  ::close(out);
  if (pid < 0)
    return absl::ResourceExhaustedError(absl::StrCat("fork: ", std::strerror(fork_errno)));
  return std::unique_ptr<ChildProcess>(new ChildProcess(pid, options.log_path));
}

ChildProcess::~ChildProcess() {
  if (Reap()) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
}

bool ChildProcess::Reap() {
  if (exit_code_.has_value()) return true;
  int status = 0;
  const pid_t reaped = ::waitpid(pid_, &status, WNOHANG);
  if (reaped == pid_) {
    exit_code_ = ExitCodeOf(status);
    return true;
  }
  if (reaped < 0 && errno == ECHILD) {  // reaped by someone else: nothing more to learn
    exit_code_ = -1;
    return true;
  }
  return false;
}

bool ChildProcess::Running() { return !Reap(); }

absl::StatusOr<int> ChildProcess::Wait(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!Reap()) {
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("pid ", pid_, " still running after ", absl::FormatDuration(timeout)));
    }
    absl::SleepFor(kPollInterval);
  }
  return *exit_code_;
}

absl::StatusOr<int> ChildProcess::Stop(int signal, absl::Duration timeout) {
  if (Reap()) return *exit_code_;
  ::kill(pid_, signal);
  absl::StatusOr<int> code = Wait(timeout);
  if (!code.ok()) {
    ::kill(pid_, SIGKILL);
    (void)Wait(absl::InfiniteDuration());
    return absl::DeadlineExceededError(absl::StrCat("pid ", pid_, " ignored signal ", signal,
                                                    " for ", absl::FormatDuration(timeout),
                                                    " and was killed; log tail:\n", LogTail()));
  }
  return code;
}

std::string ChildProcess::Log() const {
  std::ifstream in(log_path_, std::ios::binary);
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

std::string ChildProcess::LogTail() const {
  std::vector<std::string> lines = absl::StrSplit(Log(), '\n');
  constexpr size_t kTailLines = 30;
  if (lines.size() > kTailLines) lines.erase(lines.begin(), lines.end() - kTailLines);
  return absl::StrJoin(lines, "\n");
}

absl::StatusOr<std::string> ChildProcess::WaitForLogLine(const std::string& text,
                                                         absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    // Only whole lines count: a line being written may not hold all of `text` yet.
    const std::string log = Log();
    const size_t end_of_whole_lines = log.rfind('\n');
    if (end_of_whole_lines != std::string::npos) {
      for (absl::string_view line :
           absl::StrSplit(absl::string_view(log).substr(0, end_of_whole_lines), '\n')) {
        if (line.find(text) != absl::string_view::npos) return std::string(line);
      }
    }
    if (Reap()) {
      return absl::FailedPreconditionError(absl::StrCat("pid ", pid_, " exited with code ",
                                                        *exit_code_, " before logging \"", text,
                                                        "\"; log tail:\n", LogTail()));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("no line with \"", text, "\" after ",
                                                      absl::FormatDuration(timeout),
                                                      "; log tail:\n", LogTail()));
    }
    absl::SleepFor(kPollInterval * 5);
  }
}

}  // namespace verdict::testing
