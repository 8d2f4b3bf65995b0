#include "tests/server/verdictd_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

extern char** environ;

namespace verdict::testing {

namespace fs = std::filesystem;

int64_t ResidentBytesOf(const std::string& pid) {
  std::ifstream status("/proc/" + pid + "/status");
  std::string line;
  while (std::getline(status, line)) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, "VmRSS:")) continue;
    rest = absl::StripAsciiWhitespace(rest);
    absl::ConsumeSuffix(&rest, "kB");
    int64_t kb = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &kb)) return kb * 1024;
  }
  return 0;
}

std::unique_ptr<VerdictdProcess> VerdictdProcess::Spawn(
    const std::string& binary, const fs::path& root, const std::vector<std::string>& extra_flags,
    const std::map<std::string, std::string>& env) {
  static int count = 0;
  auto process = std::unique_ptr<VerdictdProcess>(new VerdictdProcess);
  process->stdout_path_ = root / absl::StrCat("verdictd-", count, ".out");
  process->stderr_path_ = root / absl::StrCat("verdictd-", count, ".err");
  ++count;
  std::vector<std::string> args = {binary,
                                   "--port=0",
                                   "--metrics_port=-1",
                                   "--state_dir=" + (root / "state").string(),
                                   "--data_dir=" + (root / "data").string(),
                                   "--model_dir=" + (root / "models").string(),
                                   "--log_level=info"};
  args.insert(args.end(), extra_flags.begin(), extra_flags.end());
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, process->stdout_path_.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, process->stderr_path_.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<std::string> variables;
  for (char** var = environ; *var != nullptr; ++var) {
    if (!absl::StartsWith(*var, "VERDICT_TEST_KILL_AT=")) variables.push_back(*var);
  }
  for (const auto& [name, value] : env) variables.push_back(name + "=" + value);
  std::vector<char*> envp;
  for (std::string& var : variables) envp.push_back(var.data());
  envp.push_back(nullptr);
  const int spawned =
      posix_spawn(&process->pid_, binary.c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) {
    ADD_FAILURE() << "posix_spawn " << binary << ": " << strerror(spawned);
    return nullptr;
  }
  return process;
}

std::unique_ptr<VerdictdProcess> VerdictdProcess::Start(
    const std::string& binary, const fs::path& root, const std::vector<std::string>& extra_flags,
    const std::map<std::string, std::string>& env) {
  auto process = Spawn(binary, root, extra_flags, env);
  if (process == nullptr) return nullptr;
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  while (absl::Now() < give_up) {
    std::ifstream out(process->stdout_path_);
    std::string line;
    if (std::getline(out, line) && absl::StrContains(line, "verdictd listening on ")) {
      std::string address = line.substr(line.find(" on ") + 4);
      address = address.substr(0, address.find(','));
      int port = 0;
      if (absl::SimpleAtoi(address.substr(address.rfind(':') + 1), &port) && port > 0) {
        process->port_ = port;
        return process;
      }
    }
    if (process->Wait(absl::Milliseconds(20)).has_value()) {
      ADD_FAILURE() << "verdictd exited before listening:\n" << process->Logs();
      return nullptr;
    }
  }
  ADD_FAILURE() << "verdictd did not report its port in 60 s:\n" << process->Logs();
  return nullptr;
}

VerdictdProcess::~VerdictdProcess() {
  // pid_ stays -1 when posix_spawn failed: kill(-1, SIGKILL) would kill every process of the
  // user, the test runner's shell included.
  if (pid_ > 0 && !exit_code_.has_value()) {
    ::kill(pid_, SIGKILL);
    Wait(absl::Seconds(30));
  }
}

std::string VerdictdProcess::address() const { return absl::StrCat("127.0.0.1:", port_); }

void VerdictdProcess::Signal(int signal) {
  if (pid_ > 0) ::kill(pid_, signal);
}

std::optional<int> VerdictdProcess::Wait(absl::Duration timeout) {
  if (exit_code_.has_value()) return exit_code_;
  const absl::Time give_up = absl::Now() + timeout;
  while (true) {
    int status = 0;
    const pid_t done = ::waitpid(pid_, &status, WNOHANG);
    if (done == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
      return exit_code_;
    }
    if (absl::Now() >= give_up) return std::nullopt;
    absl::SleepFor(absl::Milliseconds(10));
  }
}

std::string VerdictdProcess::Logs() const {
  std::ifstream err(stderr_path_);
  std::string text((std::istreambuf_iterator<char>(err)), std::istreambuf_iterator<char>());
  if (text.size() > 8000) text = "..." + text.substr(text.size() - 8000);
  return text;
}

int64_t VerdictdProcess::ResidentBytes() const {
  if (exit_code_.has_value()) return 0;
  return ResidentBytesOf(std::to_string(pid_));
}

}  // namespace verdict::testing
