#include "client/dataset_upload.h"

#include <openssl/evp.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/local_file.h"
#include "client/output.h"

namespace verdict::client {
namespace {

struct FileCloser {
  void operator()(std::FILE* file) const { std::fclose(file); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

absl::StatusOr<File> OpenForReading(const std::string& path) {
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": is a directory, not a file"));
  }
  File file(std::fopen(path.c_str(), "rb"));
  if (file == nullptr) return ErrnoToStatus(errno, path);
  return file;
}

}  // namespace

absl::StatusOr<FileDigest> DigestLocalFile(absl::string_view path) {
  const std::string name(path);
  absl::StatusOr<File> file = OpenForReading(name);
  if (!file.ok()) return file.status();
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> hash(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (hash == nullptr || EVP_DigestInit_ex(hash.get(), EVP_sha256(), nullptr) != 1) {
    return absl::InternalError("OpenSSL: cannot start a SHA-256 digest");
  }
  FileDigest digest;
  std::vector<char> buffer(1 << 20);
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), file->get())) > 0) {
    EVP_DigestUpdate(hash.get(), buffer.data(), n);
    digest.size += static_cast<int64_t>(n);
  }
  if (std::ferror(file->get())) return ErrnoToStatus(errno, name);
  unsigned char bytes[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(hash.get(), bytes, &length);
  static constexpr char kHex[] = "0123456789abcdef";
  for (unsigned int i = 0; i < length; ++i) {
    digest.sha256 += kHex[bytes[i] >> 4];
    digest.sha256 += kHex[bytes[i] & 15];
  }
  return digest;
}

absl::StatusOr<verdict::v1::Dataset> UploadDatasetFile(Connection& connection,
                                                       absl::string_view path,
                                                       const UploadOptions& options) {
  const std::string name(path);
  absl::StatusOr<FileDigest> digest = DigestLocalFile(name);
  if (!digest.ok()) return digest.status();
  if (digest->size == 0) return absl::InvalidArgumentError(absl::StrCat(name, ": file is empty"));
  absl::StatusOr<File> file = OpenForReading(name);
  if (!file.ok()) return file.status();

  verdict::v1::Dataset dataset;
  std::unique_ptr<grpc::ClientContext> context = connection.NewContext(/*deadline=*/false);
  std::unique_ptr<grpc::ClientWriter<verdict::v1::UploadDatasetRequest>> writer =
      connection.datasets().UploadDataset(context.get(), &dataset);

  verdict::v1::UploadDatasetRequest first;
  verdict::v1::UploadDatasetMetadata* metadata = first.mutable_metadata();
  metadata->set_name(options.name.empty() ? std::filesystem::path(name).filename().string()
                                          : options.name);
  metadata->set_expected_size_bytes(digest->size);
  metadata->set_sha256(digest->sha256);
  metadata->set_skip_invalid(options.skip_invalid);
  bool open = writer->Write(first);

  std::vector<char> buffer(static_cast<size_t>(options.chunk_bytes));
  int64_t sent = 0;
  absl::Status read_error;
  while (open) {
    const size_t n = std::fread(buffer.data(), 1, buffer.size(), file->get());
    if (n == 0) {
      if (std::ferror(file->get())) read_error = ErrnoToStatus(errno, name);
      break;
    }
    verdict::v1::UploadDatasetRequest chunk;
    chunk.set_chunk(buffer.data(), n);
    // A false Write means the server already ended the call; Finish() says why.
    open = writer->Write(chunk);
    sent += static_cast<int64_t>(n);
    if (open && options.on_progress) options.on_progress(sent, digest->size);
  }
  if (!read_error.ok()) {
    // Abandon the stream so the server keeps nothing.
    context->TryCancel();
    (void)writer->Finish();
    return read_error;
  }
  writer->WritesDone();
  const grpc::Status status = writer->Finish();
  if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
    // The server checked the bytes ("line 3: missing \"rejected\""): say which file.
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", status.error_message()));
  }
  if (!status.ok()) return FromGrpc(status);
  return dataset;
}

}  // namespace verdict::client
