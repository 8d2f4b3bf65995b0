// VerdictdProcess: the real verdictd binary run as a subprocess on a scratch root, for tests
// that need what an in-process server cannot give -- a SIGKILL or SIGTERM, a crash point
// (VERDICT_TEST_KILL_AT, core/util/crash_point.h), or the server's own resident memory apart
// from the test's clients. Its stdout and stderr go to files beside its state (Logs() shows
// the end of stderr when a test fails); the destructor SIGKILLs a process still running.
//
// Thread safety: one thread drives a VerdictdProcess; ResidentBytes may be called from any.
#ifndef VERDICT_TESTS_SERVER_VERDICTD_PROCESS_H_
#define VERDICT_TESTS_SERVER_VERDICTD_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace verdict::testing {

class VerdictdProcess {
 public:
  // Starts `binary` with --state_dir, --data_dir and --model_dir under `root` ("state",
  // "data", "models"), port 0, no /metrics, then `extra_flags` (later flags win), with the
  // test's environment plus `env` (VERDICT_TEST_KILL_AT only if `env` names it). Waits for
  // "verdictd listening on H:P"; null (and a test failure) if it exits or takes over 60 s.
  static std::unique_ptr<VerdictdProcess> Start(const std::string& binary,
                                                const std::filesystem::path& root,
                                                const std::vector<std::string>& extra_flags = {},
                                                const std::map<std::string, std::string>& env = {});
  // Starts it as above without waiting for it to listen (for a process expected to die first).
  static std::unique_ptr<VerdictdProcess> Spawn(const std::string& binary,
                                                const std::filesystem::path& root,
                                                const std::vector<std::string>& extra_flags = {},
                                                const std::map<std::string, std::string>& env = {});
  ~VerdictdProcess();

  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  std::string address() const;
  void Signal(int signal);
  // The exit code, or -N when killed by signal N; nullopt if still running after `timeout`.
  std::optional<int> Wait(absl::Duration timeout);
  // The last 8 KB of its stderr.
  std::string Logs() const;
  // Its resident set size (VmRSS), 0 once it has exited.
  int64_t ResidentBytes() const;

 private:
  VerdictdProcess() = default;
  pid_t pid_ = -1;
  int port_ = 0;
  std::filesystem::path stdout_path_, stderr_path_;
  std::optional<int> exit_code_;
};

// VmRSS of process `pid` ("self" for this one) from /proc/<pid>/status, in bytes; 0 if it
// cannot be read.
int64_t ResidentBytesOf(const std::string& pid);

}  // namespace verdict::testing

#endif  // VERDICT_TESTS_SERVER_VERDICTD_PROCESS_H_
