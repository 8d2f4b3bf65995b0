// PreferenceReader: streams PreferencePairs out of preference data files, plain or gzip.
//
// Containers (gzip is recognised by its magic bytes, see LineReader; the container by the first
// byte that is not whitespace, unless options.format names it, see data_format.h):
//   JSON Lines   one record per line (.jsonl, .jsonl.gz). Lines holding only whitespace are
//                skipped silently (counted in ReadStats::blank_lines).
//   JSON array   the file is one JSON array of records (.json, as LLaMA-Factory ships data),
//                starting with "[". Streamed element by element (JsonArrayReader), never held
//                whole; a record's "line" is the line its element starts on. A broken array
//                frame (a missing or extra ",", a missing "]", bytes after it) fails the read
//                with its line, skip_invalid or not.
// Each record picks its own layout:
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
//   ShareGPT          LLaMA-Factory's preference records ("ranking: true" sharegpt datasets):
//                     {"conversations": [{"from": str, "value": str}, ...],
//                      "chosen": {"from": "gpt", "value": str}, "rejected": {...}} with an
//                     optional "system": str. "from" is human/user, gpt/assistant or system
//                     (any other, e.g. observation or function_call, is a bad record). The
//                     conversation is the prompt and chosen/rejected the assistant replies,
//                     rendered as a conversational record with that prompt.
//   alpaca            LLaMA-Factory's alpaca preference records: {"instruction": str,
//                     "input": str, "chosen": str, "rejected": str} with optional "system" and
//                     "history" ([[query, response], ...]). The user turn is instruction and
//                     input joined by "\n" (as LLaMA-Factory writes it); rendered as a
//                     conversational record.
//
// An optional numeric "margin" and string "subset" are kept; a null prompt, margin or subset
// counts as absent; other keys are ignored. An empty response is valid (a policy can generate one); a pair whose chosen and
// rejected responses are equal (both empty included) teaches nothing and is dropped
// (ReadStats::identical_dropped).
//
// A malformed record (too long, invalid UTF-8, bad JSON, JSON nested deeper than 32 levels, not
// an object, a missing key, a value of the wrong type, a bad message) fails the read with
// InvalidArgumentError "NAME:LINE: reason", LINE 1-based; with options.skip_invalid it is
// skipped and counted instead, and the first few reasons are kept in ReadStats. A file that is
// not preference data at all -- its first record is not recognisably one (not JSON, not an
// object, or an object with neither "chosen" nor "rejected"; in format sharegpt, no
// "conversations"), or, with skip_invalid, no record is -- fails with one message instead:
// "NAME:LINE: not preference data: found <what>. Accepted: <containers and layouts>".
// Errors reading the bytes themselves (I/O, corrupt gzip) always fail the read. Once Next()
// has failed it fails again on every later call.
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

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/data/chat_format.h"
#include "core/data/data_format.h"
#include "core/data/json_array_reader.h"
#include "core/data/line_reader.h"
#include "core/data/preference_pair.h"

namespace verdict {

struct PreferenceReaderOptions {
  // Skip malformed lines, counting them, instead of failing on the first one.
  bool skip_invalid = false;
  // How conversational and ShareGPT records become text.
  ChatFormat chat_format = ChatFormat::kHhRlhf;
  // The container and layouts accepted (data_format.h); kAuto detects them.
  DataFormat format = DataFormat::kAuto;
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
  bool json_array = false;                 // the container: a JSON array, else JSON Lines
  // Pairs handed out, by the layout of their record (indexed by PreferenceLayout).
  std::array<int64_t, kPreferenceLayoutCount> pairs_by_layout{};

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

  ~PreferenceReader();
  PreferenceReader(const PreferenceReader&) = delete;
  PreferenceReader& operator=(const PreferenceReader&) = delete;

 private:
  // One JSON Lines line or JSON array element.
  struct Record {
    absl::string_view text;
    int64_t line = 0;
    int64_t index = 0;  // position in the JSON array; 0 for JSON Lines
    bool too_long = false;
  };

  PreferenceReader(std::unique_ptr<LineReader> lines, const PreferenceReaderOptions& options);

  // Picks the container from the first byte that is not whitespace.
  absl::Status Start();
  absl::StatusOr<bool> NextRecord(Record* record);
  // A bad record: fails the read or counts it (skip_invalid). `unrecognised` says what the
  // record is when it is not recognisably preference data, else it is empty.
  absl::Status Reject(const Record& record, absl::string_view reason,
                      absl::string_view unrecognised);
  absl::Status WrongFormat(int64_t line, absl::string_view found) const;

  std::unique_ptr<LineReader> lines_;
  std::unique_ptr<JsonArrayReader> array_;  // set when the data is a JSON array
  const PreferenceReaderOptions options_;
  ReadStats stats_;
  absl::Status error_;
  bool started_ = false;
  bool recognised_ = false;         // a record was preference data (valid or not)
  std::string first_unrecognised_;  // skip_invalid: what the first skipped record was
  int64_t first_unrecognised_line_ = 0;
};

// "explicit prompt", "hh-rlhf transcripts", "conversational", "sharegpt", "alpaca".
absl::string_view PreferenceLayoutName(PreferenceLayout layout);

// Every pair of a file or of in-memory bytes, with the counts.
absl::StatusOr<PreferenceData> ReadPreferenceFile(const std::string& path,
                                                  const PreferenceReaderOptions& options = {});
absl::StatusOr<PreferenceData> ReadPreferenceString(std::string contents, std::string name,
                                                    const PreferenceReaderOptions& options = {});

}  // namespace verdict

#endif  // VERDICT_CORE_DATA_PREFERENCE_READER_H_
