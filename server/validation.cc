#include "server/validation.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace verdict::server {
namespace {

bool AllOf(absl::string_view text, absl::string_view extra, bool allow_upper) {
  for (char c : text) {
    const bool ok = absl::ascii_islower(c) || absl::ascii_isdigit(c) ||
                    (allow_upper && absl::ascii_isupper(c)) ||
                    extra.find(c) != absl::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

}  // namespace

std::string QuoteForMessage(absl::string_view value) {
  constexpr size_t kMaxQuoted = 64;
  if (value.size() <= kMaxQuoted) return absl::StrCat("\"", value, "\"");
  return absl::StrCat("\"", value.substr(0, kMaxQuoted), "\"... (", value.size(), " bytes)");
}

absl::Status ValidateModelName(absl::string_view field, absl::string_view name) {
  if (name.empty() || name.size() > 64 || !AllOf(name, "._-", false) ||
      !(absl::ascii_islower(name[0]) || absl::ascii_isdigit(name[0]))) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": must be 1-64 characters of [a-z0-9._-] starting with a letter or digit, got ",
        QuoteForMessage(name)));
  }
  return absl::OkStatus();
}

absl::Status ValidateAlias(absl::string_view field, absl::string_view alias, bool allow_latest) {
  if (alias == "latest") {
    if (allow_latest) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(field, ": \"latest\" is reserved"));
  }
  if (alias.empty() || alias.size() > 32 || !AllOf(alias, "_-", false) ||
      !absl::ascii_islower(alias[0])) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": must be 1-32 characters of [a-z0-9_-] starting with a letter, got ", QuoteForMessage(alias)));
  }
  return absl::OkStatus();
}

v1::ModelRef ParseModelSpec(absl::string_view spec) {
  v1::ModelRef ref;
  const size_t colon = spec.find(':');
  ref.set_name(std::string(spec.substr(0, colon)));
  if (colon == absl::string_view::npos) return ref;
  const absl::string_view rest = spec.substr(colon + 1);
  int64_t version = 0;
  if (absl::SimpleAtoi(rest, &version)) {
    ref.set_version(version);
  } else {
    ref.set_alias(std::string(rest));
  }
  return ref;
}

absl::Status ValidateModelRef(absl::string_view field, const v1::ModelRef& ref) {
  absl::Status name = ValidateModelName(absl::StrCat(field, ".name"), ref.name());
  if (!name.ok()) return name;
  if (ref.selector_case() == v1::ModelRef::kVersion && ref.version() < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".version: must be >= 1, got ", ref.version()));
  }
  if (ref.selector_case() == v1::ModelRef::kAlias) {
    return ValidateAlias(absl::StrCat(field, ".alias"), ref.alias(), /*allow_latest=*/true);
  }
  return absl::OkStatus();
}

absl::Status ValidateId(absl::string_view field, absl::string_view id) {
  if (id.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": must be set"));
  if (id.size() > 64 || !AllOf(id, "_-", true)) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": malformed id ", QuoteForMessage(id)));
  }
  return absl::OkStatus();
}

absl::Status ValidateRange(absl::string_view field, int64_t value, int64_t lo, int64_t hi) {
  if (value < lo || value > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": must be in [", lo, ", ", hi, "], got ", value));
  }
  return absl::OkStatus();
}

}  // namespace verdict::server
