#include "server/path_resolver.h"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/util/status_macros.h"

namespace verdict::server {

namespace fs = std::filesystem;

namespace {

// Files a tree may hold, and how deep it may nest: far above any model directory, low enough
// that a hostile tree cannot make a request walk for long.
constexpr size_t kMaxTreeFiles = 100000;
constexpr int kMaxTreeDepth = 64;

absl::StatusOr<fs::path> CanonicalRoot(const std::string& root) {
  std::error_code error;
  fs::path canonical_root = fs::weakly_canonical(root, error);
  if (error) {
    return absl::InternalError(absl::StrCat("cannot resolve root ", root, ": ", error.message()));
  }
  if (canonical_root.filename().empty()) canonical_root = canonical_root.parent_path();
  return canonical_root;
}

// Whether canonical `path` is `root` or below it, comparing whole components: "/data-other"
// is not under "/data".
bool IsUnder(const fs::path& root, const fs::path& path) {
  auto it = path.begin();
  for (auto root_it = root.begin(); root_it != root.end(); ++root_it, ++it) {
    if (it == path.end() || *it != *root_it) return false;
  }
  return true;
}

}  // namespace

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
  ASSIGN_OR_RETURN(const fs::path canonical_root, CanonicalRoot(root));
  std::error_code error;
  const fs::path joined = canonical_root / path;
  if (!fs::exists(joined, error)) {
    return absl::NotFoundError(absl::StrCat(field, ": \"", relative, "\" does not exist"));
  }
  const fs::path resolved = fs::canonical(joined, error);
  if (error) return absl::NotFoundError(absl::StrCat(field, ": cannot resolve \"", relative, "\": ", error.message()));
  if (!IsUnder(canonical_root, resolved)) {
    return absl::PermissionDeniedError(
        absl::StrCat(field, ": \"", relative, "\" resolves outside the server's root directory"));
  }
  return resolved.string();
}

absl::StatusOr<std::string> ResolveFileUnderRoot(const std::string& root,
                                                 absl::string_view relative,
                                                 absl::string_view field) {
  ASSIGN_OR_RETURN(std::string resolved, ResolveUnderRoot(root, relative, field));
  std::error_code error;
  if (!fs::is_regular_file(resolved, error)) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": \"", relative, "\" is ",
        fs::is_directory(resolved, error) ? "a directory" : "not a regular file", "; name a file"));
  }
  return resolved;
}

absl::StatusOr<std::vector<TreeFile>> ListTreeUnderRoot(const std::string& root,
                                                        absl::string_view relative,
                                                        absl::string_view field) {
  ASSIGN_OR_RETURN(const std::string top, ResolveUnderRoot(root, relative, field));
  ASSIGN_OR_RETURN(const fs::path canonical_root, CanonicalRoot(root));
  std::error_code error;
  if (!fs::is_directory(top, error)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": \"", relative, "\" is not a directory"));
  }
  std::vector<TreeFile> files;
  // The canonical directories being walked: a link back into one of them is a loop.
  std::set<fs::path> walking = {fs::path(top)};
  std::function<absl::Status(const fs::path&, const fs::path&, int)> walk =
      [&](const fs::path& dir, const fs::path& dir_relative, int depth) -> absl::Status {
    if (depth > kMaxTreeDepth) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": \"", relative, "\" nests deeper than ", kMaxTreeDepth, " directories"));
    }
    std::vector<fs::directory_entry> entries;
    fs::directory_iterator it(dir, error);
    for (; !error && it != fs::directory_iterator(); it.increment(error)) entries.push_back(*it);
    if (error) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": cannot list \"",
                       (fs::path(std::string(relative)) / dir_relative).generic_string(),
                       "\": ", error.message()));
    }
    for (const fs::directory_entry& entry : entries) {
      const fs::path entry_relative = dir_relative / entry.path().filename();
      const std::string shown = (fs::path(std::string(relative)) / entry_relative).generic_string();
      fs::path target = entry.path();  // canonical: `dir` is, and the entry is no link
      if (fs::is_symlink(entry.symlink_status(error))) {
        target = fs::canonical(entry.path(), error);
        if (error) {
          return absl::NotFoundError(absl::StrCat(field, ": \"", shown,
                                                  "\" is a symbolic link that cannot be resolved (",
                                                  error.message(), ")"));
        }
        if (!IsUnder(canonical_root, target)) {
          return absl::PermissionDeniedError(absl::StrCat(
              field, ": \"", shown,
              "\" is a symbolic link that resolves outside the server's root directory"));
        }
      }
      const fs::file_status status = fs::status(target, error);
      if (fs::is_directory(status)) {
        if (!walking.insert(target).second) {
          return absl::InvalidArgumentError(
              absl::StrCat(field, ": \"", shown, "\" links back into a directory above it"));
        }
        RETURN_IF_ERROR(walk(target, entry_relative, depth + 1));
        walking.erase(target);
      } else if (fs::is_regular_file(status)) {
        if (files.size() >= kMaxTreeFiles) {
          return absl::InvalidArgumentError(absl::StrCat(
              field, ": \"", relative, "\" holds more than ", kMaxTreeFiles, " files"));
        }
        files.push_back({entry_relative.generic_string(), target.string()});
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ": \"", shown, "\" is neither a regular file nor a directory"));
      }
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(walk(fs::path(top), fs::path(), 0));
  std::sort(files.begin(), files.end(),
            [](const TreeFile& a, const TreeFile& b) { return a.relative < b.relative; });
  return files;
}

}  // namespace verdict::server
