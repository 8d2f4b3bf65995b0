#include "bench/bench_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <ATen/Parallel.h>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace verdict::bench {
namespace fs = std::filesystem;

std::string DescribeMachine() {
  std::string cpu = "unknown";
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (absl::StartsWith(line, "model name")) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) cpu = std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
      break;
    }
  }
  std::string load = "unknown";
  std::ifstream loadavg("/proc/loadavg");
  std::string one, five, fifteen;
  if (loadavg >> one >> five >> fifteen) load = absl::StrCat(one, " ", five, " ", fifteen);
  return absl::StrCat("nproc=", std::thread::hardware_concurrency(), " cpu='", cpu,
                      "' loadavg=", load, " torch_threads=", at::get_num_threads());
}

double LoadAverage() {
  std::ifstream loadavg("/proc/loadavg");
  double one = -1;
  if (!(loadavg >> one)) return -1;
  return one;
}

double Median(std::vector<double> values) { return Percentile(std::move(values), 50); }

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = std::clamp(p, 0.0, 100.0) / 100.0 * (values.size() - 1);
  const size_t low = static_cast<size_t>(std::floor(rank));
  const size_t high = std::min(values.size() - 1, low + 1);
  return values[low] + (rank - low) * (values[high] - values[low]);
}

std::string DefaultDataDir() { return VERDICT_BENCH_DATA_DIR; }

ScratchDir::ScratchDir(absl::string_view prefix, bool keep) : keep_(keep) {
  static std::atomic<int> counter{0};
  path_ = (fs::temp_directory_path() /
           absl::StrCat("verdict-bench-", prefix, "-", ::getpid(), "-", counter++))
              .string();
  fs::remove_all(path_);
  fs::create_directories(path_);
}

ScratchDir::~ScratchDir() {
  if (keep_) return;
  std::error_code ignored;
  fs::remove_all(path_, ignored);
}

std::string ScratchDir::Path(absl::string_view relative) const {
  return (fs::path(path_) / std::string(relative)).string();
}

namespace {

// One request on its own connection ("Connection: close"); the body of a 200 reply.
absl::StatusOr<std::string> HttpExchange(int port, absl::string_view method,
                                         absl::string_view path, absl::string_view body) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket() failed");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    ::close(fd);
    return absl::UnavailableError(absl::StrCat("cannot connect to 127.0.0.1:", port));
  }
  std::string request = absl::StrCat(method, " ", path,
                                     " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
  if (method == "POST") {
    absl::StrAppend(&request, "Content-Type: application/json\r\nContent-Length: ", body.size(),
                    "\r\n");
  }
  absl::StrAppend(&request, "\r\n", body);
  size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      ::close(fd);
      return absl::UnavailableError("short send");
    }
    sent += static_cast<size_t>(n);
  }
  std::string response;
  char buffer[16384];
  ssize_t n;
  while ((n = ::recv(fd, buffer, sizeof(buffer), 0)) > 0) response.append(buffer, n);
  ::close(fd);
  const size_t end_of_headers = response.find("\r\n\r\n");
  if (!absl::StartsWith(response, "HTTP/1.") || end_of_headers == std::string::npos) {
    return absl::InternalError(absl::StrCat("not an HTTP response from :", port, path));
  }
  if (response.find(" 200 ") > end_of_headers) {
    return absl::InternalError(absl::StrCat(":", port, path, ": ", response.substr(0, response.find("\r\n")),
                                            " ", response.substr(end_of_headers + 4, 200)));
  }
  return response.substr(end_of_headers + 4);
}

}  // namespace

absl::StatusOr<std::string> HttpGet(int port, absl::string_view path) {
  return HttpExchange(port, "GET", path, "");
}

absl::StatusOr<std::string> HttpPost(int port, absl::string_view path, absl::string_view json) {
  return HttpExchange(port, "POST", path, json);
}

double SumOfSeries(absl::string_view exposition, absl::string_view name) {
  double sum = 0;
  for (absl::string_view line : absl::StrSplit(exposition, '\n')) {
    if (!absl::ConsumePrefix(&line, name)) continue;
    // The exact series: "name{labels} value" or "name value", not "name_suffix ...".
    if (line.empty() || (line[0] != '{' && line[0] != ' ')) continue;
    if (line[0] == '{') {
      const size_t close = line.find('}');
      if (close == absl::string_view::npos) continue;
      line.remove_prefix(close + 1);
    }
    line = absl::StripAsciiWhitespace(line);
    // A timestamp may follow the value.
    const absl::string_view value = line.substr(0, line.find(' '));
    double v = 0;
    if (absl::SimpleAtod(value, &v)) sum += v;
  }
  return sum;
}

}  // namespace verdict::bench
