// Resolves a client-supplied relative path under one of the server's root directories
// (--data_dir, --model_dir) and refuses anything that would leave it.
//
//   "", absolute paths, a ".." component, NUL bytes, > 1024 bytes   -> INVALID_ARGUMENT
//   a path that exists but resolves (through symbolic links) outside the root -> PERMISSION_DENIED
//   a path that does not exist                                       -> NOT_FOUND
// Every message starts with the request's field name and quotes the path as the client gave
// it, never the server's absolute path. Thread-safe free functions.
//
// A directory is confined as a whole (ListTreeUnderRoot): what the server later reads of it
// -- an import's copy, a trainer's base model -- is every file at any depth, and a symbolic
// link anywhere inside may point elsewhere. Links that stay under the root are followed (a
// Hugging Face cache's snapshot links into its blobs); one that leaves it is refused by its
// relative path. Checked when the request arrives: a link swapped afterwards by someone who
// can write under the root is not caught (the root is the operator's, not the client's).
#ifndef VERDICT_SERVER_PATH_RESOLVER_H_
#define VERDICT_SERVER_PATH_RESOLVER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace verdict::server {

// Returns the canonical absolute path of `relative` under `root`.
absl::StatusOr<std::string> ResolveUnderRoot(const std::string& root, absl::string_view relative,
                                             absl::string_view field);

// ResolveUnderRoot, and the result must be a regular file (not a directory):
// INVALID_ARGUMENT otherwise.
absl::StatusOr<std::string> ResolveFileUnderRoot(const std::string& root,
                                                 absl::string_view relative,
                                                 absl::string_view field);

// One regular file of a directory tree.
struct TreeFile {
  std::string relative;  // under the directory, as the directory names it ("sub/config.json")
  std::string resolved;  // canonical absolute path, under the root
};

// ResolveUnderRoot for a directory, then every regular file below it at any depth, links
// followed where they stay under `root`. Refused, naming "<relative>/<entry>":
//   a link resolving outside the root                      -> PERMISSION_DENIED
//   a dangling link                                        -> NOT_FOUND
//   a FIFO, socket or device; a link loop; > 100000 files  -> INVALID_ARGUMENT
// Sorted by `relative`.
absl::StatusOr<std::vector<TreeFile>> ListTreeUnderRoot(const std::string& root,
                                                        absl::string_view relative,
                                                        absl::string_view field);

}  // namespace verdict::server

#endif  // VERDICT_SERVER_PATH_RESOLVER_H_
