// Fuzzes SentencePieceTokenizer::FromSerializedProto (core/tokenize) with the bytes of a
// `.model` file, then encodes and decodes a fixed text with whatever loads. sentencepiece itself
// (in libverdict_sentencepiece.so) is not instrumented for coverage; this target guards the
// module boundary and verdict's checks of what a model defines (special ids, byte pieces).
#include <cstddef>
#include <cstdint>

#include "core/tokenize/sentencepiece_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto tokenizer = verdict::SentencePieceTokenizer::FromSerializedProto(bytes);
  if (!tokenizer.ok()) return 0;
  for (absl::string_view text : {"Hello world", "", "  a\tb\n\xc3\xa9\xe2\x82\xac \xf0\x9f\x98\x80 <s></s>"}) {
    auto ids = (*tokenizer)->Encode(text);
    if (ids.ok()) (void)(*tokenizer)->Decode(*ids);
    (void)(*tokenizer)->EncodeConcatenated(text, "second part");
  }
  return 0;
}
