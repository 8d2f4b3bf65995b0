// Helpers the benchmark programs share: a description of the machine and its load (printed
// with every result, because the machines these run on are shared and noisy), robust
// statistics (medians, percentiles), a scratch directory, and a /metrics scrape of a running
// verdictd.
//
// Benchmarks print numbers; they are not tests and assert nothing about speed.
//
// Thread safety: every function is thread-safe; ScratchDir is thread-compatible.
#ifndef VERDICT_BENCH_BENCH_UTIL_H_
#define VERDICT_BENCH_BENCH_UTIL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace verdict::bench {

// "nproc=2 cpu='AMD EPYC ...' loadavg=1.20 0.90 0.80 torch_threads=2": what a result was
// measured on and how busy the machine was at that moment.
std::string DescribeMachine();

// The 1-minute load average (/proc/loadavg), or -1 when unreadable.
double LoadAverage();

// Median of `values` (the mean of the middle two for an even count); 0 for none.
double Median(std::vector<double> values);

// The p-th percentile (0 <= p <= 100) by linear interpolation between order statistics;
// 0 for none.
double Percentile(std::vector<double> values, double p);

// The repository's tests/data folder as the build saw it; the benchmarks' data flags default
// to files under it.
std::string DefaultDataDir();

// A fresh directory under the system's temporary folder, removed with everything in it when
// the object goes away (unless `keep` is set).
class ScratchDir {
 public:
  explicit ScratchDir(absl::string_view prefix, bool keep = false);
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::string& path() const { return path_; }
  std::string Path(absl::string_view relative) const;

 private:
  std::string path_;
  bool keep_;
};

// The body of GET `path` from 127.0.0.1:`port` (the Prometheus exposer), or of POST `path`
// with a JSON body (HTTP scoring); each on a connection of its own. An error for anything but
// a 200 reply, quoting the start of its body.
absl::StatusOr<std::string> HttpGet(int port, absl::string_view path);
absl::StatusOr<std::string> HttpPost(int port, absl::string_view path, absl::string_view json);

// The sum over every label set of the samples of series `name` in a Prometheus text
// exposition (e.g. "verdict_scoring_batch_items_sum"); 0 when the series is absent.
double SumOfSeries(absl::string_view exposition, absl::string_view name);

}  // namespace verdict::bench

#endif  // VERDICT_BENCH_BENCH_UTIL_H_
