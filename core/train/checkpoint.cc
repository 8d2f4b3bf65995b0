#include "core/train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/model/model_directory.h"
#include "core/model/reward_model.h"
#include "core/model/safetensors.h"
#include "core/util/crash_point.h"
#include "core/util/file_util.h"
#include "core/util/status_macros.h"
#include "nlohmann/json.hpp"

namespace verdict {
namespace {

namespace fs = std::filesystem;

constexpr char kPrefix[] = "checkpoint-";
constexpr char kTmpSuffix[] = ".tmp";
// LoRA adapters (core/model/lora.h) under their own names, beside the merged model.
constexpr char kAdapterFile[] = "adapter_model.safetensors";

std::string CheckpointName(int64_t step) { return absl::StrFormat("%s%08d", kPrefix, step); }

void SyncDirectory(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

std::vector<int64_t> ListCheckpoints(const std::string& run_dir) {
  std::vector<int64_t> steps;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(run_dir, error)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(kPrefix, 0) != 0 || !entry.is_directory()) continue;
    int64_t step = 0;
    if (absl::SimpleAtoi(name.substr(sizeof(kPrefix) - 1), &step)) steps.push_back(step);
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

absl::StatusOr<std::string> WriteCheckpoint(const std::string& run_dir, int64_t step,
                                            const CheckpointContents& contents) {
  const fs::path final_path = fs::path(run_dir) / CheckpointName(step);
  const fs::path tmp = final_path.string() + kTmpSuffix;
  std::error_code error;
  fs::remove_all(tmp, error);
  RETURN_IF_ERROR(SaveRewardModel(*contents.model, tmp.string()));
  // LoRA: the adapters on their own as well (model.safetensors has them merged in).
  TensorMap adapters;
  for (const auto& [name, tensor] : LoraAdapterTensors(*contents.model)) {
    adapters.emplace(name, tensor.detach().to(torch::kCPU, torch::kFloat32).contiguous());
  }
  if (!adapters.empty()) {
    RETURN_IF_ERROR(WriteSafetensors((tmp / kAdapterFile).string(), adapters));
  }
  RETURN_IF_ERROR(WriteFileAtomically((tmp / "optimizer.pt").string(), contents.optimizer_state));
  nlohmann::json state = {{"step", contents.position.step},
                          {"epoch", contents.position.epoch},
                          {"batch", contents.position.batch}};
  if (contents.end.has_value()) {
    const RunEnd& end = *contents.end;
    const EvalMetrics& eval = end.final_eval;
    state["end"] = {{"eval_pairs", eval.pairs},         {"eval_loss", eval.loss},
                    {"eval_accuracy", eval.accuracy}, {"eval_margin", eval.margin},
                    {"eval_reward_mean", eval.reward_mean},
                    {"eval_reward_std", eval.reward_std},
                    {"eval_seconds", eval.seconds},   {"reward_mean", end.reward_mean},
                    {"reward_std", end.reward_std}};
  }
  RETURN_IF_ERROR(WriteFileAtomically((tmp / "trainer_state.json").string(), state.dump(2)));
  SyncDirectory(tmp);
  CrashPoint("mid_checkpoint");
  fs::remove_all(final_path, error);
  fs::rename(tmp, final_path, error);
  if (error) {
    return absl::InternalError(absl::StrCat("cannot move checkpoint into ", final_path.string(),
                                            ": ", error.message()));
  }
  SyncDirectory(run_dir);
  return final_path.string();
}

absl::Status PruneCheckpoints(const std::string& run_dir, int64_t keep) {
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(run_dir, error)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(kPrefix, 0) == 0 && name.size() > 4 &&
        name.compare(name.size() - 4, 4, kTmpSuffix) == 0) {
      fs::remove_all(entry.path(), error);
    }
  }
  std::vector<int64_t> steps = ListCheckpoints(run_dir);
  const size_t keep_count = static_cast<size_t>(std::max<int64_t>(1, keep));
  for (size_t i = 0; i + keep_count < steps.size(); ++i) {
    fs::remove_all(fs::path(run_dir) / CheckpointName(steps[i]), error);
    if (error) {
      return absl::InternalError(absl::StrCat("cannot remove old checkpoint ", steps[i], ": ",
                                              error.message()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<LoadedCheckpoint>> LoadLatestCheckpoint(const std::string& run_dir,
                                                                     RewardModel& model) {
  std::vector<int64_t> steps = ListCheckpoints(run_dir);
  if (steps.empty()) return std::optional<LoadedCheckpoint>();
  const fs::path dir = fs::path(run_dir) / CheckpointName(steps.back());
  LoadedCheckpoint loaded;
  loaded.path = dir.string();
  ASSIGN_OR_RETURN(TensorMap weights, ReadSafetensors((dir / kModelWeightsFile).string()));
  TensorMap params = model.StateDict();
  TensorMap adapters = LoraAdapterTensors(model);
  if (!adapters.empty()) {
    // Frozen weights are the base model's, loaded as the run started; model.safetensors holds
    // them merged with the adapters, which come from their own file.
    ASSIGN_OR_RETURN(TensorMap saved, ReadSafetensors((dir / kAdapterFile).string()));
    torch::NoGradGuard no_grad;
    for (auto& [name, adapter] : adapters) {
      auto it = saved.find(name);
      if (it == saved.end() || it->second.sizes() != adapter.sizes()) {
        return absl::DataLossError(absl::StrCat(dir.string(), ": adapter \"", name,
                                                "\" is missing or has another shape"));
      }
      adapter.copy_(it->second);
    }
  }
  if (weights.size() != params.size()) {
    return absl::DataLossError(absl::StrCat(dir.string(), ": checkpoint holds ", weights.size(),
                                            " tensors, the model has ", params.size()));
  }
  {
    torch::NoGradGuard no_grad;
    for (auto& [name, param] : params) {
      if (!adapters.empty() && !param.requires_grad()) continue;  // frozen (above)
      auto it = weights.find(name);
      if (it == weights.end() || it->second.sizes() != param.sizes()) {
        return absl::DataLossError(absl::StrCat(dir.string(), ": tensor \"", name,
                                                "\" is missing or has another shape"));
      }
      param.copy_(it->second);
    }
  }
  ASSIGN_OR_RETURN(loaded.optimizer_state, ReadFileToString((dir / "optimizer.pt").string()));
  ASSIGN_OR_RETURN(std::string state_text, ReadFileToString((dir / "trainer_state.json").string()));
  auto state = nlohmann::json::parse(state_text, nullptr, /*allow_exceptions=*/false);
  if (!state.is_object() || !state["step"].is_number_integer() ||
      !state["epoch"].is_number_integer() || !state["batch"].is_number_integer()) {
    return absl::DataLossError(absl::StrCat(dir.string(), "/trainer_state.json is malformed"));
  }
  loaded.position.step = state["step"].get<int64_t>();
  loaded.position.epoch = state["epoch"].get<int64_t>();
  loaded.position.batch = state["batch"].get<int64_t>();
  if (state.contains("end")) {
    const nlohmann::json& end = state["end"];
    const char* const kNumbers[] = {"eval_loss",        "eval_accuracy",   "eval_margin",
                                    "eval_reward_mean", "eval_reward_std", "eval_seconds",
                                    "reward_mean",      "reward_std"};
    bool valid = end.is_object() && end.contains("eval_pairs") &&
                 end["eval_pairs"].is_number_integer();
    for (const char* key : kNumbers) valid = valid && end.contains(key) && end[key].is_number();
    if (!valid) {
      return absl::DataLossError(absl::StrCat(dir.string(), "/trainer_state.json: bad \"end\""));
    }
    RunEnd run_end;
    EvalMetrics& eval = run_end.final_eval;
    eval.step = loaded.position.step;
    eval.pairs = end["eval_pairs"].get<int64_t>();
    eval.loss = end["eval_loss"].get<double>();
    eval.accuracy = end["eval_accuracy"].get<double>();
    eval.margin = end["eval_margin"].get<double>();
    eval.reward_mean = end["eval_reward_mean"].get<double>();
    eval.reward_std = end["eval_reward_std"].get<double>();
    eval.seconds = end["eval_seconds"].get<double>();
    run_end.reward_mean = end["reward_mean"].get<double>();
    run_end.reward_std = end["reward_std"].get<double>();
    loaded.end = run_end;
  }
  return std::optional<LoadedCheckpoint>(std::move(loaded));
}

}  // namespace verdict
