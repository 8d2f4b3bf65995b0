#include "client/job_file.h"

#include <google/protobuf/util/json_util.h>
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cmath>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/local_file.h"

namespace verdict::client {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using Json = nlohmann::ordered_json;

absl::Status Bad(absl::string_view path, absl::string_view problem) {
  return absl::InvalidArgumentError(
      absl::StrCat(path.empty() ? "(top level)" : path, ": ", problem));
}

std::string Join(absl::string_view path, absl::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(path, ".", key);
}

// The field a key names, by its .proto name or its JSON (lowerCamelCase) name.
const FieldDescriptor* FindField(const Descriptor& type, const std::string& key) {
  if (const FieldDescriptor* field = type.FindFieldByName(key)) return field;
  for (int i = 0; i < type.field_count(); ++i) {
    if (type.field(i)->json_name() == key) return type.field(i);
  }
  return nullptr;
}

// "DTYPE_" for Dtype: the prefix every value of one of our enums carries.
std::string EnumPrefix(const google::protobuf::EnumDescriptor& type) {
  std::string prefix;
  for (char c : type.name()) {
    if (std::isupper(static_cast<unsigned char>(c)) && !prefix.empty()) prefix += '_';
    prefix += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return prefix + "_";
}

// "bfloat16" -> "DTYPE_BFLOAT16" when the enum has that value; otherwise the text unchanged.
std::string EnumValueName(const google::protobuf::EnumDescriptor& type, const std::string& text) {
  if (type.FindValueByName(text) != nullptr) return text;
  std::string upper = absl::AsciiStrToUpper(text);
  for (char& c : upper) {
    if (c == '-') c = '_';
  }
  const std::string full = EnumPrefix(type) + upper;
  return type.FindValueByName(full) != nullptr ? full : text;
}

absl::StatusOr<Json> MessageToJson(const YAML::Node& node, const Descriptor& type,
                                   const std::string& path);

// One value (not a list) of `field`.
absl::StatusOr<Json> ValueToJson(const YAML::Node& node, const FieldDescriptor& field,
                                 const std::string& path) {
  if (node.IsNull()) return Json(nullptr);
  if (field.cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
    if (node.IsMap()) return MessageToJson(node, *field.message_type(), path);
    // Well-known types with a string form (Duration "1.5s", Timestamp RFC 3339).
    if (node.IsScalar() &&
        absl::StartsWith(field.message_type()->full_name(), "google.protobuf.")) {
      return Json(node.Scalar());
    }
    return Bad(path, absl::StrCat("expected a mapping (", field.message_type()->full_name(), ")"));
  }
  if (!node.IsScalar()) {
    return Bad(path, node.IsSequence() ? "expected a single value, got a list"
                                       : "expected a single value, got a mapping");
  }
  const std::string& text = node.Scalar();
  const bool quoted = node.Tag() == "!";
  switch (field.cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      return Json(text);
    case FieldDescriptor::CPPTYPE_BOOL: {
      const std::string lower = absl::AsciiStrToLower(text);
      if (lower == "true" || lower == "yes" || lower == "on") return Json(true);
      if (lower == "false" || lower == "no" || lower == "off") return Json(false);
      return Bad(path, absl::StrCat("expected true or false, got '", text, "'"));
    }
    case FieldDescriptor::CPPTYPE_ENUM: {
      int64_t number;
      if (!quoted && absl::SimpleAtoi(text, &number)) return Json(number);
      return Json(EnumValueName(*field.enum_type(), text));
    }
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64: {
      int64_t number;
      if (absl::SimpleAtoi(text, &number)) return Json(number);
      return Json(text);  // protobuf's parser names the field and the value
    }
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t number;
      if (absl::SimpleAtoi(text, &number)) return Json(number);
      return Json(text);
    }
    case FieldDescriptor::CPPTYPE_FLOAT:
    case FieldDescriptor::CPPTYPE_DOUBLE: {
      double number;
      // "inf" / "nan" and YAML's ".inf" go through as text, which protobuf's parser names.
      if (absl::SimpleAtod(text, &number) && std::isfinite(number)) return Json(number);
      return Json(text);
    }
    default:
      return Json(text);
  }
}

absl::StatusOr<Json> FieldToJson(const YAML::Node& node, const FieldDescriptor& field,
                                 const std::string& path) {
  if (field.is_map()) {
    if (!node.IsMap()) return Bad(path, "expected a mapping");
    const FieldDescriptor& value_field = *field.message_type()->map_value();
    Json object = Json::object();
    for (const auto& entry : node) {
      const std::string key = entry.first.as<std::string>();
      absl::StatusOr<Json> value = ValueToJson(entry.second, value_field, Join(path, key));
      if (!value.ok()) return value.status();
      object[key] = *std::move(value);
    }
    return object;
  }
  if (field.is_repeated()) {
    if (node.IsNull()) return Json::array();
    if (!node.IsSequence()) return Bad(path, "expected a list");
    Json array = Json::array();
    for (size_t i = 0; i < node.size(); ++i) {
      absl::StatusOr<Json> value = ValueToJson(node[i], field, absl::StrCat(path, "[", i, "]"));
      if (!value.ok()) return value.status();
      array.push_back(*std::move(value));
    }
    return array;
  }
  return ValueToJson(node, field, path);
}

absl::StatusOr<Json> MessageToJson(const YAML::Node& node, const Descriptor& type,
                                   const std::string& path) {
  if (!node.IsMap()) return Bad(path, absl::StrCat("expected a mapping (", type.full_name(), ")"));
  Json object = Json::object();
  for (const auto& entry : node) {
    if (!entry.first.IsScalar()) return Bad(path, "keys must be plain names");
    const std::string key = entry.first.Scalar();
    const std::string key_path = Join(path, key);
    const FieldDescriptor* field = FindField(type, key);
    if (field == nullptr) {
      return Bad(key_path, absl::StrCat("no such field in ", type.full_name()));
    }
    absl::StatusOr<Json> value = FieldToJson(entry.second, *field, key_path);
    if (!value.ok()) return value.status();
    object[field->json_name()] = *std::move(value);
  }
  return object;
}

// Whether the text, as JSON or YAML, holds a SubmitTrainingJobRequest (has a top-level "spec").
bool HoldsRequest(const YAML::Node& root) { return root.IsMap() && root["spec"].IsDefined(); }

}  // namespace

