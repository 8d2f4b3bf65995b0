// JsonArrayReader: the top-level elements of one JSON array, cut out of a byte stream one at a
// time, with the line each starts on.
//
// A .json preference file is one array of records, often written on a single line
// (json.dump) or pretty-printed over millions of lines (LLaMA-Factory's datasets), so neither
// slurping the file nor reading it by lines works. The reader scans the bytes of a LineReader
// (plain or gzip alike) tracking strings, escapes and bracket depth, and hands out each
// element's text for the caller to parse. It holds one element at a time: one longer than
// `max_element_bytes` is scanned to its end without being kept and reported as `too_long`.
//
// It checks the array's frame, not the elements: whitespace anywhere between tokens is fine;
// a missing or doubled ",", a "," before "]", a missing "]" and anything but whitespace after
// the closing "]" are InvalidArgumentError "NAME:LINE: reason", and so is the input ending
// inside an element. Such errors end the read (the element boundaries are lost) and are
// returned again on every later call; read failures of the bytes themselves come back from
// the LineReader as they are.
//
// Thread-compatible: a reader is used by one thread at a time.
//
// Example:
//   ASSIGN_OR_RETURN(int first, lines->SkipLeadingSpace());
//   if (first == '[') {
//     JsonArrayReader array(lines.get(), LineReader::kDefaultMaxLineBytes);
//     JsonElement element;
//     while (true) {
//       ASSIGN_OR_RETURN(bool more, array.Next(&element));
//       if (!more) break;
//       Parse(element.line, element.text);
//     }
//   }
#ifndef VERDICT_CORE_DATA_JSON_ARRAY_READER_H_
#define VERDICT_CORE_DATA_JSON_ARRAY_READER_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/data/line_reader.h"

namespace verdict {

struct JsonElement {
  absl::string_view text;  // the element's JSON text; valid until the next Next()
  int64_t line = 0;        // 1-based line of its first byte
  int64_t index = 0;       // 1-based position in the array
  bool too_long = false;   // longer than max_element_bytes: skipped, and `text` is empty
};

class JsonArrayReader {
 public:
  // `input` must be positioned at the array's "[" (LineReader::SkipLeadingSpace() returned
  // it) and outlive the reader.
  JsonArrayReader(LineReader* input, size_t max_element_bytes);

  // Reads the next element into `*element`; false after the closing "]" and the end of input.
  absl::StatusOr<bool> Next(JsonElement* element);

  // Lines of the input seen so far (all of them once Next() has returned false).
  int64_t lines() const { return line_; }

 private:
  enum class State { kOpen, kFirst, kBeforeElement, kAfterElement, kAfterArray };

  // The next byte, not consumed; -1 at the end of the input.
  absl::StatusOr<int> Peek();
  void Advance();
  void Keep(char c);
  absl::Status Fail(absl::string_view reason, bool at_end = false);
  absl::Status ScanElement(int first);

  LineReader* const input_;
  const size_t max_element_bytes_;
  absl::string_view buffer_;
  size_t pos_ = 0;
  int64_t line_;
  bool at_line_start_ = false;
  State state_ = State::kOpen;
  int64_t index_ = 0;
  std::string element_;
  bool too_long_ = false;
  absl::Status error_;
};

}  // namespace verdict

#endif  // VERDICT_CORE_DATA_JSON_ARRAY_READER_H_
