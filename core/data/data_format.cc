#include "core/data/data_format.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace verdict {
namespace {

constexpr std::pair<DataFormat, absl::string_view> kNames[] = {
    {DataFormat::kAuto, "auto"},
    {DataFormat::kJsonl, "jsonl"},
    {DataFormat::kJson, "json"},
    {DataFormat::kShareGpt, "sharegpt"},
};

}  // namespace

absl::StatusOr<DataFormat> ParseDataFormat(absl::string_view name) {
  for (const auto& [format, format_name] : kNames) {
    if (name == format_name) return format;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown data format \"", name, "\" (expected auto, jsonl, json or sharegpt)"));
}

absl::string_view DataFormatName(DataFormat format) {
  for (const auto& [f, name] : kNames) {
    if (f == format) return name;
  }
  return "auto";  // unreachable: the table lists every format
}

}  // namespace verdict
