// Fuzzes the safetensors reader (core/model): header length, JSON header, dtypes, shapes and
// offsets against the buffer. A file that parses must serialise and parse back to the same
// tensors.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include <ATen/ATen.h>

#include "core/model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<verdict::TensorMap> tensors = verdict::ParseSafetensors(bytes, "fuzz");
  if (!tensors.ok()) return 0;
  absl::StatusOr<std::string> serialized = verdict::SerializeSafetensors(*tensors);
  if (!serialized.ok()) abort();
  absl::StatusOr<verdict::TensorMap> again = verdict::ParseSafetensors(*serialized, "again");
  if (!again.ok() || again->size() != tensors->size()) abort();
  for (const auto& [name, tensor] : *tensors) {
    const at::Tensor& other = again->at(name);
    if (other.sizes() != tensor.sizes() || other.scalar_type() != tensor.scalar_type()) abort();
    // Bitwise: NaNs compare unequal as values.
    if (tensor.numel() > 0 &&
        std::memcmp(other.data_ptr(), tensor.data_ptr(), tensor.nbytes()) != 0) {
      abort();
    }
  }
  return 0;
}
