// forward_bench: the FLOP rate of the decoder (Llama layout, optionally Qwen3's) next to the
// encoder's (DistilBERT layout) at equal width: the same hidden size, layers, heads,
// intermediate size, batch and sequence lengths, from-scratch weights, RewardModel::Forward on
// [batch, seq] rows without padding.
//
//   forward  (inference mode, eval):       2 × linear parameters × tokens + attention
//   forward+backward (train mode, grads):  3 × the forward's FLOPs
//   attention: 4 × layers × batch × seq² × heads × head_dim (QKᵀ and weights·V, the full
//   square, which is what both layouts compute; the causal half is not discounted)
//
// "Linear parameters" are the weights of the backbone's linear layers (embeddings, norms,
// biases and the reward head left out), so the gated MLP's third matrix counts for the
// decoder. Arms run interleaved, each rep measuring every family's forward, then every
// family's forward+backward; each measurement repeats the step for --seconds. Medians over
// reps and the decoder/encoder ratio of the medians are printed, with the per-rep ratios.
//
// With --profile, the decoder's forward and forward+backward are then profiled (LibTorch's
// legacy profiler): the time under each of the model's named scopes ("llama.rope",
// "llama.mask", "llama.attention", "llama.mlp", ...), and the outermost LibTorch operators and
// autograd nodes by total time.
//
//   forward_bench                                   # hidden 64 and 256, 3 reps
//   forward_bench --hidden=256 --layers=4 --heads=8 --kv_heads=4 --intermediate=688 --reps=5
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "bench/bench_util.h"
#include "core/model/model_config.h"
#include "core/model/reward_model.h"
#include "core/util/status_macros.h"

ABSL_FLAG(std::vector<std::string>, hidden, std::vector<std::string>({"64", "256"}),
          "Hidden sizes to measure (one configuration each).");
ABSL_FLAG(int64_t, layers, 4, "Transformer layers.");
ABSL_FLAG(int64_t, heads, 8, "Attention heads (head_dim = hidden / heads).");
ABSL_FLAG(int64_t, kv_heads, 4, "Decoder key-value heads (grouped-query attention).");
ABSL_FLAG(int64_t, intermediate, 0, "MLP intermediate size; 0: 4 × hidden.");
ABSL_FLAG(int64_t, batch, 8, "Rows per forward.");
ABSL_FLAG(int64_t, seq, 128, "Tokens per row (no padding).");
ABSL_FLAG(std::vector<std::string>, families, std::vector<std::string>({"encoder", "llama", "qwen3"}),
          "Arms: encoder (DistilBERT), llama, qwen2 (q/k/v biases), qwen3 (q/k norms).");
ABSL_FLAG(int, reps, 3, "Rounds of interleaved measurements.");
ABSL_FLAG(double, seconds, 0.5, "Time each measurement repeats its step for.");
ABSL_FLAG(bool, backward, true, "Also measure forward+backward.");
ABSL_FLAG(bool, profile, true, "Profile the llama arm afterwards (per scope and per operator).");
ABSL_FLAG(int, profile_steps, 5, "Steps per profile.");
ABSL_FLAG(int, threads, 0, "LibTorch intra-op threads (0: LibTorch's default).");

namespace verdict::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int64_t kVocab = 512;

