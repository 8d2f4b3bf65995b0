#include "client/model_download.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace verdict::client {
namespace {

EVP_MD_CTX* Digest(void* digest) { return static_cast<EVP_MD_CTX*>(digest); }

std::string FinishHex(EVP_MD_CTX* digest) {
  unsigned char bytes[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(digest, bytes, &length);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(bytes), length));
}

}  // namespace

std::string Sha256Hex(absl::string_view bytes) {
  EVP_MD_CTX* digest = EVP_MD_CTX_new();
  EVP_DigestInit_ex(digest, EVP_sha256(), nullptr);
  EVP_DigestUpdate(digest, bytes.data(), bytes.size());
  std::string hex = FinishHex(digest);
  EVP_MD_CTX_free(digest);
  return hex;
}

absl::Status CheckDownloadPath(absl::string_view path) {
  bool valid = !path.empty() && path.front() != '/' && path.find('\0') == path.npos;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    valid = valid && !part.empty() && part != "." && part != "..";
  }
  if (!valid) {
    return absl::InvalidArgumentError(
        absl::StrCat("the server sent the file path \"", absl::CHexEscape(path),
                     "\", which is not a plain relative path inside the model directory"));
  }
  return absl::OkStatus();
}

ModelDirectoryWriter::~ModelDirectoryWriter() {
  if (fd_ >= 0) close(fd_);
  if (digest_ != nullptr) EVP_MD_CTX_free(Digest(digest_));
}

absl::Status ModelDirectoryWriter::Write(const verdict::v1::ModelChunk& chunk) {
  const std::string where = absl::StrCat(chunk.path(), " at offset ", chunk.offset());
  if (fd_ >= 0 && chunk.path() != path_) {
    return absl::DataLossError(absl::StrCat("the download moved on to ", chunk.path(),
                                            " before the last chunk of ", path_));
  }
  if (fd_ < 0) {
    if (absl::Status valid = CheckDownloadPath(chunk.path()); !valid.ok()) return valid;
    if (chunk.offset() != 0) {
      return absl::DataLossError(absl::StrCat("the first chunk of ", where, " is not at 0"));
    }
    const std::filesystem::path full = std::filesystem::path(dir_) / chunk.path();
    std::error_code error;
    std::filesystem::create_directories(full.parent_path(), error);
    // O_NOFOLLOW | O_EXCL: never write through a link or over a file written already.
    fd_ = open(full.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      return absl::InternalError(
          absl::StrCat("cannot create ", full.string(), ": ", std::strerror(errno)));
    }
    path_ = chunk.path();
    written_ = 0;
    if (digest_ == nullptr) digest_ = EVP_MD_CTX_new();
    EVP_DigestInit_ex(Digest(digest_), EVP_sha256(), nullptr);
  } else if (chunk.offset() != written_) {
    return absl::DataLossError(
        absl::StrCat("chunk of ", where, " out of order: expected offset ", written_));
  }
  const std::string actual = Sha256Hex(chunk.data());
  if (actual != chunk.sha256()) {
    return absl::DataLossError(absl::StrCat("checksum mismatch in the chunk of ", where, " (",
                                            chunk.data().size(), " bytes): sha256 ", actual,
                                            ", the server sent ", chunk.sha256()));
  }
  for (size_t done = 0; done < chunk.data().size();) {
    const ssize_t n = ::write(fd_, chunk.data().data() + done, chunk.data().size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return absl::InternalError(absl::StrCat("cannot write ", path_, ": ", std::strerror(errno)));
    }
    done += n;
  }
  EVP_DigestUpdate(Digest(digest_), chunk.data().data(), chunk.data().size());
  written_ += chunk.data().size();
  bytes_ += chunk.data().size();
  if (!chunk.last_chunk()) return absl::OkStatus();
  if (written_ != chunk.file_size_bytes()) {
    return absl::DataLossError(absl::StrCat(
        path_, ": received ", written_, " bytes, the server's file has ", chunk.file_size_bytes()));
  }
  const std::string file_sha256 = FinishHex(Digest(digest_));
  if (file_sha256 != chunk.file_sha256()) {
    return absl::DataLossError(absl::StrCat("checksum mismatch in ", path_, ": sha256 ",
                                            file_sha256, ", the server sent ",
                                            chunk.file_sha256()));
  }
  return CloseFile();
}

absl::Status ModelDirectoryWriter::CloseFile() {
  // fsync before the rename that publishes the directory: a crash must not leave a renamed
  // directory of empty files.
  const bool ok = fsync(fd_) == 0;
  const bool closed = close(fd_) == 0;
  fd_ = -1;
  if (!ok || !closed) {
    return absl::InternalError(absl::StrCat("cannot write ", path_, ": ", std::strerror(errno)));
  }
  ++files_;
  return absl::OkStatus();
}

absl::Status ModelDirectoryWriter::Finish() {
  if (fd_ >= 0) {
    return absl::DataLossError(absl::StrCat("the download ended in the middle of ", path_, " (",
                                            written_, " bytes received)"));
  }
  if (files_ == 0) return absl::DataLossError("the download carried no files");
  return absl::OkStatus();
}

}  // namespace verdict::client
