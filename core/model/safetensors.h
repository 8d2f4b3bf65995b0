// Reading and writing the safetensors format (https://github.com/huggingface/safetensors):
// an 8-byte little-endian header length N, N bytes of JSON mapping tensor names to
// {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the data that follows
// the header; optional "__metadata__" string-to-string map), then the raw little-endian
// tensor bytes.
//
// Reading validates everything before touching tensor data: header length within the file,
// JSON well formed, every entry's fields present and typed, known dtype (F32, F16, BF16, F64,
// I64, I32, I16, I8, U8, BOOL), no negative dimension, shape consistent with the byte range,
// offsets in range and, sorted, covering the data exactly (no overlap, no gap, nothing
// trailing). Errors: a malformed file is InvalidArgument (the caller handed us bad input;
// the same code whether the bytes came from disk or the network); a missing file is NotFound.
// Every message names the file and, where there is one, the tensor. c10::Error never escapes.
//
// Writing follows the reference implementation: tensors ordered by item size (largest first,
// so every tensor's data stays aligned to its element size) and then by name, the header
// padded with spaces to a multiple of 8 bytes, metadata {"format": "pt"}.
//
// Example:
//   ASSIGN_OR_RETURN(TensorMap weights, ReadModelWeights(model_dir));
//   const at::Tensor& embeddings = weights.at("model.embed_tokens.weight");
//
// Thread-compatible free functions.
#ifndef VERDICT_CORE_MODEL_SAFETENSORS_H_
#define VERDICT_CORE_MODEL_SAFETENSORS_H_

#include <ATen/core/Tensor.h>

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace verdict {

// Tensors by name, ordered by name.
using TensorMap = std::map<std::string, at::Tensor>;

// Parses a whole safetensors file held in memory. `source` names it in errors. The returned
// tensors own their memory (CPU, contiguous, the file's dtype); "__metadata__" is checked
// and dropped.
absl::StatusOr<TensorMap> ParseSafetensors(absl::string_view bytes, absl::string_view source);
absl::StatusOr<TensorMap> ReadSafetensors(const std::string& path);

// Reads the weights of a Hugging Face model directory: model.safetensors, or the shards
// listed in model.safetensors.index.json ("weight_map": {tensor name: shard file}). A tensor
// the index lists but its shard lacks, one a shard holds but the index does not place there,
// or one in two shards is an InvalidArgument error naming it. Shard names must be plain file
// names inside `dir`. NotFound when the directory has neither file.
absl::StatusOr<TensorMap> ReadModelWeights(const std::string& dir);

// Serialises `tensors` (copied to CPU, contiguous) with `{"format": "pt"}` metadata.
// Supported dtypes: float32, float16, bfloat16, float64, int64, int32, int16, int8, uint8,
// bool; any other dtype, an undefined tensor or the name "__metadata__" is InvalidArgument.
absl::StatusOr<std::string> SerializeSafetensors(const TensorMap& tensors);
// SerializeSafetensors + WriteFileAtomically.
absl::Status WriteSafetensors(const std::string& path, const TensorMap& tensors);

}  // namespace verdict

#endif  // VERDICT_CORE_MODEL_SAFETENSORS_H_
