#include "core/tokenize/utf8.h"

#include <utf8proc.h>

#include "absl/strings/str_cat.h"

namespace verdict {

absl::Status ValidateUtf8(absl::string_view text) {
  const auto* bytes = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
  size_t offset = 0;
  while (offset < text.size()) {
    utf8proc_int32_t code_point;
    const utf8proc_ssize_t length =
        utf8proc_iterate(bytes + offset, static_cast<utf8proc_ssize_t>(text.size() - offset),
                         &code_point);
    if (length <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("text is not valid UTF-8 (bad byte sequence at offset ", offset, ")"));
    }
    offset += static_cast<size_t>(length);
  }
  return absl::OkStatus();
}

std::u32string DecodeUtf8(absl::string_view text) {
  std::u32string out;
  out.reserve(text.size());
  const auto* bytes = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
  size_t offset = 0;
  while (offset < text.size()) {
    utf8proc_int32_t code_point;
    const utf8proc_ssize_t length =
        utf8proc_iterate(bytes + offset, static_cast<utf8proc_ssize_t>(text.size() - offset),
                         &code_point);
    if (length <= 0) {
      // Callers validate first; a stray byte still must not loop forever.
      out.push_back(0xFFFD);
      ++offset;
      continue;
    }
    out.push_back(static_cast<char32_t>(code_point));
    offset += static_cast<size_t>(length);
  }
  return out;
}

void AppendUtf8(char32_t code_point, std::string* out) {
  utf8proc_uint8_t buffer[4];
  const utf8proc_ssize_t length =
      utf8proc_encode_char(static_cast<utf8proc_int32_t>(code_point), buffer);
  out->append(reinterpret_cast<const char*>(buffer), static_cast<size_t>(length));
}

std::string EncodeUtf8(const std::u32string& code_points) {
  std::string out;
  out.reserve(code_points.size());
  for (char32_t code_point : code_points) AppendUtf8(code_point, &out);
  return out;
}

}  // namespace verdict
