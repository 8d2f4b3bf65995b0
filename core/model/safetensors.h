// Reading and writing the safetensors format (https://github.com/huggingface/safetensors):
// an 8-byte little-endian header length, a JSON header mapping tensor names to
// {dtype, shape, data_offsets}, then the raw little-endian tensor bytes.
//
// Reading validates everything before touching tensor data: header length within the file,
// JSON well formed, known dtype (F32, F16, BF16, F64, I64, I32, I8, U8, BOOL), shape
// consistent with the byte range, offsets in range, sorted without overlap or gaps. Every
// error names the file and, where there is one, the tensor.
//
// Thread-compatible free functions.
#ifndef VERDICT_CORE_MODEL_SAFETENSORS_H_
#define VERDICT_CORE_MODEL_SAFETENSORS_H_

#include <map>
#include <string>
#include "absl/strings/string_view.h"

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace verdict {

// Tensors by name, ordered by name.
using TensorMap = std::map<std::string, at::Tensor>;

// Parses a whole safetensors file held in memory. `source` names it in errors. The returned
// tensors own their memory (CPU, the file's dtype).
absl::StatusOr<TensorMap> ParseSafetensors(absl::string_view bytes, absl::string_view source);
absl::StatusOr<TensorMap> ReadSafetensors(const std::string& path);

// Reads the weights of a Hugging Face model directory: model.safetensors, or the shards
// listed in model.safetensors.index.json ("weight_map": {tensor name: shard file}).
absl::StatusOr<TensorMap> ReadModelWeights(const std::string& dir);

// Serialises `tensors` (moved to CPU, contiguous) with `{"format": "pt"}` metadata.
// Supported dtypes: float32, float16, bfloat16, float64, int64, int32, int8, uint8, bool.
absl::StatusOr<std::string> SerializeSafetensors(const TensorMap& tensors);
// SerializeSafetensors + WriteFileAtomically.
absl::Status WriteSafetensors(const std::string& path, const TensorMap& tensors);

}  // namespace verdict

#endif  // VERDICT_CORE_MODEL_SAFETENSORS_H_
