// Data-parallel training across processes on torch's c10d: the rendezvous torchrun and
// Kubernetes' PyTorchJob describe (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK), a
// c10d::TCPStore served by rank 0, and a Gloo process group for the collectives the trainer
// needs: gradients summed in buckets, metric vectors summed or maxed, weights broadcast.
//
// Every rank calls the same collectives in the same order (the trainer's step plan is a pure
// function of the data, the seed and the epoch, so it is). A collective that does not complete
// within the group's timeout, because a peer died or hangs, fails with DEADLINE_EXCEEDED or
// UNAVAILABLE instead of hanging; the group is then unusable and the run should end.
//
// Rendezvous errors name what is missing: the environment variable, or the ranks that never
// arrived ("rank 1 of 2 did not arrive within 5 s").
//
// Gradients can also be summed while backward runs (AttachGradientHooks, ArmGradientSum,
// FinishGradientSum): hooks on the parameters' gradient accumulators copy each gradient into its
// bucket as autograd finishes it, and a bucket's all-reduce starts as soon as all its gradients
// are in (buckets in reverse parameter order, the order backward produces them, as c10d's
// Reducer and DDP cut them). Buckets start in index order on every rank, so the ranks' Gloo
// collectives match even when their shards leave different parameters unused.
//
// c10d and Gloo stay in distributed.cc. Thread-compatible: one thread (the trainer's) uses a
// group; the gradient hooks run on autograd's thread during the armed backward and lock.
//
// Example:
//   ASSIGN_OR_RETURN(RendezvousInfo info, RendezvousFromEnvironment(config.world_size));
//   ASSIGN_OR_RETURN(auto group, DataParallelGroup::Connect(info, absl::Seconds(300)));
//   ... backward on this rank's shard, loss scaled by 1 / (pairs over all ranks) ...
//   RETURN_IF_ERROR(group->SumGradients(parameters));
// or, overlapped with the last backward of the step:
//   RETURN_IF_ERROR(group->AttachGradientHooks(parameters));   // once
//   group->ArmGradientSum(); loss.backward(); RETURN_IF_ERROR(group->FinishGradientSum());
#ifndef VERDICT_CORE_TRAIN_DISTRIBUTED_H_
#define VERDICT_CORE_TRAIN_DISTRIBUTED_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace verdict {

struct RendezvousInfo {
  std::string master_addr;
  int port = 0;
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;  // LOCAL_RANK; 0 when unset (the device index on a multi-GPU node)
};

// Reads the torchrun variables. WORLD_SIZE may be unset when `world_size` (the configured
// value) is given, and must equal it when both are. MASTER_ADDR, MASTER_PORT and RANK must
// be set; INVALID_ARGUMENT names the first variable missing or malformed.
absl::StatusOr<RendezvousInfo> RendezvousFromEnvironment(int64_t world_size);

class DataParallelGroup {
 public:
  // Joins the group: rank 0 serves the store at MASTER_ADDR:MASTER_PORT, every rank announces
  // itself and waits up to `timeout` for the others, then the Gloo group forms. `timeout` also
  // bounds every later collective. DEADLINE_EXCEEDED names the ranks that never arrived (or,
  // on a rank other than 0, the address it could not reach).
  static absl::StatusOr<std::unique_ptr<DataParallelGroup>> Connect(const RendezvousInfo& info,
                                                                    absl::Duration timeout);
  ~DataParallelGroup();
  DataParallelGroup(const DataParallelGroup&) = delete;
  DataParallelGroup& operator=(const DataParallelGroup&) = delete;

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }

  // Replaces each parameter's gradient with its sum over the ranks. Gradients are flattened
  // into buckets of about `bucket_bytes`, each bucket's all-reduce started before the first is
  // waited on. Parameters without a gradient are skipped (alike on every rank).
  absl::Status SumGradients(const std::vector<at::Tensor>& parameters,
                            int64_t bucket_bytes = int64_t{25} << 20);
  // Overlapped gradient sums. AttachGradientHooks (once; again replaces the hooks) cuts the
  // parameters that require gradients into buckets, reverse order, the first of at most
  // `first_bucket_bytes` (so that communication starts early), the others of `bucket_bytes`,
  // and hooks their gradient accumulators. The parameter list must be the same on every rank.
  absl::Status AttachGradientHooks(const std::vector<at::Tensor>& parameters,
                                   int64_t bucket_bytes = int64_t{25} << 20,
                                   int64_t first_bucket_bytes = int64_t{1} << 20);
  // The next backward (the last of an optimizer step) starts each bucket's all-reduce as soon as
  // its gradients are accumulated; backwards before arming (earlier micro-batches) only
  // accumulate.
  void ArmGradientSum();
  // After the armed backward (or instead of it, when this rank had no pairs): the parameters
  // whose gradient did not arrive (unused by this rank's shard) contribute what they hold, zeros
  // when undefined, the remaining buckets start, and every bucket is waited for and copied back:
  // each gradient is then its sum over the ranks (with two ranks bit for bit what SumGradients
  // gives; with more, up to rounding: Gloo's ring adds in an order set by the bucket layout). A
  // parameter whose gradient is undefined here gets the others' sum (zeros if no rank had one;
  // the caller knows whether any had and may reset it). Disarms.
  absl::Status FinishGradientSum();
  // Of the last FinishGradientSum's buckets: how many there were, and how many had started
  // during backward (0 means nothing overlapped). For tests and benchmarks.
  int gradient_buckets() const;
  int gradient_buckets_started_in_backward() const;

  // Element-wise sum / max over the ranks, in place.
  absl::Status Sum(std::vector<double>& values);
  absl::Status Max(std::vector<double>& values);
  // Overwrites the tensors with rank 0's (same shapes on every rank).
  absl::Status Broadcast(const std::vector<at::Tensor>& tensors);

 private:
  struct Impl;
  DataParallelGroup(std::unique_ptr<Impl> impl, int rank, int world_size);

  std::unique_ptr<Impl> impl_;
  int rank_;
  int world_size_;
};

}  // namespace verdict

#endif  // VERDICT_CORE_TRAIN_DISTRIBUTED_H_
