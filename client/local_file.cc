#include "client/local_file.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "absl/strings/str_cat.h"

namespace verdict::client {

absl::Status ErrnoToStatus(int error_number, absl::string_view context) {
  const std::string message = absl::StrCat(context, ": ", std::strerror(error_number));
  switch (error_number) {
    case ENOENT:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    default:
      return absl::InvalidArgumentError(message);
  }
}

absl::StatusOr<std::string> ReadLocalFile(absl::string_view path) {
  const std::string name(path);
  std::error_code error;
  if (std::filesystem::is_directory(name, error)) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": is a directory, not a file"));
  }
  std::ifstream in(name, std::ios::binary);
  if (!in) return ErrnoToStatus(errno, name);
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return ErrnoToStatus(errno, name);
  return std::move(contents).str();
}

}  // namespace verdict::client
