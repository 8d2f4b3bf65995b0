#include "core/util/build_info.h"

#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

#ifndef VERDICT_VERSION
#error "VERDICT_VERSION must be defined by the build"
#endif
#ifndef VERDICT_BUILD_TYPE
#error "VERDICT_BUILD_TYPE must be defined by the build"
#endif

namespace verdict {

const char* BuildVersion() { return VERDICT_VERSION; }

std::string VersionLine(absl::string_view program) {
  return absl::StrCat(program, " ", BuildVersion(), " (commit ", BuildCommit(), ", ",
                      VERDICT_BUILD_TYPE, ")");
}

void SetUpProgramUsage(absl::string_view program, absl::string_view usage,
                       absl::string_view main_file) {
  absl::SetProgramUsageMessage(usage);
  absl::FlagsUsageConfig config;
  const std::string file(main_file);
  config.contains_help_flags = [file](absl::string_view path) {
    return absl::EndsWith(path, file);
  };
  // --helpfull also lists Abseil's own flags (--flagfile, --fromenv, ...).
  config.contains_helpshort_flags = config.contains_help_flags;
  const std::string version = VersionLine(program) + "\n";
  config.version_string = [version] { return version; };
  // The compiler names the main file by an absolute path ("/src/server/main.cc") or one relative
  // to the build directory ("../server/main.cc", with ccache): show it as "server/main.cc".
  config.normalize_filename = [file](absl::string_view path) {
    if (absl::EndsWith(path, file)) return file;
    while (absl::ConsumePrefix(&path, "../")) {
    }
    return std::string(path);
  };
  absl::SetFlagsUsageConfig(config);
}

}  // namespace verdict