absl::StatusOr<ModelConfig> ArmConfig(const std::string& family, int64_t hidden) {
  const bool encoder = family == "encoder";
  ASSIGN_OR_RETURN(ModelConfig c,
                   PresetModelConfig(encoder ? "encoder-tiny" : "decoder-tiny", kVocab, 0));
  const int64_t heads = absl::GetFlag(FLAGS_heads);
  c.hidden_size = hidden;
  c.num_layers = absl::GetFlag(FLAGS_layers);
  c.num_heads = heads;
  c.num_kv_heads = encoder ? heads : absl::GetFlag(FLAGS_kv_heads);
  c.head_dim = hidden / heads;
  c.intermediate_size =
      absl::GetFlag(FLAGS_intermediate) > 0 ? absl::GetFlag(FLAGS_intermediate) : 4 * hidden;
  c.max_position_embeddings = std::max<int64_t>(c.max_position_embeddings, absl::GetFlag(FLAGS_seq));
  if (family == "qwen2") {
    c.model_type = "qwen2";
    c.qkv_bias = true;
  } else if (family == "qwen3") {
    c.model_type = "qwen3";
    c.qk_norm = true;
  } else if (!encoder && family != "llama") {
    return absl::InvalidArgumentError(absl::StrCat("--families: unknown family \"", family,
                                                   "\" (encoder, llama, qwen2, qwen3)"));
  }
  if (hidden % heads != 0 || heads % c.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("hidden ", hidden, ", heads ", heads,
                                                   ", kv_heads ", c.num_kv_heads,
                                                   ": sizes that do not divide"));
  }
  return c;
}

// Weights of the backbone's linear layers.
int64_t LinearParameters(const ModelConfig& c) {
  const int64_t h = c.hidden_size, q = c.num_heads * c.head_dim;
  if (c.family == ModelFamily::kEncoder) {
    return c.num_layers * (4 * h * h + 2 * h * c.intermediate_size);
  }
  const int64_t kv = c.num_kv_heads * c.head_dim;
  return c.num_layers * (2 * h * q + 2 * h * kv + 3 * h * c.intermediate_size);
}

double ForwardFlops(const ModelConfig& c, int64_t batch, int64_t seq) {
  const double tokens = static_cast<double>(batch * seq);
  return 2.0 * LinearParameters(c) * tokens +
         4.0 * c.num_layers * batch * static_cast<double>(seq) * seq * c.num_heads * c.head_dim;
}

struct Arm {
  std::string family;
  ModelConfig config;
  std::unique_ptr<RewardModel> model;
  double forward_flops = 0;
  std::vector<double> forward_rate, backward_rate;  // GFLOP/s per rep
};

// One step: the forward (inference mode) or forward+backward (grads freed after).
void Step(RewardModel& model, const at::Tensor& ids, const at::Tensor& mask, bool backward) {
  if (!backward) {
    c10::InferenceMode guard;
    model.Forward(ids, mask);
    return;
  }
  model.Forward(ids, mask).sum().backward();
  for (auto& parameter : model.module().parameters()) parameter.mutable_grad().reset();
}

// Seconds per step, the step repeated for --seconds (at least twice) after one warm-up.
double TimeSteps(RewardModel& model, const at::Tensor& ids, const at::Tensor& mask,
                 bool backward) {
  if (backward) {
    model.module().train();
  } else {
    model.module().eval();
  }
  Step(model, ids, mask, backward);
  const double budget = absl::GetFlag(FLAGS_seconds);
  int steps = 0;
  const auto start = Clock::now();
  double elapsed = 0;
  while (steps < 2 || elapsed < budget) {
    Step(model, ids, mask, backward);
    ++steps;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  }
  return elapsed / steps;
}

