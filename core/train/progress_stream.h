// The trainer's progress as JSON lines: how a verdict-train rank 0 (--progress json) tells the
// process that launched it -- verdictd running a data-parallel job -- everything a
// TrainerCallbacks sees and the TrainingResult, so that the launcher records the same events
// an in-process Trainer's callbacks produce.
//
// One line per callback: {"event":"start"|"step"|"eval"|"checkpoint_started"|"checkpoint"|
// "log", ...the struct's fields by name}, then {"event":"result", ...} once the run succeeds
// or {"event":"error","code":N,"message":...} (an absl::StatusCode) once it fails.
// Doubles are written to round-trip exactly (the launcher stores the very losses the ranks
// computed). Unknown fields are ignored, so either side may add one.
//
// Thread-compatible: the writer callbacks write from the trainer's thread; ReadProgressLine
// is a pure function of its line.
#ifndef VERDICT_CORE_TRAIN_PROGRESS_STREAM_H_
#define VERDICT_CORE_TRAIN_PROGRESS_STREAM_H_

#include <optional>
#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "core/train/trainer.h"

namespace verdict {

// Callbacks that write each call as one JSON line to `out` and flush it. `out` must outlive
// them.
TrainerCallbacks ProgressLineCallbacks(std::ostream& out);

// The line that ends a successful run, and the one that ends a failed one.
std::string ProgressResultLine(const TrainingResult& result);
std::string ProgressErrorLine(const absl::Status& error);

// How a run ended, as its last line said.
struct ProgressEnd {
  std::optional<TrainingResult> result;  // the result line
  absl::Status error;                    // the error line's status
};

// Parses one line and calls the matching callback of `callbacks` (if set), or fills `end` for
// the result and error lines. INVALID_ARGUMENT for a line that is not one of the above.
absl::Status ReadProgressLine(absl::string_view line, const TrainerCallbacks& callbacks,
                              ProgressEnd& end);

}  // namespace verdict

#endif  // VERDICT_CORE_TRAIN_PROGRESS_STREAM_H_
