// LoadSentencePieceModule: finds and loads libverdict_sentencepiece.so, the module that holds
// sentencepiece (see sentencepiece_backend.h for why it lives in a module of its own).
//
// The module is loaded once per process, on the first call, with
// dlopen(RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND), and never unloaded (backends it made may live
// until exit). Where it is looked for, in this order; the first path that exists is the one
// loaded, and a failure to load it is reported rather than skipped:
//   1. $VERDICT_SENTENCEPIECE_MODULE, the module's full path. When set (non-empty), it is the
//      only candidate: an explicit choice that does not exist is an error, not a fallback.
//   2. <directory of the running executable>/libverdict_sentencepiece.so
//   3. <directory of the running executable>/../lib/verdict/libverdict_sentencepiece.so
//   4. the module's path in the build tree this library was built in (for tests and
//      binaries run from the build tree).
// When none can be loaded, every call returns FailedPrecondition with dlerror()'s text and the
// paths tried; nothing crashes.
//
// DEEPBIND caveat: the module binds to libstdc++ and libc directly, ahead of the executable.
// A process that replaces malloc / operator new in the executable itself (a statically linked
// tcmalloc) would allocate and free sentencepiece's strings with different allocators;
// verdict's binaries do not. ASan and TSan builds, which do, load the module past the
// runtime's dlopen interceptor and have the module forward its allocations to the runtime
// (sentencepiece_backend.h).
//
// Thread safety: may be called from any thread; concurrent first calls wait for one load.
#ifndef VERDICT_CORE_TOKENIZE_SENTENCEPIECE_MODULE_H_
#define VERDICT_CORE_TOKENIZE_SENTENCEPIECE_MODULE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tokenize/sentencepiece_backend.h"

namespace verdict {

// The environment variable that names the module's full path.
inline constexpr char kSentencePieceModuleEnvVar[] = "VERDICT_SENTENCEPIECE_MODULE";

// The loaded module's table; the same answer (table or error) on every call.
absl::StatusOr<const sentencepiece_backend::SentencePieceModule*> LoadSentencePieceModule();

// The candidate paths, in search order, given the environment variable's value (nullptr or
// empty: unset), the running executable's directory (empty: unknown) and the build tree's
// module path (empty: none). Exposed for tests.
std::vector<std::string> SentencePieceModuleSearchPath(const char* env_value,
                                                       const std::string& executable_dir,
                                                       const std::string& build_tree_path);

}  // namespace verdict

#endif  // VERDICT_CORE_TOKENIZE_SENTENCEPIECE_MODULE_H_
