// Reading and writing the JSON files of a Hugging Face tokenizer directory
// (tokenizer_config.json, special_tokens_map.json). Internal to core/tokenize.
//
// Thread-compatible: pure functions over files.
#ifndef VERDICT_CORE_TOKENIZE_JSON_FILES_H_
#define VERDICT_CORE_TOKENIZE_JSON_FILES_H_

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace verdict {

// The files of a Hugging Face tokenizer directory, named once for every loader and writer.
inline constexpr char kTokenizerJsonFile[] = "tokenizer.json";
inline constexpr char kTokenizerConfigFile[] = "tokenizer_config.json";
inline constexpr char kSpecialTokensMapFile[] = "special_tokens_map.json";
inline constexpr char kSentencePieceModelFile[] = "tokenizer.model";
inline constexpr char kWordPieceVocabFile[] = "vocab.txt";

// Parses `path` as JSON; InvalidArgument naming the file when it is not.
absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path);

// Writes `value` indented, atomically, as Hugging Face writes its own config files.
absl::Status WriteJsonFile(const std::string& path, const nlohmann::json& value);

// A special token of tokenizer_config.json / special_tokens_map.json as transformers writes
// it: a string, or an AddedToken object whose "content" is the string. nullopt when absent or
// null; InvalidArgument naming `file` and `field` for anything else.
absl::StatusOr<std::optional<std::string>> TokenField(const nlohmann::json& config,
                                                      absl::string_view file, const char* field);

// Creates `dir` and its parents where missing.
absl::Status CreateDirectories(const std::string& dir);

}  // namespace verdict

#endif  // VERDICT_CORE_TOKENIZE_JSON_FILES_H_
