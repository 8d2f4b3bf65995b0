// What a binary was built from, for --version, logs and the verdict_build_info metric, and the
// --help/--version set-up every verdict binary shares.
//
// BuildCommit() is the git commit of the tree at build time (re-read on every build, suffixed
// "-dirty" when tracked files differed from it; "unknown" outside a git checkout).
// Thread-safe: constants.
#ifndef VERDICT_CORE_UTIL_BUILD_INFO_H_
#define VERDICT_CORE_UTIL_BUILD_INFO_H_

#include <string>

#include "absl/strings/string_view.h"

namespace verdict {

// The project version from CMakeLists.txt, e.g. "0.1.0".
const char* BuildVersion();
const char* BuildCommit();
// "verdictd 0.1.0 (commit 0ad265a1b2c3, RelWithDebInfo)".
std::string VersionLine(absl::string_view program);

// Sets absl's usage message (absl prints it after "<program>: "), makes --help/--helpfull list the flags defined in `main_file`
// (a path suffix such as "server/main.cc"; absl's default matches files named after the
// program, which ours are not), and makes --version print VersionLine(program).
// Call once in main(), before absl::ParseCommandLine.
void SetUpProgramUsage(absl::string_view program, absl::string_view usage,
                       absl::string_view main_file);

}  // namespace verdict

#endif  // VERDICT_CORE_UTIL_BUILD_INFO_H_
