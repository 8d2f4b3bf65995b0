// The one conversion point from a v1::TrainingJobSpec to the core trainer's TrainingConfig.
//
// NormalizeTrainingJobSpec fills in every default from a default-constructed TrainingConfig
// (core's defaults are the only ones) and validates the spec, so that Job.spec records exactly
// what runs and a resubmitted spec reproduces it. Ranges and rules on the settings are core's
// ValidateTrainingSettings; the server adds only what it alone knows (paths, names, the base
// model's position limit, priority). Errors are INVALID_ARGUMENT / NOT_FOUND /
// PERMISSION_DENIED whose message starts with the field's path ("spec.hyperparameters.
// learning_rate: must be in (0, 1], got -1"): core's errors name core fields, and one table in
// spec_conversion.cc (kProtoPaths) maps them onto proto paths. ToTrainingConfig maps a
// normalized spec onto the trainer's configuration for one job.
//
// Adding a hyper-parameter: the proto field, the TrainingConfig member (its default and its
// rule in ValidateTrainingSettings), and here its default fill, one line in SettingsOf and one
// row in kProtoPaths.
//
// Thread-safe free functions; the resolvers are called on the caller's thread.
#ifndef VERDICT_SERVER_SPEC_CONVERSION_H_
#define VERDICT_SERVER_SPEC_CONVERSION_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "core/train/training_config.h"
#include "server/server_config.h"
#include "verdict/v1/training.pb.h"

namespace verdict::server {

struct SpecResolvers {
  // The stored file of an uploaded dataset; NOT_FOUND when unknown.
  std::function<absl::StatusOr<std::string>(const std::string& dataset_id)> dataset_file;
  // The directory of a registered model version, and the version an alias resolved to.
  std::function<absl::StatusOr<std::pair<std::string, int64_t>>(const v1::ModelRef& ref)>
      registered_model;
};

absl::Status NormalizeTrainingJobSpec(const ServerConfig& server, const SpecResolvers& resolvers,
                                      v1::TrainingJobSpec* spec);

// `run_dir` holds the job's checkpoints; `output_dir` receives the trained model.
absl::StatusOr<TrainingConfig> ToTrainingConfig(const ServerConfig& server,
                                                const SpecResolvers& resolvers,
                                                const v1::TrainingJobSpec& spec,
                                                const std::string& run_dir,
                                                const std::string& output_dir);

}  // namespace verdict::server

#endif  // VERDICT_SERVER_SPEC_CONVERSION_H_
