// What a crash leaves in a state directory, removed when the server starts:
//   datasets/*.upload        the temporary file of an upload that never finished (an upload
//                            renames it into place on success and removes it on failure)
//   datasets/<id>.jsonl      the file of an upload that crashed after its rename into place
//                            and before its registration: no registered dataset has that id
//   models/<name>/import-*   the copy of an import that crashed between the copy and its
//                            registration, i.e. a directory no registered version names
//   models/<name>/           a name directory that holds nothing else (once its leftovers
//                            are gone): an import that crashed or failed under a new name
// A directory some registered version's storage_path names is never removed, whatever its name.
//
// Called with the state directory's lock held and before anything serves (no upload or import
// can be in flight). Not thread-safe with anything else writing the state directory.
#ifndef VERDICT_SERVER_STARTUP_SWEEP_H_
#define VERDICT_SERVER_STARTUP_SWEEP_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/job_store.h"
#include "server/logging.h"

namespace verdict::server {

// Removes the leftovers under `state_dir`, logging each ("startup.leftover_removed" with its
// path relative to the state directory and its size). Returns those paths: the files and
// copies sorted, then the emptied name directories sorted. Fails only when the store cannot
// list the registered versions or datasets (then nothing is removed); a leftover
// that cannot be removed is logged and skipped.
absl::StatusOr<std::vector<std::string>> SweepCrashLeftovers(const std::string& state_dir,
                                                             JobStore& store, Logger* logger);

}  // namespace verdict::server

#endif  // VERDICT_SERVER_STARTUP_SWEEP_H_
