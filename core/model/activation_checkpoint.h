// Activation (gradient) checkpointing for one transformer block: the block's forward runs
// without recording its graph, autograd keeps only the block's input, and the backward pass
// runs the block again, with grad, to get its gradients. Memory then grows with the number of
// layers times one hidden state per token, not times every intermediate of every layer; the
// price is one more forward per block. LibTorch 1.13's C++ API has no
// torch.utils.checkpoint, hence this.
//
// The recomputation must give the forward's values, so the block has to be deterministic:
// verdict's models have no dropout (TRL turns it off for reward modelling too); a block with
// dropout would need its RNG state saved and restored, which this does not do. Autocast (the
// trainer's bfloat16) is recorded at the forward and re-entered for the recomputation.
//
// Internal to core/model. Thread safety: as the model's training forward (one thread).
#ifndef VERDICT_CORE_MODEL_ACTIVATION_CHECKPOINT_H_
#define VERDICT_CORE_MODEL_ACTIVATION_CHECKPOINT_H_

#include <functional>
#include <vector>

#include <ATen/core/Tensor.h>

namespace verdict {

// A block's forward from its input hidden state; everything else it reads (masks, rotary
// tables) it captures, and it must stay valid until the backward pass (capture tensors and
// layouts by value).
using CheckpointedBlock = std::function<at::Tensor(const at::Tensor&)>;

// block(x), with the gradients of x and of `parameters` (those that require grad; the block's
// own parameters) computed by re-running `block` in the backward pass. Equal in value and in
// gradients to block(x) called plainly. When grad mode is off, or nothing requires grad, it
// simply calls block(x).
at::Tensor CheckpointedForward(const CheckpointedBlock& block, const at::Tensor& x,
                               const std::vector<at::Tensor>& parameters);

}  // namespace verdict

#endif  // VERDICT_CORE_MODEL_ACTIVATION_CHECKPOINT_H_
