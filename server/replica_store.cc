#include "server/replica_store.h"

#include <algorithm>
#include <iterator>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace verdict::server {
namespace {
constexpr char kLatest[] = "latest";
}  // namespace

absl::Status ReplicaModelStore::Refuse(absl::string_view what) const {
  return absl::FailedPreconditionError(absl::StrCat(
      "verdictd --role=scoring keeps no ", what, ": call the control plane (", control_plane_,
      ") instead"));
}

void ReplicaModelStore::PutVersion(v1::Model model) {
  model.clear_aliases();
  absl::MutexLock lock(&mutex_);
  Name& entry = names_[model.name()];
  entry.versions[model.version()] = std::move(model);
}

void ReplicaModelStore::RemoveVersion(const std::string& name, int64_t version) {
  absl::MutexLock lock(&mutex_);
  auto it = names_.find(name);
  if (it == names_.end()) return;
  it->second.versions.erase(version);
  for (auto alias = it->second.aliases.begin(); alias != it->second.aliases.end();) {
    alias = alias->second == version ? it->second.aliases.erase(alias) : std::next(alias);
  }
  if (it->second.versions.empty()) names_.erase(it);
}

void ReplicaModelStore::SetServedAlias(const std::string& name, const std::string& alias,
                                       int64_t version) {
  absl::MutexLock lock(&mutex_);
  names_[name].aliases[alias] = version;
}

void ReplicaModelStore::RemoveServedAlias(const std::string& name, const std::string& alias) {
  absl::MutexLock lock(&mutex_);
  auto it = names_.find(name);
  if (it != names_.end()) it->second.aliases.erase(alias);
}

int64_t ReplicaModelStore::ServedVersion(const std::string& name, const std::string& alias) {
  absl::MutexLock lock(&mutex_);
  auto it = names_.find(name);
  if (it == names_.end()) return 0;
  auto found = it->second.aliases.find(alias);
  return found == it->second.aliases.end() ? 0 : found->second;
}

std::vector<std::pair<std::string, int64_t>> ReplicaModelStore::Versions() {
  absl::MutexLock lock(&mutex_);
  std::vector<std::pair<std::string, int64_t>> versions;
  for (const auto& [name, entry] : names_) {
    for (const auto& [version, model] : entry.versions) versions.emplace_back(name, version);
  }
  return versions;
}

bool ReplicaModelStore::IsReferenced(const std::string& name, int64_t version) {
  absl::MutexLock lock(&mutex_);
  auto it = names_.find(name);
  if (it == names_.end()) return false;
  for (const auto& [alias, target] : it->second.aliases) {
    if (target == version) return true;
  }
  return false;
}

v1::Model ReplicaModelStore::Describe(const Name& entry, const v1::Model& model) const {
  v1::Model described = model;
  bool latest_set = false;
  for (const auto& [alias, version] : entry.aliases) {
    if (alias == kLatest) latest_set = true;
    if (version == model.version()) described.add_aliases(alias);
  }
  if (!latest_set && !entry.versions.empty() && entry.versions.rbegin()->first == model.version()) {
    described.add_aliases(kLatest);
  }
  std::sort(described.mutable_aliases()->begin(), described.mutable_aliases()->end());
  return described;
}

absl::StatusOr<int64_t> ReplicaModelStore::ResolveLocked(absl::string_view name,
                                                         absl::string_view alias) {
  auto it = names_.find(name);
  if (it == names_.end() || it->second.versions.empty()) {
    return absl::NotFoundError(absl::StrCat("model \"", name, "\" not found on this replica"));
  }
  auto found = it->second.aliases.find(std::string(alias));
  if (found != it->second.aliases.end()) return found->second;
  if (alias == kLatest) return it->second.versions.rbegin()->first;
  return absl::NotFoundError(
      absl::StrCat("alias \"", alias, "\" of model \"", name, "\" not found on this replica"));
}

absl::StatusOr<int64_t> ReplicaModelStore::ResolveAlias(absl::string_view name,
                                                        absl::string_view alias) {
  absl::MutexLock lock(&mutex_);
  return ResolveLocked(name, alias);
}

absl::StatusOr<v1::Model> ReplicaModelStore::GetModelVersion(absl::string_view name,
                                                             int64_t version) {
  absl::MutexLock lock(&mutex_);
  auto it = names_.find(name);
  if (it == names_.end()) {
    return absl::NotFoundError(absl::StrCat("model \"", name, "\" not found on this replica"));
  }
  auto found = it->second.versions.find(version);
  if (found == it->second.versions.end()) {
    return absl::NotFoundError(absl::StrCat("model \"", name, "\" version ", version,
                                            " not found on this replica"));
  }
  return Describe(it->second, found->second);
}

absl::StatusOr<v1::Model> ReplicaModelStore::GetModel(const v1::ModelRef& ref) {
  int64_t version = ref.version();
  if (ref.selector_case() != v1::ModelRef::kVersion) {
    absl::MutexLock lock(&mutex_);
    absl::StatusOr<int64_t> resolved =
        ResolveLocked(ref.name(), ref.alias().empty() ? kLatest : ref.alias());
    if (!resolved.ok()) return resolved.status();
    version = *resolved;
  }
  return GetModelVersion(ref.name(), version);
}

absl::StatusOr<Page<v1::Model>> ReplicaModelStore::ListModels(absl::string_view name,
                                                              const PageRequest& page) {
  if (page.page_size < 0) return absl::InvalidArgumentError("page_size: must be >= 0");
  const int32_t size = page.page_size == 0 ? PageRequest::kDefaultPageSize
                                           : std::min(page.page_size, PageRequest::kMaxPageSize);
  int64_t skip = 0;
  if (!page.page_token.empty() && (!absl::SimpleAtoi(page.page_token, &skip) || skip < 0)) {
    return absl::InvalidArgumentError("page_token: not one this server returned");
  }
  std::vector<v1::Model> all;
  {
    absl::MutexLock lock(&mutex_);
    for (const auto& [model_name, entry] : names_) {
      if (!name.empty() && model_name != name) continue;
      for (auto it = entry.versions.rbegin(); it != entry.versions.rend(); ++it) {
        all.push_back(Describe(entry, it->second));
      }
    }
  }
  Page<v1::Model> result;
  for (int64_t i = skip; i < static_cast<int64_t>(all.size()) && i < skip + size; ++i) {
    result.items.push_back(std::move(all[i]));
  }
  if (skip + size < static_cast<int64_t>(all.size())) result.next_page_token = absl::StrCat(skip + size);
  return result;
}

}  // namespace verdict::server
