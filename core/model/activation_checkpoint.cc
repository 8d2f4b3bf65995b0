#include "core/model/activation_checkpoint.h"

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <utility>

namespace verdict {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The autocast settings of both device types, as they stood at the forward.
struct AutocastState {
  bool cpu_enabled = false;
  bool gpu_enabled = false;
  c10::ScalarType cpu_dtype = c10::kBFloat16;
  c10::ScalarType gpu_dtype = c10::kHalf;

  static AutocastState Current() {
    AutocastState s;
    s.cpu_enabled = at::autocast::is_cpu_enabled();
    s.gpu_enabled = at::autocast::is_enabled();
    s.cpu_dtype = at::autocast::get_autocast_cpu_dtype();
    s.gpu_dtype = at::autocast::get_autocast_gpu_dtype();
    return s;
  }
  void Apply() const {
    at::autocast::set_cpu_enabled(cpu_enabled);
    at::autocast::set_enabled(gpu_enabled);
    at::autocast::set_autocast_cpu_dtype(cpu_dtype);
    at::autocast::set_autocast_gpu_dtype(gpu_dtype);
  }
};

// Autocast's cache of low-precision weight copies is off while a block runs: a copy cached
// in the no-grad forward has no history, and a later use of it with grad would lose the
// weight's gradient.
class NoAutocastCache {
 public:
  NoAutocastCache() : was_enabled_(at::autocast::is_autocast_cache_enabled()) {
    at::autocast::set_autocast_cache_enabled(false);
  }
  ~NoAutocastCache() { at::autocast::set_autocast_cache_enabled(was_enabled_); }
  NoAutocastCache(const NoAutocastCache&) = delete;
  NoAutocastCache& operator=(const NoAutocastCache&) = delete;

 private:
  const bool was_enabled_;
};

// Re-enters the forward's autocast for the recomputation (the backward pass runs outside the
// trainer's autocast scope) and puts the caller's back.
class RestoredAutocast {
 public:
  explicit RestoredAutocast(const AutocastState& forward) : saved_(AutocastState::Current()) {
    forward.Apply();
    active_ = forward.cpu_enabled || forward.gpu_enabled;
    if (active_) at::autocast::increment_nesting();
  }
  ~RestoredAutocast() {
    if (active_) at::autocast::decrement_nesting();
    saved_.Apply();
  }
  RestoredAutocast(const RestoredAutocast&) = delete;
  RestoredAutocast& operator=(const RestoredAutocast&) = delete;

 private:
  const AutocastState saved_;
  bool active_ = false;
};

// What the backward pass needs besides the input (saved as a variable, so that an in-place
// change to it between forward and backward is caught).
struct BlockCapsule : torch::CustomClassHolder {
  CheckpointedBlock block;
  std::vector<at::Tensor> parameters;
  AutocastState autocast;
};

struct RecomputedBlock : torch::autograd::Function<RecomputedBlock> {
  // `capsule` is not a variable; x and the parameters are, so autograd routes their gradients.
  static at::Tensor forward(AutogradContext* ctx, c10::intrusive_ptr<BlockCapsule> capsule,
                            const at::Tensor& x, at::TensorList parameters) {
    at::Tensor y;
    {
      NoAutocastCache no_cache;
      y = capsule->block(x);  // grad mode is off here (Function::apply)
    }
    ctx->save_for_backward({x});
    ctx->saved_data["capsule"] = c10::IValue::make_capsule(std::move(capsule));
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto capsule = c10::static_intrusive_pointer_cast<BlockCapsule>(
        ctx->saved_data.at("capsule").toCapsule());
    const at::Tensor x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    at::Tensor y;
    {
      torch::AutoGradMode grad(true);
      RestoredAutocast autocast(capsule->autocast);
      NoAutocastCache no_cache;
      y = capsule->block(x);
    }
    std::vector<at::Tensor> inputs = {x};
    std::vector<size_t> input_of;  // parameter i's index in `inputs`, 0 for none
    for (const at::Tensor& p : capsule->parameters) {
      input_of.push_back(p.requires_grad() ? inputs.size() : 0);
      if (p.requires_grad()) inputs.push_back(p);
    }
    const variable_list grads = torch::autograd::grad({y}, inputs, {grad_outputs[0]},
                                                      /*retain_graph=*/false,
                                                      /*create_graph=*/false,
                                                      /*allow_unused=*/true);
    variable_list out = {at::Tensor(), grads[0]};  // none for the capsule
    for (size_t index : input_of) out.push_back(index > 0 ? grads[index] : at::Tensor());
    return out;
  }
};

}  // namespace

at::Tensor CheckpointedForward(const CheckpointedBlock& block, const at::Tensor& x,
                               const std::vector<at::Tensor>& parameters) {
  bool needs_grad = x.requires_grad();
  for (const at::Tensor& p : parameters) needs_grad = needs_grad || p.requires_grad();
  if (!torch::GradMode::is_enabled() || !needs_grad) return block(x);
  auto capsule = c10::make_intrusive<BlockCapsule>();
  capsule->block = block;
  capsule->parameters = parameters;
  capsule->autocast = AutocastState::Current();
  return RecomputedBlock::apply(std::move(capsule), x, at::TensorList(parameters));
}

}  // namespace verdict
