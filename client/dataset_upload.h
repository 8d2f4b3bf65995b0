// UploadDatasetFile: sends a local preference file to the server's DatasetService.
//
// The file is read twice: once to compute its SHA-256 (OpenSSL EVP) and size, which go in the
// upload's metadata so the server can check what it received, then again in chunks of 1 MiB
// on one UploadDataset stream. A file that changes between the two reads fails on the server
// with DATA_LOSS or INVALID_ARGUMENT rather than storing something else.
//
// Thread-compatible: call from one thread per upload.
#ifndef VERDICT_CLIENT_DATASET_UPLOAD_H_
#define VERDICT_CLIENT_DATASET_UPLOAD_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/connection.h"
#include "verdict/v1/datasets.pb.h"

namespace verdict::client {

struct UploadOptions {
  // Shown in listings; empty means the file's base name.
  std::string name;
  // Accept (and count) invalid lines instead of rejecting the file.
  bool skip_invalid = false;
  // Bytes per chunk message.
  int64_t chunk_bytes = int64_t{1} << 20;
  // Called after each chunk is sent with the bytes sent so far and the file's size.
  std::function<void(int64_t sent, int64_t total)> on_progress;
};

// SHA-256 of the file as 64 lowercase hex digits, and its size.
struct FileDigest {
  std::string sha256;
  int64_t size = 0;
};
absl::StatusOr<FileDigest> DigestLocalFile(absl::string_view path);

// Uploads `path` and returns the Dataset the server created. Local read errors name the file;
// server errors keep their gRPC code and message, and those about the file's contents
// (INVALID_ARGUMENT, e.g. "line 1: not preference data: ...") are prefixed with `path`.
absl::StatusOr<verdict::v1::Dataset> UploadDatasetFile(Connection& connection,
                                                       absl::string_view path,
                                                       const UploadOptions& options);

}  // namespace verdict::client

#endif  // VERDICT_CLIENT_DATASET_UPLOAD_H_
