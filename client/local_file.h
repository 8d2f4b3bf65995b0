// Reading files on the client's machine (job files, CA certificates, datasets to upload), with
// errors that name the file. Thread-safe (no shared state).
#ifndef VERDICT_CLIENT_LOCAL_FILE_H_
#define VERDICT_CLIENT_LOCAL_FILE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace verdict::client {

// The whole file. NOT_FOUND if it does not exist, PERMISSION_DENIED if it cannot be read,
// INVALID_ARGUMENT for a directory, each message naming the path.
absl::StatusOr<std::string> ReadLocalFile(absl::string_view path);

// An errno value as a Status whose message starts with `context` (usually the path).
absl::Status ErrnoToStatus(int error_number, absl::string_view context);

}  // namespace verdict::client

#endif  // VERDICT_CLIENT_LOCAL_FILE_H_
