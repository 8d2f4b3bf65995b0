#include "core/model/reward_model.h"

#include <torch/torch.h>

#include <filesystem>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/model/model_directory.h"
#include "core/model/transformer_modules.h"
#include "core/util/file_util.h"
#include "core/util/status_macros.h"

namespace verdict {
namespace {

std::unique_ptr<RewardModel> NewRewardModel(const ModelConfig& config) {
  return config.family == ModelFamily::kEncoder ? NewDistilBertRewardModel(config)
                                                : NewLlamaRewardModel(config);
}

// Hugging Face's _init_weights for both families: normal(0, initializer_range) for linear
// and embedding weights, zero biases and padding rows, unit norm weights.
void InitializeParameters(RewardModel& model, const std::vector<std::string>& names,
                          at::Generator& generator) {
  torch::NoGradGuard no_grad;
  const double std = model.config().initializer_range;
  TensorMap params = model.StateDict();
  for (const std::string& name : names) {
    at::Tensor& p = params.at(name);
    const bool is_norm = absl::StrContains(name, "norm") || absl::StrContains(name, "LayerNorm");
    if (is_norm) {
      p.fill_(absl::EndsWith(name, ".bias") ? 0.0 : 1.0);
    } else if (absl::EndsWith(name, ".bias")) {
      p.zero_();
    } else {
      p.normal_(0.0, std, generator);
      const int64_t pad = model.config().pad_token_id;
      const bool is_token_embedding = absl::EndsWith(name, "word_embeddings.weight") ||
                                      absl::EndsWith(name, "embed_tokens.weight");
      if (is_token_embedding && pad >= 0 && pad < p.size(0)) p[pad].zero_();
    }
  }
}

std::vector<std::string> ParameterNames(const RewardModel& model) {
  std::vector<std::string> names;
  for (const auto& [name, tensor] : model.StateDict()) names.push_back(name);
  return names;
}

absl::Status MoveTo(RewardModel& model, const ModelOptions& options) {
  ASSIGN_OR_RETURN(const Device parsed, ParseDeviceName(options.device));
  const c10::Device device = ToTorchDevice(parsed);
  const c10::ScalarType dtype = ToScalarType(options.dtype);
  if (options.dtype == Dtype::kFloat16 && !device.is_cuda()) {
    // LibTorch's CPU kernels (addmm, layer_norm, ...) have no float16 versions: the model
    // would load and then fail in its first forward.
    return absl::InvalidArgumentError(
        "dtype float16 needs a CUDA device (the CPU has no float16 kernels); use float32 or "
        "bfloat16 on the CPU");
  }
  RETURN_IF_ERROR(CheckDeviceAvailable(parsed));
  model.module().to(device, dtype);
  model.module().eval();
  model.set_gradient_checkpointing(options.gradient_checkpointing);
  return absl::OkStatus();
}

// Checkpoint keys that name no reward-model parameter but are expected in base checkpoints.
bool IsIgnorableKey(const ModelConfig& config, const std::string& key) {
  if (config.family == ModelFamily::kDecoder) {
    return key == "lm_head.weight" || absl::EndsWith(key, "rotary_emb.inv_freq");
  }
  return absl::StartsWith(key, "vocab_transform.") || absl::StartsWith(key, "vocab_layer_norm.") ||
         absl::StartsWith(key, "vocab_projector.") || absl::EndsWith(key, "position_ids");
}

// Maps the key names of bare backbones (DistilBertModel, LlamaModel), which lack the
// "distilbert." / "model." prefix, onto the reward model's names.
std::string CanonicalKey(const ModelConfig& config, const std::string& key) {
  const std::string prefix = config.family == ModelFamily::kEncoder ? "distilbert." : "model.";
  const std::vector<std::string> backbone_roots =
      config.family == ModelFamily::kEncoder
          ? std::vector<std::string>{"embeddings.", "transformer."}
          : std::vector<std::string>{"embed_tokens.", "layers.", "norm."};
  for (const std::string& root : backbone_roots) {
    if (absl::StartsWith(key, root)) return prefix + key;
  }
  return key;
}

std::string ShapeString(at::IntArrayRef shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::Status LoadWeights(RewardModel& model, TensorMap checkpoint, const std::string& dir,
                         at::Generator& generator) {
  const ModelConfig& config = model.config();
  TensorMap weights;
  for (auto& [key, tensor] : checkpoint) {
    if (IsIgnorableKey(config, key)) continue;
    weights.emplace(CanonicalKey(config, key), std::move(tensor));
  }

  TensorMap params = model.StateDict();
  std::vector<std::string> missing_head, missing_backbone;
  for (const auto& [name, param] : params) {
    if (weights.count(name) == 0) {
      (IsRewardHeadParameter(config, name) ? missing_head : missing_backbone).push_back(name);
    }
  }
  if (!missing_backbone.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(dir, ": missing tensor \"", missing_backbone[0],
                                                   "\"", missing_backbone.size() > 1
                                                       ? absl::StrCat(" (and ", missing_backbone.size() - 1, " more)")
                                                       : ""));
  }
  std::vector<std::string> head_names;
  for (const auto& [name, param] : params) {
    if (IsRewardHeadParameter(config, name)) head_names.push_back(name);
  }
  if (!missing_head.empty() && missing_head.size() != head_names.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, ": reward head is incomplete: missing tensor \"", missing_head[0], "\""));
  }
  for (const auto& [name, tensor] : weights) {
    if (params.count(name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(dir, ": unexpected tensor \"", name, "\""));
    }
  }

