#include "core/model/device.h"

#include <algorithm>
#include <limits>

#include "absl/strings/ascii.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace verdict {

absl::StatusOr<Device> ParseDeviceName(absl::string_view name) {
  if (name == "cpu") return Device{DeviceKind::kCpu, -1};
  if (name == "cuda") return Device{DeviceKind::kCuda, -1};
  if (absl::StartsWith(name, "cuda:")) {
    // Any index parses: whether this machine has that device is CheckDeviceAvailable's
    // question (FailedPrecondition), not a malformed name's. An index past int's range
    // saturates (no machine has that many devices) instead of reading as malformed.
    const absl::string_view digits = name.substr(5);
    if (!digits.empty() && digits.size() <= 64 &&
        std::all_of(digits.begin(), digits.end(), absl::ascii_isdigit)) {
      int index = 0;
      if (!absl::SimpleAtoi(digits, &index)) index = std::numeric_limits<int>::max();
      return Device{DeviceKind::kCuda, index};
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown device \"", name, "\" (want cpu, cuda or cuda:N)"));
}

std::string DeviceName(const Device& device) {
  if (!device.is_cuda()) return "cpu";
  return device.index < 0 ? "cuda" : absl::StrCat("cuda:", device.index);
}

absl::StatusOr<Dtype> ParseDtypeName(absl::string_view name) {
  if (name == "float32" || name == "fp32") return Dtype::kFloat32;
  if (name == "bfloat16" || name == "bf16") return Dtype::kBFloat16;
  if (name == "float16" || name == "fp16") return Dtype::kFloat16;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown dtype \"", name, "\" (want float32, bfloat16 or float16)"));
}

}  // namespace verdict
