#include "server/path_resolver.h"

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace verdict::server {

namespace fs = std::filesystem;

absl::StatusOr<std::string> ResolveUnderRoot(const std::string& root, absl::string_view relative,
                                             absl::string_view field) {
  if (relative.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": must be set"));
  if (relative.size() > 1024) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": longer than 1024 bytes"));
  }
  if (absl::StrContains(relative, std::string(1, '\0'))) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": contains a NUL byte"));
  }
  const fs::path path{std::string(relative)};
  if (path.is_absolute()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": must be relative to the server's root directory, got \"", relative, "\""));
  }
  for (const fs::path& part : path) {
    if (part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": must not contain \"..\", got \"", relative, "\""));
    }
  }
  std::error_code error;
  fs::path canonical_root = fs::weakly_canonical(root, error);
  if (error) return absl::InternalError(absl::StrCat("cannot resolve root ", root, ": ", error.message()));
  if (canonical_root.filename().empty()) canonical_root = canonical_root.parent_path();
  const fs::path joined = canonical_root / path;
  if (!fs::exists(joined, error)) {
    return absl::NotFoundError(absl::StrCat(field, ": \"", relative, "\" does not exist"));
  }
  const fs::path resolved = fs::canonical(joined, error);
  if (error) return absl::NotFoundError(absl::StrCat(field, ": cannot resolve \"", relative, "\": ", error.message()));
  // Compare whole components: "/data-other" is not under "/data".
  auto root_it = canonical_root.begin();
  auto it = resolved.begin();
  for (; root_it != canonical_root.end(); ++root_it, ++it) {
    if (it == resolved.end() || *it != *root_it) {
      return absl::PermissionDeniedError(
          absl::StrCat(field, ": \"", relative, "\" resolves outside the server's root directory"));
    }
  }
  return resolved.string();
}

}  // namespace verdict::server
