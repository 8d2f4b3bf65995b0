// PreferenceReader: streams PreferencePairs out of JSON Lines preference data, plain or gzip.
//
// One JSON object per line; `.jsonl` and `.jsonl.gz` alike (gzip is recognised by its magic
// bytes; see LineReader). Each line picks its own layout:
//
//   explicit prompt   {"prompt": str, "chosen": str, "rejected": str}
//                     chosen and rejected are the responses, taken as they are (one that
//                     repeats the prompt in front is not cut).
//   implicit prompt   {"chosen": str, "rejected": str}, whole transcripts as in Anthropic's
//                     hh-rlhf. The prompt is their longest common prefix cut back to end right
//                     after the last "\n\nAssistant:" in it; the responses are the rest, with
//                     their leading space kept (TRL's convention). Without "\n\nAssistant:" in
//                     the common prefix the prompt is "" and the responses are the whole texts.
//   conversational    chosen and rejected (and an optional prompt) are lists of
//                     {"role": "system"|"user"|"assistant", "content": str} messages. Without a
//                     prompt, the messages both share up to the assistant message where they
//                     part are the prompt. Text is rendered with options.chat_format (see
//                     chat_format.h): the prompt ends with the assistant opener.
//
// An optional numeric "margin" is kept; a null prompt or margin counts as absent; other keys
// are ignored. Lines holding only whitespace are skipped silently (counted in
// ReadStats::blank_lines). A pair whose chosen and rejected responses are equal teaches
// nothing and is dropped (ReadStats::identical_dropped).
//
// A malformed line (too long, invalid UTF-8, bad JSON, JSON nested deeper than 32 levels, not
// an object, a missing key, a value of the wrong type, a bad message) fails the read with
// InvalidArgumentError "NAME:LINE: reason", LINE 1-based; with options.skip_invalid it is
// skipped and counted instead, and the first few reasons are kept in ReadStats. Errors reading the bytes
// themselves (I/O, corrupt gzip) always fail the read. Once Next() has failed it fails again
// on every later call.
//
// Thread-compatible: a reader is used by one thread at a time. The Read* functions are
// thread-safe.
//
// Example:
//   PreferenceReaderOptions options;
//   options.skip_invalid = true;
//   ASSIGN_OR_RETURN(PreferenceData data, ReadPreferenceFile(path, options));
//   std::cerr << data.stats.Summary() << "\n";
#ifndef VERDICT_CORE_DATA_PREFERENCE_READER_H_
#define VERDICT_CORE_DATA_PREFERENCE_READER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/data/chat_format.h"
#include "core/data/line_reader.h"
#include "core/data/preference_pair.h"

namespace verdict {

struct PreferenceReaderOptions {
  // Skip malformed lines, counting them, instead of failing on the first one.
  bool skip_invalid = false;
  // How conversational lines become text.
  ChatFormat chat_format = ChatFormat::kHhRlhf;
  // Longer lines are malformed; this bounds the memory one line can take.
  size_t max_line_bytes = LineReader::kDefaultMaxLineBytes;
  // How many skipped lines ReadStats::first_invalid describes.
  size_t max_reported_invalid = 10;
};

struct InvalidLine {
  int64_t line = 0;
  std::string reason;
};

struct ReadStats {
  int64_t lines = 0;                       // lines read, blank ones included
  int64_t blank_lines = 0;                 // whitespace-only lines, skipped
  int64_t pairs = 0;                       // pairs handed out
  int64_t invalid_lines = 0;               // malformed lines skipped (skip_invalid only)
  int64_t identical_dropped = 0;           // pairs dropped because chosen == rejected
  std::vector<InvalidLine> first_invalid;  // the first max_reported_invalid skipped lines

  // One line for logs, e.g. "2352 pairs from 2354 lines (2 identical dropped)".
  std::string Summary() const;
};

struct PreferenceData {
  std::vector<PreferencePair> pairs;
  ReadStats stats;
};

class PreferenceReader {
 public:
  // Reads the file at `path`; NotFoundError when it does not exist.
  static absl::StatusOr<std::unique_ptr<PreferenceReader>> OpenFile(
      const std::string& path, const PreferenceReaderOptions& options = {});

  // Reads `contents` (plain or gzip bytes); `name` stands for them in messages.
  static std::unique_ptr<PreferenceReader> FromString(std::string contents, std::string name,
                                                      const PreferenceReaderOptions& options = {});

  // Reads the next pair into `*pair`; returns false at the end of the data.
  absl::StatusOr<bool> Next(PreferencePair* pair);

  // Counts so far; final once Next() has returned false.
  const ReadStats& stats() const { return stats_; }

 private:
  PreferenceReader(std::unique_ptr<LineReader> lines, const PreferenceReaderOptions& options);

  absl::Status Reject(int64_t line, absl::string_view reason);

  std::unique_ptr<LineReader> lines_;
  const PreferenceReaderOptions options_;
  ReadStats stats_;
  absl::Status error_;
};

// Every pair of a file or of in-memory bytes, with the counts.
absl::StatusOr<PreferenceData> ReadPreferenceFile(const std::string& path,
                                                  const PreferenceReaderOptions& options = {});
absl::StatusOr<PreferenceData> ReadPreferenceString(std::string contents, std::string name,
                                                    const PreferenceReaderOptions& options = {});

}  // namespace verdict

#endif  // VERDICT_CORE_DATA_PREFERENCE_READER_H_
