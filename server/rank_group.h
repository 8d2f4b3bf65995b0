// RankGroup: a data-parallel training job's ranks, run by verdictd as verdict-train processes
// on its own node (spec.world_size > 1; core/train/distributed.h is the rendezvous they use).
//
// RunRankGroup writes the job's TrainingConfig as JSON into the run directory, picks a free
// loopback port for the c10d store, starts world_size processes of `verdict-train --config
// ... --progress json` with the torchrun variables (MASTER_ADDR 127.0.0.1, MASTER_PORT, RANK,
// WORLD_SIZE, LOCAL_RANK) and OMP_NUM_THREADS sharing the cores, and supervises them:
//   - rank 0's stdout is its progress as JSON lines (core/train/progress_stream.h), replayed
//     into `callbacks` on the calling thread: the events an in-process Trainer produces;
//   - every rank's stderr (and the other ranks' stdout) goes to <run_dir>/ranks/rank-N.log;
//   - when one rank ends badly the others are killed at once (no collective waits for the
//     c10d timeout), and the attempt's error says which rank and how;
//   - `cancel` (a user's cancel, or Drain) sends SIGTERM to every rank: they stop together
//     after the current step with a checkpoint (the trainer reduces the request), and rank 0
//     reports CANCELLED; ranks still running `grace` later are killed.
// The ranks die with the thread that started them (PR_SET_PDEATHSIG), so a verdictd that is
// killed leaves no rank behind.
//
// Errors: rank 0's own status when it reported one (CANCELLED after a cancel); UNAVAILABLE
// when a rank was killed by a signal verdictd did not send (the job may resume from its
// checkpoint: JobRunner retries it); INTERNAL naming the rank, its exit and its last log
// line otherwise.
//
// Thread-compatible: one thread runs a group; `cancel` may be raised from any thread.
#ifndef VERDICT_SERVER_RANK_GROUP_H_
#define VERDICT_SERVER_RANK_GROUP_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/train/trainer.h"
#include "core/train/training_config.h"
#include "core/util/cancellable.h"

namespace verdict::server {

struct RankGroupOptions {
  std::string binary;  // verdict-train
  // After a cancel, how long the ranks have to stop with their checkpoint before they are
  // killed.
  absl::Duration grace = absl::Seconds(30);
};

// `config.world_size` ranks train `config` (run_dir and output_dir set); see above.
absl::StatusOr<TrainingResult> RunRankGroup(const TrainingConfig& config,
                                            const RankGroupOptions& options,
                                            const TrainerCallbacks& callbacks,
                                            const Cancellable& cancel);

// verdict-train beside the running executable (/proc/self/exe's directory).
std::string TrainWorkerBesideSelf();

}  // namespace verdict::server

#endif  // VERDICT_SERVER_RANK_GROUP_H_
