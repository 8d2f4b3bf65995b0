// Resolves a client-supplied relative path under one of the server's root directories
// (--data_dir, --model_dir) and refuses anything that would leave it.
//
//   "", absolute paths, a ".." component, NUL bytes, > 1024 bytes   -> INVALID_ARGUMENT
//   a path that exists but resolves (through symbolic links) outside the root -> PERMISSION_DENIED
//   a path that does not exist                                       -> NOT_FOUND
// Every message starts with the request's field name. Thread-safe free function.
#ifndef VERDICT_SERVER_PATH_RESOLVER_H_
#define VERDICT_SERVER_PATH_RESOLVER_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace verdict::server {

// Returns the canonical absolute path of `relative` under `root`.
absl::StatusOr<std::string> ResolveUnderRoot(const std::string& root, absl::string_view relative,
                                             absl::string_view field);

}  // namespace verdict::server

#endif  // VERDICT_SERVER_PATH_RESOLVER_H_
