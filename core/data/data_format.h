// DataFormat: how a preference data file is laid out, as a job or a reader names it.
//
// kAuto, the default, reads any accepted file: the container from the first byte that is not
// whitespace ("[" a JSON array, anything else JSON Lines) and the layout record by record
// (see preference_reader.h). The others name what the file must be, so that a file that is
// not gets an error saying so instead of a guess:
//   kJsonl     JSON Lines: one record per line, any record layout.
//   kJson      one JSON array of records, any record layout.
//   kShareGpt  LLaMA-Factory's ShareGPT preference records ("conversations", "chosen",
//              "rejected"), in either container.
// Pure functions: thread-safe.
#ifndef VERDICT_CORE_DATA_DATA_FORMAT_H_
#define VERDICT_CORE_DATA_DATA_FORMAT_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace verdict {

// Values are stable (stored settings name formats by name, but keep the order anyway).
enum class DataFormat { kAuto, kJsonl, kJson, kShareGpt };

// "auto", "jsonl", "json", "sharegpt" and back.
absl::StatusOr<DataFormat> ParseDataFormat(absl::string_view name);
absl::string_view DataFormatName(DataFormat format);

}  // namespace verdict

#endif  // VERDICT_CORE_DATA_DATA_FORMAT_H_
