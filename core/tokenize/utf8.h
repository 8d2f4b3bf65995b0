// UTF-8 helpers shared by the tokenizers: validation with a useful error, and conversion
// between UTF-8 and code points. Internal to core/tokenize.
//
// Thread-compatible: pure functions.
#ifndef VERDICT_CORE_TOKENIZE_UTF8_H_
#define VERDICT_CORE_TOKENIZE_UTF8_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace verdict {

// OK when `text` is well-formed UTF-8 (no overlong forms, surrogates or code points above
// U+10FFFF); otherwise InvalidArgument naming the byte offset of the first bad sequence.
absl::Status ValidateUtf8(absl::string_view text);

// The code points of `text`, which must be valid UTF-8 (see ValidateUtf8).
std::u32string DecodeUtf8(absl::string_view text);

void AppendUtf8(char32_t code_point, std::string* out);
std::string EncodeUtf8(const std::u32string& code_points);

}  // namespace verdict

#endif  // VERDICT_CORE_TOKENIZE_UTF8_H_
