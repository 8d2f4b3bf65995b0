#include "core/tokenize/tokenizer.h"

#include <cmath>
#include <filesystem>
#include <limits>
#include <optional>
#include <system_error>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "core/tokenize/json_files.h"
#include "core/tokenize/sentencepiece_tokenizer.h"
#include "core/tokenize/tokenizer_json.h"
#include "core/tokenize/wordpiece_tokenizer.h"
#include "core/util/status_macros.h"

namespace verdict {
namespace {

using Json = nlohmann::json;


bool IsFile(const std::filesystem::path& path) {
  std::error_code error;
  return std::filesystem::is_regular_file(path, error);
}

// The JSON object in `path`; an empty object when the file does not exist.
absl::StatusOr<Json> ReadOptionalJsonObject(const std::filesystem::path& path) {
  if (!IsFile(path)) return Json::object();
  ASSIGN_OR_RETURN(Json value, ReadJsonFile(path.string()));
  if (!value.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), " must hold a JSON object"));
  }
  return value;
}

absl::Status WrongType(absl::string_view file, absl::string_view field, absl::string_view want,
                       const Json& got) {
  return absl::InvalidArgumentError(absl::StrCat(file, ": field \"", field, "\" must be ", want,
                                                 ", got ", got.type_name()));
}

// `config[field]` as a bool; `fallback` when absent or null.
absl::StatusOr<bool> BoolField(const Json& config, absl::string_view file, const char* field,
                               bool fallback) {
  auto it = config.find(field);
  if (it == config.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) return WrongType(file, field, "a boolean", *it);
  return it->get<bool>();
}

absl::StatusOr<std::optional<std::string>> StringField(const Json& config, absl::string_view file,
                                                       const char* field) {
  auto it = config.find(field);
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) return WrongType(file, field, "a string", *it);
  return it->get<std::string>();
}

// model_max_length; 0 when absent or when it is transformers' "no limit" sentinel (1e30).
absl::StatusOr<int64_t> MaxLengthField(const Json& config) {
  auto it = config.find("model_max_length");
  if (it == config.end() || it->is_null()) return 0;
  if (!it->is_number()) return WrongType(kTokenizerConfigFile, "model_max_length", "a number", *it);
  const double value = it->get<double>();
  if (!(value > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        kTokenizerConfigFile, ": field \"model_max_length\" must be positive, got ", it->dump()));
  }
  if (it->is_number_integer() && value < 9e18) return it->get<int64_t>();
  if (value >= 9e18 || value != std::floor(value)) return 0;
  return static_cast<int64_t>(value);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSentencePiece(const std::filesystem::path& root,
                                                             const Json& config,
                                                             const Json& special_tokens) {
  SentencePieceTokenizer::Options options;
  ASSIGN_OR_RETURN(options.add_bos, BoolField(config, kTokenizerConfigFile, "add_bos_token", true));
  ASSIGN_OR_RETURN(options.add_eos, BoolField(config, kTokenizerConfigFile, "add_eos_token", false));
  ASSIGN_OR_RETURN(options.model_max_length, MaxLengthField(config));
  // transformers lets special_tokens_map.json override tokenizer_config.json.
  ASSIGN_OR_RETURN(std::optional<std::string> pad_token,
                   TokenField(special_tokens, kSpecialTokensMapFile, "pad_token"));
  if (!pad_token.has_value()) {
    ASSIGN_OR_RETURN(pad_token, TokenField(config, kTokenizerConfigFile, "pad_token"));
  }
  options.pad_token = pad_token;
  ASSIGN_OR_RETURN(std::unique_ptr<SentencePieceTokenizer> tokenizer,
                   SentencePieceTokenizer::Load((root / kSentencePieceModelFile).string(), options));
  return std::unique_ptr<Tokenizer>(std::move(tokenizer));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadWordPiece(const std::filesystem::path& root,
                                                         const Json& config) {
  WordPieceTokenizer::Options options;
  ASSIGN_OR_RETURN(options.do_lower_case, BoolField(config, kTokenizerConfigFile, "do_lower_case", true));
  ASSIGN_OR_RETURN(options.model_max_length, MaxLengthField(config));
  ASSIGN_OR_RETURN(std::optional<std::string> tokenizer_class,
                   StringField(config, kTokenizerConfigFile, "tokenizer_class"));
  if (tokenizer_class.has_value()) {
    options.tokenizer_class = *tokenizer_class;
  } else {
    // Without a tokenizer_class, transformers picks the class from config.json's model_type.
    ASSIGN_OR_RETURN(Json model_config, ReadOptionalJsonObject(root / "config.json"));
    auto model_type = model_config.find("model_type");
    if (model_type != model_config.end() && *model_type == "distilbert") {
      options.tokenizer_class = "DistilBertTokenizer";
    }
  }
  ASSIGN_OR_RETURN(std::unique_ptr<WordPieceTokenizer> tokenizer,
                   WordPieceTokenizer::Load((root / kWordPieceVocabFile).string(), options));
  return std::unique_ptr<Tokenizer>(std::move(tokenizer));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizerFromDirectory(const std::string& dir) {
  const std::filesystem::path root(dir);
  const bool has_sentencepiece = IsFile(root / kSentencePieceModelFile);
  const bool has_wordpiece = IsFile(root / kWordPieceVocabFile);
  // transformers' fast tokenizers prefer tokenizer.json to the files of the slow ones. A
  // tokenizer.json of a kind TokenizerJson does not implement (Llama 2's SentencePiece-style
  // BPE, BERT's WordPiece) is skipped when the slow tokenizer's file is there, as
  // use_fast=False would; without one, its refusal is the answer.
  if (IsFile(root / kTokenizerJsonFile)) {
    absl::StatusOr<std::unique_ptr<TokenizerJson>> tokenizer =
        TokenizerJson::LoadFromDirectory(dir);
    if (tokenizer.ok()) return std::unique_ptr<Tokenizer>(std::move(*tokenizer));
    if (!absl::IsUnimplemented(tokenizer.status()) || (!has_sentencepiece && !has_wordpiece)) {
      return tokenizer.status();
    }
  }
  if (!has_sentencepiece && !has_wordpiece) {
    return absl::NotFoundError(
        absl::StrCat("no tokenizer in ", dir,
                     ": it holds none of tokenizer.json, tokenizer.model and vocab.txt"));
  }
  ASSIGN_OR_RETURN(Json config, ReadOptionalJsonObject(root / kTokenizerConfigFile));
  if (has_sentencepiece) {
    ASSIGN_OR_RETURN(Json special_tokens, ReadOptionalJsonObject(root / kSpecialTokensMapFile));
    return LoadSentencePiece(root, config, special_tokens);
  }
  return LoadWordPiece(root, config);
}

}  // namespace verdict
