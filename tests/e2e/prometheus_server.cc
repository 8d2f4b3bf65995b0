#include "tests/e2e/prometheus_server.h"

#include <signal.h>

#include <cstdlib>
#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"
#include "tests/testing/loopback_http.h"

namespace verdict::testing {
namespace {

namespace fs = std::filesystem;

std::string Seconds(absl::Duration duration) {
  return absl::StrCat(absl::ToInt64Milliseconds(duration), "ms");
}

absl::Status WriteConfig(const PrometheusServer::Options& options, const fs::path& path) {
  std::ofstream out(path);
  out << "global:\n"
      << "  scrape_interval: " << Seconds(options.scrape_interval) << "\n"
      << "  scrape_timeout: " << Seconds(options.scrape_interval) << "\n"
      << "  evaluation_interval: " << Seconds(options.scrape_interval) << "\n";
  if (!options.rule_files.empty()) {
    out << "rule_files:\n";
    for (const std::string& file : options.rule_files) out << "  - \"" << file << "\"\n";
  }
  out << "scrape_configs:\n"
      << "  - job_name: \"" << options.job_name << "\"\n"
      << "    metrics_path: /metrics\n"
      << "    static_configs:\n"
      << "      - targets: [\"" << options.target << "\"]\n";
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path.string()));
  return absl::OkStatus();
}

// Prometheus writes NaN and ±Inf as "NaN", "+Inf", "-Inf", which strtod reads too.
absl::StatusOr<double> ParseValue(const nlohmann::json& pair) {
  if (!pair.is_array() || pair.size() != 2 || !pair[1].is_string()) {
    return absl::DataLossError(absl::StrCat("not a [time, \"value\"] pair: ", pair.dump()));
  }
  const std::string text = pair[1].get<std::string>();
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || *end != '\0') {
    return absl::DataLossError(absl::StrCat("not a number: \"", text, "\""));
  }
  return value;
}

}  // namespace

std::string JsonString(const nlohmann::json& object, const std::string& key,
                       const std::string& fallback) {
  if (!object.is_object()) return fallback;
  const auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : fallback;
}

absl::StatusOr<std::unique_ptr<PrometheusServer>> PrometheusServer::Start(const Options& options) {
  std::error_code error;
  fs::create_directories(options.work_dir / "data", error);
  if (error) return absl::InternalError(absl::StrCat("cannot create ", options.work_dir.string()));
  const fs::path config = options.work_dir / "prometheus.yml";
  RETURN_IF_ERROR(WriteConfig(options, config));

  // The port is free when picked but may be taken before Prometheus binds it: try again then.
  absl::Status last_error;
  for (int attempt = 1; attempt <= 3; ++attempt) {
    const int port = PickFreeLoopbackPort();
    if (port == 0) return absl::UnavailableError("no free loopback port");
    ChildProcess::Options process_options;
    process_options.log_path =
        (options.work_dir / absl::StrCat("prometheus-", attempt, ".log")).string();
    ASSIGN_OR_RETURN(
        std::unique_ptr<ChildProcess> process,
        ChildProcess::Start(
            {options.binary, absl::StrCat("--config.file=", config.string()),
             absl::StrCat("--storage.tsdb.path=", (options.work_dir / "data").string()),
             absl::StrCat("--web.listen-address=127.0.0.1:", port), "--log.level=info"},
            process_options));
    const absl::Time deadline = absl::Now() + options.startup_timeout;
    while (true) {
      absl::StatusOr<HttpResponse> ready = HttpGet(port, "/-/ready", absl::Seconds(5));
      if (ready.ok() && ready->status_code == 200) {
        return std::unique_ptr<PrometheusServer>(new PrometheusServer(std::move(process), port));
      }
      if (!process->Running()) {
        last_error = absl::UnavailableError(
            absl::StrCat("prometheus exited during start-up; its log:\n", process->Log()));
        break;
      }
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError(absl::StrCat(
            "prometheus not ready after ", absl::FormatDuration(options.startup_timeout),
            "; its log:\n", process->Log()));
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
    if (!absl::StrContains(last_error.message(), "address already in use")) return last_error;
  }
  return last_error;
}

absl::StatusOr<nlohmann::json> PrometheusServer::ApiGet(const std::string& path) const {
  ASSIGN_OR_RETURN(HttpResponse response, HttpGet(port_, path));
  const nlohmann::json reply =
      nlohmann::json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  if (reply.is_discarded() || !reply.is_object()) {
    return absl::DataLossError(absl::StrCat("GET ", path, ": HTTP ", response.status_code,
                                            ", not a JSON object: ", response.body.substr(0, 500)));
  }
  if (JsonString(reply, "status") != "success") {
    return absl::InvalidArgumentError(absl::StrCat("GET ", path, ": HTTP ", response.status_code,
                                                   ", ", JsonString(reply, "errorType", "?"), ": ",
                                                   JsonString(reply, "error", response.body)));
  }
  const auto data = reply.find("data");
  return data == reply.end() ? nlohmann::json() : *data;
}

absl::StatusOr<std::vector<PromSample>> PrometheusServer::Query(const std::string& promql) const {
  ASSIGN_OR_RETURN(nlohmann::json data,
                   ApiGet(absl::StrCat("/api/v1/query?query=", UrlEncode(promql))));
  const std::string type = JsonString(data, "resultType");
  const nlohmann::json result =
      data.is_object() ? data.value("result", nlohmann::json()) : nlohmann::json();
  std::vector<PromSample> samples;
  if (type == "scalar") {
    PromSample sample;
    ASSIGN_OR_RETURN(sample.value, ParseValue(result));
    samples.push_back(std::move(sample));
  } else if (type == "vector" && result.is_array()) {
    for (const nlohmann::json& element : result) {
      PromSample sample;
      if (!element.is_object())
        return absl::DataLossError(
            absl::StrCat("query ", promql, ": bad element ", element.dump()));
      const nlohmann::json labels = element.value("metric", nlohmann::json::object());
      for (const auto& [name, value] : labels.items()) {
        sample.labels[name] = value.is_string() ? value.get<std::string>() : value.dump();
      }
      ASSIGN_OR_RETURN(sample.value, ParseValue(element.value("value", nlohmann::json())));
      samples.push_back(std::move(sample));
    }
  } else {
    return absl::DataLossError(absl::StrCat("query ", promql, ": unexpected result ", data.dump()));
  }
  return samples;
}

absl::StatusOr<int> PrometheusServer::Stop(absl::Duration timeout) {
  return process_->Stop(SIGTERM, timeout);
}

}  // namespace verdict::testing
