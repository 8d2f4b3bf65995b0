// Fuzzes config.json parsing (core/model). A config that parses must serialise to a config.json
// that parses again and serialises to the same text (SerializeModelConfig's contract, with its
// pad-id exception applied once).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/model/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<verdict::ModelConfig> config = verdict::ParseModelConfig(text);
  if (!config.ok()) return 0;
  (void)verdict::EffectiveMaxLength(*config, 512);
  const std::string serialized = verdict::SerializeModelConfig(*config);
  absl::StatusOr<verdict::ModelConfig> again = verdict::ParseModelConfig(serialized);
  if (!again.ok()) {
    fprintf(stderr, "serialised config does not parse: %s\n%s\n",
            std::string(again.status().message()).c_str(), serialized.c_str());
    abort();
  }
  const std::string twice = verdict::SerializeModelConfig(*again);
  if (twice != serialized) {
    fprintf(stderr, "not a fixed point:\n%s\n%s\n", serialized.c_str(), twice.c_str());
    abort();
  }
  return 0;
}
