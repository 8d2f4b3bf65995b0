// Deterministic crash injection for the crash-window tests (tests/server/
// restart_integration_test.cc and crash_window_test.cc), compiled into every build so those
// tests run the real binary.
//
// CrashPoint("name") kills the process with SIGKILL -- no destructors, no flushing, as a power
// cut or the OOM killer would -- when the environment variable VERDICT_TEST_KILL_AT equals
// "name", and does nothing otherwise. Only tests set the variable. The points:
//   preparing          the job is RUNNING, its trainer not yet built
//   after_eval         an evaluation during training is reported (step 10 of the tests)
//   mid_checkpoint     a checkpoint's files are written, not yet renamed into place
//   after_final_eval   the final evaluation is reported, its checkpoint not yet written
//   before_complete    the model directory is written, the job not yet SUCCEEDED
//   after_complete     the job is SUCCEEDED with its version, nothing after that done yet
//   mid_upload         an UploadDataset chunk is written to the temporary *.upload file
//   upload_stored      an upload's file is renamed into place, the dataset not registered
//   import_copied      an ImportModel copy is written, no version registered for it
//
// Thread-safe: the variable is read once, on the first call.
#ifndef VERDICT_CORE_UTIL_CRASH_POINT_H_
#define VERDICT_CORE_UTIL_CRASH_POINT_H_

#include "absl/strings/string_view.h"

namespace verdict {

void CrashPoint(absl::string_view name);

}  // namespace verdict

#endif  // VERDICT_CORE_UTIL_CRASH_POINT_H_
