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

  // Every dataset id the store knows.
  std::set<std::string> datasets;
  page = PageRequest();
  page.page_size = 1000;
  while (true) {
    ASSIGN_OR_RETURN(Page<v1::Dataset> listed, store.ListDatasets(page));
    for (const v1::Dataset& dataset : listed.items) datasets.insert(dataset.id());
    if (listed.next_page_token.empty()) break;
    page.page_token = listed.next_page_token;
  }

  std::vector<std::string> leftovers;
  std::error_code error;
  for (const fs::directory_entry& entry : Entries(root / "datasets")) {
    if (!entry.is_regular_file(error) || entry.is_symlink(error)) continue;
    const std::string file = entry.path().filename().string();
    // An unfinished upload's temporary file, or the file of an upload that crashed between
    // its rename into place and its registration (or a deletion between the two).
    if (absl::EndsWith(file, ".upload") ||
        (absl::EndsWith(file, ".jsonl") &&
         datasets.count(file.substr(0, file.size() - 6)) == 0)) {
      leftovers.push_back((fs::path("datasets") / file).generic_string());
    }
  }
  // models/<name>/ directories left empty (by an import that crashed, once its copy is gone).
  std::vector<std::string> empty_names;
  for (const fs::directory_entry& name : Entries(root / "models")) {
    if (name.is_symlink(error) || !name.is_directory(error)) continue;
    bool keeps_something = false;
    for (const fs::directory_entry& entry : Entries(name.path())) {
      const std::string relative =
          (fs::path("models") / name.path().filename() / entry.path().filename()).generic_string();
      if (entry.is_symlink(error) || !entry.is_directory(error) ||
          !absl::StartsWith(entry.path().filename().string(), "import-") ||
          referenced.count(relative) > 0) {
        keeps_something = true;
        continue;
      }
      leftovers.push_back(relative);
    }
    if (!keeps_something) {
      empty_names.push_back((fs::path("models") / name.path().filename()).generic_string());
    }
  }
  std::sort(leftovers.begin(), leftovers.end());
  // After the import copies inside them.
  std::sort(empty_names.begin(), empty_names.end());
  leftovers.insert(leftovers.end(), empty_names.begin(), empty_names.end());

  const std::set<std::string> name_dirs(empty_names.begin(), empty_names.end());
  std::vector<std::string> removed;
  for (const std::string& relative : leftovers) {
    const fs::path path = root / relative;
    const int64_t bytes = SizeOf(path);
    // A name directory goes only if it is empty by now (a copy in it may have stayed).
    if (name_dirs.count(relative) > 0) {
      fs::remove(path, error);
    } else {
      fs::remove_all(path, error);
    }
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
