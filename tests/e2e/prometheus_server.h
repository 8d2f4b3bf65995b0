// PrometheusServer: a real Prometheus (the Debian `prometheus` binary) run by a test to scrape
// one target, with its HTTP API wrapped for queries.
//
// Start() writes a config that scrapes `target` as scrape job `job_name` every
// `scrape_interval` (and evaluates `rule_files` as often), starts Prometheus on a free loopback
// port with its TSDB in `work_dir`, and returns once /-/ready answers 200. The process is a
// ChildProcess: it dies with its owner.
//
// Thread safety: Query() and ApiGet() may be called from any thread; Start() and Stop() from
// the owning thread.
//
// Example:
//   PrometheusServer::Options options;
//   options.binary = "/usr/bin/prometheus";
//   options.work_dir = scratch / "prometheus";
//   options.target = "127.0.0.1:9464";
//   ASSIGN_OR_RETURN(auto prometheus, PrometheusServer::Start(options));
//   ASSIGN_OR_RETURN(std::vector<PromSample> up, prometheus->Query("up"));
#ifndef VERDICT_TESTS_E2E_PROMETHEUS_SERVER_H_
#define VERDICT_TESTS_E2E_PROMETHEUS_SERVER_H_

#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/e2e/child_process.h"

namespace verdict::testing {

// One element of a query result: a series' labels (__name__ included when the query keeps
// it) and its value at the evaluation time. A scalar result is one sample without labels.
struct PromSample {
  std::map<std::string, std::string> labels;
  double value = 0;  // NaN and ±Inf as Prometheus reports them
};

// `object[key]` if it is a string, else `fallback` (for reading API replies without throwing).
std::string JsonString(const nlohmann::json& object, const std::string& key,
                       const std::string& fallback = "");

class PrometheusServer {
 public:
  struct Options {
    std::string binary;                // the prometheus executable
    std::filesystem::path work_dir;    // config, TSDB and log go here (created)
    std::string job_name = "verdict";  // the scrape job, i.e. the `job` label
    std::string target;                // "127.0.0.1:<port>", scraped at /metrics
    absl::Duration scrape_interval = absl::Seconds(1);
    std::vector<std::string> rule_files;  // absolute paths, evaluated every scrape_interval
    absl::Duration startup_timeout = absl::Seconds(60);
  };

  static absl::StatusOr<std::unique_ptr<PrometheusServer>> Start(const Options& options);

  int port() const { return port_; }

  // GET /api/v1/query?query=<promql> (an instant query, now). Errors carry Prometheus's
  // errorType and message; a vector or scalar result becomes samples, anything else an error.
  absl::StatusOr<std::vector<PromSample>> Query(const std::string& promql) const;

  // GET <path> (e.g. "/api/v1/rules") and return the reply's "data" member when its
  // "status" is "success".
  absl::StatusOr<nlohmann::json> ApiGet(const std::string& path) const;

  // SIGTERM, then the exit code (Prometheus exits 0 when it shuts down cleanly); the process is
  // killed if it takes longer than `timeout`.
  absl::StatusOr<int> Stop(absl::Duration timeout);

  std::string Log() const { return process_->Log(); }

 private:
  PrometheusServer(std::unique_ptr<ChildProcess> process, int port)
      : process_(std::move(process)), port_(port) {}

  std::unique_ptr<ChildProcess> process_;
  const int port_;
};

}  // namespace verdict::testing

#endif  // VERDICT_TESTS_E2E_PROMETHEUS_SERVER_H_
