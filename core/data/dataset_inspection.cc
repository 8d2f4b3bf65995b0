#include "core/data/dataset_inspection.h"

#include <algorithm>
#include <fstream>
#include <utility>

#include "core/util/status_macros.h"

namespace verdict {
namespace {

constexpr int64_t kSmallestBucket = 16;

bool StartsWithGzipMagic(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[2] = {0, 0};
  in.read(magic, 2);
  return in.gcount() == 2 && static_cast<unsigned char>(magic[0]) == 0x1f &&
         static_cast<unsigned char>(magic[1]) == 0x8b;
}

// Nearest-rank percentile of sorted, non-empty `lengths`.
int64_t Percentile(const std::vector<int64_t>& sorted, int percent) {
  const size_t rank = (sorted.size() * percent + 99) / 100;
  return sorted[std::max<size_t>(rank, 1) - 1];
}

TokenLengthStats Summarize(std::vector<int64_t> lengths, int64_t max_length) {
  TokenLengthStats stats;
  stats.max_length = max_length;
  stats.pairs = static_cast<int64_t>(lengths.size());
  if (lengths.empty()) return stats;
  std::sort(lengths.begin(), lengths.end());
  stats.min_tokens = lengths.front();
  stats.max_tokens = lengths.back();
  double sum = 0;
  for (int64_t length : lengths) {
    sum += static_cast<double>(length);
    if (max_length > 0 && length > max_length) ++stats.truncated_pairs;
  }
  stats.mean_tokens = sum / static_cast<double>(lengths.size());
  stats.p50_tokens = Percentile(lengths, 50);
  stats.p95_tokens = Percentile(lengths, 95);
  int64_t bound = kSmallestBucket;
  while (bound < stats.min_tokens) bound *= 2;  // no empty bars below the shortest pair
  auto next = lengths.begin();
  while (next != lengths.end()) {
    auto end = std::upper_bound(next, lengths.end(), bound);
    stats.histogram.push_back({bound, static_cast<int64_t>(end - next)});
    next = end;
    bound *= 2;
  }
  return stats;
}

}  // namespace

absl::StatusOr<DatasetInspection> InspectPreferenceFile(const std::string& path,
                                                        const InspectionOptions& options) {
  PreferenceReaderOptions reader_options = options.reader;
  reader_options.skip_invalid = true;
  reader_options.max_reported_invalid = options.max_invalid_reported;
  ASSIGN_OR_RETURN(std::unique_ptr<PreferenceReader> reader,
                   PreferenceReader::OpenFile(path, reader_options));
  DatasetInspection report;
  report.gzip = StartsWithGzipMagic(path);
  std::vector<int64_t> lengths;
  PreferencePair pair;
  while (true) {
    absl::StatusOr<bool> more = reader->Next(&pair);
    if (!more.ok()) {
      report.stopped = std::string(more.status().message());
      break;
    }
    if (!*more) break;
    if (pair.margin.has_value()) ++report.pairs_with_margin;
    if (options.pair_tokens) {
      ASSIGN_OR_RETURN(int64_t tokens, options.pair_tokens(pair));
      lengths.push_back(tokens);
    }
  }
  report.stats = reader->stats();
  if (options.pair_tokens) report.lengths = Summarize(std::move(lengths), options.max_length);
  return report;
}

}  // namespace verdict
