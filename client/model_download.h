// ModelDirectoryWriter: writes the chunks of a ModelService.DownloadModel stream into a
// directory, checking everything the stream promises before trusting a byte of it: each
// chunk's sha256, each file's size and sha256 on its last chunk, chunks in order without gaps,
// and paths that stay inside the directory (relative, no "..", no links followed).
//
// `verdict export` writes into a fresh temporary directory with one of these and renames it
// into place only when Finish() says the download is whole, so a damaged or interrupted
// download never leaves a directory that looks like a model.
//
// Example:
//   ModelDirectoryWriter writer(temp_dir);
//   while (reader->Read(&chunk)) RETURN_IF_ERROR(writer.Write(chunk));
//   RETURN_IF_ERROR(writer.Finish());
//
// Thread safety: one thread at a time (it is a sequential stream consumer).
#ifndef VERDICT_CLIENT_MODEL_DOWNLOAD_H_
#define VERDICT_CLIENT_MODEL_DOWNLOAD_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "verdict/v1/models.pb.h"

namespace verdict::client {

// SHA-256 of `bytes`, 64 lowercase hex digits.
std::string Sha256Hex(absl::string_view bytes);

// OK for a path a download may write under its directory: relative, "/"-separated, and free
// of empty, "." and ".." components. INVALID_ARGUMENT naming the path otherwise.
absl::Status CheckDownloadPath(absl::string_view path);

class ModelDirectoryWriter {
 public:
  // `dir` must exist; files are created in it (O_EXCL: a path sent twice is an error).
  explicit ModelDirectoryWriter(std::string dir) : dir_(std::move(dir)) {}
  ~ModelDirectoryWriter();
  ModelDirectoryWriter(const ModelDirectoryWriter&) = delete;
  ModelDirectoryWriter& operator=(const ModelDirectoryWriter&) = delete;

  // Verifies and writes one chunk. DATA_LOSS naming the file and offset for a sha256 or size
  // mismatch, or a chunk out of order; INVALID_ARGUMENT for a path outside the directory;
  // the OS error for a write that fails.
  absl::Status Write(const verdict::v1::ModelChunk& chunk);
  // DATA_LOSS if the stream ended in the middle of a file or carried no file at all.
  absl::Status Finish();

  int64_t files() const { return files_; }
  int64_t bytes() const { return bytes_; }

 private:
  absl::Status CloseFile();

  const std::string dir_;
  // The file being written: its path, descriptor (-1 between files), bytes so far, digest.
  std::string path_;
  int fd_ = -1;
  int64_t written_ = 0;
  void* digest_ = nullptr;  // EVP_MD_CTX*, kept out of the header
  int64_t files_ = 0;
  int64_t bytes_ = 0;
};

}  // namespace verdict::client

#endif  // VERDICT_CLIENT_MODEL_DOWNLOAD_H_