absl::StatusOr<int> ParseEnumValue(const google::protobuf::EnumDescriptor& type,
                                   absl::string_view text) {
  int64_t number;
  if (absl::SimpleAtoi(text, &number)) {
    if (const auto* value = type.FindValueByNumber(static_cast<int>(number)))
      return value->number();
  } else if (const auto* value = type.FindValueByName(EnumValueName(type, std::string(text)))) {
    return value->number();
  }
  const std::string prefix = EnumPrefix(type);
  std::string names;
  for (int i = 0; i < type.value_count(); ++i) {
    if (type.value(i)->number() == 0) continue;  // UNSPECIFIED: the server's default
    std::string name = type.value(i)->name();
    if (absl::StartsWith(name, prefix)) name = name.substr(prefix.size());
    absl::StrAppend(&names, names.empty() ? "" : ", ", absl::AsciiStrToLower(name));
  }
  return absl::InvalidArgumentError(absl::StrCat("expected one of ", names, "; got '", text, "'"));
}

absl::StatusOr<std::string> YamlToJson(absl::string_view yaml, const Descriptor& type) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("line ", e.mark.line + 1, ", column ", e.mark.column + 1, ": ", e.msg));
  }
  if (root.IsNull()) return std::string("{}");
  absl::StatusOr<Json> json;
  try {
    json = MessageToJson(root, type, "");
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(e.what());
  }
  if (!json.ok()) return json.status();
  return json->dump();
}

absl::StatusOr<verdict::v1::SubmitTrainingJobRequest> ParseJobFile(absl::string_view contents,
                                                                   bool json) {
  verdict::v1::SubmitTrainingJobRequest request;
  if (json) {
    bool holds_request = false;
    const nlohmann::json parsed = nlohmann::json::parse(contents.begin(), contents.end(), nullptr,
                                                        /*allow_exceptions=*/false);
    if (parsed.is_discarded()) return absl::InvalidArgumentError("not valid JSON");
    holds_request = parsed.is_object() && parsed.contains("spec");
    google::protobuf::Message* target =
        holds_request ? static_cast<google::protobuf::Message*>(&request) : request.mutable_spec();
    const auto status = google::protobuf::util::JsonStringToMessage(
        google::protobuf::StringPiece(contents.data(), contents.size()), target);
    if (!status.ok()) {
      return absl::InvalidArgumentError(std::string(status.message()));
    }
    return request;
  }
  bool holds_request = false;
  try {
    holds_request = HoldsRequest(YAML::Load(std::string(contents)));
  } catch (const YAML::Exception&) {
    // YamlToJson reports it with its position.
  }
  google::protobuf::Message* target =
      holds_request ? static_cast<google::protobuf::Message*>(&request) : request.mutable_spec();
  absl::StatusOr<std::string> converted = YamlToJson(contents, *target->GetDescriptor());
  if (!converted.ok()) return converted.status();
  const auto status = google::protobuf::util::JsonStringToMessage(*converted, target);
  if (!status.ok()) return absl::InvalidArgumentError(std::string(status.message()));
  return request;
}

absl::StatusOr<verdict::v1::SubmitTrainingJobRequest> LoadJobFile(absl::string_view path) {
  absl::StatusOr<std::string> contents = ReadLocalFile(path);
  if (!contents.ok()) return contents.status();
  absl::StatusOr<verdict::v1::SubmitTrainingJobRequest> request =
      ParseJobFile(*contents, absl::EndsWithIgnoreCase(path, ".json"));
  if (!request.ok()) {
    return absl::Status(request.status().code(),
                        absl::StrCat(path, ": ", request.status().message()));
  }
  return request;
}

}  // namespace verdict::client