// The profile of `steps` steps: inclusive time per named scope ("llama.*") and per outermost
// operator (scopes not counted as nesting), in ms per step.
void Profile(RewardModel& model, const at::Tensor& ids, const at::Tensor& mask, bool backward,
             int steps) {
  namespace profiler = torch::autograd::profiler;
  if (backward) {
    model.module().train();
  } else {
    model.module().eval();
  }
  Step(model, ids, mask, backward);
  profiler::thread_event_lists events;
  const auto start = Clock::now();
  {
    profiler::enableProfilerLegacy(
        torch::profiler::impl::ProfilerConfig(torch::profiler::impl::ProfilerState::CPU));
    for (int i = 0; i < steps; ++i) Step(model, ids, mask, backward);
    events = profiler::disableProfilerLegacy();
  }
  const double wall_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  std::map<std::string, double> scope_ms, op_ms;
  std::map<std::string, int64_t> op_calls;
  for (const auto& list : events) {
    struct Open {
      const profiler::LegacyEvent* push;
      bool scope;
      int depth;  // operators open around it, scopes not counted
    };
    std::vector<Open> stack;
    int depth = 0;
    for (const auto& event : list) {
      if (event.kind() == profiler::EventKind::PushRange) {
        const bool scope = absl::StartsWith(event.name(), "llama.");
        stack.push_back({&event, scope, depth});
        if (!scope) ++depth;
      } else if (event.kind() == profiler::EventKind::PopRange && !stack.empty()) {
        // Ranges close in order on their thread; match by handle to be safe.
        auto it = std::find_if(stack.rbegin(), stack.rend(), [&](const Open& open) {
          return open.push->handle() == event.handle();
        });
        if (it == stack.rend()) continue;
        const Open open = *it;
        stack.erase(std::next(it).base(), stack.end());
        depth = open.depth;
        const double ms = open.push->cpuElapsedUs(event) / 1000.0 / steps;
        if (open.scope) {
          scope_ms[open.push->name()] += ms;
        } else if (open.depth == 0) {
          std::string name = open.push->name();
          constexpr absl::string_view kNode = "autograd::engine::evaluate_function: ";
          if (absl::StartsWith(name, kNode)) name = "backward " + name.substr(kNode.size());
          op_ms[name] += ms;
          op_calls[name] += 1;
        }
      }
    }
  }
  std::cout << absl::StrFormat("\nprofile, llama %s: %.2f ms per step (profiled wall time)\n",
                               backward ? "forward+backward" : "forward", wall_ms / steps);
  std::cout << "  scope                                         ms/step   share\n";
  for (const auto& [name, ms] : scope_ms) {
    std::cout << absl::StrFormat("  %-44s %8.3f  %5.1f%%\n", name, ms, 100 * ms * steps / wall_ms);
  }
  std::vector<std::pair<double, std::string>> ops;
  for (const auto& [name, ms] : op_ms) ops.push_back({ms, name});
  std::sort(ops.rbegin(), ops.rend());
  std::cout << "  outermost operator / autograd node            ms/step   share  calls/step\n";
  for (size_t i = 0; i < ops.size() && i < 25; ++i) {
    const auto& [ms, name] = ops[i];
    std::cout << absl::StrFormat("  %-44s %8.3f  %5.1f%%  %6.1f\n", name.substr(0, 44), ms,
                                 100 * ms * steps / wall_ms,
                                 static_cast<double>(op_calls[name]) / steps);
  }
}

