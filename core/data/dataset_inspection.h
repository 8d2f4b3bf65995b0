// InspectPreferenceFile: what `verdict datasets inspect` reports about a preference data file --
// its container and record layouts, its pair count, every invalid record with its line number
// and reason (up to a cap, with the total), and, given a way to count a pair's tokens, a
// histogram of pair lengths and how many pairs a max_length would truncate.
//
// Inspection reads the file as training does (PreferenceReader with the same options) except
// that it never stops at a bad record: it skips and lists them, so that one pass shows every
// problem. Training itself is unchanged: without skip_invalid it still refuses a file at its
// first bad record. A problem that ends the read (a broken JSON array frame, a file that is
// not preference data, corrupt gzip) does not fail the inspection either: it is reported in
// `stopped`, with the counts up to that point.
//
// Tokens are counted by a caller-supplied function so that this library stays free of
// tokenizers and LibTorch: the server passes the model's tokenizer and input rule, the CLI
// passes none (and gets no histogram).
//
// Thread-safe: a free function; `pair_tokens` is called from the calling thread only.
//
// Example:
//   InspectionOptions options;
//   options.pair_tokens = [&](const PreferencePair& pair) { return CountTokens(pair); };
//   options.max_length = 512;
//   ASSIGN_OR_RETURN(DatasetInspection report, InspectPreferenceFile(path, options));
#ifndef VERDICT_CORE_DATA_DATASET_INSPECTION_H_
#define VERDICT_CORE_DATA_DATASET_INSPECTION_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/data/preference_pair.h"
#include "core/data/preference_reader.h"

namespace verdict {

struct InspectionOptions {
  // How records are read (format, chat format, line limit). skip_invalid and
  // max_reported_invalid are overridden: inspection skips every bad record and lists up to
  // max_invalid_reported of them.
  PreferenceReaderOptions reader;
  size_t max_invalid_reported = 100;
  // The token length of a pair: the longer of its two sequences (prompt + chosen, prompt +
  // rejected) as a model would encode them, untruncated. Unset: no length statistics. An
  // error fails the inspection.
  std::function<absl::StatusOr<int64_t>(const PreferencePair&)> pair_tokens;
  // Pairs longer than this many tokens count as truncated; 0: none counted.
  int64_t max_length = 0;
};

// One histogram bar: pairs whose length is in (previous bar's max_tokens, max_tokens].
struct LengthBucket {
  int64_t max_tokens = 0;
  int64_t pairs = 0;
};

struct TokenLengthStats {
  int64_t pairs = 0;  // pairs measured (every valid pair)
  int64_t min_tokens = 0;
  int64_t max_tokens = 0;
  double mean_tokens = 0;
  int64_t p50_tokens = 0;
  int64_t p95_tokens = 0;
  // Power-of-two bars (<= 16, 32, 64, ...) from the shortest pair's to the longest's; empty
  // bars in between kept.
  std::vector<LengthBucket> histogram;
  int64_t max_length = 0;       // as in InspectionOptions
  int64_t truncated_pairs = 0;  // pairs longer than max_length (0 when max_length is 0)
};

struct DatasetInspection {
  bool gzip = false;
  ReadStats stats;  // stats.first_invalid lists the invalid records, up to the cap
  int64_t pairs_with_margin = 0;
  // Why the read ended early ("NAME:LINE: problem"); empty when it read the whole file.
  std::string stopped;
  std::optional<TokenLengthStats> lengths;  // set when InspectionOptions::pair_tokens is
};

// Inspects the file at `path`. Fails only when the file cannot be opened (NotFound, ...) or
// pair_tokens fails; problems in the data are reported, not returned.
absl::StatusOr<DatasetInspection> InspectPreferenceFile(const std::string& path,
                                                        const InspectionOptions& options);

}  // namespace verdict

#endif  // VERDICT_CORE_DATA_DATASET_INSPECTION_H_
