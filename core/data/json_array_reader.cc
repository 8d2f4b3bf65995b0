#include "core/data/json_array_reader.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace verdict {
namespace {

bool IsJsonSpace(int c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string Describe(int c) {
  if (c < 0) return "the end of the file";
  if (c >= 0x20 && c < 0x7f) return absl::StrCat("'", std::string(1, static_cast<char>(c)), "'");
  return absl::StrFormat("byte 0x%02x", c);
}

}  // namespace

JsonArrayReader::JsonArrayReader(LineReader* input, size_t max_element_bytes)
    : input_(input), max_element_bytes_(max_element_bytes), line_(input->line_number() + 1) {}

absl::StatusOr<int> JsonArrayReader::Peek() {
  if (pos_ == buffer_.size()) {
    absl::StatusOr<absl::string_view> bytes = input_->NextBytes();
    if (!bytes.ok()) {
      error_ = bytes.status();
      return error_;
    }
    buffer_ = *bytes;
    pos_ = 0;
    if (buffer_.empty()) return -1;
  }
  return static_cast<unsigned char>(buffer_[pos_]);
}

void JsonArrayReader::Advance() {
  if (at_line_start_) {
    ++line_;
    at_line_start_ = false;
  }
  // A line counts from its first byte: the "\n" ends it, the next byte starts another.
  if (buffer_[pos_] == '\n') at_line_start_ = true;
  ++pos_;
}

void JsonArrayReader::Keep(char c) {
  if (too_long_) return;
  if (element_.size() + 1 > max_element_bytes_) {
    too_long_ = true;
    std::string().swap(element_);
    return;
  }
  element_.push_back(c);
}

absl::Status JsonArrayReader::Fail(absl::string_view reason, bool at_end) {
  // At the end of the input the last line is the one to name, not the empty one after it.
  const int64_t line = at_line_start_ && !at_end ? line_ + 1 : line_;
  error_ = absl::InvalidArgumentError(absl::StrCat(input_->name(), ":", line, ": ", reason));
  return error_;
}

// Keeps the element starting at `first` (not consumed yet) up to its last byte. Objects and
// arrays end where their bracket depth returns to zero, strings at their closing quote, and
// anything else (numbers, literals, stray bytes) before whitespace, ",", "]" or "}": what the
// element is exactly is for the JSON parser to say.
absl::Status JsonArrayReader::ScanElement(int first) {
  const int64_t start_line = at_line_start_ ? line_ + 1 : line_;
  const bool nested = first == '{' || first == '[';
  const bool string = first == '"';
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  bool first_byte = true;
  while (true) {
    absl::StatusOr<int> next = Peek();
    if (!next.ok()) return next.status();
    const int c = *next;
    if (c < 0) {
      if (!nested && !string) return absl::OkStatus();
      return Fail(absl::StrCat("the file ends inside element ", index_,
                               " of the JSON array (it starts at line ", start_line, ")"),
                  /*at_end=*/true);
    }
    if (!nested && !string && !first_byte && (IsJsonSpace(c) || c == ',' || c == ']' || c == '}')) {
      return absl::OkStatus();
    }
    Keep(static_cast<char>(c));
    Advance();
    if (in_string || (string && !first_byte)) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
        if (string) return absl::OkStatus();
      }
    } else if (c == '"') {
      in_string = true;
    } else if (nested && (c == '{' || c == '[')) {
      ++depth;
    } else if (nested && (c == '}' || c == ']')) {
      if (--depth == 0) return absl::OkStatus();
    }
    first_byte = false;
  }
}

absl::StatusOr<bool> JsonArrayReader::Next(JsonElement* element) {
  if (!error_.ok()) return error_;
  while (true) {
    absl::StatusOr<int> next = Peek();
    if (!next.ok()) return next.status();
    const int c = *next;
    if (IsJsonSpace(c)) {
      Advance();
      continue;
    }
    switch (state_) {
      case State::kOpen:
        if (c != '[') return Fail(absl::StrCat("expected '[', found ", Describe(c)));
        Advance();
        state_ = State::kFirst;
        continue;
      case State::kAfterArray:
        if (c < 0) return false;
        return Fail(
            absl::StrCat("unexpected ", Describe(c), " after the closing ']' of the JSON array"));
      case State::kAfterElement:
        if (c == ',') {
          Advance();
          state_ = State::kBeforeElement;
        } else if (c == ']') {
          Advance();
          state_ = State::kAfterArray;
        } else if (c < 0) {
          return Fail("the JSON array is not closed: ']' is missing at the end of the file",
                      /*at_end=*/true);
        } else {
          return Fail(absl::StrCat("expected ',' or ']' after element ", index_,
                                   " of the JSON array, found ", Describe(c)));
        }
        continue;
      case State::kFirst:
      case State::kBeforeElement:
        if (c < 0) {
          return Fail("the JSON array is not closed: ']' is missing at the end of the file",
                      /*at_end=*/true);
        }
        if (c == ']') {
          if (state_ == State::kBeforeElement) {
            return Fail("',' before ']': a JSON array has no trailing comma");
          }
          Advance();
          state_ = State::kAfterArray;
          continue;
        }
        if (c == ',') {
          return Fail(
              absl::StrCat("expected element ", index_ + 1, " of the JSON array, found ','"));
        }
        element_.clear();
        too_long_ = false;
        ++index_;
        element->line = at_line_start_ ? line_ + 1 : line_;
        if (absl::Status s = ScanElement(c); !s.ok()) return s;
        element->text = element_;
        element->index = index_;
        element->too_long = too_long_;
        state_ = State::kAfterElement;
        return true;
    }
  }
}

}  // namespace verdict
