// Fuzzes the preference reader (core/data): JSONL, JSON arrays, ShareGPT, gzip, every chat
// format. The first byte picks the options; the rest is the file's contents.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/data/preference_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t selector = data[0];
  verdict::PreferenceReaderOptions options;
  options.skip_invalid = (selector & 1) != 0;
  options.format = static_cast<verdict::DataFormat>((selector >> 1) % 4);
  options.chat_format = static_cast<verdict::ChatFormat>((selector >> 3) % 8);
  // Small enough that over-long lines are reached too.
  options.max_line_bytes = 4096;
  std::string contents(reinterpret_cast<const char*>(data + 1), size - 1);
  auto read = verdict::ReadPreferenceString(std::move(contents), "fuzz.jsonl", options);
  if (read.ok()) {
    // Every pair handed out must be readable whole.
    size_t bytes = 0;
    for (const auto& pair : read->pairs) bytes += pair.chosen.size() + pair.rejected.size();
    (void)bytes;
  }
  return 0;
}
