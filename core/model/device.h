// Device and Dtype: where a model runs and in which precision, as plain values that headers
// without LibTorch (TrainingConfig, the CLI) can hold. Parsed once from text ("cpu", "cuda",
// "cuda:1"; "float32", "bfloat16", "float16"); core/model maps them to c10 types where a
// model is built.
//
// Pure value types and functions; thread-safe.
#ifndef VERDICT_CORE_MODEL_DEVICE_H_
#define VERDICT_CORE_MODEL_DEVICE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace verdict {

enum class DeviceKind { kCpu, kCuda };

struct Device {
  DeviceKind kind = DeviceKind::kCpu;
  int index = -1;  // CUDA only: -1 is "cuda" (the current device), N is "cuda:N"

  bool is_cuda() const { return kind == DeviceKind::kCuda; }
  friend bool operator==(const Device& a, const Device& b) {
    return a.kind == b.kind && a.index == b.index;
  }
  friend bool operator!=(const Device& a, const Device& b) { return !(a == b); }
};

// "cpu", "cuda", "cuda:N" (N >= 0). InvalidArgument otherwise.
absl::StatusOr<Device> ParseDeviceName(absl::string_view name);
// The text ParseDeviceName reads back.
std::string DeviceName(const Device& device);

// kFloat32: everything in float32. kBFloat16 / kFloat16: the precision of the compute; for
// training, parameters and optimizer state stay float32 (autocast), for inference the weights
// are cast.
enum class Dtype { kFloat32, kBFloat16, kFloat16 };

// "float32" (or "fp32"), "bfloat16" ("bf16"), "float16" ("fp16"). InvalidArgument otherwise.
absl::StatusOr<Dtype> ParseDtypeName(absl::string_view name);
// "float32", "bfloat16", "float16".
inline absl::string_view DtypeName(Dtype dtype) {
  switch (dtype) {
    case Dtype::kFloat32:
      return "float32";
    case Dtype::kBFloat16:
      return "bfloat16";
    case Dtype::kFloat16:
      return "float16";
  }
  return "float32";
}

}  // namespace verdict

#endif  // VERDICT_CORE_MODEL_DEVICE_H_
