// LineReader: the lines of a file or of in-memory bytes, one at a time, gzip-compressed or not.
//
// Gzip input is recognised by its magic bytes (1f 8b), not by the file name, and inflated as
// it is read: the reader holds one read buffer and the current line, never the whole input, so
// a multi-gigabyte .jsonl.gz streams. Files and in-memory bytes (an upload being validated)
// go through the same code, so both are accepted or rejected alike. Concatenated gzip members
// read as one stream, as `gzip -d` reads them; bytes after the last member that do not start
// another member are an error, as are corrupt or truncated gzip data.
//
// A line ends at "\n" (a "\r" right before it is dropped, so CRLF files read the same); the
// last line needs no "\n". A line longer than `max_line_bytes` is skipped without being
// buffered and reported as `too_long`, so one huge line cannot exhaust memory.
//
// A reader that finds record boundaries itself (a JSON array, whose elements may span lines or
// share one) takes the decoded bytes instead: SkipLeadingSpace() then NextBytes(). The two
// ways may be mixed only as SkipLeadingSpace() first, then either Next() or NextBytes().
//
// Thread-compatible: a reader is used by one thread at a time.
//
// Example:
//   ASSIGN_OR_RETURN(std::unique_ptr<LineReader> reader, LineReader::OpenFile(path));
//   TextLine line;
//   while (true) {
//     ASSIGN_OR_RETURN(bool more, reader->Next(&line));
//     if (!more) break;
//     Use(line.number, line.text);
//   }
#ifndef VERDICT_CORE_DATA_LINE_READER_H_
#define VERDICT_CORE_DATA_LINE_READER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace verdict {

struct TextLine {
  absl::string_view text;  // without its line ending; valid until the next Next()
  int64_t number = 0;      // 1-based
  bool too_long = false;   // longer than max_line_bytes: skipped, and `text` is empty
};

class LineReader {
 public:
  static constexpr size_t kDefaultMaxLineBytes = size_t{16} << 20;

  // Opens `path` for reading: NotFoundError when it does not exist, InvalidArgumentError when
  // it is a directory.
  static absl::StatusOr<std::unique_ptr<LineReader>> OpenFile(
      const std::string& path, size_t max_line_bytes = kDefaultMaxLineBytes);

  // Reads `contents`; `name` stands for the bytes in messages (e.g. "upload:data.jsonl").
  static std::unique_ptr<LineReader> FromString(std::string contents, std::string name,
                                                size_t max_line_bytes = kDefaultMaxLineBytes);

  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // Reads the next line into `*line`; returns false at the end of the input. A read or
  // decompression failure comes back as "NAME:LINE: reason" (InvalidArgumentError for bad gzip
  // data: the input is at fault, not storage) and again on every later call.
  absl::StatusOr<bool> Next(TextLine* line);

  // Consumes the whitespace (space, tab, CR, LF) at the start of the input and returns the
  // first other byte, left unread, or -1 when the input holds nothing else. Lines it passes
  // count as read: the next Next() numbers its line after them. Call it before anything else.
  absl::StatusOr<int> SkipLeadingSpace();

  // The decoded bytes not read yet, a buffer at a time (valid until the next call); empty at
  // the end of the input. Lines are not counted: the caller counts them. A read or
  // decompression failure comes back as "NAME: reason".
  absl::StatusOr<absl::string_view> NextBytes();

  // Lines ended so far (by Next() or SkipLeadingSpace()).
  int64_t line_number() const { return line_number_; }

  const std::string& name() const { return name_; }

 private:
  class Source;
  LineReader(std::unique_ptr<Source> source, std::string name, size_t max_line_bytes);

  // Refills the chunk when it is used up; false at the end of the input.
  absl::StatusOr<bool> Fill();

  std::unique_ptr<Source> source_;
  const std::string name_;
  const size_t max_line_bytes_;
  std::unique_ptr<char[]> chunk_;
  size_t chunk_pos_ = 0;
  size_t chunk_len_ = 0;
  bool end_of_input_ = false;
  std::string line_;
  int64_t line_number_ = 0;
  absl::Status error_;
};

}  // namespace verdict

#endif  // VERDICT_CORE_DATA_LINE_READER_H_
