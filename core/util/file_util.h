// Small file helpers shared by core: whole-file reads and atomic writes.
//
// WriteFileAtomically writes to a temporary file beside `path`, fsyncs it, renames it over
// `path` and fsyncs the directory, so a crash leaves either the old or the new file, never a
// torn one. Thread-safe as long as two callers do not write the same path at once.
#ifndef VERDICT_CORE_UTIL_FILE_UTIL_H_
#define VERDICT_CORE_UTIL_FILE_UTIL_H_

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace verdict {

absl::StatusOr<std::string> ReadFileToString(const std::string& path);
absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents);

}  // namespace verdict

#endif  // VERDICT_CORE_UTIL_FILE_UTIL_H_
