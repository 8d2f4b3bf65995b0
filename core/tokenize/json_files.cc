#include "core/tokenize/json_files.h"

#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "core/util/file_util.h"
#include "core/util/status_macros.h"

namespace verdict {

absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  nlohmann::json value = nlohmann::json::parse(text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not valid JSON"));
  }
  return value;
}

absl::Status WriteJsonFile(const std::string& path, const nlohmann::json& value) {
  // Replacing bad UTF-8 keeps dump() from throwing; our strings are valid UTF-8 already.
  std::string text =
      value.dump(2, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace);
  text.push_back('\n');
  return WriteFileAtomically(path, text);
}

absl::Status CreateDirectories(const std::string& dir) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot create directory ", dir, ": ", error.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> TokenField(const nlohmann::json& config,
                                                      absl::string_view file, const char* field) {
  auto it = config.find(field);
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    auto content = it->find("content");
    if (content != it->end() && content->is_string()) return content->get<std::string>();
  }
  return absl::InvalidArgumentError(absl::StrCat(file, ": field \"", field,
                                                 "\" must be a string or an object with a string "
                                                 "\"content\", got ",
                                                 it->type_name()));
}

}  // namespace verdict
