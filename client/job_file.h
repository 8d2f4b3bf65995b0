// Job files: a training job written as YAML or JSON, read into the request `verdict submit`
// sends.
//
// A job file holds either a TrainingJobSpec, or a SubmitTrainingJobRequest (top-level keys
// `spec`, `request_id`, `validate_only`), in the proto3 JSON mapping: field names as in the
// .proto (output_model_name) or in lowerCamelCase (outputModelName), enums by name, int64 as
// numbers or strings. A `.json` file goes straight to protobuf's JSON parser. Any other file is
// read as YAML (yaml-cpp) and turned into JSON first, each scalar given the JSON type of the
// field it lands in (so `name: 123` stays a string and `seed: 7` a number); enum values may also
// drop their type prefix in YAML (`dtype: bfloat16` for DTYPE_BFLOAT16). Example:
//
//   output_model_name: helpful-rm
//   preset: encoder-tiny
//   tokenizer: {train: {vocab_size: 400}}
//   train_data: {path: hh-rlhf/helpful-base/train.jsonl.gz}
//   hyperparameters: {learning_rate: 3e-4, max_steps: 200, per_device_train_batch_size: 16}
//
// Stateless functions; safe from any thread.
#ifndef VERDICT_CLIENT_JOB_FILE_H_
#define VERDICT_CLIENT_JOB_FILE_H_

#include <google/protobuf/descriptor.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "verdict/v1/training.pb.h"

namespace verdict::client {

// Reads and parses the job file at `path`. Errors (INVALID_ARGUMENT, or the file's read error)
// start with the path and name the offending key, e.g.
//   "job.yaml: hyperparameters.lerning_rate: no such field in verdict.v1.Hyperparameters".
absl::StatusOr<verdict::v1::SubmitTrainingJobRequest> LoadJobFile(absl::string_view path);

// As LoadJobFile, from text; `json` picks protobuf's JSON parser instead of YAML.
absl::StatusOr<verdict::v1::SubmitTrainingJobRequest> ParseJobFile(absl::string_view contents,
                                                                   bool json);

// An enum value from its full name ("DTYPE_BFLOAT16"), its name without the type's prefix in
// any case ("bfloat16", with '-' for '_'), or its number. INVALID_ARGUMENT listing the names
// otherwise.
absl::StatusOr<int> ParseEnumValue(const google::protobuf::EnumDescriptor& type,
                                   absl::string_view text);

// YAML text holding one `type` message -> the same message as JSON text, each scalar typed by
// its field. INVALID_ARGUMENT with the key path for YAML syntax errors, unknown fields, a list
// where a single value belongs (or the reverse), and scalars where a message belongs.
absl::StatusOr<std::string> YamlToJson(absl::string_view yaml,
                                       const google::protobuf::Descriptor& type);

}  // namespace verdict::client

#endif  // VERDICT_CLIENT_JOB_FILE_H_