absl::Status Run() {
  if (absl::GetFlag(FLAGS_threads) > 0) at::set_num_threads(absl::GetFlag(FLAGS_threads));
  std::cout << "forward_bench: " << DescribeMachine() << "\n";
  const int64_t batch = absl::GetFlag(FLAGS_batch), seq = absl::GetFlag(FLAGS_seq);
  std::cout << absl::StrFormat(
      "GFLOP/s = FLOPs per step / seconds per step; forward FLOPs = 2 x linear params x tokens "
      "+ 4 x layers x batch x seq^2 x heads x head_dim; forward+backward = 3 x forward. "
      "batch %d, seq %d, layers %d, heads %d (decoder kv %d)\n",
      batch, seq, absl::GetFlag(FLAGS_layers), absl::GetFlag(FLAGS_heads),
      absl::GetFlag(FLAGS_kv_heads));
  torch::manual_seed(1);
  const at::Tensor ids = torch::randint(3, kVocab, {batch, seq}, torch::kLong);
  const at::Tensor mask = torch::ones({batch, seq}, torch::kLong);
  for (const std::string& hidden_text : absl::GetFlag(FLAGS_hidden)) {
    int64_t hidden = 0;
    if (!absl::SimpleAtoi(hidden_text, &hidden) || hidden <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("--hidden: not a size: \"", hidden_text, "\""));
    }
    std::vector<Arm> arms;
    for (const std::string& family : absl::GetFlag(FLAGS_families)) {
      Arm arm;
      arm.family = family;
      ASSIGN_OR_RETURN(arm.config, ArmConfig(family, hidden));
      ModelOptions options;
      options.seed = 7;
      ASSIGN_OR_RETURN(arm.model, CreateRewardModel(arm.config, options));
      arm.forward_flops = ForwardFlops(arm.config, batch, seq);
      arms.push_back(std::move(arm));
    }
    const ModelConfig& c0 = arms.front().config;
    std::cout << absl::StrFormat("\n== hidden %d, head_dim %d, intermediate %d ==\n", hidden,
                                 c0.head_dim, c0.intermediate_size);
    for (const Arm& arm : arms) {
      std::cout << absl::StrFormat("  %-8s linear params %9d, forward %.3f GFLOP per step\n",
                                   arm.family, LinearParameters(arm.config),
                                   arm.forward_flops / 1e9);
    }
    const bool with_backward = absl::GetFlag(FLAGS_backward);
    for (int rep = 0; rep < absl::GetFlag(FLAGS_reps); ++rep) {
      std::string line = absl::StrFormat("  rep %d  fwd GFLOP/s:", rep);
      for (Arm& arm : arms) {
        const double s = TimeSteps(*arm.model, ids, mask, /*backward=*/false);
        arm.forward_rate.push_back(arm.forward_flops / s / 1e9);
        absl::StrAppendFormat(&line, " %s %.2f", arm.family, arm.forward_rate.back());
      }
      if (with_backward) {
        absl::StrAppend(&line, "  fwd+bwd:");
        for (Arm& arm : arms) {
          const double s = TimeSteps(*arm.model, ids, mask, /*backward=*/true);
          arm.backward_rate.push_back(3 * arm.forward_flops / s / 1e9);
          absl::StrAppendFormat(&line, " %s %.2f", arm.family, arm.backward_rate.back());
        }
      }
      absl::StrAppendFormat(&line, "  load %.2f", LoadAverage());
      std::cout << line << "\n" << std::flush;
    }
    const Arm& encoder = arms.front();
    std::cout << "  medians (GFLOP/s)       forward   fwd+bwd   fwd enc/x  fwd+bwd enc/x  "
                 "(per-rep enc/x, forward | fwd+bwd)\n";
    for (const Arm& arm : arms) {
      auto per_rep = [&](const std::vector<double>& mine, const std::vector<double>& theirs) {
        std::vector<std::string> out;
        for (size_t i = 0; i < mine.size(); ++i) {
          out.push_back(absl::StrFormat("%.2f", theirs[i] / mine[i]));
        }
        return absl::StrJoin(out, " ");
      };
      const double fwd = Median(arm.forward_rate), bwd = Median(arm.backward_rate);
      std::cout << absl::StrFormat(
          "  %-22s %8.2f  %8.2f   %8.2f   %8.2f       (%s | %s)\n", arm.family, fwd, bwd,
          Median(encoder.forward_rate) / fwd,
          with_backward ? Median(encoder.backward_rate) / bwd : 0.0,
          per_rep(arm.forward_rate, encoder.forward_rate),
          per_rep(arm.backward_rate, encoder.backward_rate));
    }
    if (absl::GetFlag(FLAGS_profile)) {
      for (Arm& arm : arms) {
        if (arm.family != "llama") continue;
        Profile(*arm.model, ids, mask, /*backward=*/false, absl::GetFlag(FLAGS_profile_steps));
        if (with_backward) {
          Profile(*arm.model, ids, mask, /*backward=*/true, absl::GetFlag(FLAGS_profile_steps));
        }
      }
    }
  }
  std::cout << "after: " << DescribeMachine() << "\n";
  return absl::OkStatus();
}

}  // namespace
}  // namespace verdict::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "forward_bench: decoder vs encoder GFLOP/s at equal width, forward and forward+backward, "
      "with a per-scope and per-operator profile of the decoder.");
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = verdict::bench::Run();
  if (!status.ok()) {
    std::cerr << "forward_bench: " << status << "\n";
    return 1;
  }
  return 0;
}
