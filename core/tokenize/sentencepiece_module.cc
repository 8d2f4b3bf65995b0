#include "core/tokenize/sentencepiece_module.h"

#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

// Both come from core/tokenize/CMakeLists.txt; the path is a build product, never committed.
#ifndef VERDICT_SENTENCEPIECE_MODULE_FILE_NAME
#define VERDICT_SENTENCEPIECE_MODULE_FILE_NAME "libverdict_sentencepiece.so"
#endif
#ifndef VERDICT_SENTENCEPIECE_MODULE_BUILD_PATH
#define VERDICT_SENTENCEPIECE_MODULE_BUILD_PATH ""
#endif

namespace verdict {
namespace {

using sentencepiece_backend::ModuleEntryPoint;
using sentencepiece_backend::SentencePieceHost;
using sentencepiece_backend::SentencePieceModule;

struct LoadResult {
  const SentencePieceModule* module = nullptr;
  absl::Status status;
};

std::string ExecutableDirectory() {
  std::error_code error;
  const std::filesystem::path executable = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) return "";
  return executable.parent_path().string();
}

std::string DlError() {
  const char* message = dlerror();
  return message != nullptr ? message : "no error text";
}

absl::Status LoadError(absl::string_view what, const std::vector<std::string>& candidates) {
  return absl::FailedPreconditionError(absl::StrCat(
      "the sentencepiece module (", VERDICT_SENTENCEPIECE_MODULE_FILE_NAME,
      ") is unavailable: ", what, " (searched: ", absl::StrJoin(candidates, ", "),
      "; set ", kSentencePieceModuleEnvVar, " to the module's full path)"));
}

using DlopenFunction = void* (*)(const char* file, int mode);

// libc's dlopen. In ASan/TSan builds the runtime's dlopen interceptor refuses RTLD_DEEPBIND, so
// the loader calls the next definition after the executable, libc's, itself; the module then
// forwards its allocations to the runtime (sentencepiece_backend.h).
DlopenFunction OpenFunction() {
#if defined(VERDICT_SENTENCEPIECE_BYPASS_DLOPEN_INTERCEPTOR)
  static const DlopenFunction libc_dlopen =
      reinterpret_cast<DlopenFunction>(dlsym(RTLD_NEXT, "dlopen"));
  if (libc_dlopen != nullptr) return libc_dlopen;
#endif
  return &dlopen;
}

LoadResult Open(const std::string& path, const std::vector<std::string>& candidates) {
  // LOCAL: sentencepiece's exported protobuf-lite stays out of the global scope, where it would
  // replace libprotobuf's symbols for LibTorch and gRPC. DEEPBIND: sentencepiece binds its
  // own protobuf symbols before the process's libprotobuf. NOW: a missing symbol fails here,
  // not in the middle of an encode.
  void* handle = OpenFunction()(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
  if (handle == nullptr) return {nullptr, LoadError(DlError(), candidates)};
  // Never dlclose()d: backends made by the module may live until exit.
  auto entry = reinterpret_cast<ModuleEntryPoint>(
      dlsym(handle, sentencepiece_backend::kModuleEntryPoint));
  if (entry == nullptr) {
    return {nullptr, LoadError(absl::StrCat(path, ": ", DlError()), candidates)};
  }
  SentencePieceHost host;
  host.out = &std::cout;
  host.err = &std::cerr;
  host.log = &std::clog;
  const SentencePieceModule* module = entry(&host);
  if (module == nullptr || module->abi_version != sentencepiece_backend::kModuleAbiVersion ||
      module->load == nullptr || module->train == nullptr) {
    return {nullptr,
            LoadError(absl::StrCat(path, " was built from a different version of verdict "
                                         "(module interface version mismatch)"),
                      candidates)};
  }
  return {module, absl::OkStatus()};
}

LoadResult FindAndOpen() {
  const std::vector<std::string> candidates = SentencePieceModuleSearchPath(
      std::getenv(kSentencePieceModuleEnvVar), ExecutableDirectory(),
      VERDICT_SENTENCEPIECE_MODULE_BUILD_PATH);
  for (const std::string& path : candidates) {
    std::error_code error;
    if (std::filesystem::exists(path, error)) return Open(path, candidates);
  }
  return {nullptr, LoadError("no such file", candidates)};
}

}  // namespace

std::vector<std::string> SentencePieceModuleSearchPath(const char* env_value,
                                                       const std::string& executable_dir,
                                                       const std::string& build_tree_path) {
  if (env_value != nullptr && env_value[0] != '\0') return {env_value};
  std::vector<std::string> candidates;
  if (!executable_dir.empty()) {
    const std::filesystem::path dir(executable_dir);
    candidates.push_back((dir / VERDICT_SENTENCEPIECE_MODULE_FILE_NAME).string());
    candidates.push_back(
        (dir / ".." / "lib" / "verdict" / VERDICT_SENTENCEPIECE_MODULE_FILE_NAME).string());
  }
  if (!build_tree_path.empty()) candidates.push_back(build_tree_path);
  return candidates;
}

absl::StatusOr<const SentencePieceModule*> LoadSentencePieceModule() {
  // One load per process, shared by every tokenizer: the module is process-wide state by
  // nature (a dlopen handle), so a function-local static is the honest owner.
  static const LoadResult* const loaded = new LoadResult(FindAndOpen());
  if (!loaded->status.ok()) return loaded->status;
  return loaded->module;
}

}  // namespace verdict
