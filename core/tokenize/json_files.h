// Reading and writing the JSON files of a Hugging Face tokenizer directory
// (tokenizer_config.json, special_tokens_map.json). Internal to core/tokenize.
//
// Thread-compatible: pure functions over files.
#ifndef VERDICT_CORE_TOKENIZE_JSON_FILES_H_
#define VERDICT_CORE_TOKENIZE_JSON_FILES_H_

#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace verdict {

// Parses `path` as JSON; InvalidArgument naming the file when it is not.
absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path);

// Writes `value` indented, atomically, as Hugging Face writes its own config files.
absl::Status WriteJsonFile(const std::string& path, const nlohmann::json& value);

// Creates `dir` and its parents where missing.
absl::Status CreateDirectories(const std::string& dir);

}  // namespace verdict

#endif  // VERDICT_CORE_TOKENIZE_JSON_FILES_H_
