// Fuzzes TokenizerJson::FromStrings (core/tokenize) with a tokenizer.json (and, after a NUL
// byte, a tokenizer_config.json), then encodes and decodes a few fixed texts with whatever
// loads: normalizers, pre-tokenizer regexes, BPE merges, added tokens, post-processors.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/tokenize/tokenizer_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const absl::string_view json = input.substr(0, nul);
  const absl::string_view config =
      nul == absl::string_view::npos ? absl::string_view() : input.substr(nul + 1);
  auto tokenizer = verdict::TokenizerJson::FromStrings(json, config, "fuzz/tokenizer.json");
  if (!tokenizer.ok()) return 0;
  for (absl::string_view text : {"hello world", "", " a<mask>b</s>xyz \xc3\xa9\xff 123!?"}) {
    auto ids = (*tokenizer)->Encode(text);
    if (ids.ok()) (void)(*tokenizer)->Decode(*ids);
    (void)(*tokenizer)->EncodeConcatenated(text, " second");
  }
  return 0;
}
