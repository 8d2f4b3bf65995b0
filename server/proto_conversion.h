// proto_conversion: every mapping between the API's messages (proto/verdict/v1) and core's
// types, in one place: enums, training metrics, model descriptions and scoring settings, and
// training job specs. Handlers and the job runner call these; nothing else in server/ spells a
// proto enum next to a core one.
//
// Training job specs:
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
// row in kProtoPaths (proto_conversion.cc).
//
// Thread-safe free functions; the resolvers are called on the caller's thread.
#ifndef VERDICT_SERVER_SPEC_CONVERSION_H_
#define VERDICT_SERVER_SPEC_CONVERSION_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "core/data/chat_format.h"
#include "core/data/data_format.h"
#include "core/model/device.h"
#include "core/model/model_config.h"
#include "core/model/model_directory.h"
#include "core/score/scoring_model.h"
#include "core/tokenize/pair_encoding.h"
#include "core/tokenize/sentencepiece_tokenizer.h"
#include "core/train/lr_schedule.h"
#include "core/train/trainer.h"
#include "core/train/training_config.h"
#include "server/server_config.h"
#include "verdict/v1/models.pb.h"
#include "verdict/v1/training.pb.h"

namespace verdict::server {

// ---- enums: ToCore fails with INVALID_ARGUMENT "<field>: unknown value N" for UNSPECIFIED and
// unknown numbers (callers fill defaults first); ToProto is total.
absl::StatusOr<ChatFormat> ToCore(v1::ChatFormat v);
v1::ChatFormat ToProto(ChatFormat v);
absl::StatusOr<DataFormat> ToCore(v1::DataFormat v);
v1::DataFormat ToProto(DataFormat v);
absl::StatusOr<InputRule> ToCore(v1::InputRule v);
v1::InputRule ToProto(InputRule v);
absl::StatusOr<LrScheduleKind> ToCore(v1::LrScheduler v);
v1::LrScheduler ToProto(LrScheduleKind v);
absl::StatusOr<TruncationPolicy> ToCore(v1::TruncationPolicy v);
v1::TruncationPolicy ToProto(TruncationPolicy v);
absl::StatusOr<Dtype> ToCore(v1::Dtype v);
v1::Dtype ToProto(Dtype v);
absl::StatusOr<SentencePieceModelType> ToCore(v1::SentencePieceModelType v);
v1::SentencePieceModelType ToProto(SentencePieceModelType v);
v1::ModelFamily ToProto(ModelFamily v);

// ---- job states
// "QUEUED", "RUNNING", ...: the enum's name without its prefix (logs, metric labels).
std::string JobStateName(v1::JobState state);
// SUCCEEDED, FAILED or CANCELLED: nothing will change the job any more.
bool IsTerminal(v1::JobState state);

// ---- training metrics, as MetricsEvent payloads.
void ToProto(const TrainStepMetrics& metrics, v1::TrainStepMetrics* out);
void ToProto(const EvalMetrics& metrics, v1::EvalMetrics* out);

// ---- models
// family, model_type, vocab_size, max_position_embeddings from a model directory's config.
void DescribeArchitecture(const ModelConfig& config, v1::Model* model);
// max_length, truncation, chat_format: how the version's inputs are built.
void DescribeEncoding(const EncodingSettings& settings, v1::Model* model);
// The settings a registered version is scored with (its encoding and reward statistics).
absl::StatusOr<ScoringSettings> ScoringSettingsOf(const v1::Model& model);

// ---- training job specs

struct SpecResolvers {
  // The stored file of an uploaded dataset; NOT_FOUND when unknown.
  std::function<absl::StatusOr<std::string>(const std::string& dataset_id)> dataset_file;
  // The directory of a registered model version, and the version an alias resolved to.
  std::function<absl::StatusOr<std::pair<std::string, int64_t>>(const v1::ModelRef& ref)>
      registered_model;
};

absl::Status NormalizeTrainingJobSpec(const ServerConfig& server, const SpecResolvers& resolvers,
                                      v1::TrainingJobSpec* spec);

// Validates an EvaluateModel spec, naming the field at fault ("spec.model.name: ..."), checks
// that the model version and the data exist, and pins spec.model to the version number.
absl::Status NormalizeEvaluationJobSpec(const ServerConfig& server, const SpecResolvers& resolvers,
                                        v1::EvaluationJobSpec* spec);
// The file an evaluation job reads.
absl::StatusOr<std::string> EvaluationDataFile(const ServerConfig& server,
                                               const SpecResolvers& resolvers,
                                               const v1::EvaluationJobSpec& spec);

// `run_dir` holds the job's checkpoints; `output_dir` receives the trained model.
absl::StatusOr<TrainingConfig> ToTrainingConfig(const ServerConfig& server,
                                                const SpecResolvers& resolvers,
                                                const v1::TrainingJobSpec& spec,
                                                const std::string& run_dir,
                                                const std::string& output_dir);

}  // namespace verdict::server

#endif  // VERDICT_SERVER_SPEC_CONVERSION_H_
