#include "server/startup_sweep.h"

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <set>

#include "absl/strings/match.h"
#include "core/util/status_macros.h"

namespace verdict::server {
namespace {

namespace fs = std::filesystem;

// Bytes in the regular files under `path` (links not followed).
int64_t SizeOf(const fs::path& path) {
  std::error_code error;
  if (fs::is_regular_file(fs::symlink_status(path, error))) {
    return static_cast<int64_t>(fs::file_size(path, error));
  }
  int64_t size = 0;
  for (auto it = fs::recursive_directory_iterator(path, error);
       !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
    if (it->is_regular_file(error) && !it->is_symlink(error)) {
      size += static_cast<int64_t>(it->file_size(error));
    }
  }
  return size;
}

// Every entry of `dir` (none if it is missing or unreadable).
std::vector<fs::directory_entry> Entries(const fs::path& dir) {
  std::vector<fs::directory_entry> entries;
  std::error_code error;
  for (auto it = fs::directory_iterator(dir, error); !error && it != fs::directory_iterator();
       it.increment(error)) {
    entries.push_back(*it);
  }
  return entries;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> SweepCrashLeftovers(const std::string& state_dir,
                                                             JobStore& store, Logger* logger) {
  const fs::path root(state_dir);
  // Every storage path a registered version names, before anything is removed.
  std::set<std::string> referenced;
  PageRequest page;
  page.page_size = 1000;
  while (true) {
    ASSIGN_OR_RETURN(Page<v1::Model> listed, store.ListModels("", page));
    for (const v1::Model& model : listed.items) {
      referenced.insert(fs::path(model.storage_path()).lexically_normal().generic_string());
    }
    if (listed.next_page_token.empty()) break;
    page.page_token = listed.next_page_token;
  }

  std::vector<std::string> leftovers;
  std::error_code error;
  for (const fs::directory_entry& entry : Entries(root / "datasets")) {
    if (entry.is_regular_file(error) && !entry.is_symlink(error) &&
        absl::EndsWith(entry.path().filename().string(), ".upload")) {
      leftovers.push_back((fs::path("datasets") / entry.path().filename()).generic_string());
    }
  }
  for (const fs::directory_entry& name : Entries(root / "models")) {
    if (name.is_symlink(error) || !name.is_directory(error)) continue;
    for (const fs::directory_entry& entry : Entries(name.path())) {
      const std::string relative =
          (fs::path("models") / name.path().filename() / entry.path().filename()).generic_string();
      if (entry.is_symlink(error) || !entry.is_directory(error) ||
          !absl::StartsWith(entry.path().filename().string(), "import-") ||
          referenced.count(relative) > 0) {
        continue;
      }
      leftovers.push_back(relative);
    }
  }
  std::sort(leftovers.begin(), leftovers.end());

  std::vector<std::string> removed;
  for (const std::string& relative : leftovers) {
    const fs::path path = root / relative;
    const int64_t bytes = SizeOf(path);
    fs::remove_all(path, error);
    if (error) {
      if (logger != nullptr) {
        logger->Warning("startup.leftover_not_removed")
            .With("path", relative)
            .With("error", error.message());
      }
      continue;
    }
    if (logger != nullptr) {
      logger->Info("startup.leftover_removed").With("path", relative).With("bytes", bytes);
    }
    removed.push_back(relative);
  }
  return removed;
}

}  // namespace verdict::server