  torch::NoGradGuard no_grad;
  for (const auto& [name, tensor] : weights) {
    at::Tensor& param = params.at(name);
    if (tensor.sizes() != param.sizes()) {
      return absl::InvalidArgumentError(absl::StrCat(
          dir, ": tensor \"", name, "\" has shape ", ShapeString(tensor.sizes()),
          " but config.json implies ", ShapeString(param.sizes())));
    }
    if (!tensor.is_floating_point()) {
      return absl::InvalidArgumentError(absl::StrCat(dir, ": tensor \"", name,
                                                     "\" is not floating point"));
    }
    param.copy_(tensor);
  }
  // A base checkpoint (a language model or bare backbone) gets a fresh reward head.
  if (!missing_head.empty()) InitializeParameters(model, missing_head, generator);
  return absl::OkStatus();
}

template <typename Fn>
auto CatchTorchErrors(absl::string_view what, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat(what, ": ", e.what_without_backtrace()));
  }
}

}  // namespace

bool IsRewardHeadParameter(const ModelConfig& config, const std::string& name) {
  if (config.family == ModelFamily::kDecoder) return name == "score.weight";
  return absl::StartsWith(name, "pre_classifier.") || absl::StartsWith(name, "classifier.");
}

absl::StatusOr<c10::Device> ParseDevice(const std::string& device) {
  ASSIGN_OR_RETURN(Device parsed, ParseDeviceName(device));
  return ToTorchDevice(parsed);
}

absl::Status CheckDeviceAvailable(const Device& device) {
  if (!device.is_cuda()) return absl::OkStatus();
  const int64_t count =
      torch::cuda::is_available() ? static_cast<int64_t>(torch::cuda::device_count()) : 0;
  if (count == 0 || device.index >= count) {
    return absl::FailedPreconditionError(absl::StrCat("device \"", DeviceName(device),
                                                      "\": this machine has ", count,
                                                      " CUDA device", count == 1 ? "" : "s"));
  }
  return absl::OkStatus();
}

c10::Device ToTorchDevice(const Device& device) {
  if (!device.is_cuda()) return c10::Device(c10::kCPU);
  return device.index < 0 ? c10::Device(c10::kCUDA)
                          : c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(device.index));
}

c10::ScalarType ToScalarType(Dtype dtype) {
  switch (dtype) {
    case Dtype::kFloat32:
      return c10::kFloat;
    case Dtype::kBFloat16:
      return c10::kBFloat16;
    case Dtype::kFloat16:
      return c10::kHalf;
  }
  return c10::kFloat;
}

absl::StatusOr<at::Tensor> ForwardRewards(RewardModel& model, const at::Tensor& input_ids,
                                          const at::Tensor& attention_mask) {
  try {
    return model.Forward(input_ids, attention_mask);
  } catch (const c10::OutOfMemoryError& e) {
    return absl::ResourceExhaustedError(absl::StrCat("forward: ", e.what_without_backtrace()));
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("forward: ", e.what_without_backtrace()));
  }
}

at::Tensor RewardModel::ForwardPacked(const at::Tensor& /*packed_ids*/,
                                      const std::vector<int64_t>& /*lengths*/) {
  TORCH_CHECK(false, "this architecture has no packed forward; pad and call Forward()");
}

at::Tensor RewardModel::ForwardShared(const at::Tensor& /*packed_ids*/,
                                      const std::vector<SharedPrefixGroup>& /*groups*/) {
  TORCH_CHECK(false, "this architecture cannot share prefixes; score each sequence whole");
}

absl::StatusOr<std::unique_ptr<RewardModel>> CreateRewardModel(const ModelConfig& config,
                                                               const ModelOptions& options) {
  return CatchTorchErrors("creating model", [&]() -> absl::StatusOr<std::unique_ptr<RewardModel>> {
    std::unique_ptr<RewardModel> model = NewRewardModel(config);
    at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(options.seed);
    InitializeParameters(*model, ParameterNames(*model), generator);
    if (options.lora.rank > 0) RETURN_IF_ERROR(AddLoraAdapters(*model, options.lora, generator));
    RETURN_IF_ERROR(MoveTo(*model, options));
    return model;
  });
}

absl::StatusOr<std::unique_ptr<RewardModel>> LoadRewardModel(const std::string& dir,
                                                             const ModelOptions& options) {
  ASSIGN_OR_RETURN(ModelConfig config,
                   ReadModelDirectoryConfig(dir));
  ASSIGN_OR_RETURN(TensorMap checkpoint, ReadModelWeights(dir));
  return CatchTorchErrors("loading " + dir, [&]() -> absl::StatusOr<std::unique_ptr<RewardModel>> {
    std::unique_ptr<RewardModel> model = NewRewardModel(config);
    at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(options.seed);
    RETURN_IF_ERROR(LoadWeights(*model, std::move(checkpoint), dir, generator));
    if (options.lora.rank > 0) RETURN_IF_ERROR(AddLoraAdapters(*model, options.lora, generator));
    RETURN_IF_ERROR(MoveTo(*model, options));
    return model;
  });
}

absl::Status SaveRewardModel(RewardModel& model, const std::string& dir) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", error.message()));
  }
  return CatchTorchErrors("saving " + dir, [&]() -> absl::Status {
    TensorMap tensors;
    for (const auto& [name, tensor] : MergedStateDict(model)) {
      tensors.emplace(name, tensor.detach().to(torch::kCPU, torch::kFloat32).contiguous());
    }
    const std::filesystem::path path(dir);
    RETURN_IF_ERROR(WriteSafetensors((path / kModelWeightsFile).string(), tensors));
    return WriteFileAtomically((path / kModelConfigFile).string(),
                               SerializeModelConfig(model.config()));
  });
}

}  // namespace verdict
